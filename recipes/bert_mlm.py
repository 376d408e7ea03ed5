"""BERT pre-trained as a masked language model on English text, then fine-tuned to detect paraphrases.

    python -m recipes.bert_mlm --data-dir ../shared/data

Pre-training (Devlin et al. 2019, section 3.1): a small ``kapps.models.language.bert`` learns to
fill in masked WordPiece tokens (15% of the tokens; 80% ``[MASK]``, 10% random, 10% kept, by
keras-hub's ``MaskedLMMaskGenerator``, drawn anew every epoch) of the English side of the
shared corpora: tiny Shakespeare passages, Multi30k captions and Tatoeba sentences
(``kapps.data.text.english_corpus``), with a lowercased WordPiece vocabulary learnt from that
training text. AdamW (weight decay 0.01, not on biases and LayerNorm), 10% linear warm-up then
cosine decay, gradient norm clipped at 1. Reported: masked-token accuracy and perplexity
(``keras_hub.metrics.Perplexity``) on held-out text (held-out Shakespeare passages, Multi30k
``test_2016_flickr`` and the Tatoeba test groups).

Fine-tuning (section 4.1): paraphrase detection on Tatoeba. Two English sentences that translate
the same French sentence are paraphrases; each is balanced by a hard negative, a sentence of
similar length from another group sharing words with it (``kapps.data.text.paraphrase_pairs``).
Groups are split 80/10/10 so no sentence crosses splits, and the val and test groups are left
out of the pre-training text. Input ``[CLS] a [SEP] b [SEP]`` with segment ids; the classifier
reads the pooled ``[CLS]`` vector. The same classifier is fine-tuned twice with the same
budget (epochs, batch, learning rate, seed): from the pre-trained backbone and from a random
one; the epoch with the best validation accuracy is scored on the test pairs. The word-overlap
baseline (the best Jaccard threshold on the training pairs) says how far words alone go.

Defaults: BERT-Tiny's sizes (Turc et al. 2019: 2 layers of width 128, 2 heads, MLP 512) with
64 positions and the WordPiece vocabulary learnt here (an 8,000-piece target; about 5,900
come out); pre-training 8 epochs of 300 steps of 64 sequences (about 2 passes over the
76,000 training texts) at a peak rate of 5e-4; fine-tuning 4 epochs of 32 pairs at 1e-4 (not
tuned). The pre-training objective is the masked-language model alone, without the
next-sentence task, so the pooler (which only that task trains) starts fine-tuning untrained
in both runs.

Measured on a 2-core CPU shared with the test suite, at a shorter schedule than the defaults
(``--epochs 4 --steps-per-epoch 250 --finetune-epochs 3``: 1,000 pre-training steps, 1.1M
parameters, a 5,265-piece vocabulary): held-out masked-token accuracy 0.224, perplexity 161
(test text, 6,399 texts); paraphrase test accuracy (954 pairs) **0.599 fine-tuned from the
pre-trained backbone against 0.521 from scratch** with the same budget; the word-overlap
baseline reaches 0.668, so neither model is good yet: one sixth of a pass over the text is
too little pre-training to beat counting shared words. The TFLite classifier scores the same
0.599 (largest logit difference 6.3e-7). 16 minutes in all.

Writes ``--out`` (default ``saved_models/bert_mlm/``): ``model.keras``, ``saved_model/``,
``model.tflite`` (the fine-tuned pre-trained classifier; inputs ``token_ids``, ``segment_ids``,
``padding_mask``) with ``vocab.txt`` beside it, ``metrics.json``, ``history.csv`` and
``curves.png`` (pre-training), ``finetune_curves.png`` (both fine-tunings), ``samples.txt``
(masked-token guesses and paraphrase decisions on held-out text), and one folder per phase
(``pretrain/``, ``finetune_pretrained/``, ``finetune_scratch/``). Running the same command
again resumes an interrupted run: a finished phase is read back, an unfinished one continues
from its last completed epoch. ``--quick`` runs every phase for a few steps on a few hundred
real sentences (tests).

Data: tiny Shakespeare (karpathy/char-rnn), Multi30k (Elliott et al. 2016), Tatoeba's
English-French pairs (manythings.org, CC-BY 2.0 FR); ``shared/data`` holds all three.
"""

import os
import shutil
import sys
import time

from recipes._common import add_run_flags, parse, recipe_parser, run_recipe

RECIPE = "bert_mlm"
CORPORA = ("shakespeare", "multi30k", "fra_eng")  # kapps.data.text.CORPORA (no TensorFlow import here)
QUICK = {
    "layers": 1, "hidden_dim": 32, "heads": 2, "mlp_dim": 64, "max_length": 32, "vocab_size": 300,
    "epochs": 1, "steps_per_epoch": 3, "finetune_epochs": 1, "finetune_batch_size": 16,
}
QUICK_TEXTS = {"train": 400, "val": 48, "test": 48}
QUICK_POSITIVES = {"train": 96, "val": 24, "test": 24}
VAL_TEXTS = 2_000  # held-out texts scored after every pre-training epoch
PHASE_DONE = "final.weights.h5"


def parse_args(argv=None):
    parser = recipe_parser(RECIPE, __doc__)
    parser.add_argument("--data-dir", help="the folder holding tinyshakespeare/, multi30k/ and fra-eng/ (shared/data)")
    parser.add_argument("--corpora", nargs="+", choices=CORPORA, default=list(CORPORA), help="pre-training text (default: all three)")
    parser.add_argument("--vocab-size", type=int, default=8000, help="target WordPiece vocabulary (the learner returns somewhat fewer)")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per sequence, special tokens included")
    parser.add_argument("--layers", type=int, default=2, help="encoder blocks (default 2 as BERT-Tiny; BERT-base: 12)")
    parser.add_argument("--hidden-dim", type=int, default=128, help="width (default 128 as BERT-Tiny; BERT-base: 768)")
    parser.add_argument("--heads", type=int, default=2, help="attention heads (default 2 as BERT-Tiny; BERT-base: 12)")
    parser.add_argument("--mlp-dim", type=int, default=512, help="MLP width (default 512 as BERT-Tiny; BERT-base: 3072)")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=8, help="pre-training epochs of --steps-per-epoch steps")
    parser.add_argument("--steps-per-epoch", type=int, default=300)
    parser.add_argument("--learning-rate", type=float, default=5e-4, help="peak pre-training learning rate")
    parser.add_argument("--finetune-epochs", type=int, default=4)
    parser.add_argument("--finetune-batch-size", type=int, default=32, help="sentence pairs per replica")
    parser.add_argument("--finetune-learning-rate", type=float, default=1e-4)
    parser.add_argument("--fixed-length", action="store_true", help="pad every batch to --max-length (one step shape; implied by --jit-compile and --quick) instead of batching by length")
    add_run_flags(parser, RECIPE, batch_size=64, batch_help="pre-training sequences per replica (default 64)", quick_help="every phase for a few steps on a few hundred real sentences, for tests")
    args = parse(parser, argv, positive=("vocab_size", "max_length", "layers", "hidden_dim", "heads", "mlp_dim", "epochs", "steps_per_epoch", "finetune_epochs", "finetune_batch_size"))
    if not args.data_dir:
        parser.error("--data-dir is required: the folder holding tinyshakespeare/, multi30k/ and fra-eng/ (shared/data)")
    if not os.path.isdir(args.data_dir):
        parser.error(f"--data-dir={args.data_dir!r} is not a folder; expected the folder holding tinyshakespeare/, multi30k/ and fra-eng/")
    if args.hidden_dim % args.heads:
        parser.error(f"--hidden-dim={args.hidden_dim} is not divisible by --heads={args.heads}")
    if args.max_length < 8 or args.vocab_size < 100:
        parser.error(f"--max-length={args.max_length} / --vocab-size={args.vocab_size} is not allowed; expected at least 8 / 100")
    if not 0 <= args.dropout < 1 or args.learning_rate <= 0 or args.finetune_learning_rate <= 0:
        parser.error("--dropout must be in [0, 1), the learning rates positive")
    if args.quick:
        vars(args).update(QUICK)
    # XLA compiles once per shape; a quick run traces each step once
    args.fixed_length = args.fixed_length or args.jit_compile or args.quick
    return args


def _optimizer(peak, total_steps):
    """AdamW as BERT trains: weight decay 0.01 (not on biases and LayerNorm), 10% linear
    warm-up, then (here) cosine decay to zero; global gradient norm clipped at 1."""
    import keras

    warmup = max(1, total_steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, total_steps - warmup), warmup_target=peak, warmup_steps=warmup
    )
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=0.01, epsilon=1e-6, global_clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def _phase(model, folder, fit):
    """Run ``fit()`` unless ``folder`` holds the weights of a finished run; return the history
    (read back from ``history.csv``) as a dict."""
    from kapps.history import read_history

    done = os.path.join(folder, PHASE_DONE)
    if os.path.isfile(done):
        model.load_weights(done)
    else:
        fit()
        model.save_weights(done)
    return read_history(os.path.join(folder, "history.csv"))


def _word_overlap_baseline(train, test):
    """Test accuracy of ``overlap >= t`` with the threshold ``t`` best on the training pairs."""
    import numpy as np

    from kapps.data.text import word_overlap

    def scores(pairs):
        return np.array([word_overlap(a, b) for a, b, _ in pairs]), np.array([y for *_, y in pairs])

    s, y = scores(train)
    best = max(np.unique(s), key=lambda t: np.mean((s >= t) == y))
    s, y = scores(test)
    return {"threshold": round(float(best), 3), "test_accuracy": round(float(np.mean((s >= best) == y)), 4)}


def main(argv=None):
    """Run the recipe; return the metrics dictionary (also written to ``metrics.json``)."""
    args = parse_args(argv)
    start = time.time()
    import random

    import keras
    import keras_hub
    import numpy as np

    from kapps import export, plots, training
    from kapps.data import text
    from kapps.losses import WeightedSparseCategoricalCrossentropy
    from kapps.models.language.bert import bert, bert_classifier, bert_masked_lm
    from recipes._common import setup, write_metrics

    strategy, batch, out, chief = setup(args)
    fra = os.path.join(args.data_dir, "fra-eng", "fra.txt")
    pairs = {s: text.paraphrase_pairs(fra, s, limit=QUICK_POSITIVES[s] if args.quick else None, seed=args.seed) for s in text.TEXT_SPLITS}
    # the fine-tuning val and test sentences stay out of the pre-training text
    held_out = [sentence for s in ("val", "test") for a, b, _ in pairs[s] for sentence in (a, b)]
    texts = {s: text.english_corpus(args.data_dir, s, corpora=args.corpora, exclude=held_out if s == "train" else ()) for s in text.TEXT_SPLITS}
    keep = QUICK_TEXTS if args.quick else {"train": len(texts["train"]), "val": VAL_TEXTS, "test": len(texts["test"])}
    texts = {s: random.Random(args.seed).sample(t, min(keep[s], len(t))) for s, t in texts.items()}

    vocab_path = os.path.join(out, "vocab.txt")
    if not os.path.isfile(vocab_path):
        text.wordpiece_vocabulary(texts["train"], args.vocab_size, vocab_path)
    tokenizer = text.wordpiece_tokenizer(vocab_path)
    vocab_size = tokenizer.vocabulary_size()
    sizes = dict(vocab_size=vocab_size, max_length=args.max_length, num_layers=args.layers, num_heads=args.heads,
                 hidden_dim=args.hidden_dim, mlp_dim=args.mlp_dim, dropout=args.dropout)

    # -- 1. masked-language-model pre-training ------------------------------------------------
    mlm_data = {
        "train": text.masked_lm_dataset(texts["train"], tokenizer, batch, max_length=args.max_length, shuffle=True, seed=args.seed, repeat=True, fixed_length=args.fixed_length),
        "val": text.masked_lm_dataset(texts["val"], tokenizer, batch, max_length=args.max_length, fixed_length=args.fixed_length),
        "test": text.masked_lm_dataset(texts["test"], tokenizer, batch, max_length=args.max_length, fixed_length=args.fixed_length),
    }
    with strategy.scope():
        backbone = bert(**sizes, name="bert")
        # only the next-sentence task (not used here) trains the pooler: leave it out
        backbone.get_layer("pooler").trainable = False
        mlm = bert_masked_lm(backbone)
        mlm.compile(
            optimizer=_optimizer(args.learning_rate, args.epochs * args.steps_per_epoch),
            # ignore_class: the padding of mask_ids; the mean is over the real predictions
            loss=WeightedSparseCategoricalCrossentropy(ignore_class=text.PAD_ID, from_logits=True),
            weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="masked_accuracy"),
                              keras_hub.metrics.Perplexity(from_logits=True, name="perplexity")],
            jit_compile=args.jit_compile,
        )
    folder = os.path.join(out, "pretrain")
    started = time.time()
    pretrain_history = _phase(mlm, folder, lambda: training.fit(
        mlm, mlm_data["train"], mlm_data["val"], epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, out_dir=folder))
    pretrain_seconds = time.time() - started
    backbone_weights = os.path.join(folder, "backbone.weights.h5")
    backbone.save_weights(backbone_weights)
    mlm_test = mlm.evaluate(mlm_data["test"], verbose=0, return_dict=True)

    # -- 2. fine-tuning, from the pre-trained backbone and from scratch -------------------------
    ft_batch = training.global_batch_size(args.finetune_batch_size, strategy)
    ft_data = {s: text.sentence_pair_dataset(p, tokenizer, ft_batch, max_length=args.max_length, shuffle=s == "train", seed=args.seed, repeat=s == "train", fixed_length=args.fixed_length)
               for s, p in pairs.items()}
    steps = max(1, len(pairs["train"]) // ft_batch)
    results, classifiers, histories = {}, {}, {}
    for init in ("pretrained", "scratch"):
        keras.utils.set_random_seed(args.seed)  # same head, dropout and batch order for both
        with strategy.scope():
            ft_backbone = bert(**sizes, name="bert")
            if init == "pretrained":
                ft_backbone.load_weights(backbone_weights)
            model = bert_classifier(ft_backbone, 2, dropout=args.dropout, name=f"bert_paraphrase_{init}")
            model.compile(optimizer=_optimizer(args.finetune_learning_rate, args.finetune_epochs * steps),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], jit_compile=args.jit_compile)
        folder = os.path.join(out, f"finetune_{init}")
        started = time.time()

        def fit(model=model, folder=folder):
            training.fit(model, ft_data["train"], ft_data["val"], epochs=args.finetune_epochs, steps_per_epoch=steps,
                         out_dir=folder, monitor="val_accuracy", save_weights_only=True)
            model.load_weights(os.path.join(folder, training.BEST_WEIGHTS))  # the best validation epoch

        histories[init] = _phase(model, folder, fit)
        scores = model.evaluate(ft_data["test"], verbose=0, return_dict=True)
        results[init] = {"test_accuracy": round(float(scores["accuracy"]), 4), "test_loss": round(float(scores["loss"]), 4),
                         "best_val_accuracy": round(max(histories[init].get("val_accuracy", [float("nan")])), 4),
                         "epochs": len(histories[init].get("epoch", [])), "seconds": round(time.time() - started, 1)}
        classifiers[init] = model
    train_seconds = time.time() - start
    if not chief:
        return {}

    # -- 3. export the fine-tuned pre-trained classifier, check TFLite on every test pair -------
    classifier = classifiers["pretrained"]
    test_batches = list(ft_data["test"].as_numpy_iterator())
    report = export.export_all(classifier, out, sample_inputs=test_batches[0][0], tolerance=1e-3)
    runner = export.load_tflite(os.path.join(out, "model.tflite"))
    labels = np.concatenate([y for _, y in test_batches])
    keras_scores = {k: np.concatenate([keras.ops.convert_to_numpy(m(x, training=False)) for x, _ in test_batches]) for k, m in classifiers.items()}
    tflite_scores = np.concatenate([runner(**x) for x, _ in test_batches])
    shutil.copy(os.path.join(out, "pretrain", "history.csv"), os.path.join(out, "history.csv"))

    # -- 4. pictures, samples, metrics ------------------------------------------------------------
    plots.plot_history(pretrain_history, os.path.join(out, "curves.png"), title="BERT masked-language-model pre-training")
    # one panel per metric, pre-trained and scratch side by side: "accuracy_pretrained", ...
    finetune = dict(sorted((f"{k}_{init}", v) for init, h in histories.items() for k, v in h.items() if k not in ("epoch", "learning_rate")))
    plots.plot_history(finetune, os.path.join(out, "finetune_curves.png"), title="Paraphrase fine-tuning: pre-trained vs random init")
    _write_samples(os.path.join(out, "samples.txt"), mlm, mlm_data["test"], tokenizer, pairs["test"], keras_scores)

    metrics = {
        "recipe": RECIPE, "quick": args.quick,
        "config": {k: getattr(args, k) for k in ("corpora", "layers", "hidden_dim", "heads", "mlp_dim", "max_length", "dropout", "epochs", "steps_per_epoch", "learning_rate", "finetune_epochs", "finetune_learning_rate", "seed")},
        "vocabulary": vocab_size,
        "params": {"backbone": backbone.count_params(), "masked_lm": mlm.count_params(), "classifier": classifier.count_params()},
        "texts": {s: len(t) for s, t in texts.items()},
        "pretraining": {
            "global_batch_size": batch, "steps": int(args.epochs * args.steps_per_epoch), "seconds": round(pretrain_seconds, 1),
            "val": {k: round(float(v[-1]), 4) for k, v in pretrain_history.items() if k.startswith("val_")},
            "test_masked_accuracy": round(float(mlm_test["masked_accuracy"]), 4),
            "test_perplexity": round(float(mlm_test["perplexity"]), 2),
            "test_loss": round(float(mlm_test["loss"]), 4),
        },
        "finetuning": {
            "task": "Tatoeba English paraphrase pairs (kapps.data.text.paraphrase_pairs)",
            "pairs": {s: len(p) for s, p in pairs.items()}, "global_batch_size": ft_batch, "steps_per_epoch": steps,
            **results,
            "word_overlap_baseline": _word_overlap_baseline(pairs["train"], pairs["test"]),
        },
        "tflite": {
            "test_accuracy": round(float(np.mean(tflite_scores.argmax(-1) == labels)), 4),
            "keras_test_accuracy": round(float(np.mean(keras_scores["pretrained"].argmax(-1) == labels)), 4),
            "max_abs_diff_test": float(np.abs(tflite_scores - keras_scores["pretrained"]).max()),
            "export_check": {k: report["tflite"][k] for k in ("max_abs_diff", "tolerance")},
        },
        "files": {k: {"path": os.path.relpath(v["path"], out), "bytes": v["bytes"]} for k, v in report.items()},
        "replicas": strategy.num_replicas_in_sync, "strategy": args.strategy,
        "train_seconds": round(train_seconds, 1),
    }
    metrics["wall_seconds"] = round(time.time() - start, 1)
    write_metrics(
        metrics, out,
        f"BERT: masked-token accuracy {metrics['pretraining']['test_masked_accuracy']:.3f}, perplexity "
        f"{metrics['pretraining']['test_perplexity']:.1f}; paraphrase test accuracy {results['pretrained']['test_accuracy']:.3f} "
        f"pre-trained vs {results['scratch']['test_accuracy']:.3f} from scratch",
    )
    return metrics


def _write_samples(path, mlm, mlm_test, tokenizer, test_pairs, scores, count=12):
    """Masked-token guesses on held-out text and paraphrase decisions on test pairs."""
    import keras

    from kapps.data.text import PAD_ID

    # a batch from the middle: the held-out texts are sorted by length
    inputs, truth, weights = next(iter(mlm_test.skip(max(0, int(mlm_test.cardinality())) // 2)))
    guesses = keras.ops.convert_to_numpy(mlm(inputs, training=False)).argmax(-1)
    lines = ["Masked-language model on held-out text: [MASK]ed (or replaced) tokens as [truth -> guess]\n"]
    for row in range(min(count, len(guesses))):
        tokens = [tokenizer.id_to_token(int(t)) for t in inputs["token_ids"][row].numpy() if t != PAD_ID]
        for position, true_id, guess, weight in zip(inputs["mask_positions"][row].numpy(), truth[row].numpy(), guesses[row], weights[row].numpy()):
            if weight:
                tokens[position] = f"[{tokenizer.id_to_token(int(true_id))} -> {tokenizer.id_to_token(int(guess))}]"
        lines.append(" ".join(tokens[1:-1]).replace(" ##", "").replace(" [##", "[##"))
    lines.append("\nParaphrase test pairs: label, P(paraphrase) fine-tuned from pre-training / from scratch\n")
    probability = {k: keras.ops.convert_to_numpy(keras.ops.softmax(v))[:, 1] for k, v in scores.items()}
    for i, (a, b, label) in enumerate(test_pairs[:2 * count]):
        lines.append(f"{label}  {probability['pretrained'][i]:.2f} / {probability['scratch'][i]:.2f}  {a} | {b}")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(run_recipe(main))
