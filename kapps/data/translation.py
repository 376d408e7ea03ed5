"""Sentence pairs for translation: the Tatoeba English-French pairs (``fra.txt``), Multi30k,
a SentencePiece vocabulary learnt from the training text, and batched ``tf.data`` pipelines
of token ids for the sequence-to-sequence models.

Token ids: ``[PAD]`` 0, ``[UNK]`` 1, ``[START]`` 2, ``[END]`` 3 (:data:`SPECIAL_TOKENS`), then
the learnt pieces. The models take ``source_ids`` and ``target_ids`` (the target shifted
right, starting with ``[START]``) and are trained to predict the target followed by
``[END]``; padding is 0 and left out of the loss.

SentencePiece (Kudo and Richardson 2018, the ``sentencepiece`` package keras-hub depends on)
is used rather than WordPiece because its detokenization is exact (``"J'ai gagné !"`` comes
back as written), so BLEU is computed on real sentences, not on re-spaced word pieces. One
vocabulary is shared by both languages, as in the Transformer paper (which shares its
embeddings on that basis).

Example:
    >>> train = fra_eng("../shared/data/fra-eng/fra.txt", "train")
    >>> proto = train_sentencepiece([t for pair in train for t in pair], 8000, "spm.model")
    >>> tokenizer = sentencepiece_tokenizer(proto)
    >>> ds = translation_dataset(train, tokenizer, batch_size=64, shuffle=True)
"""

from __future__ import annotations

import gzip
import io
import os
import zlib

import numpy as np

from kapps._checks import check_choice, check_positive_int
from kapps.data.errors import DatasetCorruptError, DatasetNotFoundError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[START]", "[END]")
PAD_ID, UNK_ID, START_ID, END_ID = range(4)

FRA_ENG_SPLITS = ("train", "val", "test", "all")
FRA_ENG_URL = "https://www.manythings.org/anki/fra-eng.zip"
MULTI30K_SPLITS = (
    "train", "val", "test", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco",
    "test_2018_flickr",
)
MULTI30K_URL = "https://github.com/multi30k/dataset (data/task1/raw)"


def read_pairs(path, *, columns=(0, 1)):
    """Sentence pairs from a tab-separated text file, one pair per line (``fra.txt`` holds
    ``english<TAB>french`` and, in newer downloads, an attribution column, ignored).

    Args:
        path: the file.
        columns: which two columns are source and target; ``(1, 0)`` reverses the direction.

    Returns:
        A list of ``(source, target)`` strings, in file order; blank lines are skipped.

    Raises:
        DatasetNotFoundError: the file does not exist (the message says where to get it).
        DatasetCorruptError: a line has fewer than two tab-separated columns.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetNotFoundError(
            f"No sentence-pair file at {path!r}. The English-French pairs are 'fra.txt' from "
            f"{FRA_ENG_URL} (Tatoeba, CC-BY 2.0 FR): unzip it and pass the file's path."
        )
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\n\r")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) <= max(columns):
                raise DatasetCorruptError(
                    f"{path!r} line {number} has {len(fields)} tab-separated column(s); "
                    f"expected at least {max(columns) + 1} (source<TAB>target)."
                )
            pairs.append((fields[columns[0]].strip(), fields[columns[1]].strip()))
    return pairs


def split_of(sentence, val_percent=5, test_percent=5):
    """The split (``"train"``, ``"val"`` or ``"test"``) a source sentence belongs to: a fixed
    rule on the CRC-32 of its UTF-8 text, so the split is the same on every machine and
    every run, and all translations of one sentence land in the same split (no test sentence
    is seen in training with another translation)."""
    bucket = zlib.crc32(sentence.encode("utf-8")) % 100
    if bucket < test_percent:
        return "test"
    if bucket < test_percent + val_percent:
        return "val"
    return "train"


def fra_eng(path, split="train", *, reverse=False, val_percent=5, test_percent=5):
    """The Tatoeba English-French pairs (``fra.txt``, 76,037 pairs in the shared copy) with a
    fixed held-out split.

    Pairs are assigned by :func:`split_of` on the English sentence: about 90% train, 5% val,
    5% test, and sentences with several translations keep them all in one split (use
    :func:`group_references` for multi-reference BLEU).

    Args:
        path: ``fra.txt``.
        split: one of :data:`FRA_ENG_SPLITS` (``"all"``: every pair).
        reverse: French to English instead of English to French.
        val_percent, test_percent: held-out shares, in percent.

    Returns:
        A list of ``(source, target)`` pairs.
    """
    split = check_choice("split", split, FRA_ENG_SPLITS)
    for name, value in (("val_percent", val_percent), ("test_percent", test_percent)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 50:
            raise ValueError(f"{name}={value!r} is not allowed; expected an int in [0, 50].")
    pairs = read_pairs(path)
    if split != "all":
        pairs = [p for p in pairs if split_of(p[0], val_percent, test_percent) == split]
    return [(b, a) for a, b in pairs] if reverse else pairs


def _read_lines(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [line.rstrip("\n\r") for line in handle]


def multi30k(directory, split="train", *, source="en", target="fr"):
    """Multi30k (Elliott et al. 2016) sentence pairs: image-caption translations, 29,000
    training pairs, 1,014 validation pairs and the shared task's test sets.

    Args:
        directory: the folder holding ``{split}.{language}.gz`` (or uncompressed) files.
        split: one of :data:`MULTI30K_SPLITS`; ``"test"`` is ``test_2016_flickr``.
        source, target: language codes of the files (``"en"``, ``"fr"``, ...).

    Returns:
        A list of ``(source, target)`` pairs.

    Raises:
        DatasetNotFoundError: a file is missing (the message names it and the source).
        DatasetCorruptError: the two files have different line counts.
    """
    split = check_choice("split", split, MULTI30K_SPLITS)
    stem = "test_2016_flickr" if split == "test" else split
    directory = os.fspath(directory)
    lines = []
    for language in (source, target):
        candidates = [os.path.join(directory, f"{stem}.{language}{ext}") for ext in (".gz", "")]
        found = next((c for c in candidates if os.path.isfile(c)), None)
        if found is None:
            raise DatasetNotFoundError(
                f"No Multi30k file {candidates[0]!r} (or uncompressed). Get the raw files of "
                f"task 1 from {MULTI30K_URL} and pass their folder."
            )
        lines.append(_read_lines(found))
    if len(lines[0]) != len(lines[1]):
        raise DatasetCorruptError(
            f"Multi30k {stem}: {len(lines[0])} {source} lines but {len(lines[1])} {target} "
            "lines; the files must be line-aligned."
        )
    return [(a.strip(), b.strip()) for a, b in zip(*lines) if a.strip() and b.strip()]


def group_references(pairs):
    """Sources with all their reference translations, for multi-reference BLEU.

    Returns:
        ``(sources, references)``: unique source sentences in first-seen order and, for each,
        the list of its targets.
    """
    grouped = {}
    for source, target in pairs:
        grouped.setdefault(source, []).append(target)
    return list(grouped), list(grouped.values())


def train_sentencepiece(texts, vocabulary_size, path=None, *, model_type="unigram",
                        character_coverage=1.0, seed_sentences=1_000_000):
    """Learn a SentencePiece vocabulary (with :data:`SPECIAL_TOKENS` as ids 0-3) from texts.

    Args:
        texts: an iterable of sentences (both languages for a shared vocabulary).
        vocabulary_size: pieces in all, the four special tokens included; a small text may
            give fewer (the model's ``vocabulary_size()`` says how many).
        path: optional file to write the model proto to (written atomically).
        model_type: ``"unigram"`` (default, Kudo 2018) or ``"bpe"``.
        character_coverage: share of characters covered by single pieces (1.0 keeps every
            accented letter of French).
        seed_sentences: most sentences read.

    Returns:
        The serialized model proto (``bytes``), for :func:`sentencepiece_tokenizer`.
    """
    import sentencepiece

    vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
    if vocabulary_size <= len(SPECIAL_TOKENS):
        raise ValueError(
            f"vocabulary_size={vocabulary_size!r} is not allowed; expected more than the "
            f"{len(SPECIAL_TOKENS)} special tokens."
        )
    model_type = check_choice("model_type", model_type, ("unigram", "bpe"))
    buffer = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(list(texts)), model_writer=buffer, vocab_size=vocabulary_size,
        model_type=model_type, character_coverage=character_coverage,
        input_sentence_size=seed_sentences, shuffle_input_sentence=True,
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=START_ID, eos_id=END_ID,
        pad_piece=SPECIAL_TOKENS[PAD_ID], unk_piece=SPECIAL_TOKENS[UNK_ID],
        bos_piece=SPECIAL_TOKENS[START_ID], eos_piece=SPECIAL_TOKENS[END_ID],
        num_threads=os.cpu_count() or 1, minloglevel=2, hard_vocab_limit=False,
    )
    proto = buffer.getvalue()
    if path is not None:
        path = os.fspath(path)
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(proto)
        os.replace(tmp, path)
    return proto


def sentencepiece_tokenizer(proto):
    """A ``keras_hub.tokenizers.SentencePieceTokenizer`` (runs inside ``tf.data``) for a model
    proto from :func:`train_sentencepiece` (bytes or a file path)."""
    from keras_hub.tokenizers import SentencePieceTokenizer

    if isinstance(proto, (str, os.PathLike)):
        path = os.fspath(proto)
        if not os.path.isfile(path):
            raise DatasetNotFoundError(
                f"No SentencePiece model at {path!r}; learn one with train_sentencepiece."
            )
        with open(path, "rb") as handle:
            proto = handle.read()
    return SentencePieceTokenizer(proto=proto)


def encode(tokenizer, sentences, max_length):
    """Token ids of ``sentences`` as a ``(count, max_length)`` int32 array padded with
    ``PAD_ID`` (longer sentences are cut), the form the decoders take as ``source_ids``."""
    max_length = check_positive_int("max_length", max_length)
    ids = tokenizer(list(sentences))
    out = np.full((len(sentences), max_length), PAD_ID, "int32")
    for row, tokens in enumerate(ids.to_list() if hasattr(ids, "to_list") else ids):
        tokens = list(tokens)[:max_length]
        out[row, : len(tokens)] = tokens
    return out


def decode(tokenizer, ids):
    """Sentences from output ids: each row cut at its first ``END_ID`` and stripped of
    padding and special tokens, then detokenized."""
    rows = []
    for row in np.asarray(ids):
        row = [int(t) for t in row]
        if END_ID in row:
            row = row[: row.index(END_ID)]
        rows.append([t for t in row if t >= len(SPECIAL_TOKENS)])
    texts = []
    for row in rows:
        text = tokenizer.detokenize([row]) if row else [""]
        text = text[0] if not isinstance(text, (bytes, str)) else text
        text = text.numpy() if hasattr(text, "numpy") else text
        texts.append(text.decode("utf-8") if isinstance(text, bytes) else str(text))
    return texts


def translation_dataset(pairs, tokenizer, batch_size, *, max_length=48, shuffle=False,
                        seed=None, repeat=False, drop_remainder=False,
                        bucket_boundaries=(8, 12, 16, 24, 32), sample_weights=True):
    """Batches for a sequence-to-sequence model: ``({"source_ids", "target_ids"},
    target_out, weights)``, token ids padded with 0 per batch, ``weights`` 1.0 on real target
    tokens and 0.0 on padding (so Keras metrics such as ``SparseCategoricalAccuracy`` count
    real tokens only).

    ``target_ids`` is ``[START] + target`` and ``target_out`` is ``target + [END]``
    (teacher forcing). Sentences are tokenized once and cached; examples are bucketed by
    length (``tf.data.Dataset.bucket_by_sequence_length``) so a batch of short sentences is
    not padded to the longest sentence of the data set.

    Args:
        pairs: ``(source, target)`` sentences.
        tokenizer: a keras-hub tokenizer (e.g. :func:`sentencepiece_tokenizer`).
        batch_size: sentences per batch.
        max_length: source and target (with its start/end token) are cut to this many ids.
        shuffle: reshuffle every epoch.
        seed: shuffle seed.
        repeat: repeat forever.
        drop_remainder: drop incomplete batches (per bucket).
        bucket_boundaries: length limits of the buckets (source length, in tokens).
        sample_weights: yield the padding weights as a third element.

    Returns:
        A ``tf.data.Dataset``.
    """
    import tensorflow as tf

    batch_size = check_positive_int("batch_size", batch_size)
    max_length = check_positive_int("max_length", max_length)
    if not pairs:
        raise ValueError("pairs=[] is not allowed; expected at least one (source, target) pair.")
    sources = [p[0] for p in pairs]
    targets = [p[1] for p in pairs]
    ds = tf.data.Dataset.from_tensor_slices((sources, targets))

    def tokenize(source, target):
        source_ids = tf.cast(tokenizer(source), tf.int32)[:max_length]
        target_ids = tf.cast(tokenizer(target), tf.int32)[: max_length - 1]
        start = tf.constant([START_ID], tf.int32)
        end = tf.constant([END_ID], tf.int32)
        inputs = {"source_ids": source_ids, "target_ids": tf.concat([start, target_ids], 0)}
        return inputs, tf.concat([target_ids, end], 0)

    ds = ds.map(tokenize, num_parallel_calls=tf.data.AUTOTUNE).cache()
    if shuffle:
        ds = ds.shuffle(min(len(pairs), 50_000), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    boundaries = [b for b in sorted(set(bucket_boundaries)) if b < max_length]
    ds = ds.bucket_by_sequence_length(
        lambda inputs, _: tf.shape(inputs["source_ids"])[0],
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padding_values=({"source_ids": PAD_ID, "target_ids": PAD_ID}, PAD_ID),
        drop_remainder=drop_remainder,
    )
    if shuffle:
        # buckets fill at different rates; mix the batches they emit
        ds = ds.shuffle(64, seed=seed)
    if sample_weights:
        ds = ds.map(
            lambda inputs, target: (inputs, target, tf.cast(target != PAD_ID, tf.float32)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.prefetch(tf.data.AUTOTUNE)
