"""ResNet-20 (or any kapps classifier) on CIFAR-10 with the ResNet paper's schedule.

    python -m recipes.resnet_cifar10                                  # TFDS cifar10, full schedule
    python -m recipes.resnet_cifar10 --data ../shared/data/cifar10 --epochs 30

Trains ``kapps.models.resnet20`` (``--model`` takes any registered classifier, built for
32x32 inputs and 10 classes) under a ``tf.distribute`` strategy with the training of He et al.
2016, Sec. 4.2: SGD with momentum 0.9, weight decay 1e-4 (through the loss, so momentum sees
it), batch 128, learning rate 0.1 divided by 10 at 32k and 48k iterations and stopped at 64k,
4-pixel padding with random 32x32 crops and horizontal flips. ``--epochs`` shortens the run;
the rate then drops at the same fractions (1/2 and 3/4) of it. The paper reaches 8.75% test
error with ResNet-20 on the full 50,000/10,000 images (Table 6).

Data: TFDS ``cifar10`` (downloaded on first use), or ``--data FOLDER``, a local copy laid out
``FOLDER/{train,test}/<class>/<image>``.

What a shortened run reaches on a 2-core CPU with the local CIFAR-10 subset (10,000 training
and 2,000 test JPEG images, a fifth of the paper's training data) is in the README's recipe
table, beside the ViT trained for about the same time (``recipes.vit_cifar10``).

Writes ``--out`` (default ``saved_models/resnet_cifar10/``): ``model.keras``, ``saved_model/``,
``model.tflite``, ``model_int8.tflite``, ``metrics.json``, ``history.csv``, ``curves.png``,
``samples.png`` (plus ``best.keras`` and ``logs/``). Running the same command again after an
interruption resumes from the last completed epoch. ``--quick`` runs the whole path on a few
batches of real images in about a minute (the tests use it).
"""

import math
import os
import sys
import time

from recipes._common import add_run_flags, parse, recipe_parser, run_recipe, setup

RECIPE = "resnet_cifar10"
PAPER_ITERATIONS = 64_000
MILESTONES = (0.5, 0.75)  # 32k and 48k of 64k iterations
QUICK = {"train": 512, "test": 256, "calibration": 64, "epochs": 2}


def parse_args(argv=None):
    from kapps import registry

    parser = recipe_parser(RECIPE, __doc__)
    parser.add_argument("--model", default="resnet20", choices=registry.list_models(task="classification"), metavar="NAME", help="a registered classifier (default resnet20; see `kapps list`)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the paper's 64,000 iterations")
    parser.add_argument("--learning-rate", type=float, default=0.1, help="initial SGD rate for a global batch of 128, scaled linearly with the global batch (default 0.1)")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--data", default=None, metavar="FOLDER", help="a local CIFAR-10 image folder (FOLDER/{train,test}/<class>/...) instead of TFDS")
    parser.add_argument("--tfds-data-dir", default=None, help="TFDS data folder (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    parser.add_argument("--no-download", action="store_true", help="never download CIFAR-10")
    add_run_flags(parser, RECIPE, batch_size=128)
    args = parse(parser, argv, positive=("epochs",))
    if args.learning_rate <= 0:
        parser.error(f"--learning-rate={args.learning_rate} is not allowed; expected a positive number")
    if not 0 <= args.momentum < 1:
        parser.error(f"--momentum={args.momentum} is not allowed; expected a number in [0, 1)")
    if args.weight_decay < 0:
        parser.error(f"--weight-decay={args.weight_decay} is not allowed; expected a number >= 0")
    if args.data is not None and not os.path.isdir(os.path.join(args.data, "train")):
        parser.error(
            f"--data={args.data!r} has no train/ folder; expected FOLDER/{{train,test}}/<class>/<image> "
            "(leave --data out to use TFDS cifar10)"
        )
    return args


def main(argv=None):
    """Run the recipe; return the metrics dictionary (also written to ``metrics.json``)."""
    args = parse_args(argv)
    start = time.time()
    import keras

    import kapps
    from kapps import data, training
    from recipes._classification import evaluate_and_export, write_metrics

    strategy, batch, out, chief = setup(args)

    source = {"folder": args.data, "data_dir": args.tfds_data_dir, "download": not args.no_download}
    if args.quick:
        train_size, sizes = QUICK["train"], {"take": QUICK["train"]}
        test_sizes = {"take": QUICK["test"]}
    else:
        train_size, sizes, test_sizes = (10_000 if args.data else 50_000), {}, {}
        if args.data:
            train_size = len(data.list_image_folder(os.path.join(args.data, "train"), data.CIFAR10_CLASSES)[0])
    train_ds = data.cifar10(
        "train", batch, seed=args.seed, augment=data.random_crop_flip(4, seed=args.seed),
        drop_remainder=True, **sizes, **source,
    )
    test_ds = data.cifar10("test", 500, **test_sizes, **source)
    steps = train_size // batch
    if steps < 1:
        raise ValueError(f"the global batch {batch} is larger than the {train_size} training images.")
    epochs = args.epochs or (QUICK["epochs"] if args.quick else math.ceil(PAPER_ITERATIONS / steps))
    total = epochs * steps
    boundaries = [max(1, int(f * total)) for f in MILESTONES]

    with strategy.scope():
        model = kapps.build(args.model, num_classes=10, input_shape=(32, 32, 3))
        decayed = training.add_weight_decay(model, args.weight_decay)
        rate = training.scaled_learning_rate(args.learning_rate, batch, base_batch_size=128)
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
            boundaries, [rate, rate / 10, rate / 100]
        )
        model.compile(
            optimizer=keras.optimizers.SGD(schedule, momentum=args.momentum),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=args.jit_compile,
        )
    # The test split is drawn per epoch (as the paper's Fig. 6) but never chooses the model:
    # the final model is the last epoch's.
    history = training.fit(model, train_ds, test_ds, epochs=epochs, out_dir=out, monitor="loss")
    train_seconds = time.time() - start

    if args.strategy == "multi_worker":
        model.save_weights(os.path.join(training.worker_out_dir(out, strategy), "final.weights.h5"))
    if not chief:
        return {}

    calibration = next(iter(data.cifar10("train", QUICK["calibration"] if args.quick else 500, seed=args.seed, **source)))[0]
    extra = {
        "recipe": RECIPE,
        "model": args.model,
        "data": "folder" if args.data else "tfds:cifar10",
        "quick": args.quick,
        "train_examples": train_size,
        "paper_test_error_percent": 8.75 if args.model == "resnet20" else None,
        "weight_decayed_kernels": decayed,
        "epochs": len(history.epoch),
        "iterations": len(history.epoch) * steps,
        "learning_rate_boundaries": boundaries,
        "global_batch_size": batch,
        "replicas": strategy.num_replicas_in_sync,
        "strategy": args.strategy,
        "train_seconds": round(train_seconds, 1),
    }
    metrics = evaluate_and_export(
        model, history, test_ds, calibration, out,
        class_names=data.CIFAR10_CLASSES, title=f"{args.model} on CIFAR-10", extra=extra,
    )
    metrics["wall_seconds"] = round(time.time() - start, 1)
    write_metrics(metrics, out)
    return metrics


if __name__ == "__main__":
    sys.exit(run_recipe(main))
