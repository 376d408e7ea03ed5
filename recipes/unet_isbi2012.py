"""U-Net on the ISBI 2012 EM membranes, the U-Net paper's own data.

    python -m recipes.unet_isbi2012 --data ../shared/data/isbi2012
    python -m recipes.unet_isbi2012 --data ../shared/data/isbi2012 --padding valid --tile 572 --filters 64 --no-batch-norm

Trains ``kapps.models.unet`` (Ronneberger et al. 2015) on 25 of the 30 labelled 512x512 slices
and validates on the other 5 (slices 25-29, a fixed split), under a ``tf.distribute`` strategy.
As in the paper: the loss is pixel-wise cross-entropy weighted by the border-weight map of its
equation 2 (w0 = 10, sigma = 5 pixels, with class balancing), training tiles come with random
flips, quarter turns and elastic deformations (Sec. 3.1), and whole slices are predicted with
the overlap-tile strategy of its Figure 2 (mirrored borders) through
``kapps.inference.predict_tiled``. ``--padding valid --tile 572`` is the paper's tile (572 in,
388 out); the default is a 'same'-padded U-Net with BatchNorm on 256x256 tiles, 32 base
filters and Adam, which a 2-core CPU trains in about half an hour (the paper used SGD with
momentum 0.99 and one large tile per step on a GPU).

Label convention: 1 = membrane (black in the label images), 0 = cell interior. Reported on the
5 held-out slices: pixel error and the membrane IoU, for the Keras model and its float32 and
int8 TFLite exports (``metrics.json``). Measured with the defaults on a 2-core CPU shared
with another training run: pixel error 11.76% and membrane IoU 0.612 on the 5 held-out slices
(float32 TFLite the same, int8 TFLite 11.92% / 0.609), 65 minutes for the 20 epochs of 25
steps. The paper's challenge entry had a pixel error of 6.1% on the challenge's test slices.

Writes ``--out`` (default ``saved_models/unet_isbi2012/``): ``model.keras``, ``saved_model/``,
``model.tflite`` (the tile model: scores per pixel), ``model_int8.tflite``, with
``--tflite-mask`` also ``model_mask.tflite`` (the uint8 class map computed in the graph),
``metrics.json``, ``history.csv``, ``curves.png``, ``samples.png`` (slice, truth, prediction,
mistakes). Running the same command again after an interruption resumes from the last
completed epoch. ``--quick`` runs the whole path on real slices in about a minute (tests).

Data: the ISBI 2012 challenge training set (30 slices of the Drosophila first instar larva
ventral nerve cord, serial-section TEM) laid out ``FOLDER/train/image/N.png`` and
``FOLDER/train/label/N.png`` as in the zhixuhao/unet repository; the challenge site
(https://imagej.net/events/isbi-2012-segmentation-challenge) distributes the original stack.
"""

import argparse
import os
import sys
import time

from recipes._common import add_run_flags, parse, recipe_parser, run_recipe, setup

RECIPE = "unet_isbi2012"
QUICK = {"epochs": 1, "steps": 2, "tile": 64, "filters": 4, "depth": 2}


def parse_args(argv=None):
    parser = recipe_parser(RECIPE, __doc__)
    parser.add_argument("--data", required=True, metavar="FOLDER", help="the ISBI 2012 folder (FOLDER/train/{image,label}/N.png)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--steps-per-epoch", type=int, default=25)
    parser.add_argument("--tile", type=int, default=256, help="network input size (default 256; the paper: 572 with --padding valid)")
    parser.add_argument("--padding", default="same", choices=["same", "valid"])
    parser.add_argument("--filters", type=int, default=32, help="base width, doubled per level (the paper: 64)")
    parser.add_argument("--depth", type=int, default=4, help="poolings (the paper: 4)")
    parser.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=True, help="BatchNorm in every conv block (not in the paper, which predates it)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak Adam rate (cosine decay to 0)")
    parser.add_argument("--border-weights", action=argparse.BooleanOptionalAction, default=True, help="weight the loss by the paper's equation 2 map")
    parser.add_argument("--w0", type=float, default=10.0)
    parser.add_argument("--sigma", type=float, default=5.0)
    parser.add_argument("--elastic", action=argparse.BooleanOptionalAction, default=True, help="elastic deformations (Sec. 3.1)")
    parser.add_argument("--overlap", type=int, default=32, help="overlap of neighbouring tiles when predicting whole slices ('same' padding)")
    parser.add_argument("--tflite-mask", action="store_true", help="also export model_mask.tflite with the argmax in the graph (uint8 mask output)")
    add_run_flags(parser, RECIPE, batch_size=2, batch_help="tiles per replica and step (default 2)", quick_help="a few tiny steps on real slices, for tests")
    args = parse(parser, argv, positive=("epochs", "steps_per_epoch", "tile", "filters", "depth"))
    if args.learning_rate <= 0 or args.w0 < 0 or args.sigma <= 0:
        parser.error("--learning-rate and --sigma must be positive, --w0 non-negative")
    if args.overlap < 0:
        parser.error(f"--overlap={args.overlap} is not allowed; expected a non-negative integer")
    if not os.path.isdir(os.path.join(args.data, "train", "image")):
        parser.error(
            f"--data={args.data!r} has no train/image/ folder; expected FOLDER/train/{{image,label}}/N.png "
            "(the ISBI 2012 training slices; see the recipe's docstring for where to get them)"
        )
    return args


def main(argv=None):
    """Run the recipe; return the metrics dictionary (also written to ``metrics.json``)."""
    args = parse_args(argv)
    start = time.time()
    if args.quick:
        args.tile, args.filters, args.depth = QUICK["tile"], QUICK["filters"], QUICK["depth"]
        args.epochs, args.steps_per_epoch = QUICK["epochs"], QUICK["steps"]
    import keras
    import numpy as np
    import tensorflow as tf

    from kapps import data, training
    from kapps.inference import predict_tiled
    from kapps.losses import unet_weight_map
    from kapps.models.segmentation.unet import unet, unet_output_size
    from recipes._common import write_metrics
    from recipes._segmentation import evaluate_and_export

    strategy, batch, out, chief = setup(args)
    out_tile = args.tile if args.padding == "same" else unet_output_size(args.tile, args.depth)
    border = (args.tile - out_tile) // 2  # mirrored context each side of an output tile

    # All 30 labelled slices: (30, 512, 512, 1) floats in [0, 1], masks (30, 512, 512) in {0, 1}.
    images, masks = (np.asarray(t) for t in next(iter(data.isbi2012(args.data, "all", batch_size=30, shuffle=False))))
    train_idx, val_idx = np.arange(25), np.arange(25, 30)  # the fixed split of kapps.data.isbi2012
    if args.quick:
        train_idx, val_idx = train_idx[:2], val_idx[:1]
    # Equation 2 separates touching cells: the objects are the cells (label 0), the border
    # weight lands on the membrane between them.
    weights = (
        np.stack([unet_weight_map(masks[i], w0=args.w0, sigma=args.sigma, object_label=0) for i in train_idx]).astype("float32")
        if args.border_weights else np.ones((len(train_idx), *masks.shape[1:]), "float32")
    )
    augment = data.segmentation_augmentation(
        flip=True, rotate90=True, elastic=True if args.elastic else None, seed=args.seed
    )

    def training_tile(image, mask, weight):
        # The weight map rides along as a second image channel, so every geometric transform
        # moves it with the slice (interpolated like the image, which suits weights).
        stacked, mask = augment(tf.concat([image, weight[..., None]], -1), mask)
        stacked = tf.pad(stacked, [[border, border], [border, border], [0, 0]], mode="REFLECT")
        mask = tf.pad(mask, [[border, border], [border, border]], mode="REFLECT")
        both = tf.concat([stacked, tf.cast(mask, tf.float32)[..., None]], -1)
        crop = tf.image.random_crop(both, (args.tile, args.tile, 3))
        inner = crop[border:border + out_tile, border:border + out_tile]  # the output tile
        return crop[..., :1], tf.cast(inner[..., 2], tf.int32), inner[..., 1]

    train_ds = (
        tf.data.Dataset.from_tensor_slices((images[train_idx], masks[train_idx], weights))
        .cache().repeat().shuffle(len(train_idx), seed=args.seed)
        .map(training_tile, num_parallel_calls=data.AUTOTUNE)
        .batch(batch, drop_remainder=True).prefetch(data.AUTOTUNE)
    )
    val_tiles, val_masks = _grid_tiles(images[val_idx], masks[val_idx], args.tile, out_tile, border)
    val_ds = tf.data.Dataset.from_tensor_slices((val_tiles, val_masks)).batch(batch)

    total_steps = args.epochs * args.steps_per_epoch
    with strategy.scope():
        model = unet(
            num_classes=2, input_shape=(args.tile, args.tile, 1), depth=args.depth,
            filters=args.filters, batch_norm=args.batch_norm, padding=args.padding,
            classifier_activation="softmax", name="unet_isbi2012",
        )
        schedule = keras.optimizers.schedules.CosineDecay(args.learning_rate, decay_steps=total_steps)
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=[
                keras.metrics.SparseCategoricalAccuracy(name="pixel_accuracy"),
                keras.metrics.IoU(2, target_class_ids=[1], sparse_y_pred=False, name="membrane_iou"),
            ],
            jit_compile=args.jit_compile,
        )
    history = training.fit(
        model, train_ds, val_ds, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
        out_dir=out, monitor="val_membrane_iou",
    )
    train_seconds = time.time() - start
    if args.strategy == "multi_worker":
        model.save_weights(os.path.join(training.worker_out_dir(out, strategy), "final.weights.h5"))
    if not chief:
        return {}

    def predict(score_fn, slices):
        scores = [
            predict_tiled(score_fn, s, tile_size=args.tile, output_size=out_tile,
                          overlap=args.overlap if args.padding == "same" else 0)
            for s in slices
        ]
        return np.stack(scores).argmax(-1)

    calibration = next(iter(train_ds.unbatch().batch(64 if not args.quick else 8)))[0]
    metrics = evaluate_and_export(
        model, history, images[val_idx], masks[val_idx], out, predict=predict, num_classes=2,
        class_names=["cell", "membrane"], calibration=calibration, sample_inputs=val_tiles[:4],
        title="U-Net on ISBI 2012", export_mask=args.tflite_mask,
        extra={
            "recipe": RECIPE, "quick": args.quick,
            "config": {k: getattr(args, k) for k in ("tile", "padding", "filters", "depth", "batch_norm", "border_weights", "elastic")},
            "train_slices": [int(i) for i in train_idx], "val_slices": [int(i) for i in val_idx],
            "epochs": len(history.epoch), "iterations": len(history.epoch) * args.steps_per_epoch,
            "global_batch_size": batch, "replicas": strategy.num_replicas_in_sync,
            "strategy": args.strategy, "train_seconds": round(train_seconds, 1),
        },
    )
    metrics["pixel_error"] = {k: round(1 - v["pixel_accuracy"], 5) for k, v in metrics["scores"].items()}
    metrics["membrane_iou"] = {k: round(v["iou"].get("membrane", 0.0), 5) for k, v in metrics["scores"].items()}
    metrics["wall_seconds"] = round(time.time() - start, 1)
    write_metrics(
        metrics, out,
        f"U-Net on ISBI 2012 (5 held-out slices): pixel error {100 * metrics['pixel_error']['keras']:.2f}% "
        f"(TFLite {100 * metrics['pixel_error']['tflite']:.2f}%), membrane IoU {metrics['membrane_iou']['keras']:.4f}",
    )
    return metrics


def _grid_tiles(images, masks, tile, out_tile, border):
    """Every output tile of a grid that covers each slice (the last row and column shifted
    inside), as network inputs from the mirrored slice and the masks they predict."""
    import numpy as np

    height, width = masks.shape[1:]
    starts = lambda size: sorted({*range(0, size - out_tile + 1, out_tile), size - out_tile})  # noqa: E731
    padded = np.pad(images, [(0, 0), (border, border), (border, border), (0, 0)], mode="reflect")
    inputs, targets = [], []
    for n in range(len(images)):
        for y in starts(height):
            for x in starts(width):
                inputs.append(padded[n, y:y + tile, x:x + tile])
                targets.append(masks[n, y:y + out_tile, x:x + out_tile])
    return np.stack(inputs), np.stack(targets)


if __name__ == "__main__":
    sys.exit(run_recipe(main))
