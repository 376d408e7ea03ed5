"""CIFAR-10 batches (Krizhevsky 2009; 50,000 train / 10,000 test 32x32 colour images, 10
classes), from TFDS ``cifar10`` or from a local class-per-folder copy, and the paper's
augmentation (He et al. 2016, Sec. 4.2: 4-pixel zero padding, a random 32x32 crop, a random
horizontal flip).
"""

from __future__ import annotations

import os

import tensorflow as tf

from kapps._checks import check_choice, check_positive_int
from kapps.data.errors import DatasetNotFoundError
from kapps.data.images import list_image_folder
from kapps.data.pipeline import AUTOTUNE, prepare
from kapps.data.tfds import load_tfds

#: Class names in label order (TFDS ``cifar10``'s order, which is also the sorted folder order).
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_SPLITS = ("train", "test")
IMAGE_SIZE = 32


def random_crop_flip(pad: int = 4, flip: bool = True, seed: int | None = None):
    """Batch augmentation: zero-pad by ``pad`` pixels, crop back to the original size at a
    random offset per image, and flip half the images left to right.

    This is the CIFAR augmentation of He et al. 2016 (Sec. 4.2), done per batch with two
    gathers instead of one crop per image, so it costs little in the input pipeline. Integer
    shifts keep pixels exact (no interpolation), unlike a ``RandomTranslation`` layer.

    Args:
        pad: padding on every side, in pixels (0 disables the crop).
        flip: also flip images left to right with probability 1/2.
        seed: op seed for repeatable runs (with ``kapps.training.set_seed``).

    Returns:
        A function ``images -> images`` for ``kapps.data.prepare(augment=...)``, taking
        ``(batch, height, width, channels)`` and returning the same shape.

    Raises:
        ValueError: ``pad`` is negative or not an int.
    """
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad={pad!r} is not allowed; expected a non-negative int.")

    def augment(images):
        shape = tf.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        if pad:
            padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
            top = tf.random.uniform([batch], 0, 2 * pad + 1, tf.int32, seed=seed)
            left = tf.random.uniform([batch], 0, 2 * pad + 1, tf.int32, seed=None if seed is None else seed + 1)
            rows = top[:, None] + tf.range(height)[None, :]  # (batch, height)
            cols = left[:, None] + tf.range(width)[None, :]  # (batch, width)
            images = tf.gather(padded, rows, axis=1, batch_dims=1)  # (batch, height, width + 2 pad, c)
            images = tf.gather(images, cols, axis=2, batch_dims=1)  # (batch, height, width, c)
        if flip:
            coin = tf.random.uniform([batch], seed=None if seed is None else seed + 2) < 0.5
            images = tf.where(coin[:, None, None, None], tf.reverse(images, axis=[2]), images)
        return images

    return augment


def _folder_source(folder, split):
    root = os.path.join(os.fspath(folder), split)
    if not os.path.isdir(root):
        raise DatasetNotFoundError(
            f"CIFAR-10 folder {os.fspath(folder)!r} has no {split!r} sub-folder (looked for "
            f"{root!r}); expected <folder>/{{train,test}}/<class>/<image>.jpg with the classes "
            f"{', '.join(CIFAR10_CLASSES)}. Without a local copy, leave the folder out to read "
            "TFDS 'cifar10'."
        )
    paths, labels, _ = list_image_folder(root, CIFAR10_CLASSES)
    # Files come class after class; interleave them (first image of each class, then the
    # second, ...) so that take= gives a balanced subset, as TFDS' mixed splits do.
    rank, seen = [], {}
    for label in labels:
        rank.append(seen.get(label, 0))
        seen[label] = rank[-1] + 1
    order = sorted(range(len(paths)), key=lambda i: (rank[i], labels[i]))
    paths, labels = [paths[i] for i in order], [labels[i] for i in order]

    def decode(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.image.resize(image, (IMAGE_SIZE, IMAGE_SIZE), method="nearest")  # no-op at 32x32
        return tf.ensure_shape(tf.cast(image, tf.uint8), (IMAGE_SIZE, IMAGE_SIZE, 3)), label

    ds = tf.data.Dataset.from_tensor_slices((paths, tf.constant(labels, tf.int64)))
    return ds.map(decode, num_parallel_calls=AUTOTUNE), len(paths)


def cifar10(
    split: str = "train",
    batch_size: int = 128,
    *,
    folder=None,
    data_dir=None,
    download: bool = True,
    shuffle: bool | None = None,
    seed: int | None = None,
    augment=None,
    drop_remainder: bool = False,
    repeat: bool = False,
    take: int | None = None,
    skip: int = 0,
    cache: bool = True,
) -> tf.data.Dataset:
    """Batches of CIFAR-10 images: ``(image, label)``.

    Images stay ``uint8`` through the cache and the shuffle (150 MB for the 50,000 training
    images instead of 600 MB as ``float32``) and are scaled per batch.

    Args:
        split: ``"train"`` or ``"test"``; with TFDS a slice such as ``"train[:45000]"`` works
            too.
        batch_size: examples per batch (the *global* batch under ``tf.distribute``).
        folder: a local copy laid out as ``folder/{train,test}/<class>/<image>`` (PNG or
            JPEG, 32x32); ``None`` reads TFDS ``cifar10``.
        data_dir: TFDS data directory (see ``kapps.data.tfds_data_dir``); TFDS only.
        download: let TFDS download and prepare ``cifar10`` when missing (needs internet).
        shuffle: shuffle every epoch with a full buffer; default: for ``"train"``.
        seed: shuffle seed.
        augment: batch augmentation, e.g. :func:`random_crop_flip` (the paper's) or
            ``kapps.data.image_augmentation(...)``.
        drop_remainder: drop the last partial batch.
        repeat: repeat forever.
        take: use only the first ``take`` examples (after ``skip``).
        skip: leave out the first ``skip`` examples (a held-out validation set is
            ``take=n`` of one call and ``skip=n`` of another).
        cache: keep the decoded images in memory after the first epoch.

    Returns:
        A ``tf.data.Dataset`` of ``float32`` images in ``[0, 1]`` of shape
        ``(batch, 32, 32, 3)`` and ``int32`` labels of shape ``(batch,)``.

    Raises:
        ValueError: a bad ``split``, ``batch_size``, ``take`` or ``skip``.
        kapps.data.DatasetNotFoundError: the folder or the TFDS data is missing (and cannot be
            downloaded).
    """
    base = split.split("[")[0]
    check_choice("split", base, CIFAR10_SPLITS)
    check_positive_int("batch_size", batch_size)
    if take is not None:
        check_positive_int("take", take)
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise ValueError(f"skip={skip!r} is not allowed; expected a non-negative int.")
    if folder is not None:
        if split != base:
            raise ValueError(
                f"split={split!r} is not allowed with folder=; expected 'train' or 'test' "
                "(use take= and skip= for parts of a split)."
            )
        ds, size = _folder_source(folder, split)
    else:
        ds = load_tfds("cifar10", split, data_dir, download=download, as_supervised=True)
        size = 50_000
    if skip:
        ds = ds.skip(skip)
    if take is not None:
        ds = ds.take(take)

    def to_float(images, labels):
        return tf.cast(images, tf.float32) / 255.0, tf.cast(labels, tf.int32)

    return prepare(
        ds,
        batch_size,
        cache=cache,
        shuffle=base == "train" if shuffle is None else shuffle,
        shuffle_buffer=max(1, min(size, 50_000)),
        seed=seed,
        repeat=repeat,
        drop_remainder=drop_remainder,
        batch_map_fn=to_float,
        augment=augment,
    )
