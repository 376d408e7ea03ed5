"""A small Vision Transformer trained from scratch on CIFAR-10, with the attention it learned.

    python -m recipes.vit_cifar10                                     # TFDS cifar10
    python -m recipes.vit_cifar10 --data ../shared/data/cifar10 --epochs 15

Trains ``kapps.models.vit`` at 32x32 with 4x4 patches (64 tokens and a class token; width
96, 6 pre-LN blocks, 4 heads, MLP 192) under a ``tf.distribute`` strategy. Transformers
lack the convolution's built-in locality and translation equivariance, so on small data they
need help (Dosovitskiy et al. 2020, Sec. 4.2; Touvron et al. 2021, DeiT): random crops and
flips, label smoothing 0.1, stochastic depth 0.1, AdamW with decoupled weight decay 0.05, a
linear warm-up then cosine decay.

Data: TFDS ``cifar10`` (downloaded on first use), or ``--data FOLDER``, a local copy laid out
``FOLDER/{train,test}/<class>/<image>``.

What it reaches on a 2-core CPU with the local CIFAR-10 subset (10,000 training and 2,000
test images), against ResNet-20 (``recipes.resnet_cifar10``) trained for about the same time,
is in the README's recipe table.

Writes ``--out`` (default ``saved_models/vit_cifar10/``): ``model.keras``, ``saved_model/``,
``model.tflite``, ``model_int8.tflite``, ``metrics.json``, ``history.csv``, ``curves.png``,
``samples.png`` and ``attention.png`` (attention rollout over test images), plus
``best.keras`` and ``logs/``. Running the same command again after an interruption resumes
from the last completed epoch. ``--quick`` runs the whole path on a few batches of real
images (the tests use it).
"""

import os
import sys
import time

from recipes._common import add_run_flags, parse, recipe_parser, run_recipe, setup

RECIPE = "vit_cifar10"
QUICK = {"train": 512, "test": 256, "calibration": 64, "epochs": 2}


def parse_args(argv=None):
    parser = recipe_parser(RECIPE, __doc__)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak AdamW rate for a global batch of 128, scaled linearly with the global batch")
    parser.add_argument("--weight-decay", type=float, default=0.05, help="decoupled (AdamW) weight decay")
    parser.add_argument("--warmup-epochs", type=float, default=1.0)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--stochastic-depth", type=float, default=0.1, help="drop rate of the last block (linear in depth)")
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--hidden-dim", type=int, default=96)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--mlp-dim", type=int, default=192)
    parser.add_argument("--data", default=None, metavar="FOLDER", help="a local CIFAR-10 image folder (FOLDER/{train,test}/<class>/...) instead of TFDS")
    parser.add_argument("--tfds-data-dir", default=None, help="TFDS data folder (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    parser.add_argument("--no-download", action="store_true", help="never download CIFAR-10")
    add_run_flags(parser, RECIPE, batch_size=128)
    args = parse(parser, argv, positive=("epochs", "patch_size", "hidden_dim", "depth", "heads", "mlp_dim"))
    if 32 % args.patch_size:
        parser.error(f"--patch-size={args.patch_size} is not allowed; expected a divisor of 32 (the image size)")
    if args.hidden_dim % args.heads:
        parser.error(f"--hidden-dim={args.hidden_dim} is not allowed with --heads={args.heads}; expected a multiple of it")
    for flag in ("label_smoothing", "stochastic_depth"):
        if not 0 <= getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')}={getattr(args, flag)} is not allowed; expected a number in [0, 1)")
    if args.learning_rate <= 0 or args.weight_decay < 0 or args.warmup_epochs < 0:
        parser.error("--learning-rate must be positive, --weight-decay and --warmup-epochs non-negative")
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
    import numpy as np
    import tensorflow as tf

    from kapps import data, plots, training
    from kapps.models.classification.vit import attention_rollout, vit
    from recipes._classification import evaluate_and_export, write_metrics

    strategy, batch, out, chief = setup(args)

    source = {"folder": args.data, "data_dir": args.tfds_data_dir, "download": not args.no_download}
    if args.quick:
        train_size, sizes, test_sizes = QUICK["train"], {"take": QUICK["train"]}, {"take": QUICK["test"]}
    elif args.data:
        train_size, sizes, test_sizes = len(data.list_image_folder(os.path.join(args.data, "train"), data.CIFAR10_CLASSES)[0]), {}, {}
    else:
        train_size, sizes, test_sizes = 50_000, {}, {}

    def one_hot(images, labels):  # label smoothing needs categorical targets
        return images, tf.one_hot(labels, 10)

    train_ds = data.cifar10(
        "train", batch, seed=args.seed, augment=data.random_crop_flip(4, seed=args.seed),
        drop_remainder=True, **sizes, **source,
    ).map(one_hot, num_parallel_calls=data.AUTOTUNE)
    test_ds = data.cifar10("test", 500, **test_sizes, **source)
    steps = train_size // batch
    if steps < 1:
        raise ValueError(f"the global batch {batch} is larger than the {train_size} training images.")
    epochs = QUICK["epochs"] if args.quick and args.epochs == 100 else args.epochs

    with strategy.scope():
        model = vit(
            patch_size=args.patch_size, hidden_dim=args.hidden_dim, depth=args.depth,
            num_heads=args.heads, mlp_dim=args.mlp_dim, num_classes=10, input_shape=(32, 32, 3),
            stochastic_depth_rate=args.stochastic_depth, name="vit_cifar10",
        )
        peak = training.scaled_learning_rate(args.learning_rate, batch, base_batch_size=128)
        warmup = int(args.warmup_epochs * steps)
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else peak, decay_steps=max(1, epochs * steps - warmup),
            warmup_target=peak if warmup else None, warmup_steps=warmup,
        )
        model.compile(
            optimizer=keras.optimizers.AdamW(schedule, weight_decay=args.weight_decay),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing),
            metrics=["accuracy"],
            jit_compile=args.jit_compile,
        )
    # Decay applies to weight matrices only, not to biases, LayerNorm, tokens or positions.
    model.optimizer.exclude_from_weight_decay(
        var_names=["bias", "gamma", "beta", "token", "embeddings"]
    )
    history = training.fit(
        model, train_ds, test_ds.map(one_hot), epochs=epochs, out_dir=out, monitor="loss"
    )
    train_seconds = time.time() - start

    if args.strategy == "multi_worker":
        model.save_weights(os.path.join(training.worker_out_dir(out, strategy), "final.weights.h5"))
    if not chief:
        return {}

    calibration = next(iter(data.cifar10("train", QUICK["calibration"] if args.quick else 500, seed=args.seed, **source)))[0]
    extra = {
        "recipe": RECIPE,
        "model": "vit",
        "config": {k: getattr(args, k) for k in ("patch_size", "hidden_dim", "depth", "heads", "mlp_dim")},
        "data": "folder" if args.data else "tfds:cifar10",
        "quick": args.quick,
        "train_examples": train_size,
        "epochs": len(history.epoch),
        "iterations": len(history.epoch) * steps,
        "global_batch_size": batch,
        "replicas": strategy.num_replicas_in_sync,
        "strategy": args.strategy,
        "train_seconds": round(train_seconds, 1),
    }
    metrics = evaluate_and_export(
        model, history, test_ds, calibration, out,
        class_names=data.CIFAR10_CLASSES, title="ViT on CIFAR-10", extra=extra,
    )
    images, labels = (np.asarray(t[:8]) for t in next(iter(test_ds)))
    maps = keras.ops.convert_to_numpy(attention_rollout(model, images))
    guesses = keras.ops.convert_to_numpy(model(images, training=False)).argmax(-1)
    names = data.CIFAR10_CLASSES
    plots.plot_attention_map(
        images, maps, os.path.join(out, "attention.png"),
        titles=[names[g] if g == t else f"{names[g]} ({names[t]})" for g, t in zip(guesses, labels)],
        title="Attention rollout (Abnar and Zuidema 2020): where the class token looks",
    )
    metrics["wall_seconds"] = round(time.time() - start, 1)
    write_metrics(metrics, out)
    return metrics


if __name__ == "__main__":
    sys.exit(run_recipe(main))
