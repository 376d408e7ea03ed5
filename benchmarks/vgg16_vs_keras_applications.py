"""kapps vgg16 against keras.applications.VGG16, side by side in one process.

Both models are the same architecture (configuration D with its 1000-class top), the same
input size, batch and dtype; kapps' is built with ``dropout=0.0`` because keras.applications'
VGG16 has no dropout layers. Runs alternate between the two models (and swap order every
repeat) so a noisy shared machine slows both alike; the figure that matters is the ratio of
medians, kapps / keras.applications (above 1 means kapps is faster).

    python benchmarks/vgg16_vs_keras_applications.py --batch-size 4 --repeats 5

Prints a table and writes the figures as JSON (``--out``).
"""

import argparse
import json
import os
import statistics
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per model and mode")
    parser.add_argument("--steps", type=int, default=2, help="steps per timed round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    parser.add_argument("--dtype", default="float32", choices=["float32", "mixed_bfloat16", "mixed_float16"])
    parser.add_argument("--mode", default="both", choices=["inference", "training", "both"])
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "vgg16.json"))
    args = parser.parse_args(argv)
    for flag in ("batch_size", "repeats", "steps"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.image_size < 32:
        parser.error("--image-size must be at least 32")
    return args


def main(argv=None):
    args = parse_args(argv)
    import keras
    import numpy as np
    import tensorflow as tf

    import kapps

    keras.mixed_precision.set_global_policy(args.dtype)
    shape = (args.image_size, args.image_size, 3)
    models = {
        "kapps": kapps.models.vgg16(input_shape=shape, dropout=0.0),
        "keras.applications": keras.applications.VGG16(weights=None, input_shape=shape),
    }
    assert models["kapps"].count_params() == models["keras.applications"].count_params()
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((args.batch_size, *shape), dtype="float32"))
    y = tf.constant(rng.integers(0, 1000, args.batch_size))

    steps = {}
    for label, model in models.items():
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="sparse_categorical_crossentropy")
        infer = tf.function(lambda batch, m=model: m(batch, training=False))
        steps[label] = {
            "inference": lambda f=infer: f(x).numpy(),
            "training": lambda m=model: m.train_on_batch(x, y),
        }
    modes = ["inference", "training"] if args.mode == "both" else [args.mode]
    for label in models:
        for mode in modes:
            for _ in range(args.warmup):
                steps[label][mode]()

    times = {label: {mode: [] for mode in modes} for label in models}
    order = list(models)
    for repeat in range(args.repeats):
        for mode in modes:
            for label in order:
                start = time.perf_counter()
                for _ in range(args.steps):
                    steps[label][mode]()
                times[label][mode].append((time.perf_counter() - start) / args.steps)
        order.reverse()
        print(f"round {repeat + 1}/{args.repeats} done", file=sys.stderr)

    results = {
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "steps": args.steps,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "cpus": os.cpu_count(),
        "modes": {},
    }
    print(f"\nVGG16, batch {args.batch_size}, {args.image_size}x{args.image_size}, {args.dtype}")
    print(f"{'mode':<10} {'kapps ex/s':>12} {'keras.app ex/s':>15} {'ratio':>7}")
    for mode in modes:
        rates = {
            label: args.batch_size / statistics.median(times[label][mode]) for label in models
        }
        ratio = rates["kapps"] / rates["keras.applications"]
        # Each round times both models back to back; the spread of the per-round ratios shows
        # how much of a difference is noise.
        paired = sorted(r / k for k, r in zip(times["kapps"][mode], times["keras.applications"][mode]))
        results["modes"][mode] = {
            "kapps_examples_per_s": rates["kapps"],
            "keras_applications_examples_per_s": rates["keras.applications"],
            "ratio": ratio,
            "round_ratios": paired,
        }
        print(
            f"{mode:<10} {rates['kapps']:>12.2f} {rates['keras.applications']:>15.2f} {ratio:>7.3f}"
            f"   rounds {paired[0]:.3f}..{paired[-1]:.3f}"
        )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
