"""kapps GPT against keras-hub's GPT-2, side by side: generation and training speed.

1. **Generation.** A small GPT-2-shaped model (vocabulary 1,000, 4 layers, width 256, 4
   heads, MLP 1,024, 128 positions, float32, random weights) completes a 16-token prompt to
   128 tokens, greedily, at batch 1 and 8. Three ways, each one call that returns numpy:

   - ``kapps cached``: ``kapps.models.language.Generator(model, max_length,
     sampler="greedy", use_cache=True, jit_compile=...)``: one prefill pass, then one
     position per token through a fixed-size key/value cache;
   - ``kapps uncached``: the same with ``use_cache=False``: the whole prefix through the
     model at every step (the reference the cache is tested against); timed at the smallest
     batch only and without XLA (see ``bench_generation`` for why);
   - ``keras-hub``: ``GPT2CausalLM(backbone=GPT2Backbone(same sizes), preprocessor=None)``,
     ``compile(sampler="greedy", jit_compile=...)``, then ``generate({"token_ids",
     "padding_mask"}, stop_token_ids=None)``. keras-hub wraps its generation loop in
     ``tf.function(jit_compile=model.jit_compile)`` (``CausalLM.make_generate_function``),
     and ``GPT2CausalLM``'s ``jit_compile`` resolves to False by default on this setup, so
     both sides are timed with XLA off and on.

   kapps' model holds keras-hub's weights (embeddings, LayerNorms, Dense layers as they
   are; the attention through ``MultiHeadAttention.load_keras_weights``), so all three
   compute the same function: the script checks the parameter counts, the logits, and that
   the generated tokens agree before timing. Tokens/s counts generated tokens
   (``batch x (max_length - prompt_length)``); prefill is part of every call on all sides.

2. **Training.** ``gpt2_small``-shaped blocks (vocabulary 50,257, width 768, 12 heads, MLP
   3,072, 1,024 positions, dropout 0.1) with fewer layers (2) so a CPU can step them:
   kapps ``gpt(...)`` against keras-hub ``GPT2CausalLM`` (``GPT2Backbone`` plus the logits
   tied to its token embedding), both ``compile(AdamW(1e-4),
   SparseCategoricalCrossentropy(from_logits=True), jit_compile=...)`` and
   ``train_on_batch`` on random ids (keras-hub also takes its all-true ``padding_mask``, as
   its API requires). Tokens/s counts ``batch x seq_len``.

Runs alternate between the functions compared, the order reversing every round
(``kapps.benchmarking.alternate_rounds``), so a noisy shared machine slows all alike. The
figures that matter are ratios (``kapps.benchmarking.rate_summary``): above 1 means the
first side is faster; given as the ratio of medians and as per-round ratios (both sides timed
back to back), whose range is the spread.

    python benchmarks/gpt_vs_keras_hub.py            # the sizes above, 3-5 min on 2 CPUs
    python benchmarks/gpt_vs_keras_hub.py --tiny     # toy sizes, seconds (tests)
    python benchmarks/gpt_vs_keras_hub.py --part training --train-jit-compile both

Prints markdown tables and writes the figures as JSON (``--out``) and the tables as
markdown (the same path with ``.md``).

Latest run (2026-11-24; 2 CPUs shared with a training job, so single rounds swing;
TensorFlow 2.21.0, Keras 3.15.1, keras-hub 0.32.0): tokens/s ratios as the ratio of
medians, the median per-round ratio and the per-round range.

    generation, batch 1, kapps cached / keras-hub, no XLA   1.31  (1.33, 0.48..2.01)  122 vs 94
    generation, batch 1, kapps cached / keras-hub, XLA      1.94  (1.94, 1.05..2.21)  399 vs 205
    generation, batch 8, kapps cached / keras-hub, no XLA   1.79  (1.79, 1.09..3.75)  466 vs 259
    generation, batch 8, kapps cached / keras-hub, XLA      2.06  (2.06, 1.79..3.27)  570 vs 278
    generation, batch 1, kapps cached / uncached, no XLA    3.98  (5.02, 3.11..7.44)  122 vs 31
    training, kapps / keras-hub, no XLA (8 rounds)          1.07  (0.98, 0.87..1.57)  44 vs 41
    training, kapps / keras-hub, XLA (3rd command, 5 rounds) 0.96  (0.96, 0.87..1.70)  89 vs 93

Every way of generating gave the same greedy tokens; the logits agreed to 5e-7. XLA gains
in generation: 3.3x (kapps) and 2.2x (keras-hub) at batch 1, 1.2x and 1.1x at batch 8; in
training 1.56x and 1.50x. Training is at parity (the same ops, one tied projection on each
side). In generation keras-hub's ``GPT2CausalLM.call_with_cache`` keeps all layers' keys and
values in one ``(batch, layers, 2, max_length, heads, head_dim)`` tensor that every step
slices per layer and rebuilds with ``ops.stack``, where kapps carries one buffer pair per
block; that copy is the likely (not profiled) reason kapps' lead grows with the batch.
"""

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time

from kapps.benchmarking import alternate_rounds, rate_summary, size_defaults

#: Generation: a small GPT-2-shaped model; training: gpt2_small-shaped blocks, 2 of them.
FULL = {
    "vocab_size": 1000, "num_layers": 4, "num_heads": 4, "hidden_dim": 256, "mlp_dim": 1024,
    "max_length": 128, "prompt_length": 16, "rounds": 5, "steps": 1, "warmup": 1,
    "train_vocab_size": 50257, "train_num_layers": 2, "train_num_heads": 12,
    "train_hidden_dim": 768, "train_mlp_dim": 3072, "train_seq_len": 128,
    "train_max_length": 1024, "train_batch_size": 2, "train_rounds": 8, "train_steps": 1,
}
#: ``--tiny``: toy sizes for tests, a few seconds.
TINY = {
    "vocab_size": 40, "num_layers": 1, "num_heads": 2, "hidden_dim": 16, "mlp_dim": 32,
    "max_length": 10, "prompt_length": 4, "rounds": 1, "steps": 1, "warmup": 1,
    "train_vocab_size": 40, "train_num_layers": 1, "train_num_heads": 2,
    "train_hidden_dim": 16, "train_mlp_dim": 32, "train_seq_len": 8,
    "train_max_length": 8, "train_batch_size": 2, "train_rounds": 1, "train_steps": 1,
}
BATCH_SIZES = {"full": (1, 8), "tiny": (2,)}

CACHED, UNCACHED, HUB = "kapps cached", "kapps uncached", "keras-hub"


def parse_args(argv=None):
    """The flags; ``--tiny`` swaps in the toy defaults, explicit flags win over both."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true",
                        help="toy sizes and one round of one step (tests); explicit flags win")
    for flag in FULL:
        parser.add_argument(f"--{flag.replace('_', '-')}", type=int, default=None,
                            help=f"default {FULL[flag]} ({TINY[flag]} with --tiny)")
    parser.add_argument("--batch-sizes", default=None,
                        help="generation batch sizes, comma-separated (default 1,8; 2 with "
                        "--tiny)")
    parser.add_argument("--dropout", type=float, default=0.1,
                        help="dropout (GPT-2: 0.1; active in training only)")
    parser.add_argument("--jit-compile", default="both", choices=["off", "on", "both"],
                        help="generation without XLA, with XLA, or both (alternating)")
    parser.add_argument("--train-jit-compile", default="off", choices=["off", "on", "both"],
                        help="training without XLA, with XLA, or both (alternating)")
    parser.add_argument("--part", default="both", choices=["generation", "training", "both"])
    parser.add_argument("--out", default=os.path.join("benchmarks", "results",
                                                      "gpt_vs_keras_hub.json"))
    args = parser.parse_args(argv)
    size_defaults(parser, args, TINY if args.tiny else FULL)
    if args.batch_sizes is None:
        args.batch_sizes = BATCH_SIZES["tiny" if args.tiny else "full"]
    else:
        try:
            args.batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
        except ValueError:
            parser.error(f"--batch-sizes={args.batch_sizes!r} is not allowed; expected "
                         "comma-separated positive integers")
        if not args.batch_sizes or min(args.batch_sizes) < 1:
            parser.error(f"--batch-sizes={args.batch_sizes} is not allowed; expected "
                         "positive integers")
    if not 1 <= args.prompt_length < args.max_length:
        parser.error(f"--prompt-length={args.prompt_length} is not allowed; expected 1 to "
                     f"--max-length - 1 = {args.max_length - 1}")
    if args.train_seq_len > args.train_max_length:
        parser.error(f"--train-seq-len={args.train_seq_len} is not allowed; expected at most "
                     f"--train-max-length={args.train_max_length}")
    for prefix in ("", "train_"):
        hidden, heads = getattr(args, f"{prefix}hidden_dim"), getattr(args, f"{prefix}num_heads")
        if hidden % heads:
            parser.error(f"--{prefix.replace('_', '-')}num-heads={heads} does not divide "
                         f"--{prefix.replace('_', '-')}hidden-dim={hidden}")
    if not 0 <= args.dropout < 1:
        parser.error(f"--dropout={args.dropout} is not allowed; expected a rate in [0, 1)")
    return args


def _jits(setting):
    return {"off": [False], "on": [True], "both": [False, True]}[setting]


def _xla(jit):
    return "xla" if jit else "no_xla"


def build_pair(vocab_size, num_layers, num_heads, hidden_dim, mlp_dim, max_length, dropout):
    """keras-hub's ``GPT2CausalLM`` (no preprocessor) and a kapps ``gpt`` of the same sizes
    holding its weights.

    Returns:
        ``(kapps_model, keras_hub_causal_lm, parameters)``.

    Raises:
        RuntimeError: if the parameter counts differ (not the same configuration).
    """
    import keras_hub

    from kapps.models.language.gpt import gpt

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=vocab_size, num_layers=num_layers, num_heads=num_heads,
        hidden_dim=hidden_dim, intermediate_dim=mlp_dim, dropout=dropout,
        max_sequence_length=max_length,
    )
    hub = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    model = gpt(vocab_size=vocab_size, max_length=max_length, num_layers=num_layers,
                num_heads=num_heads, hidden_dim=hidden_dim, mlp_dim=mlp_dim, dropout=dropout)
    counts = (model.count_params(), backbone.count_params())
    if counts[0] != counts[1]:
        raise RuntimeError(
            f"kapps' GPT has {counts[0]:,} parameters, keras-hub's GPT2Backbone {counts[1]:,}; "
            "they are not the same configuration"
        )
    model.get_layer("token_embedding").set_weights(backbone.token_embedding.get_weights())
    model.get_layer("position_embedding").set_weights(backbone.position_embedding.get_weights())
    model.get_layer("final_norm").set_weights(backbone.layer_norm.get_weights())
    for i, decoder in enumerate(backbone.transformer_layers):
        block = model.get_layer(f"block{i + 1}")
        # keras-hub keeps the decoder's sublayers in private attributes (no public accessor);
        # its attention is a Keras MultiHeadAttention, whose layout load_keras_weights reads
        block.attention.load_keras_weights(decoder._self_attention_layer)
        for ours, theirs in (
            (block.attention_norm, decoder._self_attention_layer_norm),
            (block.mlp_dense1, decoder._feedforward_intermediate_dense),
            (block.mlp_dense2, decoder._feedforward_output_dense),
            (block.mlp_norm, decoder._feedforward_layer_norm),
        ):
            ours.set_weights(theirs.get_weights())
    return model, hub, counts[0]


def prompts(batch_size, prompt_length, max_length, vocab_size, seed=0):
    """Random prompt ids ``(batch, prompt_length)`` and keras-hub's padded inputs (the ids in
    a ``(batch, max_length)`` buffer of zeros and the mask of the prompt positions)."""
    import numpy as np

    rng = np.random.default_rng(seed + batch_size)
    ids = rng.integers(1, vocab_size, (batch_size, prompt_length)).astype("int32")
    padded = np.zeros((batch_size, max_length), "int32")
    padded[:, :prompt_length] = ids
    mask = np.zeros((batch_size, max_length), bool)
    mask[:, :prompt_length] = True
    return ids, {"token_ids": padded, "padding_mask": mask}


def pair_summary(per_step, first, second):
    """Rates (per second) of two lists of per-round step times, the ratio of medians
    (first / second in speed), the per-round ratios and their median."""
    (first_rate, second_rate), ratio, rounds = rate_summary(per_step, first, second)
    return {"first_per_s": first_rate, "second_per_s": second_rate, "ratio": ratio,
            "median_round_ratio": statistics.median(rounds), "round_ratios": rounds}


def bench_generation(args):
    """Time cached and uncached kapps generation and keras-hub's ``generate`` in
    alternating rounds; check first that all three give the same tokens."""
    import keras
    import numpy as np

    from kapps.models.language.generation import Generator

    keras.backend.clear_session()
    model, hub, params = build_pair(args.vocab_size, args.num_layers, args.num_heads,
                                    args.hidden_dim, args.mlp_dim, args.max_length, args.dropout)
    jits = _jits(args.jit_compile)
    new_tokens = args.max_length - args.prompt_length
    record = {"parameters": params, "new_tokens": new_tokens, "effective_jit_compile": {}}

    # the same function: logits of a random sequence agree
    ids, hub_inputs = prompts(2, args.max_length, args.max_length, args.vocab_size, seed=1)
    ours = np.asarray(model(ids, training=False))
    theirs = np.asarray(hub(hub_inputs, training=False))
    record["max_logit_difference"] = float(np.max(np.abs(ours - theirs)))
    if not record["max_logit_difference"] <= 1e-3:
        raise RuntimeError(
            f"kapps' and keras-hub's logits differ by {record['max_logit_difference']:.3g} "
            "(allowed 1e-3); they do not compute the same function"
        )

    # keras-hub: compile() resets the generate function; keep one per XLA setting
    hub_functions = {}
    for jit in jits:
        hub.compile(sampler="greedy", jit_compile=jit)
        hub_functions[jit] = hub.make_generate_function()
        record["effective_jit_compile"][_xla(jit)] = bool(hub.jit_compile)

    def hub_generate(inputs, jit):
        hub.generate_function = hub_functions[jit]
        return hub.generate(dict(inputs), stop_token_ids=None)["token_ids"]

    generators = {(CACHED, jit): Generator(model, args.max_length, sampler="greedy",
                                           use_cache=True, jit_compile=jit) for jit in jits}
    # The uncached loop at the smallest batch only, without XLA: it is the slow reference
    # (at batch 8 one call takes ~14 s here), and XLA makes it worse: its prefix changes
    # length at every step, which XLA compiled for 3.4 minutes into a loop slower than
    # TensorFlow's, whose greedy tokens at batch 1 differed from the cached ones.
    uncached_batch = min(args.batch_sizes)
    generators[(UNCACHED, False)] = Generator(model, args.max_length, sampler="greedy",
                                              use_cache=False, jit_compile=False)

    # One flat set of functions ("label, xla setting @ batch"), one mode and one "jit" key
    # for alternate_rounds: every function alternates with every other.
    steps, labels, agreement = {}, {}, {}
    for batch in args.batch_sizes:
        mode = f"batch{batch}"
        prompt, inputs = prompts(batch, args.prompt_length, args.max_length, args.vocab_size)
        functions = {}
        for (kind, jit), generator in generators.items():
            if kind == CACHED or batch == uncached_batch:
                functions[f"{kind}, {_xla(jit)}"] = lambda g=generator, p=prompt: g(p)
        for jit in jits:
            functions[f"{HUB}, {_xla(jit)}"] = lambda i=inputs, j=jit: np.asarray(
                hub_generate(i, j))
        labels[mode] = list(functions)
        # the first calls trace and compile; their tokens must agree (greedy, same weights)
        outputs = {label: np.asarray(f()) for label, f in functions.items()}
        if not all(np.array_equal(t[:, :args.prompt_length], prompt) for t in outputs.values()):
            raise RuntimeError("an output does not start with its prompt")
        reference = outputs[labels[mode][0]][:, args.prompt_length:]
        agreement[mode] = {label: float(np.mean(tokens[:, args.prompt_length:] == reference))
                           for label, tokens in outputs.items()}
        for label, function in functions.items():
            steps[f"{label} @ {mode}"] = {"generate": {None: function}}
    record["token_agreement"] = agreement

    times = alternate_rounds(steps, warmup=max(args.warmup - 1, 0), repeats=args.rounds,
                             steps_per_round=args.steps, name="gpt generation")
    record["tokens_per_s"], record["step_s"], record["comparisons"] = {}, {}, {}
    for batch in args.batch_sizes:
        mode, per_step = f"batch{batch}", batch * new_tokens
        t = {label: times[f"{label} @ {mode}"]["generate"][None] for label in labels[mode]}
        record["tokens_per_s"][mode] = {
            label: per_step / statistics.median(seconds) for label, seconds in t.items()}
        record["step_s"][mode] = t
        pairs = [(f"{CACHED}, {_xla(jit)}", f"{HUB}, {_xla(jit)}") for jit in jits]
        if False in jits and batch == uncached_batch:
            pairs.append((f"{CACHED}, no_xla", f"{UNCACHED}, no_xla"))
        if len(jits) == 2:
            pairs += [(f"{kind}, xla", f"{kind}, no_xla") for kind in (CACHED, HUB)]
        record["comparisons"][mode] = {
            f"{first} / {second}": pair_summary(per_step, t[first], t[second])
            for first, second in pairs}
    del model, generators, steps
    keras.backend.clear_session()
    gc.collect()
    return record


def bench_training(args):
    """Time ``train_on_batch`` of kapps' GPT and keras-hub's GPT2CausalLM at the training
    sizes in alternating rounds."""
    import keras
    import numpy as np

    keras.backend.clear_session()
    model, hub, params = build_pair(
        args.train_vocab_size, args.train_num_layers, args.train_num_heads,
        args.train_hidden_dim, args.train_mlp_dim, args.train_max_length, args.dropout)
    jits = _jits(args.train_jit_compile)
    rng = np.random.default_rng(0)
    shape = (args.train_batch_size, args.train_seq_len)
    x = rng.integers(0, args.train_vocab_size, shape).astype("int32")
    y = rng.integers(0, args.train_vocab_size, shape).astype("int32")
    hub_x = {"token_ids": x, "padding_mask": np.ones(shape, bool)}
    record = {"parameters": params, "effective_jit_compile": {}, "losses": {}}

    steps = {"kapps": {"training": {}}, "keras-hub": {"training": {}}}
    for label, m, inputs in (("kapps", model, x), ("keras-hub", hub, hub_x)):
        optimizer = keras.optimizers.AdamW(1e-4)
        # its slots exist before the first step, so no train function is traced twice
        optimizer.build(m.trainable_variables)
        functions, effective = {}, {}
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        for jit in jits:
            if label == "keras-hub":  # CausalLM.compile adds an accuracy metric unless told
                m.compile(optimizer=optimizer, loss=loss, weighted_metrics=[],
                          sampler="greedy", jit_compile=jit)
            else:
                m.compile(optimizer=optimizer, loss=loss, jit_compile=jit)
            m.make_train_function()
            functions[jit] = m.train_function
            effective[_xla(jit)] = bool(m.jit_compile)
        record["effective_jit_compile"][label] = effective
        record["losses"][label] = {}
        for jit in jits:
            def train(m=m, f=functions[jit], jit=jit, label=label, inputs=inputs):
                m.train_function = f  # the function compile(jit_compile=jit) made
                record["losses"][label][_xla(jit)] = float(m.train_on_batch(inputs, y))

            steps[label]["training"][jit] = train

    times = alternate_rounds(steps, warmup=args.warmup, repeats=args.train_rounds,
                             steps_per_round=args.train_steps, name="gpt training")
    per_step = args.train_batch_size * args.train_seq_len
    record["tokens_per_step"] = per_step
    record["comparisons"] = {}
    for jit in jits:
        entry = pair_summary(per_step, times["kapps"]["training"][jit],
                             times["keras-hub"]["training"][jit])
        entry["kapps_step_s"] = times["kapps"]["training"][jit]
        entry["keras_hub_step_s"] = times["keras-hub"]["training"][jit]
        record["comparisons"][f"kapps / keras-hub, {_xla(jit)}"] = entry
    if len(jits) == 2:
        for label in ("kapps", "keras-hub"):
            record["comparisons"][f"{label}, xla / no_xla"] = pair_summary(
                per_step, times[label]["training"][True], times[label]["training"][False])
    del model, hub, steps
    keras.backend.clear_session()
    gc.collect()
    return record


def _row(name, entry, unit="tokens/s"):
    low, high = entry["round_ratios"][0], entry["round_ratios"][-1]
    return (f"| {name} | {entry['first_per_s']:,.0f} | {entry['second_per_s']:,.0f} | "
            f"{entry['ratio']:.2f} | {entry['median_round_ratio']:.2f} | {low:.2f}..{high:.2f} |")


def markdown(results):
    """The results as markdown: the configuration, then one table per part."""
    config, env = results["config"], results["environment"]
    lines = [
        "# kapps GPT vs keras-hub GPT-2",
        "",
        f"`{results['command']}`: TensorFlow {env['tensorflow']}, Keras {env['keras']}, "
        f"keras-hub {env['keras_hub']}, {env['cpus']} CPUs, float32. Ratios are first / "
        "second in tokens/s (above 1: the first is faster), as the ratio of medians, the "
        "median per-round ratio and the per-round range.",
    ]
    header = ["| comparison | first tokens/s | second tokens/s | ratio | median round ratio "
              "| round range |", "|---|---|---|---|---|---|"]
    if "generation" in results:
        g = results["generation"]
        lines += [
            "", "## Generation (greedy)", "",
            f"Vocabulary {config['vocab_size']}, {config['num_layers']} layers, width "
            f"{config['hidden_dim']}, {config['num_heads']} heads, MLP {config['mlp_dim']} "
            f"({g['parameters']:,} parameters); a {config['prompt_length']}-token prompt "
            f"completed to {config['max_length']} ({g['new_tokens']} new tokens per row); "
            f"{config['rounds']} alternating rounds of {config['steps']} call(s). Same weights "
            f"on both sides: logits agree to {g['max_logit_difference']:.1e}.",
        ]
        for mode, comparisons in g["comparisons"].items():
            lines += ["", f"**{mode.replace('batch', 'batch ')}**", ""] + header
            lines += [_row(name, entry) for name, entry in comparisons.items()]
            agree = g["token_agreement"][mode]
            lines += ["", f"Generated tokens equal to {next(iter(agree))}'s: " + ", ".join(
                f"{label} {value:.0%}" for label, value in agree.items())]
    if "training" in results:
        t = results["training"]
        lines += [
            "", "## Training (train_on_batch, AdamW, sparse cross-entropy on tied logits)", "",
            f"Vocabulary {config['train_vocab_size']}, {config['train_num_layers']} layers, "
            f"width {config['train_hidden_dim']}, {config['train_num_heads']} heads, MLP "
            f"{config['train_mlp_dim']}, dropout {config['dropout']} ({t['parameters']:,} "
            f"parameters); batch {config['train_batch_size']} x {config['train_seq_len']} "
            f"tokens; {config['train_rounds']} alternating rounds of {config['train_steps']} "
            "step(s).", "",
        ] + header + [_row(name, entry) for name, entry in t["comparisons"].items()]
    return "\n".join(lines) + "\n"


def main(argv=None):
    """Run the benchmark; print and write the results (JSON at ``--out``, markdown beside
    it). Returns the results as a dict."""
    args = parse_args(argv)
    import keras
    import keras_hub
    import tensorflow as tf

    results = {
        "command": " ".join(["python benchmarks/gpt_vs_keras_hub.py"]
                            + list(sys.argv[1:] if argv is None else argv)),
        "environment": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "keras_hub": keras_hub.__version__,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
        "config": {key: getattr(args, key) for key in FULL}
        | {"tiny": args.tiny, "batch_sizes": list(args.batch_sizes), "dropout": args.dropout,
           "jit_compile": args.jit_compile, "train_jit_compile": args.train_jit_compile,
           "part": args.part, "sampler": "greedy", "dtype": "float32", "optimizer": "adamw"},
    }
    policy = keras.mixed_precision.global_policy()
    start = time.perf_counter()
    try:
        keras.mixed_precision.set_global_policy("float32")
        if args.part in ("generation", "both"):
            results["generation"] = bench_generation(args)
        if args.part in ("training", "both"):
            results["training"] = bench_training(args)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    results["wall_s"] = time.perf_counter() - start

    text = markdown(results)
    print("\n" + text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    md_path = os.path.splitext(args.out)[0] + ".md"
    with open(md_path, "w") as f:
        f.write(text)
    print(f"wrote {args.out} and {md_path} ({results['wall_s']:.0f} s)")
    return results


if __name__ == "__main__":
    main()
