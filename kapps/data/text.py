"""English text for BERT: the English side of the shared corpora (tiny Shakespeare, Multi30k,
the Tatoeba English-French pairs), a WordPiece vocabulary learnt from it, masked-language-model
batches, and a paraphrase task built from Tatoeba.

Token ids: ``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]`` 3, ``[MASK]`` 4
(:data:`SPECIAL_TOKENS`), then the learnt word pieces (``keras_hub``'s
``compute_word_piece_vocabulary``, lowercased and accent-stripped as BERT-uncased). A sequence
is ``[CLS] tokens [SEP]`` (one sentence) or ``[CLS] a [SEP] b [SEP]`` with segment ids 0 then 1
(a sentence pair), as in Devlin et al. 2019, section 3.

Held-out text never meets training text:

- tiny Shakespeare is cut into passages in file order; the first 90% are ``train``, the next
  5% ``val`` and the last 5% ``test`` (contiguous, as TFDS ``tiny_shakespeare`` splits it).
- Multi30k uses its own ``train``, ``val`` and ``test_2016_flickr`` files.
- Tatoeba sentences are split by *paraphrase group*: English and French sentences linked by a
  translation (English ones equal up to case and punctuation counted as one) form connected
  groups, and a group goes whole to one split by a fixed hash (:func:`fra_eng_group_split`;
  80/10/10%). So the paraphrase task's val and test sentences are not in the ``train`` text a
  model is pre-trained on.
- ``train`` text that equals a held-out text of another corpus (short lines such as "I hope
  so." occur in Shakespeare and Tatoeba) is dropped (:func:`english_corpus`).

Paraphrases (:func:`paraphrase_pairs`): Tatoeba often gives several English translations of
one French sentence; two of them are a paraphrase (label 1) unless they differ only in case or
punctuation (those are dropped as trivial). Each positive ``(a, b)`` gets one negative
``(a, c)`` with ``c`` from another group of the same split, about as long as ``b`` and, among
300 such candidates, the one sharing most words with ``a``, so that word overlap alone does not
solve the task. Labels are noisy where French is ambiguous ("ses" is "his" or "her").

Example:
    >>> train = english_corpus("../shared/data", "train")
    >>> vocabulary = wordpiece_vocabulary(train, 8000, "vocab.txt")
    >>> tokenizer = wordpiece_tokenizer(vocabulary)
    >>> ds = masked_lm_dataset(train, tokenizer, 64, shuffle=True, repeat=True)
    >>> pairs = paraphrase_pairs("../shared/data/fra-eng/fra.txt", "train")
    >>> ft = sentence_pair_dataset(pairs, tokenizer, 32, shuffle=True)
"""

from __future__ import annotations

import functools
import math
import os
import random
import re
import weakref
from collections import defaultdict

from kapps._checks import check_choice, check_positive_int
from kapps.data.errors import DatasetNotFoundError
from kapps.data.translation import FRA_ENG_URL, MULTI30K_URL, multi30k, read_pairs, split_of

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(5)

CORPORA = ("shakespeare", "multi30k", "fra_eng")
TEXT_SPLITS = ("train", "val", "test")
SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"

#: Held-out shares (percent) of the Tatoeba paraphrase groups.
GROUP_VAL_PERCENT = 10
GROUP_TEST_PERCENT = 10

_WORD = re.compile(r"[a-z0-9']+")


def _missing(path, what, how):
    return DatasetNotFoundError(f"No {what} at {path!r}. {how}")


def shakespeare_passages(path, split="train", *, max_words=48):
    """Tiny Shakespeare (``input.txt``, 40,000 lines) as passages of at most ``max_words``
    words: each speech without its speaker line, cut at line ends.

    Args:
        path: ``input.txt``.
        split: one of :data:`TEXT_SPLITS`: the first 90% of passages, the next 5%, the last 5%.
        max_words: words per passage (a single longer line is kept whole).

    Returns:
        A list of passages (lines joined by spaces).

    Raises:
        DatasetNotFoundError: the file does not exist (the message says where to get it).
    """
    split = check_choice("split", split, TEXT_SPLITS)
    max_words = check_positive_int("max_words", max_words)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise _missing(path, "tiny Shakespeare file", f"It is karpathy/char-rnn's input.txt: {SHAKESPEARE_URL}")
    with open(path, encoding="utf-8") as handle:
        speeches = handle.read().split("\n\n")
    passages = []
    for speech in speeches:
        lines = [line.strip() for line in speech.strip().split("\n")[1:] if line.strip()]  # [0]: "NAME:"
        current, words = [], 0
        for line in lines:
            count = len(line.split())
            if current and words + count > max_words:
                passages.append(" ".join(current))
                current, words = [], 0
            current.append(line)
            words += count
        if current:
            passages.append(" ".join(current))
    train_end, val_end = int(len(passages) * 0.9), int(len(passages) * 0.95)
    bounds = {"train": (0, train_end), "val": (train_end, val_end), "test": (val_end, len(passages))}[split]
    return passages[bounds[0]:bounds[1]]


def _fra_eng_groups(path):
    """``(pairs, group_of, split_of_english, english_of_split)``: the Tatoeba pairs; for each
    English sentence the key of its connected group (the smallest English sentence of the
    group: English and French sentences linked by a translation, English sentences equal up
    to case and punctuation counted as one) and its split (:func:`fra_eng_group_split` of
    that key); and for each split its distinct English sentences in file order. Cached per
    file version, so the splits and paraphrase pairs of one file are grouped and hashed once."""
    path = os.path.abspath(os.fspath(path))
    stat = os.stat(path) if os.path.isfile(path) else None
    return _groups_cached(path, stat and (stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=2)
def _groups_cached(path, version):
    pairs = read_pairs(path)
    normalized = {english: _normalized(english) for english, _ in pairs}
    parent = {}

    def find(node):
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]  # path halving
            node = parent[node]
        return node

    # English sentences that differ only in case or punctuation are one node, so they can
    # never land in different splits
    for english, french in pairs:
        a, b = find(("en", normalized[english])), find(("fr", french))
        if a != b:
            parent[a] = b
    members = defaultdict(list)
    for english, form in normalized.items():
        members[find(("en", form))].append(english)
    group_of, split_of_english = {}, {}
    for sentences in members.values():
        key = min(sentences)
        split = fra_eng_group_split(key)
        for sentence in sentences:
            group_of[sentence] = key
            split_of_english[sentence] = split
    english_of_split = {split: [] for split in TEXT_SPLITS}
    for english in normalized:  # distinct, in file order (dicts keep insertion order)
        english_of_split[split_of_english[english]].append(english)
    return pairs, group_of, split_of_english, {k: tuple(v) for k, v in english_of_split.items()}


def fra_eng_group_split(key):
    """The split of a Tatoeba paraphrase group (``"train"``, ``"val"`` or ``"test"``), from a
    fixed hash of its key (:func:`kapps.data.translation.split_of`, 80/10/10%)."""
    return split_of(key, GROUP_VAL_PERCENT, GROUP_TEST_PERCENT)


def fra_eng_english(path, split="train"):
    """The distinct English sentences of ``fra.txt`` whose paraphrase group is in ``split``
    (see :func:`fra_eng_group_split`), in file order.

    Args:
        path: ``fra.txt`` (``english<TAB>french`` per line).
        split: one of :data:`TEXT_SPLITS`.

    Returns:
        A list of sentences.
    """
    split = check_choice("split", split, TEXT_SPLITS)
    return list(_fra_eng_groups(path)[3][split])


def english_corpus(data_dir, split="train", *, corpora=CORPORA, max_words=48, exclude=()):
    """English text of the shared corpora, one passage or sentence per item.

    Args:
        data_dir: the folder holding ``tinyshakespeare/input.txt``, ``multi30k/`` and
            ``fra-eng/fra.txt`` (``shared/data``).
        split: one of :data:`TEXT_SPLITS` (see the module docstring for how each is held out).
        corpora: which of :data:`CORPORA` to read, in this order in the result.
        max_words: longest Shakespeare passage, in words.
        exclude: sentences to leave out of ``"train"`` (e.g. a fine-tuning task's test set).

    Returns:
        A list of strings: Shakespeare passages, Multi30k English captions, Tatoeba English
        sentences (each distinct sentence once). ``"train"`` leaves out every text that equals
        (up to case and punctuation) a ``val`` or ``test`` text of the chosen corpora or one
        of ``exclude``: short sentences such as "I hope so." occur in more than one corpus.

    Raises:
        DatasetNotFoundError: a corpus file is missing (the message names it and its source).
        ValueError: an unknown split or corpus.
    """
    split = check_choice("split", split, TEXT_SPLITS)
    if isinstance(corpora, str) or not corpora:
        raise ValueError(f"corpora={corpora!r} is not allowed; expected a non-empty list of {CORPORA}.")
    for corpus in corpora:
        check_choice("corpora", corpus, CORPORA)
    data_dir = os.fspath(data_dir)
    texts = [t for corpus in corpora for t in _corpus(data_dir, corpus, split, max_words)]
    if split != "train":
        return texts
    held_out = {_normalized(t) for t in exclude}
    for other in ("val", "test"):
        held_out.update(_normalized(t) for corpus in corpora for t in _corpus(data_dir, corpus, other, max_words))
    return [t for t in texts if _normalized(t) not in held_out]


def _corpus(data_dir, corpus, split, max_words):
    if corpus == "shakespeare":
        return shakespeare_passages(os.path.join(data_dir, "tinyshakespeare", "input.txt"), split, max_words=max_words)
    if corpus == "multi30k":
        folder = os.path.join(data_dir, "multi30k")
        if not os.path.isdir(folder):
            raise _missing(folder, "Multi30k folder", f"Get the raw files of task 1 from {MULTI30K_URL}.")
        return [english for english, _ in multi30k(folder, split)]
    path = os.path.join(data_dir, "fra-eng", "fra.txt")
    if not os.path.isfile(path):
        raise _missing(path, "Tatoeba English-French file", f"It is fra.txt in {FRA_ENG_URL}.")
    return fra_eng_english(path, split)


def wordpiece_vocabulary(texts, vocabulary_size=8000, path=None):
    """Learn a lowercased WordPiece vocabulary (``keras_hub.tokenizers.
    compute_word_piece_vocabulary``) with :data:`SPECIAL_TOKENS` as ids 0-4.

    Args:
        texts: training sentences.
        vocabulary_size: the target size; the learner usually returns somewhat fewer.
        path: optional file to write, one token per line (atomically).

    Returns:
        The vocabulary, a list of strings.

    Raises:
        ValueError: ``vocabulary_size`` is not an int above the special tokens, or no texts.
    """
    import keras_hub
    import tensorflow as tf

    vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
    if vocabulary_size <= len(SPECIAL_TOKENS):
        raise ValueError(
            f"vocabulary_size={vocabulary_size!r} is not allowed; expected more than the "
            f"{len(SPECIAL_TOKENS)} special tokens."
        )
    texts = list(texts)
    if not texts:
        raise ValueError("texts=[] is not allowed; expected at least one sentence.")
    vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
        tf.data.Dataset.from_tensor_slices(texts).batch(1000), vocabulary_size,
        lowercase=True, strip_accents=True, reserved_tokens=list(SPECIAL_TOKENS),
    )
    if path is not None:
        path = os.fspath(path)
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write("\n".join(vocabulary) + "\n")
        os.replace(tmp, path)
    return list(vocabulary)


def wordpiece_tokenizer(vocabulary):
    """A ``keras_hub.tokenizers.WordPieceTokenizer`` (lowercasing, accent-stripping; runs in
    ``tf.data``) for a vocabulary from :func:`wordpiece_vocabulary`: a list or a file path.

    Raises:
        DatasetNotFoundError: a vocabulary file that does not exist.
        ValueError: the vocabulary does not start with :data:`SPECIAL_TOKENS`.
    """
    from keras_hub.tokenizers import WordPieceTokenizer

    if isinstance(vocabulary, (str, os.PathLike)):
        path = os.fspath(vocabulary)
        if not os.path.isfile(path):
            raise DatasetNotFoundError(f"No vocabulary file at {path!r}; learn one with wordpiece_vocabulary.")
        with open(path, encoding="utf-8") as handle:
            vocabulary = [line.rstrip("\n") for line in handle if line.rstrip("\n")]
    vocabulary = list(vocabulary)
    if tuple(vocabulary[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
        raise ValueError(
            f"vocabulary starts with {vocabulary[:len(SPECIAL_TOKENS)]!r}; expected the special "
            f"tokens {list(SPECIAL_TOKENS)} as ids 0-{len(SPECIAL_TOKENS) - 1}."
        )
    return WordPieceTokenizer(vocabulary=vocabulary, lowercase=True, strip_accents=True, oov_token="[UNK]")


#: tokenizer -> its batch tokenizing ``tf.function`` (see :func:`_tokenize_all`).
_BATCH_TOKENIZERS = weakref.WeakKeyDictionary()


def _tokenize_all(tokenizer, texts):
    """The token ids of every text, an int32 ``tf.RaggedTensor`` ``(len(texts), None)``.

    One batched call of a ``tf.function`` traced once per tokenizer: the datasets below start
    from these ids instead of mapping the tokenizer over single texts, which traced the
    tokenizer into every pipeline (about a second each) and made every new iterator set up
    its lookup graph again (a second or more per epoch, evaluation and export pass). The ids
    are the same; tokenizing tens of thousands of texts this way takes about a second.
    """
    import tensorflow as tf

    function = _BATCH_TOKENIZERS.get(tokenizer)
    if function is None:
        reference = weakref.ref(tokenizer)  # the cache must not keep the tokenizer alive

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
        def function(batch):
            ids = tf.cast(reference()(batch), tf.int32)
            # a tokenizer with a sequence_length pads to it: the same ids, ragged
            return ids if isinstance(ids, tf.RaggedTensor) else tf.RaggedTensor.from_tensor(ids)

        _BATCH_TOKENIZERS[tokenizer] = function
    return function(tf.constant(list(texts), tf.string))


def _bert_inputs(token_ids, segment_ids):
    """The backbone's three inputs from padded ``(batch, seq)`` ids."""
    import tensorflow as tf

    return {
        "token_ids": token_ids,
        "segment_ids": segment_ids,
        "padding_mask": tf.cast(token_ids != PAD_ID, tf.int32),
    }


@functools.lru_cache(maxsize=8)
def _mask_function(vocabulary_size, mask_rate, mask_selection_length):
    """``mask(token_ids)`` for :func:`masked_lm_dataset`: keras-hub's
    ``MaskedLMMaskGenerator`` on one ``[CLS] tokens [SEP]`` sequence, a ``tf.function``
    traced once per setting and called from every pipeline that masks that way (tracing the
    generator takes about a second)."""
    import keras_hub
    import tensorflow as tf

    masker = keras_hub.layers.MaskedLMMaskGenerator(
        vocabulary_size, mask_rate, MASK_ID, mask_selection_length=mask_selection_length,
        unselectable_token_ids=[PAD_ID, CLS_ID, SEP_ID],
    )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)], autograph=False)
    def mask(token_ids):
        # one sequence at a time: the generator caps its selections per call
        masked = masker(token_ids)
        return {
            # from the lengths, not from the ids: a random replacement may be id 0
            "padding_mask": tf.ones_like(token_ids),
            "token_ids": tf.cast(masked["token_ids"], tf.int32),
            "mask_positions": tf.cast(masked["mask_positions"], tf.int32),
            "mask_ids": tf.cast(masked["mask_ids"], tf.int32),
            "mask_weights": tf.cast(masked["mask_weights"], tf.float32),
        }

    return mask


def masked_lm_dataset(texts, tokenizer, batch_size, *, max_length=64, mask_rate=0.15,
                      mask_selection_length=None, shuffle=False, seed=None, repeat=False,
                      static_masks=None, bucket_boundaries=(16, 32, 48), fixed_length=False):
    """Batches for masked-language-model training (Devlin et al. 2019, section 3.1).

    Each text becomes ``[CLS] tokens [SEP]`` (cut to ``max_length``; all texts are tokenized
    up front in one batched call, so the pipeline holds ids, not the tokenizer); keras-hub's
    ``MaskedLMMaskGenerator`` then selects ``mask_rate`` of the tokens (never ``[PAD]``,
    ``[CLS]`` or ``[SEP]``) and replaces 80% of them with ``[MASK]``, 10% with a random token
    and leaves 10% as they were. Batches are padded with 0 to their longest sequence; to keep
    that padding small, shuffled examples are batched by length
    (``bucket_by_sequence_length``) and unshuffled ones (evaluation) are sorted by length, so
    that every batch but the last is full (Keras 3.15 builds a distributed model from the
    first batch and fails when that batch does not split evenly over the replicas).

    Yields ``(inputs, mask_ids, mask_weights)``: ``inputs`` is a dict of ``token_ids``,
    ``segment_ids`` (zeros), ``padding_mask`` (1 on real tokens), all ``(batch, seq)`` int32,
    and ``mask_positions`` ``(batch, mask_selection_length)``; ``mask_ids`` are the original
    tokens at those positions (0 where fewer were selected) and ``mask_weights`` 1.0 on real
    predictions, 0.0 on that padding (the sample weights of the loss and metrics).

    Args:
        texts: sentences or passages.
        tokenizer: from :func:`wordpiece_tokenizer`.
        batch_size: examples per batch.
        max_length: tokens per sequence, ``[CLS]`` and ``[SEP]`` included.
        mask_rate: share of tokens predicted (0.15 in the paper).
        mask_selection_length: most predictions per sequence; default
            ``ceil(mask_rate * max_length) + 1`` (BERT: 20 for 128 tokens).
        shuffle: reshuffle every epoch.
        seed: shuffle seed.
        repeat: repeat forever.
        static_masks: draw the masks once and keep them (for evaluation, so every evaluation
            predicts the same tokens); default: dynamic masks (drawn anew every epoch, as
            RoBERTa does) when ``shuffle``, static otherwise.
        bucket_boundaries: sequence lengths at which shuffled batches are split into buckets.
        fixed_length: pad every batch to ``max_length`` instead (no buckets): one shape for
            every step, as XLA (``jit_compile``) and TPUs want, and one trace of the step.

    Returns:
        A ``tf.data.Dataset``.

    Raises:
        ValueError: bad sizes or rate, no texts, or a tokenizer without the special tokens.
    """
    import numpy as np
    import tensorflow as tf

    batch_size = check_positive_int("batch_size", batch_size)
    max_length = check_positive_int("max_length", max_length)
    if max_length < 3:
        raise ValueError(f"max_length={max_length!r} is not allowed; expected at least 3 ([CLS] token [SEP]).")
    if isinstance(mask_rate, bool) or not isinstance(mask_rate, (int, float)) or not 0 < mask_rate < 1:
        raise ValueError(f"mask_rate={mask_rate!r} is not allowed; expected a number in (0, 1).")
    if mask_selection_length is None:
        mask_selection_length = math.ceil(mask_rate * max_length) + 1
    mask_selection_length = check_positive_int("mask_selection_length", mask_selection_length)
    texts = list(texts)
    if not texts:
        raise ValueError("texts=[] is not allowed; expected at least one sentence.")
    _check_special_tokens(tokenizer)
    static_masks = not shuffle if static_masks is None else static_masks
    mask = _mask_function(tokenizer.vocabulary_size(), float(mask_rate), mask_selection_length)

    ids = _tokenize_all(tokenizer, texts)
    if not shuffle:
        # shortest first: batches of similar lengths, every one full but the last
        ids = tf.gather(ids, np.argsort(ids.row_lengths().numpy(), kind="stable"))
    # [CLS] tokens [SEP], cut to max_length
    ids = ids[:, : max_length - 2]
    ends = tf.ones([len(texts), 1], tf.int32)
    ids = tf.concat([ends * CLS_ID, ids, ends * SEP_ID], axis=1)
    ds = tf.data.Dataset.from_tensor_slices(ids)
    if static_masks:
        ds = ds.map(mask, num_parallel_calls=tf.data.AUTOTUNE).cache()
    if shuffle:
        ds = ds.shuffle(min(len(texts), 100_000), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if not static_masks:
        ds = ds.map(mask, num_parallel_calls=tf.data.AUTOTUNE)
    padding = {"padding_mask": 0, "token_ids": PAD_ID, "mask_positions": 0, "mask_ids": PAD_ID, "mask_weights": 0.0}
    if fixed_length:
        shapes = {"padding_mask": [max_length], "token_ids": [max_length], "mask_positions": [None],
                  "mask_ids": [None], "mask_weights": [None]}
        ds = ds.padded_batch(batch_size, padded_shapes=shapes, padding_values=padding)
    elif shuffle:
        boundaries = [b for b in sorted(set(bucket_boundaries)) if b < max_length]
        ds = ds.bucket_by_sequence_length(
            lambda x: tf.shape(x["token_ids"])[0],
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padding_values=padding,
        )
        ds = ds.shuffle(64, seed=seed)  # buckets fill at different rates; mix their batches
    else:
        ds = ds.padded_batch(batch_size, padding_values=padding)

    def split(x):
        inputs = {"token_ids": x["token_ids"], "segment_ids": tf.zeros_like(x["token_ids"]),
                  "padding_mask": x["padding_mask"], "mask_positions": x["mask_positions"]}
        return inputs, x["mask_ids"], x["mask_weights"]

    return ds.map(split, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _check_special_tokens(tokenizer):
    for index, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != index:
            raise ValueError(
                f"tokenizer has {token!r} at id {tokenizer.token_to_id(token)!r}; expected "
                f"{index} (use a vocabulary from wordpiece_vocabulary)."
            )


def _words(sentence):
    return set(_WORD.findall(sentence.lower()))


def word_overlap(a, b):
    """The Jaccard overlap of the lowercased word sets of two sentences (0 to 1): the lexical
    baseline of the paraphrase task."""
    x, y = _words(a), _words(b)
    return len(x & y) / len(x | y) if x | y else 1.0


def _normalized(sentence):
    return " ".join(_WORD.findall(sentence.lower()))


def paraphrase_pairs(path, split="train", *, candidates=300, limit=None, seed=0):
    """The Tatoeba paraphrase task: ``(sentence_a, sentence_b, label)`` with label 1 for two
    English translations of one French sentence and 0 for a hard negative (see the module
    docstring), balanced, in a fixed shuffled order.

    Args:
        path: ``fra.txt``.
        split: one of :data:`TEXT_SPLITS`; groups are split by :func:`fra_eng_group_split`, so
            no sentence of one split appears in another.
        candidates: sentences of similar length drawn for each negative; the one sharing most
            words with the first sentence is taken (1: a random sentence of similar length).
        limit: keep at most this many positives (a seeded random subset; quick runs).
        seed: seed of the negative sampling and of the order.

    Returns:
        A list of ``(str, str, int)``.
    """
    split = check_choice("split", split, TEXT_SPLITS)
    candidates = check_positive_int("candidates", candidates)
    if limit is not None:
        limit = check_positive_int("limit", limit)
    pairs, group_of, split_of_english, _ = _fra_eng_groups(path)
    translations = defaultdict(list)
    for english, french in pairs:
        if split_of_english[english] == split and english not in translations[french]:
            translations[french].append(english)
    positives = set()
    for sentences in translations.values():
        for i, a in enumerate(sentences):
            for b in sentences[i + 1:]:
                if _normalized(a) != _normalized(b):  # not only case or punctuation
                    positives.add(tuple(sorted((a, b))))
    positives = sorted(positives)
    rng = random.Random(seed)
    if limit is not None and limit < len(positives):
        positives = sorted(rng.sample(positives, limit))
    pool = sorted({s for pair in positives for s in pair})
    words = {sentence: _words(sentence) for sentence in pool}
    by_length = defaultdict(list)
    for sentence in pool:
        by_length[len(sentence.split())].append(sentence)
    examples = []
    for a, b in positives:
        if rng.random() < 0.5:
            a, b = b, a
        length = len(b.split())
        near = [s for n in (length - 1, length, length + 1) for s in by_length.get(n, ())]
        drawn = [s for s in rng.choices(near, k=2 * candidates) if group_of[s] != group_of[a]]
        if not drawn:
            continue
        drawn = drawn[:candidates]
        mine = words[a]
        negative = max(drawn, key=lambda s: len(mine & words[s]) / (len(mine | words[s]) or 1))
        examples += [(a, b, 1), (a, negative, 0)]
    rng.shuffle(examples)
    # the anchor comes first or second at random, so its position says nothing
    return [(a, b, y) if rng.random() < 0.5 else (b, a, y) for a, b, y in examples]


def sentence_pair_dataset(pairs, tokenizer, batch_size, *, max_length=64, shuffle=False,
                          seed=None, repeat=False, drop_remainder=False, fixed_length=False):
    """Batches for a sentence-pair classifier: ``(inputs, labels)`` with ``inputs`` the
    backbone's ``token_ids`` (``[CLS] a [SEP] b [SEP]``, keras-hub's ``MultiSegmentPacker``
    cutting the longer sentence first), ``segment_ids`` (0 for ``[CLS] a [SEP]``, 1 for
    ``b [SEP]``) and ``padding_mask``, ``(batch, seq)`` int32 padded to the longest pair of
    the batch (or to ``max_length`` with ``fixed_length``); labels int32 ``(batch,)``. The
    pairs are tokenized and packed up front, in one batched call.

    Args:
        pairs: ``(sentence_a, sentence_b, label)`` triples (:func:`paraphrase_pairs`).
        tokenizer: from :func:`wordpiece_tokenizer`.
        batch_size: pairs per batch.
        max_length: tokens per pair, special tokens included.
        shuffle: reshuffle every epoch.
        seed: shuffle seed.
        repeat: repeat forever.
        drop_remainder: drop the last incomplete batch.
        fixed_length: keep every batch ``max_length`` long (one shape for XLA and TPUs).

    Returns:
        A ``tf.data.Dataset``.
    """
    import keras_hub
    import tensorflow as tf

    batch_size = check_positive_int("batch_size", batch_size)
    max_length = check_positive_int("max_length", max_length)
    if not pairs:
        raise ValueError("pairs=[] is not allowed; expected at least one (a, b, label) triple.")
    _check_special_tokens(tokenizer)
    packer = keras_hub.layers.MultiSegmentPacker(
        sequence_length=max_length, start_value=CLS_ID, end_value=SEP_ID, pad_value=PAD_ID,
    )
    first, second, labels = zip(*pairs)
    # every pair packed at once (the packer works row by row on a batch)
    token_ids, segment_ids = packer((_tokenize_all(tokenizer, first), _tokenize_all(tokenizer, second)))
    inputs = _bert_inputs(tf.cast(token_ids, tf.int32), tf.cast(segment_ids, tf.int32))
    ds = tf.data.Dataset.from_tensor_slices((inputs, tf.constant(labels, tf.int32)))
    if shuffle:
        ds = ds.shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def trim(inputs, label):
        # (batch, max_length) -> (batch, longest pair of the batch)
        longest = tf.reduce_max(tf.reduce_sum(inputs["padding_mask"], axis=1))
        return {k: v[:, :longest] for k, v in inputs.items()}, label

    if not fixed_length:
        ds = ds.map(trim, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
