"""YOLOv2 detection speed: end-to-end latency at batch 1 (decoding and non-max suppression
included) of the Keras detector and of its TFLite export, the decoding + NMS stage against
keras-hub's ``NonMaxSuppression`` layer, and training throughput.

1. **Latency, batch 1.** ``registry.build(model, decode=True)``: the image goes in, final
   detections come out. Keras runs it as a ``tf.function`` (no XLA: the NMS op has no XLA
   kernel); the TFLite file is ``kapps.export.to_tflite(detector, batch_size=1)``, builtin
   ops only, run by the LiteRT interpreter with as many threads as the machine has CPUs.
   Ratio: TFLite / Keras in images/s.
2. **Post-processing.** On the same raw grid, kapps' ``YOLOv2Decode`` then either kapps'
   ``NonMaxSuppression`` (one single-class NMS op on class-shifted boxes) or keras-hub's
   ``NonMaxSuppression`` (``bounding_box_format="xyxy"``, the same IoU and score
   thresholds and the same number of detections). Both run as ``tf.function``s. keras-hub's
   layer is class-agnostic (each box's best score, one suppression over all classes, a padded
   NMS written in ``keras.ops``) where kapps suppresses within each class, so the numbers kept
   differ; the script records both, and whether keras-hub's layer converts to TFLite with
   builtin ops. Ratio: kapps / keras-hub in images/s.
3. **Training.** ``train_on_batch`` of the raw model with ``kapps.losses.YOLOv2Loss`` and
   Adam at the given batch and size: images/s (keras-hub has no YOLOv2 to compare with).

Runs alternate between the two sides of each comparison, the order swapping every round
(``kapps.benchmarking.alternate_rounds``), so a noisy shared machine slows both alike; the
figures that matter are the ratios. With ``--detector FILE`` (the recipe's
``detector.keras``) the trained weights are used, so NMS sees a trained model's scores; with
random weights every box scores about the same and NMS has the most work.

    python benchmarks/yolo_detection.py                       # yolov2_tiny at 416, ~3 min
    python benchmarks/yolo_detection.py --detector saved_models/yolov2_bccd/detector.keras
    python benchmarks/yolo_detection.py --tiny                # toy sizes, seconds

Prints a markdown table and writes the figures as JSON (``--out``).

Latest run (2026-11-24; the BCCD recipe's detector: Tiny YOLOv2 at half width, 352x352, 3
classes, score threshold 0.005, 100 detections; 7 rounds of 5 calls on 2 shared CPUs;
TensorFlow 2.21.0, Keras 3.15.1, keras-hub 0.32.0, ai-edge-litert 2.3.0):

    detection, batch 1, TFLite / Keras      1.68x   47.2 vs 28.0 images/s (rounds 1.62..1.74)
    decoding + NMS, kapps / keras-hub       7.1x    1,307 vs 184 images/s (rounds 7.0..7.8)
    training, full-width Tiny YOLOv2 at 352, batch 8: 2.8 images/s

keras-hub's NMS layer did not convert to builtin TFLite (``BitwiseAnd`` needs Flex).
"""

import argparse
import json
import os
import sys
import time

MODELS = ("yolov2_tiny", "yolov2")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="yolov2_tiny", choices=MODELS)
    parser.add_argument("--detector", default=None, metavar="FILE", help="a saved decode=True detector (.keras) to time instead of random weights")
    parser.add_argument("--image-size", type=int, default=416)
    parser.add_argument("--num-classes", type=int, default=3, help="classes (BCCD: 3)")
    parser.add_argument("--train-batch-size", type=int, default=8)
    parser.add_argument("--score-threshold", type=float, default=0.005)
    parser.add_argument("--iou-threshold", type=float, default=0.45)
    parser.add_argument("--max-detections", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5, help="calls per timed round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="toy sizes (a 64x64 input, narrow network), for tests")
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "yolo_detection.json"))
    args = parser.parse_args(argv)
    if args.tiny:
        args.image_size, args.train_batch_size, args.repeats, args.steps, args.warmup = 64, 2, 2, 1, 1
    for flag in ("image_size", "num_classes", "train_batch_size", "max_detections", "repeats", "steps"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')}={getattr(args, flag)} is not allowed; expected a positive integer")
    if args.image_size % 32:
        parser.error(f"--image-size={args.image_size} is not allowed; expected a multiple of 32")
    return args


def _build(args, decode, input_shape):
    from kapps import registry

    overrides = {"width_multiplier": 0.125} if args.tiny else {}
    return registry.build(
        args.model, input_shape=input_shape, num_classes=args.num_classes, decode=decode,
        max_detections=args.max_detections, iou_threshold=args.iou_threshold,
        score_threshold=args.score_threshold, **overrides,
    )


def bench(args):
    import keras
    import numpy as np
    import tensorflow as tf

    from kapps import benchmarking, export
    from kapps.layers import NonMaxSuppression
    from kapps.losses import YOLOv2Loss

    size = args.image_size
    rng = np.random.default_rng(0)
    image = rng.random((1, size, size, 3), dtype=np.float32)
    if args.detector:
        detector = keras.saving.load_model(args.detector)
        size = detector.input_shape[1]
        image = rng.random((1, size, size, 3), dtype=np.float32)
    else:
        detector = _build(args, True, (size, size, 3))
    record = {"image_size": size, "params": detector.count_params(), "trained_weights": bool(args.detector)}

    # 1. End-to-end latency at batch 1.
    keras_detect = tf.function(lambda x: detector(x, training=False))
    flatbuffer = export.to_tflite(detector, batch_size=1)
    runner = export.load_tflite(flatbuffer, num_threads=os.cpu_count())
    found_keras = {k: np.asarray(v) for k, v in keras_detect(image).items()}
    found_tflite = runner.run({runner.input_names[0]: image})
    record["tflite_bytes"] = len(flatbuffer)
    record["tflite_same_detections"] = bool(
        np.array_equal(found_keras["num_detections"], found_tflite["num_detections"])
        and np.array_equal(found_keras["classes"], found_tflite["classes"])
        and np.allclose(found_keras["boxes"], found_tflite["boxes"], atol=1e-4)
    )
    record["detections"] = int(found_keras["num_detections"][0])
    times = benchmarking.alternate_rounds(
        {"tflite": {"detect": {False: lambda: runner(image)}},
         "keras": {"detect": {False: lambda: keras_detect(image)}}},
        warmup=args.warmup, repeats=args.repeats, steps_per_round=args.steps, name="latency",
    )
    record["latency"] = benchmarking.mode_summary(times, 1, "images", ["detect"], [False], labels=("tflite", "keras"))["detect"]["no_xla"]

    # 2. Decoding + NMS: kapps against keras-hub, on the same raw grid.
    import keras_hub

    raw_model = keras.Model(detector.input, detector.get_layer("decode").input)
    grid = raw_model(image, training=False)
    decode = detector.get_layer("decode")
    ours = NonMaxSuppression(args.max_detections, args.iou_threshold, args.score_threshold)
    theirs = keras_hub.layers.NonMaxSuppression(
        # "xyxy": IoU does not depend on the scale, and a relative format would need the images.
        bounding_box_format="xyxy", from_logits=False, iou_threshold=args.iou_threshold,
        confidence_threshold=args.score_threshold, max_detections=args.max_detections,
    )
    kapps_post = tf.function(lambda g: ours(decode(g)))
    hub_post = tf.function(lambda g: theirs(*decode(g)))
    kept_ours = int(np.asarray(kapps_post(grid)["num_detections"])[0])
    kept_theirs = int(np.asarray(hub_post(grid)["num_detections"])[0])
    times = benchmarking.alternate_rounds(
        {"kapps": {"postprocess": {False: lambda: kapps_post(grid)}},
         "keras-hub": {"postprocess": {False: lambda: hub_post(grid)}}},
        warmup=args.warmup, repeats=args.repeats, steps_per_round=args.steps, name="decode+NMS",
    )
    post = benchmarking.mode_summary(times, 1, "images", ["postprocess"], [False])["postprocess"]["no_xla"]
    post["kapps_detections"], post["keras_hub_detections"] = kept_ours, kept_theirs
    inputs = keras.Input(grid.shape[1:], batch_size=1)  # keras-hub's layer needs a static batch
    hub_model = keras.Model(inputs, theirs(*decode(inputs)))
    try:
        export.to_tflite(hub_model, batch_size=1)
        post["keras_hub_tflite_builtin"] = True
    except export.UnsupportedOpsError as error:
        post["keras_hub_tflite_builtin"] = False
        post["keras_hub_tflite_error"] = " ".join(str(error).split())[:300]
    except export.TFLiteConversionError as error:
        post["keras_hub_tflite_builtin"] = False
        post["keras_hub_tflite_error"] = " ".join(str(error).split())[:300]
    record["postprocess"] = post

    # 3. Training throughput of the raw model.
    model = _build(args, False, (size, size, 3))
    loss = YOLOv2Loss(anchors=detector.get_layer("decode").get_config()["anchors"], num_classes=args.num_classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss, jit_compile=False)
    batch = args.train_batch_size
    images = rng.random((batch, size, size, 3), dtype=np.float32)
    targets = np.full((batch, 20, 5), -1.0, np.float32)
    centres = rng.uniform(0.2, 0.8, (batch, 10, 2))
    sizes = rng.uniform(0.05, 0.2, (batch, 10, 2))
    targets[:, :10, :2], targets[:, :10, 2:4] = centres - sizes / 2, centres + sizes / 2
    targets[:, :10, 4] = rng.integers(0, args.num_classes, (batch, 10))
    times = benchmarking.alternate_rounds(
        {"kapps": {"training": {False: lambda: model.train_on_batch(images, targets)}}},
        warmup=args.warmup, repeats=args.repeats, steps_per_round=args.steps, name="training",
    )
    step = sorted(times["kapps"]["training"][False])[len(times["kapps"]["training"][False]) // 2]
    record["training"] = {"batch_size": batch, "images_per_s": batch / step, "step_s": times["kapps"]["training"][False]}
    return record


def markdown(record):
    latency, post = record["latency"], record["postprocess"]
    lines = [
        "| measure | kapps | reference | ratio (median of rounds) | round range |",
        "|---|---:|---:|---:|---:|",
        f"| detection at batch 1, images/s: TFLite vs Keras | {latency['tflite_images_per_s']:.2f} | "
        f"{latency['keras_images_per_s']:.2f} | {latency['ratio']:.2f} ({latency['median_round_ratio']:.2f}) | "
        f"{latency['round_ratios'][0]:.2f}..{latency['round_ratios'][-1]:.2f} |",
        f"| decode + NMS, images/s: kapps vs keras-hub | {post['kapps_images_per_s']:.1f} | "
        f"{post['keras_hub_images_per_s']:.1f} | {post['ratio']:.2f} ({post['median_round_ratio']:.2f}) | "
        f"{post['round_ratios'][0]:.2f}..{post['round_ratios'][-1]:.2f} |",
    ]
    lines.append(
        f"\ntraining: {record['training']['images_per_s']:.2f} images/s at batch {record['training']['batch_size']}; "
        f"detections kept by kapps / keras-hub NMS: {post['kapps_detections']} / {post['keras_hub_detections']}; "
        f"keras-hub's NMS converts to builtin TFLite: {post['keras_hub_tflite_builtin']}; "
        f"TFLite detections equal Keras': {record['tflite_same_detections']}"
    )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    import keras
    import tensorflow as tf

    results = {
        "command": "python benchmarks/yolo_detection.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": args.model, "num_classes": args.num_classes,
        "score_threshold": args.score_threshold, "iou_threshold": args.iou_threshold,
        "max_detections": args.max_detections, "repeats": args.repeats, "steps": args.steps,
        "environment": {"python": sys.version.split()[0], "tensorflow": tf.__version__, "keras": keras.__version__,
                        "keras_hub": __import__("keras_hub").__version__, "cpus": os.cpu_count()},
    }
    start = time.perf_counter()
    results["detection"] = bench(args)
    results["wall_s"] = time.perf_counter() - start
    print(f"\n{args.model} at {results['detection']['image_size']}x{results['detection']['image_size']}, "
          f"median of {args.repeats} alternating rounds of {args.steps} calls, {os.cpu_count()} CPUs\n")
    print(markdown(results["detection"]))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out} ({results['wall_s']:.0f} s)")
    return results


if __name__ == "__main__":
    main()
