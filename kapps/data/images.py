"""Local image sources: folders of images, one sub-folder per class.

Layout read by :func:`image_folder` (the ``torchvision.datasets.ImageFolder`` layout)::

    root/
      airplane/0001.jpg 0002.jpg ...
      automobile/...

Labels are the indices of the class folders in sorted order. :func:`load_image` is the one
decoding step the other image sources (image+mask folders, Pascal VOC) share.
"""

from __future__ import annotations

import os

import tensorflow as tf

from kapps._checks import check_choice, check_int_sequence
from kapps.data.errors import DatasetNotFoundError
from kapps.data.pipeline import AUTOTUNE

#: File name endings read as images (``tf.io.decode_image`` decodes all of them).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def load_image(path, image_size=None, channels: int = 3) -> tf.Tensor:
    """Read and decode one image file to ``float32`` in ``[0, 1]``.

    Args:
        path: file path (a string tensor inside ``tf.data``).
        image_size: ``(height, width)`` to resize to (bilinear), or ``None`` to keep the size.
        channels: 1 (grayscale) or 3 (RGB); images are converted to this many channels.

    Returns:
        A ``float32`` tensor of shape ``(height, width, channels)``.
    """
    image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    image = tf.image.convert_image_dtype(image, tf.float32)  # uint8 -> [0, 1]
    if image_size is not None:
        # Bilinear resizing can overshoot slightly; keep the documented range.
        image = tf.clip_by_value(tf.image.resize(image, image_size), 0.0, 1.0)
    return tf.ensure_shape(image, (*(image_size or (None, None)), channels))


def list_image_folder(root, class_names=None):
    """List the images of a class-per-folder tree.

    Args:
        root: the folder holding one sub-folder per class.
        class_names: the classes to read, in label order; ``None`` reads every sub-folder,
            sorted by name.

    Returns:
        ``(paths, labels, class_names)``: two lists of equal length and the class names.

    Raises:
        DatasetNotFoundError: ``root`` does not exist, has no class folders, a requested class
            folder is missing, or no image files were found.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DatasetNotFoundError(f"image folder root {root!r} does not exist or is not a directory.")
    if class_names is None:
        class_names = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
        if not class_names:
            raise DatasetNotFoundError(
                f"image folder {root!r} has no class sub-folders; expected root/<class>/<image>"
                f" with images ending in {', '.join(IMAGE_EXTENSIONS)}."
            )
    else:
        class_names = list(class_names)
        missing = [c for c in class_names if not os.path.isdir(os.path.join(root, c))]
        if missing:
            raise DatasetNotFoundError(f"image folder {root!r} has no class folder(s) {missing}.")
    paths, labels = [], []
    for label, name in enumerate(class_names):
        folder = os.path.join(root, name)
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
        paths += [os.path.join(folder, f) for f in files]
        labels += [label] * len(files)
    if not paths:
        raise DatasetNotFoundError(
            f"image folder {root!r} has class folders {class_names[:5]}... but no images ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}."
        )
    return paths, labels, class_names


def image_folder(
    root,
    image_size,
    *,
    channels: int = 3,
    class_names=None,
    shuffle: bool = False,
    seed: int | None = None,
):
    """Images and labels from a class-per-folder tree, as single examples.

    Batch them with :func:`kapps.data.prepare`. Files are listed in sorted order, so classes
    come one after another: pass ``shuffle=True`` here (a cheap, perfect shuffle of the file
    list, new every epoch) or ``shuffle=True`` to ``prepare`` when caching decoded images.

    Args:
        root: the folder holding one sub-folder per class.
        image_size: ``(height, width)`` or one int for square images; every image is resized.
        channels: 1 (grayscale) or 3 (RGB).
        class_names: classes to read, in label order; ``None`` reads every sub-folder sorted.
        shuffle: shuffle the file list before decoding.
        seed: seed for that shuffle.

    Returns:
        ``(dataset, class_names)``: a ``tf.data.Dataset`` of ``(image, label)`` with ``image``
        ``float32`` in ``[0, 1]`` of shape ``(height, width, channels)`` and ``label`` ``int32``,
        and the list of class names (index = label).

    Raises:
        ValueError: ``image_size`` or ``channels`` is not valid.
        DatasetNotFoundError: see :func:`list_image_folder`.
    """
    image_size = _check_image_size(image_size)
    check_choice("channels", channels, (1, 3))
    paths, labels, class_names = list_image_folder(root, class_names)
    ds = tf.data.Dataset.from_tensor_slices((paths, tf.constant(labels, tf.int32)))
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(
        lambda path, label: (load_image(path, image_size, channels), label),
        num_parallel_calls=AUTOTUNE,
    )
    return ds, class_names


def _check_image_size(image_size):
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    return check_int_sequence("image_size", image_size, 2)
