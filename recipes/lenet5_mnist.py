"""LeNet-5 on MNIST, to the paper's error rate, exported for phones.

    python -m recipes.lenet5_mnist --tfds-data-dir ../shared/tfds

Trains the 1998 LeNet-5 (``kapps.models.lenet5``, ``variant="lecun98"``) on the 60,000 MNIST
training digits under a ``tf.distribute`` strategy, evaluates it on the 10,000 test digits,
exports it (``.keras``, SavedModel, float32 and int8 TFLite, each checked on the whole test set
with the LiteRT runtime) and draws the curves and a grid of test predictions.

Default run, measured on a 2-core CPU: {RESULT}
LeCun et al. 1998 report 0.95% for LeNet-5 without distortions (Fig. 14).

Writes ``--out`` (default ``saved_models/lenet5_mnist/``): ``model.keras``, ``saved_model/``,
``model.tflite``, ``model_int8.tflite``, ``metrics.json``, ``history.csv``, ``curves.png``,
``samples.png`` (plus ``best.keras`` and ``logs/``). Running the same command again after an
interruption resumes from the last completed epoch. ``--quick`` runs the whole path on a few
batches of real MNIST in well under a minute (the tests use it).
"""

import argparse
import json
import os
import sys
import time

RECIPE = "lenet5_mnist"
# Ends of the training split held out for validation (monitoring and the best checkpoint);
# the test split is used only for the final figures.
VALIDATION_SIZE = 5_000
QUICK = {"train": 1_024, "validation": 256, "test": 512, "calibration": 64}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=f"python -m recipes.{RECIPE}", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--epochs", type=int, default=20)
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument("--batch-size", type=int, default=32, help="per replica (default 32)")
    batch.add_argument("--global-batch-size", type=int, help="instead of --batch-size; must divide by the replicas")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak Adam learning rate for a global batch of 32, scaled linearly with the global batch")
    parser.add_argument("--variant", default="lecun98", choices=["lecun98", "modern"])
    parser.add_argument("--strategy", default="auto", choices=["auto", "mirrored", "multi_worker", "tpu", "one_device"])
    parser.add_argument("--mixed-precision", default="none", choices=["none", "auto", "mixed_float16", "mixed_bfloat16"])
    parser.add_argument("--jit-compile", action="store_true", help="compile train steps with XLA")
    parser.add_argument("--tfds-data-dir", default=None, help="TFDS data folder (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    parser.add_argument("--no-download", action="store_true", help="never download MNIST")
    parser.add_argument("--out", default=os.path.join("saved_models", RECIPE))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few batches of everything, for tests")
    args = parser.parse_args(argv)
    for flag in ("epochs", "batch_size", "global_batch_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')}={value} is not allowed; expected a positive integer")
    if args.learning_rate <= 0:
        parser.error(f"--learning-rate={args.learning_rate} is not allowed; expected a positive number")
    return args


def main(argv=None):
    """Run the recipe; return the metrics dictionary (also written to ``metrics.json``)."""
    args = parse_args(argv)
    start = time.time()
    import keras
    import numpy as np

    import kapps
    from kapps import data, export, plots, training

    strategy = training.get_strategy(args.strategy)
    training.set_seed(args.seed)
    training.set_mixed_precision(args.mixed_precision, strategy)
    if args.global_batch_size is not None:
        batch = args.global_batch_size
        training.per_replica_batch_size(batch, strategy)  # raises unless divisible
    else:
        batch = training.global_batch_size(args.batch_size, strategy)
    out = training.prepare_out_dir(args.out)
    chief = training.is_chief(strategy)

    sizes = QUICK if args.quick else {"train": 60_000 - VALIDATION_SIZE, "validation": VALIDATION_SIZE}
    split = {
        "train": f"train[:{sizes['train']}]",
        "validation": f"train[{60_000 - sizes['validation']}:]",
        "test": f"test[:{sizes['test']}]" if args.quick else "test",
    }
    source = {"data_dir": args.tfds_data_dir, "download": not args.no_download}
    train_ds = data.mnist(split["train"], batch, seed=args.seed, drop_remainder=True, **source)
    val_ds = data.mnist(split["validation"], batch, **source)
    test_ds = data.mnist(split["test"], 500, **source)
    steps = sizes["train"] // batch

    with strategy.scope():
        model = kapps.build(RECIPE.split("_")[0], input_shape=(28, 28, 1), variant=args.variant)
        # Adam with a cosine decay to zero; the peak rate follows the linear scaling rule.
        schedule = keras.optimizers.schedules.CosineDecay(
            training.scaled_learning_rate(args.learning_rate, batch, base_batch_size=32),
            decay_steps=args.epochs * steps,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=args.jit_compile,
        )
    history = training.fit(model, train_ds, val_ds, epochs=args.epochs, out_dir=out)
    train_seconds = time.time() - start

    with training.multi_worker_compat(model):
        _, keras_accuracy = model.evaluate(test_ds, verbose=0)
    if args.strategy == "multi_worker":
        # Every worker keeps its final weights, so runs can check they agree.
        model.save_weights(os.path.join(training.worker_out_dir(out, strategy), "final.weights.h5"))
    if not chief:
        return {}

    test_images, test_labels = (np.concatenate(a) for a in zip(*test_ds.as_numpy_iterator()))
    calibration = next(iter(data.mnist(split["train"], QUICK["calibration"] if args.quick else 500, **source)))[0]
    report = export.export_all(model, out, representative_data=calibration.numpy(), sample_inputs=test_images[:64])
    accuracy = {"keras": float(keras_accuracy)}
    for key, path in (("tflite", "model.tflite"), ("tflite_int8", "model_int8.tflite")):
        scores = export.load_tflite(os.path.join(out, path))(test_images)
        accuracy[key] = float(np.mean(np.argmax(scores, axis=-1) == test_labels))

    # A direct call, not model.predict: under multi-worker training only the chief gets here.
    predictions = np.argmax(keras.ops.convert_to_numpy(model(test_images[:36], training=False)), axis=-1)
    plots.plot_history(history, os.path.join(out, "curves.png"), title="LeNet-5 on MNIST")
    plots.plot_image_predictions(
        test_images[:36, ..., 0], test_labels[:36], predictions, os.path.join(out, "samples.png")
    )
    total, trainable = kapps.testing.count_params(model)
    metrics = {
        "recipe": RECIPE,
        "variant": args.variant,
        "quick": args.quick,
        "test_examples": int(len(test_labels)),
        "test_accuracy": accuracy,
        "test_error_percent": {k: round(100 * (1 - v), 3) for k, v in accuracy.items()},
        "params": total,
        "trainable_params": trainable,
        "files": {k: {"path": os.path.relpath(v["path"], out), "bytes": v["bytes"]} for k, v in report.items()},
        "tflite_max_abs_diff": {k: report[k]["max_abs_diff"] for k in ("tflite", "tflite_int8") if k in report},
        "epochs": len(history.epoch),
        "global_batch_size": batch,
        "replicas": strategy.num_replicas_in_sync,
        "strategy": args.strategy,
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.time() - start, 1),
    }
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    errors = metrics["test_error_percent"]
    print(
        f"test error: Keras {errors['keras']:.2f}%, TFLite {errors['tflite']:.2f}%, "
        f"TFLite int8 {errors['tflite_int8']:.2f}% on {len(test_labels)} digits; "
        f"{metrics['wall_seconds']:.0f} s; wrote {out}"
    )
    return metrics


if __name__ == "__main__":
    from kapps.training import run_recipe

    sys.exit(run_recipe(main))
