"""A convolutional variational autoencoder on MNIST: ELBO, samples, a latent map, interpolations.

    python -m recipes.vae_mnist --tfds-data-dir ../shared/tfds

Trains ``kapps.models.vae`` (Kingma and Welling 2014: an encoder to the mean and log-variance
of q(z|x), the reparameterisation trick, a decoder to Bernoulli pixel probabilities; loss =
reconstruction + beta x KL) on the 60,000 MNIST training digits under a ``tf.distribute``
strategy, with the 10,000 test digits as validation. Reports the test ELBO (nats per digit,
one latent sample per digit; Bernoulli likelihood of the grey levels, so it is not a
discrete-data likelihood comparable with bits per dimension), the MNIST-specific FID and the
confident share of 10,000 samples (see ``recipes/_generative.py``), and exports the decoder
(noise in, digits out) to builtin-only TFLite checked against Keras on fixed noise.

Measured on a 2-core CPU shared with other jobs, ``--epochs 3`` (a 10-epoch run resumed
with 3): test ELBO -103.6 nats per digit, MNIST-FID 125.1 and confident share 0.726 on 10,000
samples (real digits: 1.04 and 0.999), in 10 minutes of training.

Writes ``--out`` (default ``saved_models/vae_mnist/``): ``model.keras`` (the whole VAE),
``saved_model/`` and ``model.tflite`` (the decoder as a generator), ``samples/epoch_NNN.png``
(the same 100 latent points after every epoch), ``samples.png``, ``latent_map.png`` (test
digits' latent means, or their first two principal components when the latent has more than
two dimensions), ``interpolation.png`` (decoded straight lines between the latent means of
pairs of test digits), ``metrics.json``, ``history.csv``, ``curves.png``. Running the same
command again resumes an interrupted run. ``--quick`` runs the whole path on a few batches of
real MNIST (tests).
"""

import os
import sys
import time

from recipes._common import run_recipe, setup, write_metrics
from recipes._generative import generative_parser, parse_generative

RECIPE = "vae_mnist"
TITLE = "VAE on MNIST"
#: The MNIST configuration (the builder's defaults are already MNIST's).
MODEL = {"image_shape": (28, 28, 1)}
#: ``--quick``: the same path with narrow networks, for tests.
QUICK_MODEL = {"image_shape": (28, 28, 1), "filters": (8, 16), "hidden_dim": 32}


def parse_args(argv=None):
    parser = generative_parser(RECIPE, __doc__, epochs=10, batch_size=64, learning_rate=1e-3)
    parser.add_argument("--latent-dim", type=int, default=20, help="latent dimensions (default 20, the builder's; 2 draws the latent map directly)")
    parser.add_argument("--beta", type=float, default=1.0, help="weight of the KL term (1: the ELBO; Higgins et al. 2017 use more)")
    args = parse_generative(parser, argv, positive=("latent_dim",))
    if args.beta <= 0:
        parser.error(f"--beta={args.beta} is not allowed; expected a positive number")
    return args


def latent_pictures(model, images, labels, out):
    """Draw ``latent_map.png`` and ``interpolation.png`` from the test digits."""
    import numpy as np

    from kapps import plots

    means = model.encode(images)[0]
    if means.shape[1] == 2:
        points, axes = means, ("z1", "z2")
    else:
        # the two directions of largest variance of the means
        centred = means - means.mean(0)
        _, _, components = np.linalg.svd(centred, full_matrices=False)
        points, axes = centred @ components[:2].T, ("principal component 1", "principal component 2")
    plots.plot_latent_map(points, labels, os.path.join(out, "latent_map.png"),
                          title=f"{TITLE}: latent means of {len(images)} test digits", axis_labels=axes)
    # eight pairs of test digits of different classes, ten steps from one to the other
    rng = np.random.default_rng(0)
    pairs = []
    while len(pairs) < 8:
        a, b = rng.integers(0, len(images), 2)
        if labels[a] != labels[b]:
            pairs.append((a, b))
    weights = np.linspace(0.0, 1.0, 10)[:, None]
    path = np.concatenate([(1 - weights) * means[a] + weights * means[b] for a, b in pairs]).astype("float32")
    strip = np.asarray(model.decode(path))
    plots.plot_sample_grid(strip, os.path.join(out, "interpolation.png"), columns=10,
                           title=f"{TITLE}: decoded straight lines between latent means",
                           row_labels=[f"{labels[a]} -> {labels[b]}" for a, b in pairs])


def main(argv=None):
    """Run the recipe; return the metrics dictionary (also written to ``metrics.json``)."""
    args = parse_args(argv)
    start = time.time()
    import keras

    import kapps
    from kapps import training
    from recipes import _generative as common

    strategy, batch, out, chief = setup(args)
    train_ds, test_ds, test_images, test_labels, steps = common.mnist_data(args, batch)
    with strategy.scope():
        model = kapps.build("vae", **(QUICK_MODEL if args.quick else MODEL), latent_dim=args.latent_dim, beta=args.beta)
        schedule = keras.optimizers.schedules.CosineDecay(args.learning_rate, decay_steps=args.epochs * steps)
        model.compile(optimizer=keras.optimizers.Adam(schedule), jit_compile=args.jit_compile)
    history = training.fit(
        model, train_ds, test_ds, epochs=args.epochs, steps_per_epoch=steps, out_dir=out, monitor="val_loss",
        extra_callbacks=[common.sample_grid_callback(model, out, TITLE)],
    )
    train_seconds = time.time() - start
    if not chief:
        return {}

    test = model.evaluate(test_ds, return_dict=True, verbose=0)
    latent_pictures(model, test_images, test_labels, out)
    quality = common.sample_quality(model, args, test_images, out, TITLE)
    exported = common.export_generator(model, out)
    metrics = common.finish(model, history, args, out, start, {
        "recipe": RECIPE,
        "latent_dim": args.latent_dim,
        "beta": args.beta,
        "global_batch_size": batch,
        "train_seconds": round(train_seconds, 1),
        "test": {k: round(float(v), 4) for k, v in test.items()},
        "test_negative_elbo_nats": round(-float(test["elbo"]), 3),
        "quality": quality,
        **exported,
    }, TITLE)
    write_metrics(metrics, out, f"{RECIPE}: test ELBO {test['elbo']:.1f} nats, MNIST-FID {quality.get('mnist_fid', 'not scored')}")
    return metrics


if __name__ == "__main__":
    sys.exit(run_recipe(main))
