"""kapps ``TransformerEncoderBlock`` against keras-hub's ``TransformerEncoder``, side by side.

Both layers are the original Transformer's base encoder layer (Vaswani et al. 2017, table 3,
"base"): hidden 512, 8 heads, feed-forward 2048 with ReLU, post-LN (kapps
``norm_first=False``, keras-hub ``normalize_first=False``), dropout 0.1 on the attention
weights and on each sub-layer's output, the same LayerNorm epsilon, float32. Each is wrapped
in a functional ``keras.Model`` taking ``(tokens, token_flags)``: ``(batch, seq_len,
hidden)`` floats and ``(batch, seq_len)`` "this token is real" flags, which kapps turns into
an attention mask with ``kapps.layers.attention.padding_mask`` and keras-hub takes as its
``padding_mask``. The examples' lengths are spread evenly from ``seq_len // 2`` to
``seq_len``, so about a quarter of the tokens are padding.

kapps' layer gets keras-hub's weights (the attention through
``MultiHeadAttention.load_keras_weights``, the LayerNorms and the feed-forward Dense layers
as they are), so both compute the same function; the script checks the parameter counts
and the inference outputs (all positions, padded ones included) before timing.

Inference is a ``tf.function(jit_compile=...)`` around ``model([tokens, flags],
training=False)``; training is ``model.compile(Adam, "mse", jit_compile=...)`` then
``train_on_batch`` against a zero target (the same loss and optimizer on both, dropout
active). Runs alternate between the two implementations and the XLA settings, the order
swapping every round (``kapps.benchmarking.alternate_rounds``), so a noisy shared machine
slows both alike. The figures that matter are ratios (``kapps.benchmarking.rate_summary``):
kapps / keras-hub in tokens/s (above 1 means kapps is faster), as the ratio of medians and
as per-round ratios (both sides timed back to back), whose range is the spread. To explain
a gap, the op counts of the traced inference graphs and the instruction counts of the
programs XLA compiles from them are recorded, and their differences printed.

    python benchmarks/transformer_encoder_vs_keras_hub.py            # base sizes, ~4 min
    python benchmarks/transformer_encoder_vs_keras_hub.py --tiny     # toy sizes, seconds

Prints a markdown table and writes the figures as JSON (``--out``).

Latest run (2026-11-24; batch 32 x 64 tokens, 25% padding, 10 rounds of 3 steps, 2 CPUs
shared with other jobs, so single rounds swing; TensorFlow 2.21.0, Keras 3.15.1, keras-hub
0.32.0): kapps / keras-hub tokens/s as the ratio of medians, the median per-round ratio and
the per-round range:

    inference, no XLA   1.07   (1.11, 0.95..1.55)   6,332 vs 5,919 tokens/s
    inference, XLA      1.03   (1.01, 0.70..1.09)   6,162 vs 5,999
    training,  no XLA   1.32   (1.25, 0.94..1.82)   2,480 vs 1,878
    training,  XLA      1.18   (1.15, 0.84..1.86)   1,396 vs 1,180

Outputs agreed to 9.5e-7. Why: without XLA, kapps projects with 2-D ``MatMul`` on
``(batch * tokens, hidden)`` while Keras' ``EinsumDense`` becomes a ``BatchMatMulV2`` of
``batch`` small products against a broadcast kernel (graph ops, kapps minus keras-hub:
``MatMul +4, BatchMatMulV2 -4, Reshape +4, BiasAdd -1, Cast -2``); with XLA both compile to
the same program (the optimized HLO differs only in keras-hub's bool -> int32 -> bool mask
casts: ``convert -3, compare -3, broadcast -3, constant -3, bitcast -1``), so XLA's ratio is
1 up to noise. On CPU, XLA does not pay here: inference 0.97x (kapps) / 1.01x (keras-hub),
training 0.56x / 0.63x. The training loss is dropout's random numbers: timed alone, kapps'
block's forward and backward pass took 1.05 s without XLA and 1.83 s with it, and 1.02 s
both ways with dropout off (so ``compile(jit_compile="auto")``, which picks XLA, is the
slower choice for training this block on a CPU).
"""

import argparse
import gc
import json
import os
import platform
import sys
import time

from kapps.benchmarking import (
    alternate_rounds,
    graph_op_counts,
    mode_summary,
    op_difference,
    size_defaults,
)

LABELS = ("kapps", "keras-hub")

#: The original Transformer's base encoder layer, and rounds that take about 4 minutes.
FULL = {"batch_size": 32, "seq_len": 64, "hidden_dim": 512, "num_heads": 8, "mlp_dim": 2048,
        "rounds": 10, "steps": 3, "warmup": 1}
#: ``--tiny``: toy sizes for tests, a few seconds.
TINY = {"batch_size": 2, "seq_len": 8, "hidden_dim": 16, "num_heads": 2, "mlp_dim": 32,
        "rounds": 1, "steps": 1, "warmup": 1}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true",
                        help="toy sizes and one round of one step (tests); explicit flags win")
    for flag in FULL:
        parser.add_argument(f"--{flag.replace('_', '-')}", type=int, default=None,
                            help=f"default {FULL[flag]} ({TINY[flag]} with --tiny)")
    parser.add_argument("--dropout", type=float, default=0.1,
                        help="dropout on the attention weights and the sub-layer outputs")
    parser.add_argument("--epsilon", type=float, default=1e-5, help="LayerNorm epsilon (both)")
    parser.add_argument("--jit-compile", default="both", choices=["off", "on", "both"],
                        help="time without XLA, with XLA, or both (alternating)")
    parser.add_argument("--mode", default="both", choices=["inference", "training", "both"])
    parser.add_argument("--out", default=os.path.join("benchmarks", "results",
                                                      "transformer_encoder.json"))
    args = parser.parse_args(argv)
    size_defaults(parser, args, TINY if args.tiny else FULL)
    if args.seq_len < 2:
        parser.error("--seq-len must be at least 2 (some tokens real, some padding)")
    if args.hidden_dim % args.num_heads:
        parser.error(f"--num-heads {args.num_heads} does not divide --hidden-dim {args.hidden_dim}")
    if not 0 <= args.dropout < 1:
        parser.error(f"--dropout {args.dropout} must be in [0, 1)")
    if not args.epsilon > 0:
        parser.error(f"--epsilon {args.epsilon} must be > 0")
    return args


def token_flags(batch_size, seq_len):
    """``(batch, seq_len)`` booleans: example ``i`` has its first ``length_i`` tokens real,
    the lengths spread evenly from ``seq_len // 2`` to ``seq_len``."""
    import numpy as np

    lengths = np.linspace(max(seq_len // 2, 1), seq_len, batch_size).round().astype(int)
    return np.arange(seq_len)[None, :] < lengths[:, None]


def hlo_op_counts(function, *inputs):
    """``{instruction: count}`` of the program XLA makes of ``function`` after its
    optimizations (fused computations' instructions included): where the TensorFlow graphs
    differ, this shows whether the compiled programs still do."""
    import re

    hlo = function.experimental_get_compiler_ir(*inputs)(stage="optimized_hlo")
    counts = {}
    # `%name = type opcode(operands...)`; a tuple type has spaces but no `word(`
    for opcode in re.findall(r"^\s*(?:ROOT\s+)?\S+ = .*? ([a-z][\w-]*)\(", hlo, re.M):
        counts[opcode] = counts.get(opcode, 0) + 1
    return counts


def build_pair(args):
    """Functional models around keras-hub's TransformerEncoder and kapps'
    TransformerEncoderBlock, the latter holding the former's weights."""
    import keras
    import keras_hub

    from kapps.layers import TransformerEncoderBlock
    from kapps.layers.attention import padding_mask

    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy("float32")

    def inputs():
        return (keras.Input((args.seq_len, args.hidden_dim), name="tokens"),
                keras.Input((args.seq_len,), dtype="bool", name="token_flags"))

    tokens, flags = inputs()
    hub_layer = keras_hub.layers.TransformerEncoder(
        intermediate_dim=args.mlp_dim, num_heads=args.num_heads, dropout=args.dropout,
        activation="relu", layer_norm_epsilon=args.epsilon, normalize_first=False,
        name="encoder",
    )
    reference = keras.Model([tokens, flags], hub_layer(tokens, padding_mask=flags),
                            name="keras_hub_encoder")

    tokens, flags = inputs()
    layer = TransformerEncoderBlock(
        args.hidden_dim, args.num_heads, args.mlp_dim, dropout=args.dropout,
        attention_dropout=args.dropout, norm_first=False, epsilon=args.epsilon,
        activation="relu", name="encoder",
    )
    model = keras.Model([tokens, flags], layer(tokens, attention_mask=padding_mask(flags)),
                        name="kapps_encoder")

    # keras-hub keeps its sublayers in private attributes (there is no public accessor);
    # its MultiHeadAttention is Keras', whose layout load_keras_weights converts.
    layer.attention.load_keras_weights(hub_layer._self_attention_layer)
    for ours, theirs in (
        (layer.attention_norm, hub_layer._self_attention_layer_norm),
        (layer.mlp_dense1, hub_layer._feedforward_intermediate_dense),
        (layer.mlp_dense2, hub_layer._feedforward_output_dense),
        (layer.mlp_norm, hub_layer._feedforward_layer_norm),
    ):
        ours.set_weights(theirs.get_weights())
    counts = (model.count_params(), reference.count_params())
    if counts[0] != counts[1]:
        raise RuntimeError(
            f"kapps has {counts[0]:,} parameters, keras-hub's TransformerEncoder "
            f"{counts[1]:,}; they are not the same configuration"
        )
    return {"kapps": model, "keras-hub": reference}, counts[0]


def forward(model):
    """``(tokens, flags) -> outputs`` in inference mode (a closure: a tf.function whose
    compiler IR is asked for must take its tensors only)."""
    return lambda tokens, flags: model([tokens, flags], training=False)


def bench(args, jits, modes):
    import keras
    import numpy as np
    import tensorflow as tf

    models, params = build_pair(args)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((args.batch_size, args.seq_len, args.hidden_dim),
                                        dtype="float32"))
    flags = tf.constant(token_flags(args.batch_size, args.seq_len))
    y = tf.zeros_like(x)
    tokens_per_step = args.batch_size * args.seq_len

    record = {
        "parameters": params,
        "padding_fraction": float(1 - np.mean(flags.numpy())),
        "effective_jit_compile": {},
        "inference_graph_ops": {},
        "modes": {},
    }
    # Same function: kapps' layer holds keras-hub's weights, so inference agrees.
    outputs = [np.asarray(models[label]([x, flags], training=False)) for label in LABELS]
    difference = float(np.max(np.abs(outputs[0] - outputs[1])))
    if not difference <= 1e-3:  # post-LN outputs are at unit scale
        raise RuntimeError(
            f"kapps' and keras-hub's outputs differ by {difference:.3g} (allowed 1e-3); they "
            "do not compute the same function"
        )
    record["max_output_difference"] = difference

    steps = {label: {mode: {} for mode in modes} for label in LABELS}
    losses = {label: {} for label in LABELS}
    for label, model in models.items():
        optimizer = keras.optimizers.Adam(1e-4)
        # its slots exist before the first step, so no train function is traced twice
        optimizer.build(model.trainable_variables)
        train_functions, effective = {}, {}
        for jit in jits:
            model.compile(optimizer=optimizer, loss="mse", jit_compile=jit)
            model.make_train_function()
            train_functions[jit] = model.train_function
            effective[str(jit).lower()] = bool(model.jit_compile)
        record["effective_jit_compile"][label] = effective
        for jit in jits:
            infer = tf.function(forward(model), jit_compile=jit, autograph=False)

            def train(m=model, f=train_functions[jit], jit=jit, label=label):
                m.train_function = f  # the function compile(jit_compile=jit) made
                losses[label][jit] = float(m.train_on_batch([x, flags], y))

            if "inference" in steps[label]:
                steps[label]["inference"][jit] = lambda f=infer: f(x, flags).numpy()
            if "training" in steps[label]:
                steps[label]["training"][jit] = train
        counter = tf.function(lambda inputs, m=model: m(inputs, training=False), autograph=False)
        record["inference_graph_ops"][label] = graph_op_counts(counter, [x, flags])
        if True in jits:
            record.setdefault("xla_inference_hlo_ops", {})[label] = hlo_op_counts(
                tf.function(forward(model), jit_compile=True, autograph=False), x, flags
            )
    for key in ("inference_graph_ops", "xla_inference_hlo_ops"):
        if key in record:
            kapps_ops, hub_ops = (record[key][label] for label in LABELS)
            record[key.replace("_ops", "_op_difference")] = op_difference(kapps_ops, hub_ops)

    times = alternate_rounds(
        steps, warmup=args.warmup, repeats=args.rounds, steps_per_round=args.steps,
        name="transformer encoder",
    )

    record["modes"] = mode_summary(times, tokens_per_step, "tokens", modes, jits, LABELS)
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
    """One row per mode and XLA setting, then the XLA gains."""
    lines = [
        "| mode | XLA | kapps tokens/s | keras-hub tokens/s | ratio | median per-round ratio "
        "| per-round range |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, entry in record["modes"].items():
        for key, xla in (("no_xla", "off"), ("xla", "on")):
            if key in entry:
                r = entry[key]
                lines.append(
                    f"| {mode} | {xla} | {r['kapps_tokens_per_s']:,.0f} | "
                    f"{r['keras_hub_tokens_per_s']:,.0f} | {r['ratio']:.3f} | "
                    f"{r['median_round_ratio']:.3f} | "
                    f"{r['round_ratios'][0]:.3f}..{r['round_ratios'][-1]:.3f} |"
                )
    gains = [
        f"{mode}: kapps {e['xla_gain']['kapps']['gain']:.2f}x, "
        f"keras-hub {e['xla_gain']['keras-hub']['gain']:.2f}x"
        for mode, e in record["modes"].items() if "xla_gain" in e
    ]
    if gains:
        lines += ["", "XLA gain (tokens/s with XLA / without): " + "; ".join(gains)]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    import keras
    import keras_hub
    import tensorflow as tf

    jits = {"off": [False], "on": [True], "both": [False, True]}[args.jit_compile]
    modes = ["inference", "training"] if args.mode == "both" else [args.mode]
    results = {
        "command": "python benchmarks/transformer_encoder_vs_keras_hub.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "environment": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "keras_hub": keras_hub.__version__,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
        "config": {
            "tiny": args.tiny,
            "batch_size": args.batch_size,
            "seq_len": args.seq_len,
            "hidden_dim": args.hidden_dim,
            "num_heads": args.num_heads,
            "mlp_dim": args.mlp_dim,
            "dropout": args.dropout,
            "epsilon": args.epsilon,
            "activation": "relu",
            "post_ln": True,
            "dtype": "float32",
            "optimizer": "adam",
            "rounds": args.rounds,
            "steps": args.steps,
            "warmup": args.warmup,
            "jit_compile": args.jit_compile,
            "mode": args.mode,
        },
    }
    policy = keras.mixed_precision.global_policy()
    start = time.perf_counter()
    try:
        results["encoder"] = bench(args, jits, modes)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    results["wall_s"] = time.perf_counter() - start

    record = results["encoder"]
    print(
        f"\nbatch {args.batch_size} x {args.seq_len} tokens "
        f"({record['padding_fraction']:.0%} padding), hidden {args.hidden_dim}, "
        f"{args.num_heads} heads, MLP {args.mlp_dim}, float32, median of {args.rounds} "
        f"alternating rounds of {args.steps} steps, {os.cpu_count()} CPUs, TensorFlow "
        f"{tf.__version__}, Keras {keras.__version__}, keras-hub {keras_hub.__version__}\n"
    )
    print(markdown(record))
    print(f"\nmax output difference (same weights): {record['max_output_difference']:.2e}")
    print("inference graph ops, kapps minus keras-hub: "
          f"{record['inference_graph_op_difference'] or 'none'}")
    if "xla_inference_hlo_op_difference" in record:
        print("XLA-optimized inference HLO instructions, kapps minus keras-hub: "
              f"{record['xla_inference_hlo_op_difference'] or 'none'}")
    off = [label for label, e in record["effective_jit_compile"].items() if e.get("true") is False]
    if off:
        print(f"warning: Keras turned XLA off for {', '.join(off)} (compile(jit_compile=True))")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out} ({results['wall_s']:.0f} s)")
    return results


if __name__ == "__main__":
    main()
