"""kapps ``vit_b16`` against keras-hub's ``ViTBackbone``, side by side in one process.

Both compute the same function: kapps' ``vit_b16(include_top=False)`` returns the whole
sequence after the final LayerNorm, ``(batch, 197, 768)`` at 224x224, as keras-hub's
``ViTBackbone(image_shape=(224, 224, 3), patch_size=16, num_layers=12, num_heads=12,
hidden_dim=768, mlp_dim=3072)`` does, and kapps' copy is built from the keras-hub model's
weights (``weights=backbone``). Before timing, the script checks that both have the same
parameter count and the same outputs.

Training is ``model.compile(SGD, "mse", jit_compile=...)`` then ``train_on_batch`` against a
zero target of the sequence's shape (the same loss on both); inference is a
``tf.function(jit_compile=...)`` around ``model(x, training=False)``. Runs alternate between
the two implementations and the XLA settings, and the order swaps every repeat, so a noisy
shared machine slows both alike; the figures that matter are ratios of medians: kapps /
keras-hub (above 1 means kapps is faster) and XLA / no XLA. Each round also gives a ratio of
its own (both sides timed back to back); their median is the steadier figure when the
machine's load swings between rounds, their range shows how much of a difference is noise.
The traced inference graphs' op counts are recorded, and their difference printed, to
explain a gap.

    python benchmarks/vit_b16_vs_keras_hub.py --batch-size 4 --repeats 5

Prints a markdown table and writes the figures as JSON (``--out``).
"""

import argparse
import gc
import json
import os
import sys
import time

from kapps.benchmarking import alternate_rounds, graph_op_counts, mode_summary, op_difference

LABELS = ("kapps", "keras-hub")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--jit-compile",
        default="both",
        choices=["off", "on", "both"],
        help="time without XLA, with XLA, or both (alternating)",
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per mode and XLA setting")
    parser.add_argument("--steps", type=int, default=2, help="steps per timed round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    parser.add_argument("--dtype", default="float32", choices=["float32", "mixed_bfloat16", "mixed_float16"])
    parser.add_argument("--mode", default="both", choices=["inference", "training", "both"])
    # The architecture (ViT-B/16 by default); smaller values make a toy run for tests.
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--hidden-dim", type=int, default=768)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--num-heads", type=int, default=12)
    parser.add_argument("--mlp-dim", type=int, default=3072)
    parser.add_argument("--out", default=os.path.join("benchmarks", "results", "vit_b16.json"))
    args = parser.parse_args(argv)
    for flag in ("batch_size", "repeats", "steps", "patch_size", "hidden_dim", "depth",
                 "num_heads", "mlp_dim"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be at least 0")
    if args.image_size % args.patch_size:
        parser.error(f"--image-size {args.image_size} is not a multiple of --patch-size {args.patch_size}")
    if args.hidden_dim % args.num_heads:
        parser.error(f"--num-heads {args.num_heads} does not divide --hidden-dim {args.hidden_dim}")
    return args


def build_pair(args):
    """keras-hub's ViTBackbone and kapps' vit_b16 (include_top=False) built from its weights."""
    import keras
    import keras_hub

    from kapps.models.classification.vit import vit_b16

    keras.backend.clear_session()
    # clear_session forgets the global dtype policy; set it for the pair.
    keras.mixed_precision.set_global_policy(args.dtype)
    shape = (args.image_size, args.image_size, 3)
    reference = keras_hub.models.ViTBackbone(
        image_shape=shape,
        patch_size=args.patch_size,
        num_layers=args.depth,
        num_heads=args.num_heads,
        hidden_dim=args.hidden_dim,
        mlp_dim=args.mlp_dim,
    )
    model = vit_b16(
        include_top=False,
        input_shape=shape,
        weights=reference,
        patch_size=args.patch_size,
        hidden_dim=args.hidden_dim,
        depth=args.depth,
        num_heads=args.num_heads,
        mlp_dim=args.mlp_dim,
    )
    counts = (model.count_params(), reference.count_params())
    if counts[0] != counts[1]:
        raise RuntimeError(
            f"kapps has {counts[0]:,} parameters, keras-hub's ViTBackbone {counts[1]:,}; they "
            "are not the same configuration"
        )
    return {"kapps": model, "keras-hub": reference}, counts[0]


def bench(args, jits, modes):
    import keras
    import numpy as np
    import tensorflow as tf

    models, params = build_pair(args)
    rng = np.random.default_rng(0)
    shape = (args.image_size, args.image_size, 3)
    x = tf.constant(rng.random((args.batch_size, *shape), dtype="float32"))
    tokens = 1 + (args.image_size // args.patch_size) ** 2
    y = tf.zeros((args.batch_size, tokens, args.hidden_dim))

    record = {
        "parameters": params,
        "output_shape": [None, tokens, args.hidden_dim],
        "effective_jit_compile": {},
        "inference_graph_ops": {},
        "modes": {},
    }
    # Same function: kapps' copy holds keras-hub's weights, so inference agrees.
    outputs = [np.asarray(models[label](x, training=False), dtype="float32") for label in LABELS]
    difference = float(np.max(np.abs(outputs[0] - outputs[1])))
    tolerance = 1e-3 if args.dtype == "float32" else 1e-1  # LayerNorm outputs: unit scale
    if not difference <= tolerance:
        raise RuntimeError(
            f"kapps' and keras-hub's outputs differ by {difference:.3g} (allowed {tolerance}); "
            "they do not compute the same function"
        )
    record["max_output_difference"] = difference

    steps = {label: {mode: {} for mode in modes} for label in LABELS}
    losses = {label: {} for label in LABELS}
    for label, model in models.items():
        optimizer = keras.optimizers.SGD(1e-3)
        train_functions, effective = {}, {}
        for jit in jits:
            model.compile(optimizer=optimizer, loss="mse", jit_compile=jit)
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
        record["inference_graph_ops"][label] = graph_op_counts(
            tf.function(lambda batch, m=model: m(batch, training=False)), x
        )
    kapps_ops, hub_ops = (record["inference_graph_ops"][label] for label in LABELS)
    record["inference_graph_op_difference"] = op_difference(kapps_ops, hub_ops)

    times = alternate_rounds(
        steps, warmup=args.warmup, repeats=args.repeats, steps_per_round=args.steps
    )

    record["modes"] = mode_summary(times, args.batch_size, "examples", modes, jits, LABELS)
    if "training" in modes:
        record["last_training_loss"] = {
            label: {("xla" if jit else "no_xla"): loss for jit, loss in losses[label].items()}
            for label in LABELS
        }
    del models, steps
    keras.backend.clear_session()
    gc.collect()
    return record


def markdown(record):
    """The speed table, then the XLA gain."""
    lines = [
        "| mode | XLA | kapps ex/s | keras-hub ex/s | ratio | median per-round ratio | per-round range |",
        "|---|---|---|---|---|---|---|",
    ]
    gains = [
        "| mode | kapps XLA gain | keras-hub XLA gain | kapps per-round range | keras-hub per-round range |",
        "|---|---|---|---|---|",
    ]
    for mode, entry in record["modes"].items():
        for key, xla in (("no_xla", "off"), ("xla", "on")):
            if key not in entry:
                continue
            r = entry[key]
            lines.append(
                f"| {mode} | {xla} | {r['kapps_examples_per_s']:.2f} | "
                f"{r['keras_hub_examples_per_s']:.2f} | {r['ratio']:.3f} | "
                f"{r['median_round_ratio']:.3f} | "
                f"{r['round_ratios'][0]:.3f}..{r['round_ratios'][-1]:.3f} |"
            )
        if "xla_gain" in entry:
            k, h = entry["xla_gain"]["kapps"], entry["xla_gain"]["keras-hub"]
            gains.append(
                f"| {mode} | {k['gain']:.2f}x | {h['gain']:.2f}x | "
                f"{k['round_gains'][0]:.2f}..{k['round_gains'][-1]:.2f} | "
                f"{h['round_gains'][0]:.2f}..{h['round_gains'][-1]:.2f} |"
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
        "command": "python benchmarks/vit_b16_vs_keras_hub.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "steps": args.steps,
        "warmup": args.warmup,
        "jit_compile": args.jit_compile,
        "architecture": {
            "patch_size": args.patch_size,
            "hidden_dim": args.hidden_dim,
            "depth": args.depth,
            "num_heads": args.num_heads,
            "mlp_dim": args.mlp_dim,
        },
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "cpus": os.cpu_count(),
    }
    policy = keras.mixed_precision.global_policy()
    start = time.perf_counter()
    try:
        results["vit"] = bench(args, jits, modes)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    results["wall_s"] = time.perf_counter() - start

    print(
        f"\nbatch {args.batch_size}, {args.image_size}x{args.image_size}, {args.dtype}, "
        f"median of {args.repeats} alternating rounds of {args.steps} steps, "
        f"{os.cpu_count()} CPUs, TensorFlow {tf.__version__}, Keras {keras.__version__}\n"
    )
    print(markdown(results["vit"]))
    difference = results["vit"]["inference_graph_op_difference"]
    if difference:
        print(f"\ninference graph ops, kapps minus keras-hub: {difference}")
    off = [label for label, e in results["vit"]["effective_jit_compile"].items() if e.get("true") is False]
    if off:
        print(f"warning: Keras turned XLA off for {', '.join(off)} (compile(jit_compile=True))")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out} ({results['wall_s']:.0f} s)")
    return results


if __name__ == "__main__":
    main()
