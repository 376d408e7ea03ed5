"""A character-level GPT on tiny Shakespeare: next-character prediction, then samples.

    python -m recipes.gpt_shakespeare --data-dir ../shared/tfds --jit-compile
    python -m recipes.gpt_shakespeare --generate "ROMEO:" --length 300

Trains ``kapps.models.language.gpt`` (Radford et al. 2019: pre-LN blocks, causal attention,
tied output projection) on TFDS ``tiny_shakespeare`` (Karpathy's char-rnn corpus, 1.0M
training characters), with keras-hub's ``UnicodeCodepointTokenizer`` (characters as ASCII
code points), under a ``tf.distribute`` strategy. As nanoGPT's character model: random
windows of the training text, AdamW (beta2 0.99, weight decay 0.1 on matrices), gradient
clipping at 1, linear warm-up then cosine decay. The defaults are sized for a 2-core CPU and
a 30-minute budget: 4 layers of width 128 with 4 heads, a 128-character context; nanoGPT's
GPU model is ``--layers 6 --hidden-dim 384 --heads 6 --context 256 --dropout 0.2``
(``kapps.models.gpt_char``).

The budget is time, not steps: ``--max-minutes`` (30) of training, the cosine decay of the
learning rate following the fraction of the budget spent (``kapps.training.TimeBudgetSchedule``,
as "Cramming" schedules BERT by time), so the decay completes on a slow or shared machine
too; ``--max-minutes 0`` decays over ``--epochs`` x ``--steps-per-epoch`` steps instead. Reported (``metrics.json``): loss in nats per character
and perplexity on the validation and test splits (every character scored once, in
non-overlapping windows), training characters per second, and whether the TFLite
generator's greedy tokens equal the Keras greedy tokens on the sample prompts.

Measured on a 2-core CPU, with ``--jit-compile`` (XLA trained this model about twice as fast
as without it) and the defaults otherwise (826,112 parameters; the cores shared for part of
the run with a helper's measurements): in the 30-minute budget 1,533 steps of 32 x 128
characters (6.3M characters, 6 passes over the training text); validation loss **1.562**
nats per character (perplexity 4.77), test 1.672 (perplexity 5.32; tiny Shakespeare's test
split is the harder one); the TFLite generator's greedy tokens equal Keras' on 5/5 prompts.
32 minutes in all with evaluation and exports. nanoGPT's 10.7M-parameter model reaches 1.47
on a GPU.

Writes ``--out`` (default ``saved_models/gpt_shakespeare/``): ``model.keras``,
``saved_model/``, ``model.tflite`` (logits of one context window), ``generator.tflite``
(prefill, key/value cache and the greedy loop in one builtin-only graph: ``prompt_ids`` and
``prompt_length`` in, ``token_ids`` out), ``samples.txt`` (top-k samples from the cached
generator), ``metrics.json``, ``history.csv``, ``curves.png``. Running the same command again
resumes an interrupted run. ``--generate`` samples from the trained model in ``--out`` and
exits. ``--quick`` runs the whole path with a tiny model on the real text (tests).

Data: TFDS ``tiny_shakespeare`` (``--data-dir`` or ``TFDS_DATA_DIR``; downloaded by TFDS when
missing and online).
"""

import os
import sys
import time

from recipes._common import add_run_flags, parse, recipe_parser, run_recipe, write_metrics

RECIPE = "gpt_shakespeare"
QUICK = {"layers": 1, "hidden_dim": 16, "heads": 2, "context": 32, "steps_per_epoch": 4,
         "epochs": 1, "warmup_steps": 2, "sample_length": 48, "max_minutes": 10}
PROMPTS = ("ROMEO:", "JULIET:\nO ", "First Citizen:\n", "KING HENRY", "To be, or not")
GENERATOR_FILE = "generator.tflite"


def parse_args(argv=None):
    parser = recipe_parser(RECIPE, __doc__)
    parser.add_argument("--data-dir", help="TFDS data directory holding tiny_shakespeare (default: TFDS_DATA_DIR)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden-dim", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--mlp-dim", type=int, help="MLP width (default 4 x --hidden-dim)")
    parser.add_argument("--context", type=int, default=128, help="characters per training window (the model's positions)")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=1000, help="at most this many epochs (the time budget ends the default run first)")
    parser.add_argument("--steps-per-epoch", type=int, default=100, help="batches of random windows per epoch (validation after each)")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="peak learning rate")
    parser.add_argument("--min-learning-rate", type=float, default=1e-4, help="end of the cosine decay")
    parser.add_argument("--warmup-steps", type=int, default=50)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--max-minutes", type=float, default=30.0, help="training time budget: the cosine decay follows it and training stops when it is spent (0: a step schedule over --epochs)")
    parser.add_argument("--sample-length", type=int, default=500, help="characters per sample in samples.txt")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--generate", metavar="PROMPT", help="sample from the trained model in --out and exit")
    parser.add_argument("--length", type=int, default=300, help="with --generate: characters to add")
    add_run_flags(parser, RECIPE, batch_size=32, batch_help="windows per replica (default 32)",
                  quick_help="a tiny model for a few steps on the real text, for tests")
    args = parse(parser, argv, positive=(
        "layers", "hidden_dim", "heads", "context", "epochs", "steps_per_epoch", "sample_length",
        "top_k", "length", "warmup_steps",
    ))
    if args.mlp_dim is not None and args.mlp_dim < 1:
        parser.error(f"--mlp-dim={args.mlp_dim} is not allowed; expected a positive integer")
    if not 0 <= args.dropout < 1:
        parser.error(f"--dropout={args.dropout} is not allowed; expected a number in [0, 1)")
    if args.hidden_dim % args.heads:
        parser.error(f"--hidden-dim={args.hidden_dim} is not divisible by --heads={args.heads}")
    for flag in ("learning_rate", "min_learning_rate", "temperature"):
        if getattr(args, flag) <= 0:
            parser.error(f"--{flag.replace('_', '-')}={getattr(args, flag)} is not allowed; expected a number > 0")
    if args.weight_decay < 0 or args.max_minutes < 0:
        parser.error("--weight-decay and --max-minutes must be >= 0")
    return args


def sample_text(generator, prompt, length):
    """``prompt`` and ``length`` more characters from the cached ``Generator``. Past the
    model's context the window slides: the last half of the text so far starts the next
    chunk."""
    from kapps.data import language_model as lm

    text = prompt
    while len(text) - len(prompt) < length:
        keep = text[-(generator.max_length // 2):]
        text += lm.decode(generator([lm.encode(keep)])[0])[len(keep):]
    return text[: len(prompt) + length]


def _sampler(model, args):
    from kapps.models.language import Generator

    context = model.get_layer("position_embedding").num_positions
    return Generator(model, context, sampler="top_k", top_k=args.top_k,
                     temperature=args.temperature, seed=args.seed)


def generate_only(args):
    """``--generate``: sample from ``model.keras`` in ``--out``."""
    path = os.path.join(args.out, "model.keras")
    if not os.path.isfile(path):
        raise ValueError(f"no model.keras in --out={args.out!r}; train first (same --out).")
    import keras

    import kapps.layers  # noqa: F401  (registers the layers)
    model = keras.saving.load_model(path, compile=False)  # no optimizer needed to generate
    text = sample_text(_sampler(model, args), args.generate, args.length)
    print(text)
    return {"text": text}


def main(argv=None):
    """Run the recipe; return the metrics dictionary (also written to ``metrics.json``)."""
    args = parse_args(argv)
    if args.generate:
        return generate_only(args)
    start = time.time()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    import keras
    import keras_hub
    import numpy as np

    from kapps import export, plots, training
    from kapps.data import language_model as lm
    from kapps.models.language import Generator, gpt
    from recipes._common import setup

    strategy, batch, out, chief = setup(args)
    texts = {split: lm.tiny_shakespeare(split, args.data_dir, download=not args.quick)
             for split in lm.SHAKESPEARE_SPLITS}
    ids = {split: lm.encode(text) for split, text in texts.items()}
    if args.quick:
        ids = {"train": ids["train"][:20_000], "validation": ids["validation"][:2_000],
               "test": ids["test"][:2_000]}
    train_ds = lm.random_windows(ids["train"], args.context, batch, seed=args.seed)
    val_ds = lm.tiled_windows(ids["validation"], args.context, batch)
    test_ds = lm.tiled_windows(ids["test"], args.context, batch)
    total_steps = args.epochs * args.steps_per_epoch

    with strategy.scope():
        model = gpt(
            vocab_size=lm.CHAR_VOCAB_SIZE, max_length=args.context, num_layers=args.layers,
            num_heads=args.heads, hidden_dim=args.hidden_dim,
            mlp_dim=args.mlp_dim or 4 * args.hidden_dim, dropout=args.dropout, name=RECIPE,
        )
        warmup = min(args.warmup_steps, total_steps - 1)
        if args.max_minutes:  # the cosine follows the time budget, so it always completes
            schedule = training.TimeBudgetSchedule(args.learning_rate, args.min_learning_rate, warmup)
        else:
            schedule = keras.optimizers.schedules.CosineDecay(
                0.0, decay_steps=max(1, total_steps - warmup), alpha=args.min_learning_rate / args.learning_rate,
                warmup_target=args.learning_rate, warmup_steps=warmup,
            )
        model.compile(
            optimizer=keras.optimizers.AdamW(schedule, beta_2=0.99, weight_decay=args.weight_decay, clipnorm=1.0),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras_hub.metrics.Perplexity(from_logits=True, name="perplexity")],
            jit_compile=args.jit_compile,
        )
    # decay the weight matrices only, not biases, LayerNorms or the embeddings (nanoGPT)
    model.optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "embeddings"])
    budget = []
    if args.max_minutes:
        budget = [training.TimeBudget(args.max_minutes, schedule, os.path.join(out, "time_budget.json"))]
    history = training.fit(
        model, train_ds, val_ds, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
        out_dir=out, monitor="val_loss", extra_callbacks=budget,
    )
    train_seconds = time.time() - start
    if not chief:
        return {}

    def evaluate(dataset):
        loss, perplexity = model.evaluate(dataset, verbose=0)
        return {"loss_nats_per_char": round(float(loss), 4), "perplexity": round(float(perplexity), 3)}

    val, test = evaluate(val_ds), evaluate(test_ds)
    sampler = _sampler(model, args)
    samples = [sample_text(sampler, prompt, args.sample_length) for prompt in PROMPTS]
    with open(os.path.join(out, "samples.txt"), "w", encoding="utf-8") as f:
        for prompt, text in zip(PROMPTS, samples):
            f.write(f"--- prompt {prompt!r} (top-k {args.top_k}, temperature {args.temperature})\n{text}\n\n")

    window = ids["validation"][: args.context][None]
    reports = export.export_all(model, out, sample_inputs=window)
    flatbuffer = export.generator_to_tflite(model, os.path.join(out, GENERATOR_FILE), max_length=args.context)
    runner = export.load_tflite(flatbuffer)
    greedy = Generator(model, args.context)
    identical = 0
    for prompt in PROMPTS:
        prompt_ids = lm.encode(prompt)
        padded = np.zeros((1, args.context), "int32")
        padded[0, : len(prompt_ids)] = prompt_ids
        tflite_ids = runner.run({"prompt_ids": padded, "prompt_length": np.array([len(prompt_ids)], "int32")})
        identical += int(np.array_equal(np.asarray(tflite_ids["token_ids"])[0], greedy([prompt_ids])[0]))
    plots.plot_history(history, os.path.join(out, "curves.png"), title="GPT, tiny Shakespeare (characters)")

    steps_done = int(model.optimizer.iterations.numpy())
    metrics = {
        "recipe": RECIPE, "quick": args.quick, "data": "TFDS tiny_shakespeare (characters)",
        "characters": {split: int(len(v)) for split, v in ids.items()},
        "config": {k: getattr(args, k) for k in ("layers", "hidden_dim", "heads", "mlp_dim", "context", "dropout", "learning_rate", "weight_decay", "max_minutes")},
        "params": model.count_params(), "vocabulary": lm.CHAR_VOCAB_SIZE,
        "epochs": len(history.epoch), "steps": steps_done, "planned_steps": total_steps,
        "global_batch_size": batch, "replicas": strategy.num_replicas_in_sync, "strategy": args.strategy,
        "train_seconds": round(train_seconds, 1),
        "train_chars_per_second": round(steps_done * batch * args.context / max(train_seconds, 1e-9)),
        "validation": val, "test": test,
        "best_val_loss": round(float(min(history.history["val_loss"])), 4),
        "exports": reports,
        "tflite_generator": {"identical_to_keras_greedy": identical, "checked": len(PROMPTS), "bytes": len(flatbuffer)},
    }
    metrics["wall_seconds"] = round(time.time() - start, 1)
    write_metrics(
        metrics, out,
        f"GPT on tiny Shakespeare: validation {val['loss_nats_per_char']:.3f} nats/char "
        f"(perplexity {val['perplexity']:.2f}), test {test['loss_nats_per_char']:.3f}; "
        f"TFLite generator identical on {identical}/{len(PROMPTS)}",
    )
    return metrics


if __name__ == "__main__":
    sys.exit(run_recipe(main))
