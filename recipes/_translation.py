"""What the two translation recipes share: data flags, the sentence pairs and their
SentencePiece vocabulary, batches, BLEU of greedy and beam-search decoding on held-out
sentences, the TFLite translator and its check against Keras, the attention picture, and
``--translate`` with an exported translator. Importing this does not import TensorFlow."""

import os
import time

from recipes._common import write_metrics

VOCABULARY_FILE = "sentencepiece.model"
TRANSLATOR_FILE = "translator.tflite"
QUICK_PAIRS = {"train": 256, "val": 32, "test": 24}


def add_translation_flags(parser, *, epochs):
    """Flags of both recipes: data, vocabulary, lengths, epochs, decoding, ``--translate``."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="FILE", help="fra.txt of the Tatoeba English-French pairs (english<TAB>french per line)")
    source.add_argument("--multi30k", metavar="FOLDER", help="Multi30k instead: the folder of {train,val,test_2016_flickr}.{en,fr}.gz")
    parser.add_argument("--reverse", action="store_true", help="French to English")
    parser.add_argument("--vocab-size", type=int, default=8000, help="SentencePiece pieces shared by both languages (default 8000)")
    parser.add_argument("--max-length", type=int, default=48, help="tokens kept per sentence, and the longest translation produced")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument("--length-penalty", type=float, default=0.6, help="alpha of Wu et al. 2016 (default 0.6)")
    parser.add_argument("--beam-sentences", type=int, default=500, help="held-out sentences also decoded with beam search (slower, eager)")
    parser.add_argument("--tflite-sentences", type=int, default=100, help="held-out sentences the TFLite translator is checked on")
    parser.add_argument("--translate", nargs="+", metavar="SENTENCE", help="translate with the exported translator in --out and exit (no training)")


def check_translation_args(parser, args):
    """Usage errors for the shared flags (after ``parse``)."""
    if args.translate:
        return
    if not args.data and not args.multi30k:
        parser.error("one of --data FILE (fra.txt) or --multi30k FOLDER is required")
    if args.data and not os.path.isfile(args.data):
        parser.error(f"--data={args.data!r} is not a file; expected fra.txt of the Tatoeba English-French pairs (https://www.manythings.org/anki/fra-eng.zip)")
    if args.multi30k and not os.path.isdir(args.multi30k):
        parser.error(f"--multi30k={args.multi30k!r} is not a folder; expected the folder of Multi30k's {{train,val,test_2016_flickr}}.{{en,fr}}.gz")
    if args.vocab_size <= 4:
        parser.error(f"--vocab-size={args.vocab_size} is not allowed; expected more than the 4 special tokens")
    if args.length_penalty < 0:
        parser.error(f"--length-penalty={args.length_penalty} is not allowed; expected a number >= 0")
    if args.beam_sentences < 0 or args.tflite_sentences < 0:
        parser.error("--beam-sentences and --tflite-sentences must be >= 0")


def translate_only(args):
    """``--translate``: tokenize, run ``translator.tflite`` from ``--out``, print."""
    from kapps import export
    from kapps.data import translation

    model_path = os.path.join(args.out, TRANSLATOR_FILE)
    vocabulary = os.path.join(args.out, VOCABULARY_FILE)
    if not os.path.isfile(model_path):
        raise SystemExit(f"no {TRANSLATOR_FILE} in {args.out!r}; train first (same --out) or point --out at an exported run")
    tokenizer = translation.sentencepiece_tokenizer(vocabulary)
    runner = export.load_tflite(model_path)
    length = runner.input_details[0]["shape"][1]
    translations = []
    for sentence in args.translate:
        ids = runner(translation.encode(tokenizer, [sentence], length))
        translations.append(translation.decode(tokenizer, ids)[0])
        print(f"{sentence}\t{translations[-1]}")
    return {"translations": translations}


def load_pairs(args):
    """``(train, val, test, description)`` sentence pairs from the flags (subsets in --quick)."""
    from kapps.data import translation

    if args.multi30k:
        get = lambda split: translation.multi30k(args.multi30k, split, source="fr" if args.reverse else "en", target="en" if args.reverse else "fr")  # noqa: E731
        splits, name = [get("train"), get("val"), get("test")], "Multi30k (test_2016_flickr)"
    else:
        splits = [translation.fra_eng(args.data, s, reverse=args.reverse) for s in ("train", "val", "test")]
        name = "Tatoeba fra-eng (fixed hash split)"
    if args.quick:
        splits = [pairs[:QUICK_PAIRS[key]] for pairs, key in zip(splits, ("train", "val", "test"))]
    return (*splits, name + (", French to English" if args.reverse else ", English to French"))


def vocabulary(args, train, out):
    """The SentencePiece tokenizer of this run: learnt from the training pairs on the first
    run, read back from ``out`` when the run resumes."""
    from kapps.data import translation

    path = os.path.join(out, VOCABULARY_FILE)
    if not os.path.isfile(path):
        size = min(args.vocab_size, 600) if args.quick else args.vocab_size
        translation.train_sentencepiece([s for pair in train for s in pair], size, path)
    return translation.sentencepiece_tokenizer(path)


def datasets(args, train, val, tokenizer, batch):
    """Training batches (shuffled, repeated) and validation batches."""
    from kapps.data import translation

    train_ds = translation.translation_dataset(
        train, tokenizer, batch, max_length=args.max_length, shuffle=True, seed=args.seed, repeat=True
    )
    val_ds = translation.translation_dataset(val, tokenizer, batch, max_length=args.max_length)
    steps = max(1, len(train) // batch)
    return train_ds, val_ds, steps


def token_metrics():
    """Token accuracy (padding excluded through the sample weights) and perplexity."""
    import keras
    import keras_hub

    return [
        keras.metrics.SparseCategoricalAccuracy(name="token_accuracy"),
        keras_hub.metrics.Perplexity(from_logits=True, mask_token_id=0, name="perplexity"),
    ]


def _bleu(references, hypotheses):
    """Corpus BLEU (0-100) with every reference of a sentence (SacreBLEU's 13a tokenizer)."""
    import keras_hub
    import tensorflow as tf

    metric = keras_hub.metrics.Bleu()
    metric.update_state(tf.ragged.constant(references), tf.constant(hypotheses))
    return round(100 * float(metric.result()), 2)


def _pieces(tokenizer, ids):
    return [tokenizer.id_to_token(int(i)).replace("\u2581", "") or "\u2581" for i in ids]


def evaluate_and_export(model, history, test, tokenizer, out, args, *, title, extra, batch_size=64):
    """BLEU (greedy on every held-out sentence, beam and greedy on the first
    ``--beam-sentences``), exports (``model.keras``, ``saved_model/``, ``translator.tflite``
    with the vocabulary beside it), the TFLite check, ``samples.txt``, ``attention.png``,
    ``curves.png``; returns the metrics dictionary."""
    import numpy as np

    from kapps import export, plots
    from kapps.data import translation
    from kapps.data.translation import END_ID, PAD_ID, START_ID
    from kapps.models.sequence import search

    special = {"start_id": START_ID, "end_id": END_ID, "pad_id": PAD_ID}
    length = args.max_length
    sources, references = translation.group_references(test)
    source_ids = translation.encode(tokenizer, sources, length)

    started = time.time()
    greedy_fn = search.greedy_function(model, length, length, batch_size=None, **special)
    greedy_ids = np.concatenate([
        greedy_fn(source_ids[i:i + batch_size])["target_ids"].numpy()
        for i in range(0, len(sources), batch_size)
    ])
    greedy_text = translation.decode(tokenizer, greedy_ids)
    greedy_seconds = time.time() - started

    count = min(args.beam_sentences, len(sources))
    started = time.time()
    beam_ids = np.concatenate([
        search.beam_search(model, source_ids[i:min(i + 32, count)], length, beam_size=args.beam_size,
                           length_penalty=args.length_penalty, **special)
        for i in range(0, count, 32)
    ]) if count else np.zeros((0, length), "int32")
    beam_text = translation.decode(tokenizer, beam_ids)
    beam_seconds = time.time() - started

    reports = {"keras": export.save_keras(model, os.path.join(out, "model.keras"))}
    export.export_saved_model(model, os.path.join(out, "saved_model"))
    flatbuffer = export.translator_to_tflite(
        model, os.path.join(out, TRANSLATOR_FILE), source_length=length, max_length=length, **special
    )
    runner = export.load_tflite(flatbuffer)
    checked = min(args.tflite_sentences, len(sources))
    tflite_ids = np.stack([runner(source_ids[i:i + 1])[0] for i in range(checked)]) if checked else greedy_ids[:0]
    identical = int(sum(np.array_equal(a, b) for a, b in zip(tflite_ids, greedy_ids[:checked])))

    # attention of four held-out sentences with at least four words
    chosen = [i for i, s in enumerate(sources) if len(s.split()) >= 4][:4] or list(range(min(4, len(sources))))
    ids, weights = search.greedy_search(model, source_ids[chosen], length, return_attention=True, **special)
    examples = []
    for row, (src, out_ids, w) in enumerate(zip(source_ids[chosen], ids.numpy(), weights.numpy())):
        src = [t for t in src if t != PAD_ID]
        steps = list(out_ids).index(END_ID) + 1 if END_ID in out_ids else len(out_ids)
        examples.append((_pieces(tokenizer, src), _pieces(tokenizer, out_ids[:steps]), w[:steps, :len(src)]))
    plots.plot_translation_attention(examples, os.path.join(out, "attention.png"), title=f"{title}: attention (greedy decoding)")
    plots.plot_history(history, os.path.join(out, "curves.png"), title=title)

    with open(os.path.join(out, "samples.txt"), "w", encoding="utf-8") as f:
        for i in range(min(25, len(sources))):
            f.write(f"source:    {sources[i]}\nreference: {' | '.join(references[i])}\ngreedy:    {greedy_text[i]}\n")
            if i < count:
                f.write(f"beam:      {beam_text[i]}\n")
            f.write("\n")

    metrics = {
        **extra,
        "test_sentences": len(sources), "test_pairs": len(test),
        "bleu": {
            "greedy": _bleu(references, greedy_text),
            f"beam{args.beam_size}_first{count}": _bleu(references[:count], beam_text) if count else None,
            f"greedy_first{count}": _bleu(references[:count], greedy_text[:count]) if count else None,
        },
        "decode_seconds": {"greedy_all": round(greedy_seconds, 1), f"beam_first{count}": round(beam_seconds, 1)},
        "tflite_translator": {"identical_to_keras_greedy": identical, "checked": checked, "bytes": len(flatbuffer)},
        "exports": {"keras": reports["keras"], "translator": os.path.join(out, TRANSLATOR_FILE), "vocabulary": os.path.join(out, VOCABULARY_FILE)},
        "val": {k: round(float(v[-1]), 4) for k, v in history.history.items() if k.startswith("val_")},
    }
    return metrics


def run(args, *, recipe, title, build, config, start):
    """A whole training run, shared by both recipes: strategy, pairs, vocabulary, batches,
    ``build(vocabulary_size, steps_per_epoch)`` (called inside ``strategy.scope()``, returns
    the compiled model), resumable fit, BLEU, exports and pictures. Returns the metrics."""
    from kapps import training
    from recipes._common import setup

    strategy, batch, out, chief = setup(args)
    train, val, test, data_name = load_pairs(args)
    tokenizer = vocabulary(args, train, out)
    train_ds, val_ds, steps = datasets(args, train, val, tokenizer, batch)
    with strategy.scope():
        model = build(tokenizer.vocabulary_size(), steps)
    history = training.fit(model, train_ds, val_ds, epochs=args.epochs, steps_per_epoch=steps, out_dir=out, monitor="val_loss")
    train_seconds = time.time() - start
    if not chief:
        return {}
    metrics = evaluate_and_export(
        model, history, test, tokenizer, out, args, title=title,
        extra={
            "recipe": recipe, "quick": args.quick, "data": data_name,
            "pairs": {"train": len(train), "val": len(val), "test": len(test)},
            "config": {k: getattr(args, k) for k in config},
            "vocabulary": tokenizer.vocabulary_size(), "params": model.count_params(),
            "epochs": len(history.epoch), "steps_per_epoch": steps, "global_batch_size": batch,
            "replicas": strategy.num_replicas_in_sync, "strategy": args.strategy,
            "train_seconds": round(train_seconds, 1),
        },
    )
    metrics["wall_seconds"] = round(time.time() - start, 1)
    tflite = metrics["tflite_translator"]
    write_metrics(
        metrics, out,
        f"{title}, {data_name}: BLEU {metrics['bleu']['greedy']:.2f} greedy on {metrics['test_sentences']} "
        f"held-out sentences; TFLite translator identical on {tflite['identical_to_keras_greedy']}/{tflite['checked']}",
    )
    return metrics
