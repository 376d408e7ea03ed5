"""MNIST batches for the LeNet-5 recipe, from TFDS ``mnist`` (60,000 train / 10,000 test)."""

from __future__ import annotations

import tensorflow as tf

from kapps._checks import check_choice
from kapps.data.pipeline import prepare
from kapps.data.tfds import load_tfds

MNIST_SPLITS = ("train", "test")


def mnist(
    split: str = "train",
    batch_size: int = 128,
    *,
    data_dir=None,
    download: bool = True,
    shuffle: bool | None = None,
    seed: int | None = None,
    cache: bool = True,
    augment=None,
    drop_remainder: bool = False,
    repeat: bool = False,
    pad_to: int | None = None,
    take: int | None = None,
) -> tf.data.Dataset:
    """Batches of MNIST digits: ``(image, label)``.

    Images stay ``uint8`` through the cache and the shuffle (47 MB for the training set
    instead of 188 MB as ``float32``) and are scaled per batch, where it is one vectorised op.

    Args:
        split: ``"train"`` or ``"test"`` (a TFDS slice such as ``"train[:1000]"`` works too).
        batch_size: examples per batch (the *global* batch under ``tf.distribute``).
        data_dir: directory with the prepared TFDS data; see ``kapps.data.tfds_data_dir``.
        download: download and prepare MNIST when it is not there (needs internet).
        shuffle: shuffle every epoch with a full-dataset buffer; default: for ``"train"``.
        seed: shuffle seed.
        cache: keep the decoded split in memory after the first epoch.
        augment: optional batch augmentation (e.g. ``kapps.data.image_augmentation``).
        drop_remainder: drop the last partial batch.
        repeat: repeat forever.
        pad_to: zero-pad the 28x28 digits to ``pad_to x pad_to`` (LeNet-5 takes 32x32: the
            paper centres the digits in a larger field so strokes can reach the receptive
            field centres of the top feature detectors, LeCun et al. 1998, Section III.A).
        take: use only the first ``take`` examples (quick runs and tests).

    Returns:
        A ``tf.data.Dataset`` of ``(images, labels)``: ``float32`` images in ``[0, 1]`` of shape
        ``(batch, 28, 28, 1)`` (or ``pad_to`` square) and ``int32`` labels of shape ``(batch,)``.

    Raises:
        ValueError: bad ``split`` or ``pad_to``.
        kapps.data.DatasetNotFoundError: MNIST is not prepared and cannot be downloaded.
        kapps.data.DatasetCorruptError: the prepared MNIST is damaged.
    """
    check_choice("split", split.split("[")[0], MNIST_SPLITS)
    if pad_to is not None and (not isinstance(pad_to, int) or isinstance(pad_to, bool) or pad_to < 28):
        raise ValueError(f"pad_to={pad_to!r} is not allowed; expected None or an int >= 28.")
    ds = load_tfds("mnist", split, data_dir, download=download, as_supervised=True)
    if take is not None:
        ds = ds.take(take)

    def to_float(images, labels):
        images = tf.cast(images, tf.float32) / 255.0  # (batch, 28, 28, 1)
        if pad_to is not None:
            before = (pad_to - 28) // 2
            after = pad_to - 28 - before
            images = tf.pad(images, [[0, 0], [before, after], [before, after], [0, 0]])
        return images, tf.cast(labels, tf.int32)

    return prepare(
        ds,
        batch_size,
        cache=cache,
        shuffle=split.startswith("train") if shuffle is None else shuffle,
        shuffle_buffer=60_000,
        seed=seed,
        repeat=repeat,
        drop_remainder=drop_remainder,
        batch_map_fn=to_float,
        augment=augment,
    )
