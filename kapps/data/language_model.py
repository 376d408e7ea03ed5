"""Plain text for language modelling: tiny Shakespeare from TFDS, character tokens, and
batches of windows for next-token prediction.

A language model reads a window of ``length + 1`` tokens as the input ``window[:-1]`` and
the target ``window[1:]``: every position predicts the token after it. Training windows
start at random offsets (every offset is a fresh example, as nanoGPT samples them);
evaluation windows tile the split without overlap, so every token is scored once.

Characters are keras-hub's ``UnicodeCodepointTokenizer``: a token is the character's code
point, the vocabulary the first 128 (ASCII; tiny Shakespeare uses 65 of them). Code points
above are clamped to 127 by keras-hub, so no text fails to encode.
"""

import numpy as np

from kapps._checks import check_positive_int
from kapps.data.tfds import load_tfds

#: The character vocabulary: ASCII code points.
CHAR_VOCAB_SIZE = 128

#: Splits of TFDS ``tiny_shakespeare`` (each one string: 1,003,854 / 55,770 / 55,770 characters).
SHAKESPEARE_SPLITS = ("train", "validation", "test")


def tiny_shakespeare(split="train", data_dir=None, *, download=True):
    """The text of one split of TFDS ``tiny_shakespeare`` (Karpathy's char-rnn corpus).

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"``.
        data_dir: TFDS data directory (``None``: ``TFDS_DATA_DIR`` or TFDS' default).
        download: let TFDS download and prepare it when missing (needs internet).

    Returns:
        The split as one ``str``.

    Raises:
        ValueError: for an unknown split.
        kapps.data.DatasetNotFoundError: when the data is not prepared under ``data_dir``
            and cannot be downloaded (the message says where it looked).

    Example:
        >>> text = tiny_shakespeare("validation", data_dir="tfds")  # 55,770 characters
    """
    if split not in SHAKESPEARE_SPLITS:
        raise ValueError(f"split={split!r} is not allowed; expected one of {SHAKESPEARE_SPLITS}.")
    dataset = load_tfds(
        "tiny_shakespeare", split, data_dir, download=download, as_supervised=False
    )
    return "".join(example["text"].numpy().decode("utf-8") for example in dataset)


def char_tokenizer(vocabulary_size=CHAR_VOCAB_SIZE):
    """keras-hub's ``UnicodeCodepointTokenizer`` for character models: case kept, code
    points from 0 to ``vocabulary_size - 1`` (higher ones clamped to the last)."""
    import keras_hub

    check_positive_int("vocabulary_size", vocabulary_size)
    return keras_hub.tokenizers.UnicodeCodepointTokenizer(
        vocabulary_size=vocabulary_size, lowercase=False
    )


def encode(text, tokenizer=None):
    """``text`` as a 1-D int32 numpy array of token ids (``char_tokenizer()`` by default)."""
    tokenizer = tokenizer or char_tokenizer()
    return np.asarray(tokenizer(text)).astype("int32").reshape(-1)


def decode(ids, tokenizer=None):
    """Token ids (1-D) back to a string (``char_tokenizer()`` by default)."""
    tokenizer = tokenizer or char_tokenizer()
    text = tokenizer.detokenize(np.asarray(ids, dtype="int32"))
    text = text.numpy() if hasattr(text, "numpy") else text
    return text.decode("utf-8") if isinstance(text, bytes) else str(text)


def _check_ids(ids, length):
    ids = np.asarray(ids)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids has shape {ids.shape} and dtype {ids.dtype}; expected 1-D int ids.")
    check_positive_int("length", length)
    if len(ids) < length + 1:
        raise ValueError(
            f"length={length!r} is not allowed for {len(ids)} tokens; a window needs "
            "length + 1 tokens."
        )
    return ids.astype("int32")


def random_windows(ids, length, batch_size, *, seed=0):
    """An endless ``tf.data.Dataset`` of ``(inputs, targets)`` batches, each ``(batch_size,
    length)`` int32, from windows of ``ids`` at random offsets.

    The offsets come from ``tf.data.Dataset.random(seed)``, so a seed gives the same batches.
    The token array is a constant of the pipeline (a million characters is 4 MB).

    Args:
        ids: 1-D token ids of the training text.
        length: tokens per input (the context).
        batch_size: windows per batch.
        seed: seed of the offsets.

    Raises:
        ValueError: when the text is shorter than one window.
    """
    import tensorflow as tf

    ids = _check_ids(ids, length)
    check_positive_int("batch_size", batch_size)
    tokens = tf.constant(ids)
    starts = len(ids) - length  # offsets 0 .. len - length - 1 have length + 1 tokens

    offsets = tf.range(length + 1, dtype=tf.int32)

    def windows(values):
        # one gather for the whole batch: (batch, 1) + (1, length + 1) -> (batch, length + 1)
        first = tf.cast(values % starts, tf.int32)
        chunk = tf.gather(tokens, first[:, None] + offsets[None, :])
        return chunk[:, :-1], chunk[:, 1:]

    return (
        tf.data.Dataset.random(seed=seed)
        .batch(batch_size, drop_remainder=True)
        .map(windows, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def tiled_windows(ids, length, batch_size):
    """A finite ``tf.data.Dataset`` of ``(inputs, targets)`` batches covering ``ids`` with
    non-overlapping windows (the last partial window dropped): for evaluation.

    Raises:
        ValueError: when the text is shorter than one window.
    """
    import tensorflow as tf

    ids = _check_ids(ids, length)
    check_positive_int("batch_size", batch_size)
    count = (len(ids) - 1) // length
    inputs = ids[: count * length].reshape(count, length)
    targets = ids[1 : count * length + 1].reshape(count, length)
    return tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(batch_size)
