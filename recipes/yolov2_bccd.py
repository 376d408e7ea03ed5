"""YOLOv2 on BCCD (blood-cell detection: red cells, white cells, platelets), Pascal VOC format.

    python -m recipes.yolov2_bccd --data ../shared/data/bccd
    python -m recipes.yolov2_bccd --data ../shared/data/bccd --model yolov2 --image-size 416

Trains ``kapps.models.yolov2_tiny`` (Redmon and Farhadi 2017; ``--model yolov2`` for the
Darknet-19 network) from scratch on BCCD's train split, validates on its val split and
reports mAP@0.5 (Pascal VOC all-point interpolation) per class and overall on its test split,
for the Keras detector and the on-device TFLite detector. As in the paper: anchors from k-means
with an IoU distance on the training boxes (``kapps.boxes.kmeans_anchors``), direct location
prediction, multi-scale training (each batch at one of ``--scales``), random crops,
translations, flips and colour jitter that move the boxes with the image; the loss is
``kapps.losses.YOLOv2Loss``. Adam with a warm-up and cosine decay replaces the paper's SGD.

Measured on a 2-core CPU with ``--width 0.5 --image-size 352 --scales 288 320 352 384
--epochs 45`` (Tiny YOLOv2 at half width, 3,958,624 parameters, from scratch; k-means anchors
with a mean IoU of 0.850 on the 2,804 training boxes): mAP@0.5 0.601 on the 72 test images
(Platelets 0.194, RBC 0.631, WBC 0.979), the TFLite detector the same (its detections equal
Keras' on all 72 images, boxes within 3e-6), 50 minutes for the 45 epochs of 26 steps of 8
images, the cores shared with the test suite for most of it.

Writes ``--out`` (default ``saved_models/yolov2_bccd/``): ``model.keras``, ``saved_model/``,
``model.tflite`` and ``model_int8.tflite`` (the raw grid of predictions), ``detector.keras``
and ``detector.tflite`` (image in; boxes, classes, scores and their count out, decoding and
non-max suppression inside the graph, builtin TFLite ops only, batch 1), ``anchors.json``,
``metrics.json``, ``history.csv``, ``curves.png`` and ``detections.png`` (predicted boxes
against the ground truth on test images). Running the same command again after an
interruption resumes from the last completed epoch. ``--quick`` runs the whole path with a
narrow network on a few real images (tests).

Data: BCCD (Shenggan/BCCD_Dataset, MIT licence), 364 microscope images of 640x480 with 4,888
boxes, in the Pascal VOC layout ``FOLDER/{JPEGImages,Annotations,ImageSets/Main}``.
"""

import argparse
import json
import os
import sys
import time

from recipes._common import add_run_flags, parse, recipe_parser, run_recipe, setup, write_metrics

RECIPE = "yolov2_bccd"
QUICK = {"epochs": 1, "train": 8, "val": 4, "test": 4, "image_size": 96, "scales": [64, 96], "width": 0.125}
MODELS = ["yolov2_tiny", "yolov2"]


def parse_args(argv=None):
    parser = recipe_parser(RECIPE, __doc__)
    parser.add_argument("--data", required=True, metavar="FOLDER", help="a Pascal VOC folder (FOLDER/{JPEGImages,Annotations,ImageSets/Main})")
    parser.add_argument("--model", default="yolov2_tiny", choices=MODELS)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--image-size", type=int, default=416, help="evaluation and export size, a multiple of 32 (the paper: 416)")
    parser.add_argument("--scales", type=int, nargs="*", default=[320, 352, 384, 416], metavar="N", help="training sizes, one drawn per batch (multiples of 32; none: --image-size only)")
    parser.add_argument("--anchors", type=int, default=5, help="anchor boxes, clustered from the training boxes (the paper: 5)")
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier of every convolution (1: the paper's)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak Adam rate (default 1e-3)")
    parser.add_argument("--warmup-epochs", type=int, default=2)
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--score-threshold", type=float, default=0.005, help="lowest score kept for mAP (the whole precision-recall curve)")
    parser.add_argument("--iou-threshold", type=float, default=0.45, help="non-max suppression IoU threshold")
    parser.add_argument("--max-detections", type=int, default=100)
    add_run_flags(parser, RECIPE, batch_size=8, quick_help="a narrow network on a few real images, for tests")
    args = parse(parser, argv, positive=("epochs", "image_size", "anchors", "max_detections"))
    for flag, value in (("image-size", [args.image_size]), ("scales", args.scales)):
        bad = [v for v in value if v < 32 or v % 32]
        if bad:
            parser.error(f"--{flag}={' '.join(map(str, bad))} is not allowed; expected multiples of 32")
    if args.learning_rate <= 0 or args.width <= 0:
        parser.error("--learning-rate and --width must be positive")
    if args.warmup_epochs < 0:
        parser.error(f"--warmup-epochs={args.warmup_epochs} is not allowed; expected a non-negative integer")
    for flag in ("score_threshold", "iou_threshold"):
        if not 0 <= getattr(args, flag) <= 1:
            parser.error(f"--{flag.replace('_', '-')}={getattr(args, flag)} is not allowed; expected a number in [0, 1]")
    if not os.path.isdir(os.path.join(args.data, "Annotations")):
        parser.error(
            f"--data={args.data!r} has no Annotations/ folder; expected a Pascal VOC folder "
            "FOLDER/{JPEGImages,Annotations,ImageSets/Main} (BCCD: see the recipe's docstring)"
        )
    return args


def main(argv=None):
    """Run the recipe; return the metrics dictionary (also written to ``metrics.json``)."""
    args = parse_args(argv)
    start = time.time()
    if args.quick:
        args.epochs, args.image_size, args.scales, args.width = (QUICK[k] for k in ("epochs", "image_size", "scales", "width"))
    import keras
    import numpy as np

    from kapps import boxes, export, plots, training
    from kapps.data import voc
    from kapps.losses import YOLOv2Loss
    from kapps.metrics import DetectionEvaluator
    from kapps.models import detection

    strategy, batch, out, chief = setup(args)
    splits = {split: voc.load_voc(args.data, split) for split in ("train", "val", "test")}
    class_names = splits["train"][1]
    records = {split: found[0] for split, found in splits.items()}
    if args.quick:
        records = {split: records[split][: QUICK[split]] for split in records}

    anchors, anchor_iou = boxes.kmeans_anchors(voc.box_sizes(records["train"]), args.anchors, seed=args.seed)
    print(f"{args.anchors} anchors from k-means on {sum(len(r['boxes']) for r in records['train'])} training boxes: mean IoU {anchor_iou:.3f}")
    train_ds = voc.detection_dataset(
        records["train"], image_size=args.image_size, batch_size=batch, training=True,
        augment=args.augment, multi_scale=args.scales or None, shuffle_seed=args.seed,
    )
    val_ds = voc.detection_dataset(records["val"], image_size=args.image_size, batch_size=batch)
    steps = -(-len(records["train"]) // batch)

    def build(decode):
        return getattr(detection, args.model)(
            input_shape=(None, None, 3) if not decode else (args.image_size, args.image_size, 3),
            num_classes=len(class_names), anchors=anchors.tolist(), width_multiplier=args.width,
            decode=decode, max_detections=args.max_detections, iou_threshold=args.iou_threshold,
            score_threshold=args.score_threshold, name=f"{args.model}_bccd",
        )

    with strategy.scope():
        model = build(decode=False)
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0 if args.warmup_epochs else args.learning_rate,
            decay_steps=max(1, (args.epochs - args.warmup_epochs) * steps),
            warmup_target=args.learning_rate if args.warmup_epochs else None,
            warmup_steps=args.warmup_epochs * steps,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss=YOLOv2Loss(anchors=anchors.tolist(), num_classes=len(class_names)),
            jit_compile=args.jit_compile,
        )
    history = training.fit(model, train_ds, val_ds, epochs=args.epochs, steps_per_epoch=steps, out_dir=out)
    train_seconds = time.time() - start
    if not chief:
        return {}

    # The detector: the same weights behind decoding and non-max suppression, at the export size.
    detector = build(decode=True)
    detector.set_weights(model.get_weights())
    test_ds = voc.detection_dataset(records["test"], image_size=args.image_size, batch_size=batch)
    images = np.concatenate([np.asarray(x) for x, _ in test_ds])
    truths = np.concatenate([np.asarray(y) for _, y in test_ds])
    difficult = [r["difficult"] for r in records["test"]]

    report = export.export_all(
        model, out, representative_data=images[: 64 if not args.quick else 4], sample_inputs=images[:2],
        tolerance=1e-3,
    )
    detector_file = os.path.join(out, "detector.tflite")
    export.to_tflite(detector, detector_file, batch_size=1)
    export.save_keras(detector, os.path.join(out, "detector.keras"))
    runner = export.load_tflite(detector_file)

    found = {"keras": [], "tflite": []}
    for i in range(0, len(images), batch):
        found["keras"].append(_numpy(detector(images[i:i + batch], training=False)))
    for image in images:
        found["tflite"].append(_numpy(runner.run({runner.input_names[0]: image[None]})))
    found = {key: {k: np.concatenate([f[k] for f in parts]) for k in parts[0]} for key, parts in found.items()}
    scores = {}
    for key, detections in found.items():
        evaluator = DetectionEvaluator(len(class_names), class_names=class_names)
        evaluator.update(detections, truths, difficult=difficult)
        result = evaluator.result()
        scores[key] = {"mAP@0.5": round(float(result["mAP"]), 4), "ap": {k: round(float(v), 4) for k, v in result["ap"].items()}}
    agreement = _agreement(found["keras"], found["tflite"])

    plots.plot_history(history, os.path.join(out, "curves.png"), title=f"{args.model} on BCCD")
    shown = min(4, len(images))
    plots.plot_detections(
        images[:shown], {k: v[:shown] for k, v in found["keras"].items()}, os.path.join(out, "detections.png"),
        ground_truths=truths[:shown], class_names=class_names, score_threshold=0.3,
        title=f"{args.model} on BCCD test images: predictions (score >= 0.3, solid) and ground truth (dashed)",
    )
    with open(os.path.join(out, "anchors.json"), "w") as f:
        json.dump({"anchors": anchors.tolist(), "mean_iou": float(anchor_iou), "format": "(width, height) as fractions of the image"}, f, indent=2)
    metrics = {
        "recipe": RECIPE, "quick": args.quick, "model": args.model, "classes": class_names,
        "config": {k: getattr(args, k) for k in ("image_size", "scales", "anchors", "width", "augment", "epochs", "learning_rate")},
        "images": {split: len(r) for split, r in records.items()},
        "anchors": anchors.tolist(), "anchor_mean_iou": round(float(anchor_iou), 4),
        "global_batch_size": batch, "replicas": strategy.num_replicas_in_sync, "strategy": args.strategy,
        "params": model.count_params(), "train_seconds": round(train_seconds, 1),
        "scores": scores, "tflite_agreement": agreement,
        "files": {k: {"path": os.path.relpath(v["path"], out), "bytes": v["bytes"]} for k, v in report.items()}
        | {"detector_tflite": {"path": "detector.tflite", "bytes": os.path.getsize(detector_file)}},
    }
    metrics["wall_seconds"] = round(time.time() - start, 1)
    write_metrics(
        metrics, out,
        f"{args.model} on BCCD test ({len(images)} images): mAP@0.5 {scores['keras']['mAP@0.5']:.4f} "
        f"(TFLite {scores['tflite']['mAP@0.5']:.4f}), " + ", ".join(f"{k} {v:.3f}" for k, v in scores["keras"]["ap"].items()),
    )
    return metrics


def _numpy(outputs):
    import numpy as np

    return {k: np.asarray(v) for k, v in outputs.items()}


def _agreement(keras_found, tflite_found):
    """How far the TFLite detector is from the Keras one: images with the same number of
    detections and the same classes, and the largest box and score difference on those."""
    import numpy as np

    same = keras_found["num_detections"] == tflite_found["num_detections"]
    box_diff, score_diff, classes_equal = 0.0, 0.0, 0
    for i in np.flatnonzero(same):
        n = int(keras_found["num_detections"][i])
        classes_equal += bool(np.array_equal(keras_found["classes"][i, :n], tflite_found["classes"][i, :n]))
        if n:
            box_diff = max(box_diff, float(np.abs(keras_found["boxes"][i, :n] - tflite_found["boxes"][i, :n]).max()))
            score_diff = max(score_diff, float(np.abs(keras_found["scores"][i, :n] - tflite_found["scores"][i, :n]).max()))
    return {
        "images": int(len(same)), "same_count": int(same.sum()), "same_classes": int(classes_equal),
        "max_box_diff": box_diff, "max_score_diff": score_diff,
    }


if __name__ == "__main__":
    sys.exit(run_recipe(main))
