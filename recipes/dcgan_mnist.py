"""A DCGAN on MNIST: adversarial training, a sample grid per epoch, MNIST-FID, a phone generator.

    python -m recipes.dcgan_mnist --tfds-data-dir ../shared/tfds
    python -m recipes.dcgan_mnist --tfds-data-dir ../shared/tfds --conditional

Trains ``kapps.models.dcgan`` (Radford et al. 2016: a transposed-convolution generator with
batch normalization and tanh, a strided-convolution discriminator with LeakyReLU, the
non-saturating loss, Adam with learning rate 2e-4 and beta1 0.5, section 4) on the 60,000
MNIST training digits under a ``tf.distribute`` strategy; ``--conditional`` feeds the digit
class to both networks. A GAN has no likelihood and no loss that says how good it is, so
the quality reported is the MNIST-specific FID and the confident share of 10,000 samples
(see ``recipes/_generative.py``); the losses of the test split are logged as validation
only to watch the discriminator for overfitting. No "best" checkpoint is kept for the same
reason: the model is the last epoch's.

Measured on a 2-core CPU shared with other jobs, with the defaults (3 epochs, 384k
parameters): MNIST-FID 108.7 and confident share 0.744 on 10,000 samples (real digits: 1.04
and 0.999), in 13 minutes of training.

Writes ``--out`` (default ``saved_models/dcgan_mnist/``): ``model.keras`` (generator and
discriminator), ``saved_model/`` and ``model.tflite`` (the generator: noise, and the class when
conditional, in; digits out), ``samples/epoch_NNN.png`` (the same 100 noise vectors after
every epoch), ``samples.png``, ``metrics.json``, ``history.csv``, ``curves.png``. Running the
same command again resumes an interrupted run. ``--quick`` runs the whole path on a few
batches of real MNIST (tests).
"""

import sys
import time

from recipes._common import run_recipe, setup, write_metrics
from recipes._generative import generative_parser, parse_generative

RECIPE = "dcgan_mnist"
TITLE = "DCGAN on MNIST"
#: The MNIST configuration, sized for a 2-core CPU: a 7x7x64 -> 14x14x32 -> 28x28x1 generator
#: and a 32-64 discriminator (384k parameters; G 256-128 / D 64-128 trains 3x slower).
MODEL = {"image_shape": (28, 28, 1), "generator_filters": (64, 32), "discriminator_filters": (32, 64)}
#: ``--quick``: the same path with narrow networks, for tests.
QUICK_MODEL = {"image_shape": (28, 28, 1), "generator_filters": (16, 8), "discriminator_filters": (8, 16)}


def parse_args(argv=None):
    parser = generative_parser(RECIPE, __doc__, epochs=3, batch_size=64, learning_rate=2e-4)
    parser.add_argument("--latent-dim", type=int, default=100, help="noise dimensions (default 100, as the paper)")
    parser.add_argument("--conditional", action="store_true", help="class-conditional generator and discriminator")
    return parse_generative(parser, argv, positive=("latent_dim",))


def main(argv=None):
    """Run the recipe; return the metrics dictionary (also written to ``metrics.json``)."""
    args = parse_args(argv)
    start = time.time()
    import keras

    import kapps
    from kapps import training
    from recipes import _generative as common

    strategy, batch, out, chief = setup(args)
    train_ds, test_ds, test_images, _, steps = common.mnist_data(args, batch)
    with strategy.scope():
        model = kapps.build("dcgan", **(QUICK_MODEL if args.quick else MODEL), latent_dim=args.latent_dim,
                            num_classes=10 if args.conditional else None)
        # Adam(2e-4, beta1=0.5) for both networks (section 4: 0.9 oscillated)
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate, beta_1=0.5),
            discriminator_optimizer=keras.optimizers.Adam(args.learning_rate, beta_1=0.5),
            jit_compile=args.jit_compile,
        )
    history = training.fit(
        model, train_ds, test_ds, epochs=args.epochs, steps_per_epoch=steps, out_dir=out, save_best=False,
        extra_callbacks=[common.sample_grid_callback(model, out, TITLE)],
    )
    train_seconds = time.time() - start
    if not chief:
        return {}

    quality = common.sample_quality(model, args, test_images, out, TITLE)
    exported = common.export_generator(model, out)
    metrics = common.finish(model, history, args, out, start, {
        "recipe": RECIPE,
        "conditional": args.conditional,
        "latent_dim": args.latent_dim,
        "global_batch_size": batch,
        "train_seconds": round(train_seconds, 1),
        "generator_params": int(model.generator.count_params()),
        "quality": quality,
        **exported,
    }, TITLE)
    write_metrics(metrics, out, f"{RECIPE}: MNIST-FID {quality.get('mnist_fid', 'not scored')}")
    return metrics


if __name__ == "__main__":
    sys.exit(run_recipe(main))
