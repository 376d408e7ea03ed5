"""kapps image classifiers against their keras.applications twins, side by side in one process.

For each model (``resnet50``, ``densenet121``, ``efficientnet_b0``, ``vgg16``) the kapps
builder and its keras.applications twin are built in the same configuration: the same
architecture with its 1000-class top and softmax, the same input size, batch and dtype.
kapps' ``vgg16`` gets ``dropout=0.0`` (keras.applications' VGG16 has no dropout layers);
``efficientnet_b0`` keeps its input ``Rescaling``/``Normalization`` and its dropout and
stochastic depth, as keras.applications' EfficientNetB0 does. Before timing, the script checks
that both have the same parameter count and, with kapps' copy built from the keras.applications
model's weights, that they compute the same features (the classifier's input) at inference.

Training is ``model.compile(..., jit_compile=...)`` then ``train_on_batch``; inference is a
``tf.function(jit_compile=...)`` around ``model(x, training=False)``. With ``--jit-compile
both`` each model gets both forms (plain TensorFlow graphs and XLA). Runs alternate between the
two implementations and the two XLA settings, and the order swaps every repeat, so a noisy
shared machine slows all alike; the figures that matter are ratios of medians: kapps /
keras.applications (above 1 means kapps is faster) and XLA / no XLA (the XLA gain). Each round
also gives a ratio of its own; their range shows how much of a difference is noise.

    python benchmarks/classifiers_vs_keras_applications.py --batch-size 8 --repeats 5

Prints markdown tables (ready for the README) and writes the figures as JSON (``--out``).
"""

import argparse
import gc
import json
import os
import sys
import time

from kapps.benchmarking import alternate_rounds, op_difference, rate_summary

MODELS = ("resnet50", "densenet121", "efficientnet_b0", "vgg16")
DEFAULT_MODELS = "resnet50,densenet121,efficientnet_b0"
LABELS = ("kapps", "keras.applications")
# keras.applications' class and the kapps arguments that make the same network.
TWINS = {
    "resnet50": ("ResNet50", {}),
    "densenet121": ("DenseNet121", {}),
    "efficientnet_b0": ("EfficientNetB0", {}),
    "vgg16": ("VGG16", {"dropout": 0.0}),
}
# EfficientNet takes pixels in [0, 255] (it rescales them itself); the others take inputs that
# are already normalized, for which [0, 1) stands in.
PIXEL_RANGE = {"efficientnet_b0": 255.0}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default=DEFAULT_MODELS,
        help=f"comma-separated, from {', '.join(MODELS)} (default {DEFAULT_MODELS})",
    )
    parser.add_argument(
        "--jit-compile",
        default="both",
        choices=["off", "on", "both"],
        help="time without XLA, with XLA, or both (alternating)",
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per model, mode and XLA setting")
    parser.add_argument("--steps", type=int, default=2, help="steps per timed round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    parser.add_argument("--dtype", default="float32", choices=["float32", "mixed_bfloat16", "mixed_float16"])
    parser.add_argument("--mode", default="both", choices=["inference", "training", "both"])
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "classifiers.json"))
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if not models or unknown:
        parser.error(f"--models {args.models!r}: expected a comma-separated list from {', '.join(MODELS)}")
    if len(set(models)) != len(models):
        parser.error(f"--models {args.models!r} names a model twice")
    args.models = models
    for flag in ("batch_size", "repeats", "steps"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")
    if args.image_size < 32:
        parser.error("--image-size must be at least 32")
    return args


def build_pair(name, shape, dtype):
    """The keras.applications model and kapps' twin of it, built with its weights."""
    import keras

    import kapps

    keras.backend.clear_session()
    # clear_session forgets the global dtype policy; set it for every pair.
    keras.mixed_precision.set_global_policy(dtype)
    application, overrides = TWINS[name]
    reference = getattr(keras.applications, application)(
        weights=None, input_shape=shape, classifier_activation="softmax"
    )
    model = getattr(kapps.models, name)(
        input_shape=shape, classifier_activation="softmax", weights=reference, **overrides
    )
    counts = (model.count_params(), reference.count_params())
    if counts[0] != counts[1]:
        raise RuntimeError(
            f"{name}: kapps has {counts[0]:,} parameters, keras.applications.{application} "
            f"{counts[1]:,}; they are not the same configuration"
        )
    return {"kapps": model, "keras.applications": reference}, application, counts[0]


def op_counts(function, x):
    """``{op type: count}`` of the graph ``function`` traces for ``x``."""
    counts = {}
    for op in function.get_concrete_function(x).graph.get_operations():
        counts[op.type] = counts.get(op.type, 0) + 1
    return counts


def bench_model(name, args, jits, modes):
    import keras
    import numpy as np
    import tensorflow as tf

    shape = (args.image_size, args.image_size, 3)
    models, application, params = build_pair(name, shape, args.dtype)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((args.batch_size, *shape), dtype="float32") * PIXEL_RANGE.get(name, 1.0))
    y = tf.constant(rng.integers(0, 1000, args.batch_size))

    record = {
        "keras_application": application,
        "parameters": params,
        "effective_jit_compile": {},
        "inference_graph_ops": {},
        "modes": {},
    }
    steps = {label: {mode: {} for mode in modes} for label in LABELS}
    losses = {label: {} for label in LABELS}
    for label, model in models.items():
        optimizer = keras.optimizers.SGD(1e-3)
        train_functions, effective = {}, {}
        for jit in jits:
            # Model-level XLA, as users turn it on; one optimizer serves both compilations.
            model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", jit_compile=jit)
            model.make_train_function()
            train_functions[jit] = model.train_function
            effective[str(jit).lower()] = bool(model.jit_compile)
        record["effective_jit_compile"][label] = effective
        for jit in jits:
            infer = tf.function(lambda batch, m=model: m(batch, training=False), jit_compile=jit)

            def train(m=model, f=train_functions[jit], jit=jit, label=label):
                m.train_function = f  # the function compile(jit_compile=jit) made
                losses[label][jit] = float(m.train_on_batch(x, y))

            if "inference" in steps[label]:
                steps[label]["inference"][jit] = lambda f=infer: f(x).numpy()
            if "training" in steps[label]:
                steps[label]["training"][jit] = train
        record["inference_graph_ops"][label] = op_counts(
            tf.function(lambda batch, m=model: m(batch, training=False)), x
        )

    # Same function: kapps' copy holds the keras.applications weights, so inference agrees.
    # Compared on the classifier's input (the softmax of an untrained network can be flat
    # enough to hide a difference), relative to the features' scale.
    features = []
    for label in LABELS:
        model = models[label]
        extractor = keras.Model(model.inputs, model.get_layer("predictions").input)
        features.append(np.asarray(extractor(x, training=False), dtype="float32"))
        del extractor
    scale = float(np.max(np.abs(features[1])))
    difference = float(np.max(np.abs(features[0] - features[1]))) / max(scale, 1e-12)
    tolerance = 1e-4 if args.dtype == "float32" else 3e-2
    if not (scale > 0 and difference <= tolerance):
        raise RuntimeError(
            f"{name}: kapps' and keras.applications' features differ by {difference:.3g} of "
            f"their scale {scale:.3g} (allowed {tolerance}); they do not compute the same function"
        )
    record["feature_scale"] = scale
    record["max_feature_difference"] = difference  # relative to feature_scale
    kapps_ops, keras_ops = (record["inference_graph_ops"][label] for label in LABELS)
    record["inference_graph_op_difference"] = op_difference(kapps_ops, keras_ops)

    times = alternate_rounds(
        steps, warmup=args.warmup, repeats=args.repeats, steps_per_round=args.steps, name=name
    )

    for mode in modes:
        entry = record["modes"][mode] = {}
        for jit in jits:
            (kapps_rate, keras_rate), ratio, rounds = rate_summary(
                args.batch_size, times["kapps"][mode][jit], times["keras.applications"][mode][jit]
            )
            entry["xla" if jit else "no_xla"] = {
                "kapps_examples_per_s": kapps_rate,
                "keras_applications_examples_per_s": keras_rate,
                "ratio": ratio,
                "round_ratios": rounds,
                "kapps_step_s": times["kapps"][mode][jit],
                "keras_applications_step_s": times["keras.applications"][mode][jit],
            }
        if len(jits) == 2:
            entry["xla_gain"] = {}
            for label in LABELS:
                _, gain, rounds = rate_summary(
                    args.batch_size, times[label][mode][True], times[label][mode][False]
                )
                entry["xla_gain"][label] = {"gain": gain, "round_gains": rounds}
    if "training" in modes:
        record["last_training_loss"] = {
            label: {("xla" if jit else "no_xla"): loss for jit, loss in losses[label].items()}
            for label in LABELS
        }
        finite = all(
            np.isfinite(loss) for per_label in losses.values() for loss in per_label.values()
        )
        if not finite:
            print(f"{name}: warning: a training loss is not finite: {losses}", file=sys.stderr)

    # Free this pair (models, traced and compiled functions) before the next one is built.
    del models, steps, features
    keras.backend.clear_session()
    gc.collect()
    return record


def markdown(results):
    """The README tables: speed side by side, then the XLA gain."""
    lines = [
        "| model | mode | XLA | kapps ex/s | keras.applications ex/s | ratio | per-round ratio range |",
        "|---|---|---|---|---|---|---|",
    ]
    gains = [
        "| model | mode | kapps XLA gain | keras.applications XLA gain | kapps per-round range |"
        " keras.applications per-round range |",
        "|---|---|---|---|---|---|",
    ]
    for name, record in results["models"].items():
        for mode, entry in record["modes"].items():
            for key, xla in (("no_xla", "off"), ("xla", "on")):
                if key not in entry:
                    continue
                r = entry[key]
                lines.append(
                    f"| `{name}` | {mode} | {xla} | {r['kapps_examples_per_s']:.2f} | "
                    f"{r['keras_applications_examples_per_s']:.2f} | {r['ratio']:.3f} | "
                    f"{r['round_ratios'][0]:.3f}..{r['round_ratios'][-1]:.3f} |"
                )
            if "xla_gain" in entry:
                g = entry["xla_gain"]
                k, a = g["kapps"], g["keras.applications"]
                gains.append(
                    f"| `{name}` | {mode} | {k['gain']:.2f}x | {a['gain']:.2f}x | "
                    f"{k['round_gains'][0]:.2f}..{k['round_gains'][-1]:.2f} | "
                    f"{a['round_gains'][0]:.2f}..{a['round_gains'][-1]:.2f} |"
                )
    text = "\n".join(lines)
    if len(gains) > 2:
        text += "\n\nXLA gain (examples/s with XLA / without, same implementation):\n\n" + "\n".join(gains)
    return text


def main(argv=None):
    args = parse_args(argv)
    import keras
    import tensorflow as tf

    jits = {"off": [False], "on": [True], "both": [False, True]}[args.jit_compile]
    modes = ["inference", "training"] if args.mode == "both" else [args.mode]
    results = {
        "command": "python benchmarks/classifiers_vs_keras_applications.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "steps": args.steps,
        "warmup": args.warmup,
        "jit_compile": args.jit_compile,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "cpus": os.cpu_count(),
        "models": {},
    }
    policy = keras.mixed_precision.global_policy()
    start = time.perf_counter()
    try:
        for name in args.models:
            results["models"][name] = bench_model(name, args, jits, modes)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    results["wall_s"] = time.perf_counter() - start

    print(
        f"\nbatch {args.batch_size}, {args.image_size}x{args.image_size}, {args.dtype}, "
        f"median of {args.repeats} alternating rounds of {args.steps} steps, "
        f"{os.cpu_count()} CPUs, TensorFlow {tf.__version__}, Keras {keras.__version__}\n"
    )
    print(markdown(results))
    for name, record in results["models"].items():
        if record["inference_graph_op_difference"]:
            print(f"{name}: inference graph ops, kapps minus keras.applications: "
                  f"{record['inference_graph_op_difference']}")
        off = [label for label, e in record["effective_jit_compile"].items() if e.get("true") is False]
        if off:
            print(f"{name}: warning: Keras turned XLA off for {', '.join(off)} (compile(jit_compile=True))")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out} ({results['wall_s']:.0f} s)")
    return results


if __name__ == "__main__":
    main()
