"""What the four MNIST generative recipes (``dcgan_mnist``, ``vae_mnist``, ``realnvp_mnist``,
``ddpm_mnist``) share: their flags, the MNIST batches, a sample grid per epoch, the measured
sample quality, the export of the generator for phones, and ``metrics.json``.

Sample quality is an **MNIST-specific FID**: the Frechet distance between the LeNet-5 F6
features (84 numbers per digit, from the classifier the ``lenet5_mnist`` recipe trains) of
``--fid-samples`` generated digits and of the 10,000 test digits, plus the share of generated
digits that LeNet-5 classifies with confidence above 0.9 (``kapps.metrics.SampleQuality``). It
is not the Inception FID of Heusel et al. 2017 and is comparable only between runs scored with
the same classifier. The same score of 10,000 *real* training digits is reported beside it
(``real_data_fid``): the floor a perfect generator would reach with that many samples.

The functions below import TensorFlow; the parser helpers do not, so a bad flag is reported
before TensorFlow starts.
"""

import os
import time

from recipes._common import add_run_flags, parse, recipe_parser

#: Examples a ``--quick`` run uses: training digits, test digits, scored samples.
QUICK = {"train": 256, "test": 128, "fid": 128}
TRAIN_SIZE, TEST_SIZE = 60_000, 10_000
#: Where ``python -m recipes.lenet5_mnist`` leaves its trained classifier.
DEFAULT_CLASSIFIER = os.path.join("saved_models", "lenet5_mnist", "model.keras")
#: Images in each per-epoch grid (10 x 10) and in the parity check of the exported generator.
GRID, PARITY = 100, 16
#: Seeds of the grid's noise, the scored samples and the parity noise: fixed, so grids of
#: successive epochs show the same latent points and reruns score the same noise.
GRID_SEED, SAMPLE_SEED, PARITY_SEED = 2024, 7, 11


def generative_parser(recipe, doc, *, epochs, batch_size, learning_rate):
    """The recipe's parser with the flags the four recipes share (add recipe flags to it,
    then call :func:`parse_generative`)."""
    parser = recipe_parser(recipe, doc)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="training batches per epoch (default: one pass over the 60,000 digits)")
    parser.add_argument("--learning-rate", type=float, default=learning_rate, help=f"peak learning rate (default {learning_rate:g})")
    parser.add_argument("--tfds-data-dir", default=None, help="TFDS data folder (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    parser.add_argument("--no-download", action="store_true", help="never download MNIST")
    parser.add_argument("--classifier", default=DEFAULT_CLASSIFIER, help=f"the trained LeNet-5 that scores samples (default {DEFAULT_CLASSIFIER}, written by python -m recipes.lenet5_mnist)")
    parser.add_argument("--fid-samples", type=int, default=10_000, help="generated digits scored against the 10,000 test digits (default 10,000)")
    parser.add_argument("--no-quality", action="store_true", help="skip the sample-quality score (no classifier needed)")
    add_run_flags(parser, recipe, batch_size=batch_size)
    return parser


def parse_generative(parser, argv, positive=()):
    """Parse and check the shared flags; exit with a one-line usage error on a bad value, or
    when the classifier file is missing (before any training)."""
    args = parse(parser, argv, positive=("epochs", "fid_samples", *positive))
    if args.steps_per_epoch is not None and args.steps_per_epoch < 1:
        parser.error(f"--steps-per-epoch={args.steps_per_epoch} is not allowed; expected a positive integer")
    if args.learning_rate <= 0:
        parser.error(f"--learning-rate={args.learning_rate} is not allowed; expected a positive number")
    if args.fid_samples < 2:
        parser.error(f"--fid-samples={args.fid_samples} is not allowed; expected at least 2")
    if not args.no_quality and not os.path.isfile(args.classifier):
        parser.error(
            f"--classifier={args.classifier} does not exist: the sample-quality score needs the "
            "LeNet-5 trained by `python -m recipes.lenet5_mnist` (it writes "
            f"{DEFAULT_CLASSIFIER}); pass its path, or --no-quality to skip the score"
        )
    return args


def mnist_data(args, batch):
    """``(train_ds, test_ds, test_images, test_labels, steps)``: shuffled training batches of
    ``(images, labels)`` (the last partial batch dropped, so every step splits evenly across
    replicas; repeated when ``--steps-per-epoch`` is given) and the training steps of one
    epoch, the test split as numpy arrays and in batches of ``batch`` made
    from those arrays (every digit scored exactly once, whatever iterated the training
    pipeline before)."""
    import numpy as np
    import tensorflow as tf

    from kapps import data

    source = {"data_dir": args.tfds_data_dir, "download": not args.no_download}
    train_size = QUICK["train"] if args.quick else TRAIN_SIZE
    test_split = f"test[:{QUICK['test']}]" if args.quick else "test"
    train_ds = data.mnist(f"train[:{train_size}]", batch, seed=args.seed, drop_remainder=True,
                          repeat=args.steps_per_epoch is not None, **source)
    test_images, test_labels = (
        np.concatenate(a) for a in zip(*data.mnist(test_split, 1000, cache=False, **source).as_numpy_iterator())
    )
    test_ds = tf.data.Dataset.from_tensor_slices((test_images, test_labels)).batch(batch).prefetch(tf.data.AUTOTUNE)
    steps = args.steps_per_epoch or train_size // batch
    return train_ds, test_ds, test_images, test_labels, steps


def real_images(args, count):
    """The first ``count`` training digits as a numpy array (the real-data floor of the score)."""
    import numpy as np

    from kapps import data

    source = {"data_dir": args.tfds_data_dir, "download": not args.no_download}
    return np.concatenate([
        x for x, _ in data.mnist(f"train[:{count}]", 1000, shuffle=False, cache=False, **source).as_numpy_iterator()
    ])


def sample_grid_callback(model, out, title, **sample_options):
    """A callback that draws 100 samples from the same noise after every epoch into
    ``out/samples/epoch_NNN.png`` (class-conditional models: one row per class)."""
    import keras

    class SampleGrid(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            images = model.sample(GRID, seed=GRID_SEED, **sample_options)
            draw_grid(model, images, os.path.join(out, "samples", f"epoch_{epoch + 1:03d}.png"), f"{title}, epoch {epoch + 1}")

    return SampleGrid()


def draw_grid(model, images, path, title):
    """Draw ``images`` (100 samples) as a 10 x 10 grid; rows labelled by class when the model
    is class-conditional (``sample`` gives the classes in turn, so each column is one class;
    the grid is transposed to put one class per row)."""
    from kapps import plots

    row_labels = None
    if model.num_classes:
        images = images.reshape(10, 10, *images.shape[1:]).swapaxes(0, 1).reshape(images.shape)
        row_labels = [f"class {k}" for k in range(10)]
    return plots.plot_sample_grid(images, path, columns=10, title=title, row_labels=row_labels)


def sample_quality(model, args, test_images, out, title, **sample_options):
    """Score ``--fid-samples`` samples (``kapps.metrics.SampleQuality``), draw the first 100 as
    ``samples.png``, and time the sampling. Returns the metrics' ``quality`` entry."""
    import keras

    from kapps.metrics import SampleQuality

    count = QUICK["fid"] if args.quick else args.fid_samples
    start = time.time()
    samples = model.sample(count, seed=SAMPLE_SEED, **sample_options)
    seconds = time.time() - start
    draw_grid(model, samples[:GRID], os.path.join(out, "samples.png"), f"{title}: samples")
    if args.no_quality:
        return {"samples": count, "sampling_seconds": round(seconds, 1)}
    classifier = keras.saving.load_model(args.classifier, compile=False)
    scorer = SampleQuality(classifier, test_images)
    score = scorer(samples)
    real = scorer(real_images(args, min(count, TRAIN_SIZE)))
    return {
        "mnist_fid": round(score["fid"], 3),
        "confident_share": round(score["confident_share"], 4),
        "class_counts": score["class_counts"],
        "samples": count,
        "sampling_seconds": round(seconds, 1),
        "samples_per_second": round(count / seconds, 1),
        "real_data_fid": round(real["fid"], 3),
        "real_data_confident_share": round(real["confident_share"], 4),
        "reference": f"{len(test_images)} MNIST test digits",
        "classifier": "LeNet-5 F6 features (MNIST-specific FID, not the Inception FID)",
    }


def export_generator(model, out, **sampler_options):
    """Write ``model.keras`` (the whole model, to sample or train further), and the generator
    ``model.sampler(**sampler_options)`` as ``saved_model/`` and builtin-only ``model.tflite``,
    after checking TFLite against Keras on fixed noise. Returns the ``export`` metrics."""
    import numpy as np

    from kapps import export

    keras_path = export.save_keras(model, os.path.join(out, "model.keras"))
    sampler = model.sampler(**sampler_options)
    saved = export.export_saved_model(sampler, os.path.join(out, "saved_model"))
    noise = model.noise(PARITY, seed=PARITY_SEED)
    inputs = [noise, (np.arange(PARITY) % model.num_classes).astype("int32")] if model.num_classes else noise
    flatbuffer = export.to_tflite(sampler)
    error = export.tflite_parity(sampler, flatbuffer, inputs)
    if not error <= 1e-4:
        raise export.ParityError(
            f"the TFLite generator differs from Keras by {error:.3g} > 1e-4 on fixed noise; "
            "model.tflite was not written.", error, 1e-4,
        )
    tflite_path = os.path.join(out, "model.tflite")
    with open(tflite_path, "wb") as f:
        f.write(flatbuffer)
    return {
        "tflite_max_abs_diff": error,
        "sampler_options": sampler_options,
        "files": {
            "keras": {"path": os.path.relpath(keras_path, out), "bytes": os.path.getsize(keras_path)},
            "saved_model": {"path": os.path.relpath(saved, out)},
            "tflite": {"path": "model.tflite", "bytes": len(flatbuffer)},
        },
    }


def finish(model, history, args, out, start, extra, title):
    """Draw ``curves.png`` and return the metrics every recipe writes: ``extra`` first, then
    parameters and times."""
    from kapps import plots

    plots.plot_history(history, os.path.join(out, "curves.png"), title=title)
    return {
        **extra,
        "epochs": len(history.epoch),
        "params": int(model.count_params()),
        "quick": args.quick,
        "strategy": args.strategy,
        "replicas": model.distribute_strategy.num_replicas_in_sync,
        "wall_seconds": round(time.time() - start, 1),
    }
