"""The Transformer translating English to French, on the Tatoeba pairs or Multi30k.

    python -m recipes.transformer_fra_eng --data ../shared/data/fra-eng/fra.txt
    python -m recipes.transformer_fra_eng --multi30k ../shared/data/multi30k
    python -m recipes.transformer_fra_eng --translate "How are you?" "I like tea."

Trains ``kapps.models.transformer`` (Vaswani et al. 2017) under a ``tf.distribute`` strategy
as the paper does, at a size a CPU can train: post-LN blocks, sinusoidal positions, one
SentencePiece vocabulary shared by both languages with the embedding matrix shared by the
encoder, the decoder and the pre-softmax projection (section 3.4), label smoothing 0.1,
Adam (0.9, 0.98, 1e-9) with the warm-up schedule of section 5.3, dropout 0.1. Defaults: 3
encoder and 3 decoder layers of width 256 with 4 heads and a 1024-wide MLP (the base model is
6 + 6 layers of 512, ``--layers 6 --hidden-dim 512 --heads 8 --mlp-dim 2048``).

Held-out data: the Tatoeba pairs are split by a fixed hash of the English sentence (about
90/5/5%, every translation of a sentence in one split, ``kapps.data.fra_eng``); Multi30k uses
its own val and test_2016_flickr files. Reported (``metrics.json``): corpus BLEU
(``keras_hub.metrics.Bleu``, every reference translation of a sentence used) of greedy
decoding on all held-out sentences and of beam search (beam 4, length penalty 0.6) on the first
``--beam-sentences``; whether the TFLite translator's ids equal the Keras greedy decode's.
Measured on a 2-core CPU shared with the Seq2Seq recipe's run, with ``--vocab-size 4000
--epochs 2`` (6.6M parameters, 2 x 1,068 steps of 64 pairs): corpus BLEU 27.2 with greedy
decoding on the 2,422 held-out English sentences (3,737 pairs, every reference used); on the
first 500 (the shortest) beam search (4, alpha 0.6) gives 37.9 against greedy's 32.5. The
TFLite translator's ids equal the Keras greedy decode's on all 100 sentences checked. 64
minutes of training; decoding the held-out set took another 42 (every step recomputes the
decoder over the whole 48-token buffer), 107 minutes in all.

Writes ``--out`` (default ``saved_models/transformer_fra_eng/``): ``model.keras``,
``saved_model/`` (the teacher-forced model), ``translator.tflite`` (encoder plus greedy
decoding loop in one builtin-only graph: source ids in, target ids out) with
``sentencepiece.model`` beside it, ``metrics.json``, ``history.csv``, ``curves.png``,
``attention.png`` (cross-attention of the last decoder layer, heads averaged) and
``samples.txt``. Running the same command again resumes an interrupted run.
``--translate`` translates sentences with the exported translator and exits. ``--quick`` runs
the whole path on a few hundred real pairs (tests).

Data: ``fra.txt`` from https://www.manythings.org/anki/fra-eng.zip (Tatoeba, CC-BY 2.0 FR);
Multi30k (Elliott et al. 2016) from https://github.com/multi30k/dataset.
"""

import argparse
import sys
import time

from recipes._common import add_run_flags, parse, recipe_parser, run_recipe
from recipes._translation import add_translation_flags, check_translation_args

RECIPE = "transformer_fra_eng"
QUICK = {"epochs": 1, "hidden_dim": 16, "layers": 1, "heads": 2, "mlp_dim": 32, "max_length": 16}


def parse_args(argv=None):
    parser = recipe_parser(RECIPE, __doc__)
    add_translation_flags(parser, epochs=20)
    parser.add_argument("--hidden-dim", type=int, default=256, help="d_model (the base model: 512)")
    parser.add_argument("--layers", type=int, default=3, help="encoder and decoder layers each (the base model: 6)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads (the base model: 8)")
    parser.add_argument("--mlp-dim", type=int, default=1024, help="feed-forward width (the base model: 2048)")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--warmup-steps", type=int, default=1000, help="steps of linear warm-up (the paper: 4000)")
    parser.add_argument("--lr-scale", type=float, default=0.7, help="factor on the paper's learning-rate curve (default 0.7: a 1.4e-3 peak at width 256)")
    parser.add_argument("--norm-first", action=argparse.BooleanOptionalAction, default=False, help="pre-LN blocks instead of the paper's post-LN")
    add_run_flags(parser, RECIPE, batch_size=64, batch_help="sentence pairs per replica (default 64)", quick_help="a few hundred real pairs and a tiny model, for tests")
    args = parse(parser, argv, positive=("epochs", "hidden_dim", "layers", "heads", "mlp_dim", "warmup_steps", "max_length", "beam_size", "vocab_size"))
    check_translation_args(parser, args)
    if not 0 <= args.dropout < 1 or not 0 <= args.label_smoothing < 1 or args.lr_scale <= 0:
        parser.error("--dropout and --label-smoothing must be in [0, 1), --lr-scale positive")
    if args.hidden_dim % args.heads:
        parser.error(f"--hidden-dim={args.hidden_dim} is not divisible by --heads={args.heads}")
    return args


def main(argv=None):
    """Run the recipe; return the metrics dictionary (also written to ``metrics.json``)."""
    args = parse_args(argv)
    if args.translate:
        from recipes._translation import translate_only

        return translate_only(args)
    start = time.time()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
        args.beam_sentences, args.tflite_sentences = min(args.beam_sentences, 8), min(args.tflite_sentences, 8)
    import keras

    from kapps import training
    from kapps.losses import WeightedSparseCategoricalCrossentropy
    from kapps.models.sequence.transformer import transformer
    from recipes._translation import run, token_metrics

    def build(vocabulary_size, steps_per_epoch):
        model = transformer(
            vocab_size=vocabulary_size, hidden_dim=args.hidden_dim, num_layers=args.layers,
            num_heads=args.heads, mlp_dim=args.mlp_dim, dropout=args.dropout, norm_first=args.norm_first,
            name="transformer_fra_eng",
        )
        schedule = training.TransformerSchedule(args.hidden_dim, warmup_steps=args.warmup_steps, scale=args.lr_scale)
        model.compile(
            optimizer=keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.98, epsilon=1e-9),
            loss=WeightedSparseCategoricalCrossentropy(ignore_class=0, label_smoothing=args.label_smoothing, from_logits=True),
            weighted_metrics=token_metrics(), jit_compile=args.jit_compile,
        )
        return model

    return run(
        args, recipe=RECIPE, title="Transformer", build=build, start=start,
        config=("hidden_dim", "layers", "heads", "mlp_dim", "dropout", "label_smoothing", "warmup_steps", "lr_scale", "norm_first", "max_length"),
    )


if __name__ == "__main__":
    sys.exit(run_recipe(main))
