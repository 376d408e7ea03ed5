"""Pascal VOC detection data: annotation folders, the TFDS ``voc`` dataset, and batched
``(images, y_true)`` pipelines with box-aware augmentation for the YOLO detectors.

Layout read by :func:`load_voc` (the Pascal VOC devkit layout, also written by LabelImg)::

    root/
      Annotations/<id>.xml          one XML file per image (<size>, <object><bndbox>...)
      JPEGImages/<id>.jpg
      ImageSets/Main/<split>.txt    one image id per line (train, val, trainval, test)

Coordinates. VOC XML stores 1-based, inclusive pixel indices: a box with ``xmin=1, xmax=640``
covers every column of a 640-pixel-wide image. kapps converts them to 0-based continuous
coordinates, ``(xmin - 1, ymin - 1, xmax, ymax)``, so a box is ``xmax - xmin + 1`` pixels
wide as in the VOC devkit's evaluation code (and py-faster-rcnn's loader), then divides by the
image width and height to get the canonical ``rel_xyxy`` boxes in ``[0, 1]``. :func:`voc_tfds` applies the same
correction to TFDS' boxes (which divide the raw 1-based values), so both sources agree.

Targets. :func:`detection_dataset` yields ``float32`` images in ``[0, 1]`` of shape
``(batch, size, size, 3)`` and ``y_true`` of shape ``(batch, max_boxes, 5)``: rows
``(x_min, y_min, x_max, y_max, class_id)`` in ``rel_xyxy``, the real boxes first, then padding
rows that are all ``-1``.

BCCD as stored in ``shared/data/bccd`` (checked on the files): 364 images of 640x480, 4,888
boxes of 3 classes (RBC 4,155, WBC 372, Platelets 361), splits train/val/trainval/test of
205/87/292/72 images (train, val and test are disjoint; trainval = train + val). Two RBC boxes
are degenerate (stored ``xmin == xmax`` and ``ymin == ymax``: BloodImage_00338 and
BloodImage_00343) and are dropped; no box lies outside its image. No box is marked difficult.

Example:
    >>> records, classes = load_voc("../shared/data/bccd", "train")
    >>> classes
    ('Platelets', 'RBC', 'WBC')
    >>> train = detection_dataset(records, image_size=416, batch_size=16, training=True,
    ...                           multi_scale=(320, 352, 384, 416), shuffle_seed=0)
    >>> anchors = kapps.boxes.kmeans_anchors(box_sizes(records), 5)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import xml.etree.ElementTree as ET

import keras
import numpy as np
import tensorflow as tf

from kapps._checks import check_choice, check_positive_int, check_rate
from kapps.data.errors import DatasetCorruptError, DatasetNotFoundError
from kapps.data.pipeline import AUTOTUNE
from kapps.data.tfds import load_tfds

logger = logging.getLogger(__name__)

#: The 20 Pascal VOC classes in the standard (devkit, TFDS, Darknet) order.
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
VOC_YEARS = (2007, 2012)

_VOC_HINT = (
    "A Pascal VOC folder holds Annotations/<id>.xml, JPEGImages/<id>.jpg and "
    "ImageSets/Main/<split>.txt (one image id per line). Pascal VOC itself: VOCdevkit/VOC2007 "
    "from http://host.robots.ox.ac.uk/pascal/VOC/ (or kapps.data.voc_tfds for the TFDS copy); "
    "BCCD (blood cells, 3 classes): the BCCD folder of github.com/Shenggan/BCCD_Dataset."
)
# Boxes at most this many pixels wide or high (after the 1-based -> 0-based conversion and
# clipping) are dropped: a stored box with xmax <= xmin spans no area as drawn (the annotator
# clicked without dragging) and converts to a width of at most 1 pixel.
_MIN_BOX_PIXELS = 1.0


@dataclasses.dataclass(frozen=True)
class VocStats:
    """What :func:`load_voc` did to the boxes of one split.

    Attributes:
        images: records returned.
        boxes: boxes kept in the records.
        clipped: kept boxes that reached outside their image and were clipped to it.
        dropped: boxes removed as degenerate: at most 1 pixel wide or high after clipping
            (stored ``xmax <= xmin`` or ``ymax <= ymin``, or lying outside the image).
        difficult_skipped: boxes marked difficult and left out (``keep_difficult=False``).
        clipped_files: annotation files (base names) with clipped boxes.
        dropped_files: annotation files (base names) with dropped boxes.
    """

    images: int
    boxes: int
    clipped: int
    dropped: int
    difficult_skipped: int
    clipped_files: tuple = ()
    dropped_files: tuple = ()


# ----------------------------------------------------------------------------- annotations


def read_voc_annotation(path):
    """Read one Pascal VOC annotation file.

    Box coordinates are converted from VOC's 1-based inclusive pixel indices to 0-based
    continuous pixel coordinates: ``(xmin - 1, ymin - 1, xmax, ymax)``; they are not clipped
    or filtered here (see :func:`load_voc`).

    Args:
        path: the ``.xml`` file.

    Returns:
        A dict with ``filename`` (the ``<filename>`` element, or the file's stem + ``.jpg``
        when absent), ``width`` and ``height`` (ints) and ``objects``: a list of dicts with
        ``name`` (str), ``box`` (``(xmin, ymin, xmax, ymax)`` floats, 0-based pixels),
        ``difficult`` and ``truncated`` (bools, ``False`` when the element is absent).

    Raises:
        DatasetNotFoundError: the file does not exist.
        DatasetCorruptError: the file is not XML, or lacks a positive ``<size>`` or a
            complete ``<bndbox>``.

    Example:
        >>> ann = read_voc_annotation("../shared/data/bccd/Annotations/BloodImage_00000.xml")
        >>> ann["width"], ann["objects"][0]["name"], ann["objects"][0]["box"]
        (640, 'WBC', (259.0, 176.0, 491.0, 376.0))
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"No Pascal VOC annotation file at {path!r}. {_VOC_HINT}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise DatasetCorruptError(f"{path!r} is not a readable XML annotation: {err}.") from err
    try:
        width = int(float(root.findtext("size/width")))
        height = int(float(root.findtext("size/height")))
    except (TypeError, ValueError):
        width = height = 0
    if width < 1 or height < 1:
        raise DatasetCorruptError(
            f"{path!r} has no positive <size><width>/<height> (found width="
            f"{root.findtext('size/width')!r}, height={root.findtext('size/height')!r}); "
            "the image size is needed to make boxes relative."
        )
    filename = (root.findtext("filename") or "").strip()
    if not filename:
        filename = os.path.splitext(os.path.basename(path))[0] + ".jpg"
    objects = []
    for number, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        try:
            xmin, ymin, xmax, ymax = (
                float(obj.findtext(f"bndbox/{key}")) for key in ("xmin", "ymin", "xmax", "ymax")
            )
        except (TypeError, ValueError):
            raise DatasetCorruptError(
                f"{path!r}: object {number} ({name or 'no name'}) has no complete "
                "<bndbox> with numeric xmin, ymin, xmax, ymax."
            ) from None
        if not name:
            raise DatasetCorruptError(f"{path!r}: object {number} has no <name>.")
        objects.append({
            "name": name,
            "box": (xmin - 1.0, ymin - 1.0, xmax, ymax),
            "difficult": _flag(obj.findtext("difficult")),
            "truncated": _flag(obj.findtext("truncated")),
        })
    return {"filename": filename, "width": width, "height": height, "objects": objects}


def _flag(text):
    try:
        return bool(int(float(text)))
    except (TypeError, ValueError):
        return False


def _split_files(root):
    main = os.path.join(root, "ImageSets", "Main")
    return {
        os.path.splitext(entry)[0]: os.path.join(main, entry)
        for entry in sorted(os.listdir(main))
        if entry.endswith(".txt") and not entry.startswith(".")
    }


def _read_ids(path):
    # First token of every non-blank line: split lists hold "<id>", VOC's per-class lists
    # ("aeroplane_train.txt") hold "<id> <1|-1|0>".
    with open(path, encoding="utf-8") as handle:
        return [line.split()[0] for line in handle if line.strip()]


def _check_root(root, split):
    missing = [
        sub for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main"))
        if not os.path.isdir(os.path.join(root, sub))
    ]
    if missing:
        raise DatasetNotFoundError(
            f"Pascal VOC folder {root!r}: missing {', '.join(repr(os.path.join(root, m)) for m in missing)}. "
            f"{_VOC_HINT}"
        )
    splits = _split_files(root)
    if split not in splits:
        plain = sorted(name for name in splits if "_" not in name) or sorted(splits)
        raise DatasetNotFoundError(
            f"Pascal VOC folder {root!r}: no split {split!r} (looked for "
            f"{os.path.join(root, 'ImageSets', 'Main', split + '.txt')!r}); the splits there "
            f"are {plain}."
        )
    return splits


def load_voc(root, split="train", class_names=None, *, keep_difficult=True, with_stats=False):
    """The annotated images of one split of a Pascal VOC folder, as a list of records.

    Each box is converted to 0-based pixels (see :func:`read_voc_annotation`), clipped to
    its image, and dropped when it is then at most 1 pixel wide or high (a stored
    ``xmax <= xmin`` or ``ymax <= ymin`` spans no area; a box outside the image has nothing
    left). Clipped and dropped boxes are counted, logged at WARNING with their files, and
    returned in a :class:`VocStats` when ``with_stats`` is true.

    Class names, when not given: the names found in every annotation listed in
    ``ImageSets/Main/*.txt`` (so every split of a folder gets the same ids); when all of them
    are VOC class names, :data:`VOC_CLASSES` (all 20, in the standard order), otherwise the
    names sorted (``("Platelets", "RBC", "WBC")`` for BCCD).

    Args:
        root: the folder holding ``Annotations``, ``JPEGImages`` and ``ImageSets/Main``.
        split: the name of a list in ``ImageSets/Main`` (``"train"``, ``"val"``,
            ``"trainval"``, ``"test"``).
        class_names: the class names in class-id order; ``None`` derives them (see above).
        keep_difficult: keep boxes marked difficult (flagged in ``difficult``; VOC's mAP
            ignores them). Darknet trains without them: pass ``False`` for training.
        with_stats: also return a :class:`VocStats`.

    Returns:
        ``(records, class_names)`` (``(records, class_names, stats)`` with ``with_stats``).
        ``records`` is a list, in the split file's order, of dicts with ``image_path``,
        ``image_id``, ``width``, ``height`` (ints), ``boxes`` (``float32 (m, 4)`` rel_xyxy,
        ``0 <= min < max <= 1``), ``classes`` (``int32 (m,)``) and ``difficult``
        (``bool (m,)``); ``class_names`` is a tuple of str.

    Raises:
        ValueError: ``split`` or ``class_names`` is not valid, or an annotation names a class
            not in ``class_names`` (the message names the file and the class).
        DatasetNotFoundError: the folder, one of its sub-folders or the split's list is
            missing (the message says where it looked and where to get the data).
        DatasetCorruptError: a listed image or annotation is missing or unreadable.

    Example:
        >>> records, classes, stats = load_voc("../shared/data/bccd", "test", with_stats=True)
        >>> len(records), classes, stats.dropped
        (72, ('Platelets', 'RBC', 'WBC'), 0)
    """
    if not isinstance(split, str) or not split or os.sep in split or "/" in split:
        raise ValueError(
            f"split={split!r} is not allowed; expected the name of a list in ImageSets/Main "
            "such as 'train', 'val', 'trainval' or 'test'."
        )
    if class_names is not None:
        if (
            isinstance(class_names, str)
            or not isinstance(class_names, (list, tuple))
            or not class_names
            or not all(isinstance(c, str) and c for c in class_names)
            or len(set(class_names)) != len(class_names)
        ):
            raise ValueError(
                f"class_names={class_names!r} is not allowed; expected a non-empty list of "
                "distinct class-name strings, in class-id order."
            )
        class_names = tuple(class_names)
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DatasetNotFoundError(f"Pascal VOC folder {root!r} does not exist. {_VOC_HINT}")
    splits = _check_root(root, split)
    annotations = {}

    def annotation(image_id):
        if image_id not in annotations:
            path = os.path.join(root, "Annotations", image_id + ".xml")
            if not os.path.isfile(path):
                raise DatasetCorruptError(
                    f"Pascal VOC folder {root!r}: image id {image_id!r} is listed in "
                    f"ImageSets/Main but {path!r} does not exist."
                )
            annotations[image_id] = read_voc_annotation(path)
        return annotations[image_id]

    ids = _read_ids(splits[split])
    if class_names is None:
        names = set()
        for image_id in dict.fromkeys(i for f in splits.values() for i in _read_ids(f)):
            names.update(obj["name"] for obj in annotation(image_id)["objects"])
        class_names = VOC_CLASSES if names and names <= set(VOC_CLASSES) else tuple(sorted(names))
    class_ids = {name: i for i, name in enumerate(class_names)}

    records, clipped_files, dropped_files = [], {}, {}
    kept = difficult_skipped = 0
    for image_id in ids:
        ann = annotation(image_id)
        xml_name = image_id + ".xml"
        image_path = os.path.join(root, "JPEGImages", ann["filename"])
        if not os.path.isfile(image_path):
            image_path = os.path.join(root, "JPEGImages", image_id + ".jpg")
        if not os.path.isfile(image_path):
            raise DatasetCorruptError(
                f"Pascal VOC folder {root!r}: no image for {xml_name!r} (looked for "
                f"{os.path.join(root, 'JPEGImages', ann['filename'])!r} and {image_path!r})."
            )
        width, height = ann["width"], ann["height"]
        boxes, classes, difficult = [], [], []
        for obj in ann["objects"]:
            if obj["name"] not in class_ids:
                raise ValueError(
                    f"{os.path.join(root, 'Annotations', xml_name)!r} has an object of class "
                    f"{obj['name']!r}, which is not in class_names={list(class_names)!r}."
                )
            if obj["difficult"] and not keep_difficult:
                difficult_skipped += 1
                continue
            x0, y0, x1, y1 = obj["box"]
            cx0, cy0 = min(max(x0, 0.0), width), min(max(y0, 0.0), height)
            cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
            if cx1 - cx0 <= _MIN_BOX_PIXELS or cy1 - cy0 <= _MIN_BOX_PIXELS:
                dropped_files[xml_name] = dropped_files.get(xml_name, 0) + 1
                continue
            if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
                clipped_files[xml_name] = clipped_files.get(xml_name, 0) + 1
            boxes.append((cx0 / width, cy0 / height, cx1 / width, cy1 / height))
            classes.append(class_ids[obj["name"]])
            difficult.append(obj["difficult"])
        kept += len(boxes)
        records.append({
            "image_path": image_path,
            "image_id": image_id,
            "width": width,
            "height": height,
            "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "classes": np.asarray(classes, np.int32),
            "difficult": np.asarray(difficult, bool),
        })

    stats = VocStats(
        images=len(records),
        boxes=kept,
        clipped=sum(clipped_files.values()),
        dropped=sum(dropped_files.values()),
        difficult_skipped=difficult_skipped,
        clipped_files=tuple(clipped_files),
        dropped_files=tuple(dropped_files),
    )
    if stats.clipped:
        logger.warning(
            "Pascal VOC %s/%s: clipped %d box(es) reaching outside the image in %s",
            root, split, stats.clipped, _listing(clipped_files),
        )
    if stats.dropped:
        logger.warning(
            "Pascal VOC %s/%s: dropped %d degenerate box(es) (at most 1 pixel wide or high "
            "after clipping) in %s", root, split, stats.dropped, _listing(dropped_files),
        )
    return (records, class_names, stats) if with_stats else (records, class_names)


def _listing(counts, limit=10):
    items = [f"{name} ({n})" for name, n in list(counts.items())[:limit]]
    more = f" and {len(counts) - limit} more file(s)" if len(counts) > limit else ""
    return ", ".join(items) + more


def voc_tfds(split, *, data_dir=None, download=True, year=2007, keep_difficult=True):
    """Pascal VOC from TensorFlow Datasets (``voc/2007`` or ``voc/2012``) as a dataset of
    records for :func:`detection_dataset`.

    TFDS stores ``objects/bbox`` as relative ``(ymin, xmin, ymax, xmax)`` of the raw 1-based
    VOC values; they are reordered to ``rel_xyxy`` and ``xmin``/``ymin`` are moved by one
    pixel, so boxes match :func:`load_voc`'s ``(xmin - 1, ymin - 1, xmax, ymax)`` exactly.

    Args:
        split: ``"train"``, ``"val"`` (TFDS' ``"validation"``), ``"trainval"``
            (``"train+validation"``), ``"test"``, or any TFDS split expression.
        data_dir: directory of prepared TFDS datasets (see ``kapps.data.tfds_data_dir``).
        download: download and prepare the data when it is not prepared (needs internet
            and about 1 GB for 2007).
        year: 2007 or 2012 (2012's test split has no annotations).
        keep_difficult: keep the boxes marked difficult.

    Returns:
        ``(dataset, VOC_CLASSES)``: a ``tf.data.Dataset`` of dicts with ``image``
        (``uint8 (h, w, 3)``), ``image_id`` (the file name), ``width``, ``height`` (``int32``),
        ``boxes`` (``float32 (m, 4)`` rel_xyxy), ``classes`` (``int32 (m,)``) and
        ``difficult`` (``bool (m,)``).

    Raises:
        ValueError: ``year`` is not 2007 or 2012.
        DatasetNotFoundError: the dataset is not prepared under the data directory and
            ``download`` is false or the network is unreachable (the message says where it
            looked and how to prepare it).
        DatasetCorruptError: the prepared dataset is incomplete.

    Example:
        >>> ds, classes = voc_tfds("trainval", data_dir="../shared/tfds", download=False)
        >>> train = detection_dataset(ds, image_size=416, batch_size=16, training=True)
    """
    check_choice("year", year, VOC_YEARS)
    split = {"val": "validation", "trainval": "train+validation"}.get(split, split)
    ds = load_tfds(f"voc/{year}", split, data_dir, download=download, as_supervised=False)

    def convert(example):
        image = example["image"]
        shape = tf.shape(image)
        height, width = shape[0], shape[1]
        objects = example["objects"]
        ymin, xmin, ymax, xmax = tf.unstack(tf.reshape(objects["bbox"], (-1, 4)), axis=1)
        # TFDS divides the raw 1-based xmin by the width; move it by one pixel (VOC -> 0-based).
        xmin = tf.maximum(xmin - 1.0 / tf.cast(width, tf.float32), 0.0)
        ymin = tf.maximum(ymin - 1.0 / tf.cast(height, tf.float32), 0.0)
        boxes = tf.stack([xmin, ymin, xmax, ymax], axis=1)
        classes = tf.cast(objects["label"], tf.int32)
        difficult = tf.cast(objects["is_difficult"], tf.bool)
        if not keep_difficult:
            keep = tf.logical_not(difficult)
            boxes, classes, difficult = (
                tf.boolean_mask(boxes, keep), tf.boolean_mask(classes, keep),
                tf.boolean_mask(difficult, keep),
            )
        return {
            "image": image, "image_id": example["image/filename"], "width": width,
            "height": height, "boxes": boxes, "classes": classes, "difficult": difficult,
        }

    return ds.map(convert, num_parallel_calls=AUTOTUNE), VOC_CLASSES


def box_sizes(records):
    """The relative ``(width, height)`` of every box, for choosing anchors by k-means
    (``kapps.boxes.kmeans_anchors``).

    Args:
        records: records from :func:`load_voc`, or the dataset from :func:`voc_tfds`
            (iterated once, which decodes its images: slow for all of VOC).

    Returns:
        ``float32 (n, 2)``: box widths and heights as fractions of the image size, in record
        order.

    Raises:
        ValueError: a record has no ``boxes``.

    Example:
        >>> records, _ = load_voc("../shared/data/bccd", "train")
        >>> box_sizes(records).shape
        (2804, 2)
    """
    if isinstance(records, tf.data.Dataset):
        records = records.map(lambda r: {"boxes": r["boxes"]}).as_numpy_iterator()
    sizes = []
    for number, record in enumerate(records):
        if not isinstance(record, dict) or "boxes" not in record:
            raise ValueError(f"records[{number}] has no 'boxes'; expected records from load_voc.")
        boxes = np.asarray(record["boxes"], np.float32).reshape(-1, 4)
        sizes.append(boxes[:, 2:] - boxes[:, :2])
    return np.concatenate(sizes).astype(np.float32) if sizes else np.zeros((0, 2), np.float32)


# ----------------------------------------------------------------------------- pipeline


def _seed(seed, offset):
    return None if seed is None else seed + offset


def _y_true_numpy(record, max_boxes):
    boxes = np.asarray(record["boxes"], np.float32).reshape(-1, 4)[:max_boxes]
    classes = np.asarray(record["classes"], np.float32).reshape(-1)[:max_boxes]
    y_true = np.full((max_boxes, 5), -1.0, np.float32)
    y_true[: len(boxes), :4] = boxes
    y_true[: len(boxes), 4] = classes
    return y_true


def _y_true_tensor(boxes, classes, max_boxes):
    rows = tf.concat(
        [tf.reshape(tf.cast(boxes, tf.float32), (-1, 4)),
         tf.cast(tf.reshape(classes, (-1, 1)), tf.float32)],
        axis=1,
    )[:max_boxes]
    rows = tf.pad(rows, [[0, max_boxes - tf.shape(rows)[0]], [0, 0]], constant_values=-1.0)
    return tf.ensure_shape(rows, (max_boxes, 5))


def _resize_uint8(image, size):
    # uint8 through the cache: 4x smaller than float32 (BCCD train at 416: 106 MB).
    image = tf.image.resize(image, (size, size), antialias=True)
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return tf.ensure_shape(image, (size, size, 3))


def _load_image(path, size):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return _resize_uint8(image, size)


def _pack(boxes, labels, min_width, min_height):
    """Rows ``(box, class)`` with padding -1 for removed boxes, valid rows first."""
    labels = tf.cast(labels, tf.int32)
    width, height = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    valid = (labels >= 0) & (width >= min_width) & (height >= min_height)
    rows = tf.concat([boxes, tf.cast(labels, tf.float32)[..., None]], axis=-1)
    rows = tf.where(valid[..., None], rows, -1.0)
    order = tf.argsort(tf.cast(tf.logical_not(valid), tf.int32), axis=-1, stable=True)
    return tf.gather(rows, order, batch_dims=1)  # (batch, max_boxes, 5)


def detection_augmentation(
    *,
    flip: str | None = "horizontal",
    translate: float = 0.2,
    zoom: float = 0.2,
    hue: float = 0.1,
    saturation: float = 1.5,
    exposure: float = 1.5,
    fill_value: float = 0.5,
    seed: int | None = None,
):
    """YOLOv2-style random augmentation of a batch of images and their boxes.

    Geometric steps move the boxes with the image (Keras preprocessing layers with
    ``bounding_box_format="rel_xyxy"``, run in ``tf.data``): ``RandomFlip``,
    ``RandomTranslation`` and ``RandomZoom`` (width and height zoomed independently, which
    also changes the aspect ratio). Together they stand in for Darknet's random crop
    ("jitter": each crop edge moved by up to 20 % of the size, Redmon and Farhadi 2017 and
    its ``yolo-voc.cfg``). Boxes are clipped to the image; boxes that leave it, or are left
    less than one pixel wide or high, become padding rows, and the remaining rows move first.
    Uncovered borders are filled with ``fill_value`` (Darknet's grey 0.5).

    Photometric jitter, as Darknet's ``random_distort_image``: per image, in HSV, the hue is
    shifted by ``U(-hue, hue)`` of the colour circle (wrapping around), saturation and value
    are multiplied by log-uniform factors in ``[1/saturation, saturation]`` and
    ``[1/exposure, exposure]`` and clipped to ``[0, 1]``. It is one ``rgb_to_hsv`` /
    ``hsv_to_rgb`` round trip rather than Keras' ``RandomHue`` and ``RandomSaturation``
    layers: those convert to HSV and back once each (2.5x the time per batch on a CPU,
    where this pipeline runs) and Keras has no layer that scales V (``RandomBrightness``
    adds a constant).

    Cost: with the defaults about 35 ms of one CPU core per 416x416 image (flip, translation
    and zoom about 9 ms each, the HSV jitter 15 ms); ``detection_dataset`` runs batches in
    parallel on all cores.

    Args:
        flip: ``None``, ``"horizontal"``, ``"vertical"`` or ``"horizontal_and_vertical"``.
        translate: largest shift as a fraction of the height and width, in ``[0, 1)``.
        zoom: largest zoom in or out as a fraction, in ``[0, 1)``.
        hue: largest hue shift as a fraction of the colour circle, in ``[0, 0.5]``.
        saturation: largest saturation scale, ``>= 1`` (1 for none).
        exposure: largest brightness scale, ``>= 1`` (1 for none).
        fill_value: value of pixels shifted in, in ``[0, 1]``.
        seed: base seed; each step gets its own seed derived from it.

    Returns:
        A function ``(images, y_true) -> (images, y_true)`` on batches: ``float32`` images
        ``(batch, height, width, 3)`` in ``[0, 1]`` and ``y_true`` ``(batch, max_boxes, 5)``
        (see the module docstring), for ``tf.data.Dataset.map`` or the ``augment=`` of
        :func:`detection_dataset`.

    Raises:
        ValueError: an argument is outside its range (the message names it).

    Example:
        >>> augment = detection_augmentation(flip="horizontal_and_vertical", hue=0.0, seed=0)
        >>> train = detection_dataset(records, image_size=416, batch_size=16, training=True,
        ...                           augment=augment)
    """
    check_choice("flip", flip, (None, "horizontal", "vertical", "horizontal_and_vertical"))
    check_rate("translate", translate)
    check_rate("zoom", zoom)
    for name, value, low, high, allowed in (
        ("hue", hue, 0.0, 0.5, "a fraction of the colour circle in [0, 0.5]"),
        ("saturation", saturation, 1.0, math.inf, "a scale >= 1 (1 for none)"),
        ("exposure", exposure, 1.0, math.inf, "a scale >= 1 (1 for none)"),
        ("fill_value", fill_value, 0.0, 1.0, "a pixel value in [0, 1]"),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"{name}={value!r} is not allowed; expected {allowed}.")

    box_format = "rel_xyxy"
    geometric = []
    if flip:
        geometric.append(keras.layers.RandomFlip(flip, bounding_box_format=box_format, seed=_seed(seed, 0)))
    if translate:
        geometric.append(keras.layers.RandomTranslation(
            translate, translate, fill_mode="constant", fill_value=fill_value,
            bounding_box_format=box_format, seed=_seed(seed, 1),
        ))
    if zoom:
        geometric.append(keras.layers.RandomZoom(
            (-zoom, zoom), (-zoom, zoom), fill_mode="constant", fill_value=fill_value,
            bounding_box_format=box_format, seed=_seed(seed, 2),
        ))
    log_scales = (math.log(saturation), math.log(exposure))
    photometric = bool(hue) or saturation > 1 or exposure > 1
    jitter_seed = _seed(seed, 3)

    def augment(images, y_true):
        images = tf.convert_to_tensor(images, tf.float32)
        y_true = tf.convert_to_tensor(y_true, tf.float32)
        boxes, labels = y_true[..., :4], tf.cast(y_true[..., 4], tf.int32)
        if geometric:
            padding = labels < 0
            data = {
                "images": images,
                "bounding_boxes": {"boxes": tf.where(padding[..., None], 0.0, boxes), "labels": labels},
            }
            for layer in geometric:
                data = layer(data, training=True)
            images = tf.cast(data["images"], tf.float32)
            boxes = tf.cast(data["bounding_boxes"]["boxes"], tf.float32)
            labels = tf.where(padding, -1, tf.cast(data["bounding_boxes"]["labels"], tf.int32))
        if photometric:
            draws = tf.random.uniform(tf.stack([tf.shape(images)[0], 1, 1, 3]), -1.0, 1.0, seed=jitter_seed)
            hsv = tf.image.rgb_to_hsv(tf.clip_by_value(images, 0.0, 1.0))  # (batch, h, w, 3)
            hue_channel = tf.math.floormod(hsv[..., 0] + hue * draws[..., 0], 1.0)
            sat_channel = hsv[..., 1] * tf.exp(log_scales[0] * draws[..., 1])
            val_channel = hsv[..., 2] * tf.exp(log_scales[1] * draws[..., 2])
            hsv = tf.clip_by_value(tf.stack([hue_channel, sat_channel, val_channel], axis=-1), 0.0, 1.0)
            images = tf.image.hsv_to_rgb(hsv)
        images = tf.clip_by_value(images, 0.0, 1.0)
        shape = tf.cast(tf.shape(images), tf.float32)
        y_true = _pack(boxes, labels, _MIN_BOX_PIXELS / shape[2], _MIN_BOX_PIXELS / shape[1])
        return images, y_true

    return augment


def detection_dataset(
    records,
    *,
    image_size: int,
    batch_size: int,
    max_boxes: int = 100,
    training: bool = False,
    augment=True,
    multi_scale=None,
    shuffle_seed: int | None = None,
    cache: bool | str = True,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches of ``(images, y_true)`` for the YOLO detectors.

    The pipeline: decode the images in parallel and resize them to ``image_size`` squared
    (a plain resize, bilinear with antialiasing; relative boxes stay valid; aspect ratios
    change as in YOLO) -> ``cache`` (``uint8``) -> when ``training``, ``shuffle`` (new order
    every epoch) -> ``batch`` -> scale to ``float32`` in ``[0, 1]`` -> when ``training``:
    ``augment`` and ``multi_scale`` -> ``prefetch``.

    ``y_true`` rows are the first ``max_boxes`` boxes of each image (in annotation order;
    further boxes are left out, with a warning for records from :func:`load_voc`); padding
    rows are all -1. Augmentation can remove boxes (moved out of the image); their rows become
    padding and the remaining boxes move first.

    Multi-scale training (YOLOv2 Sec. 2 "Multi-Scale Training"): each training batch is
    resized to one size drawn at random from ``multi_scale`` (Darknet draws a new size every
    10 batches; here every batch). Images are resized from the
    cached ``image_size`` copies, so set ``image_size`` to the largest scale. Image
    height and width are then unknown in the dataset's ``element_spec``.

    Args:
        records: records from :func:`load_voc` (a list of dicts with ``image_path``, ``boxes``
            and ``classes``) or a ``tf.data.Dataset`` of dicts with ``image`` (``uint8``
            ``(h, w, 3)``), ``boxes`` and ``classes`` (from :func:`voc_tfds`).
        image_size: side of the square images, in pixels.
        batch_size: examples per batch (the *global* batch under ``tf.distribute``).
        max_boxes: rows of ``y_true`` per image.
        training: shuffle, augment and apply ``multi_scale``; otherwise the order is the
            records' and images are only resized.
        augment: ``True`` for :func:`detection_augmentation` with its defaults (seeded from
            ``shuffle_seed``), ``False`` for none, or a function
            ``(images, y_true) -> (images, y_true)`` on batches. Only used when ``training``.
        multi_scale: ``None`` or a sequence of sizes, multiples of 32 (YOLOv2 used 320 to
            608); only used when ``training``.
        shuffle_seed: seed of the shuffle order and (offset) of the augmentation and scale
            draws, for repeatable runs; the order still changes every epoch.
        cache: ``True`` keeps the decoded, resized ``uint8`` images in memory (size^2 x 3
            bytes per image: BCCD train at 416 is 106 MB), a string caches in that file,
            ``False`` decodes every epoch.
        drop_remainder: drop the last partial batch.

    Returns:
        A ``tf.data.Dataset`` of ``(images, y_true)``: ``float32`` images
        ``(batch, image_size, image_size, 3)`` (``(batch, s, s, 3)`` with ``multi_scale``) in
        ``[0, 1]``, and ``float32`` ``y_true`` ``(batch, max_boxes, 5)``.

    Raises:
        ValueError: ``records`` is empty or not records, or ``image_size``, ``batch_size``,
            ``max_boxes``, ``multi_scale``, ``augment``, ``shuffle_seed`` or ``cache`` is not
            valid (the message names the argument).

    Example:
        >>> records, classes = load_voc("../shared/data/bccd", "train", keep_difficult=False)
        >>> train = detection_dataset(records, image_size=416, batch_size=16, training=True,
        ...                           multi_scale=(320, 352, 384, 416), shuffle_seed=0)
        >>> images, y_true = next(iter(train))  # (16, s, s, 3), (16, 100, 5)
    """
    check_positive_int("image_size", image_size)
    check_positive_int("batch_size", batch_size)
    check_positive_int("max_boxes", max_boxes)
    if multi_scale is not None:
        if (
            not isinstance(multi_scale, (list, tuple))
            or not multi_scale
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 32 or s % 32 for s in multi_scale)
        ):
            raise ValueError(
                f"multi_scale={multi_scale!r} is not allowed; expected None or a non-empty list "
                "of sizes that are positive multiples of 32, e.g. (320, 352, 384, 416)."
            )
        multi_scale = tuple(multi_scale)
    if not (isinstance(augment, bool) or callable(augment)):
        raise ValueError(
            f"augment={augment!r} is not allowed; expected True, False or a function "
            "(images, y_true) -> (images, y_true)."
        )
    if shuffle_seed is not None and (isinstance(shuffle_seed, bool) or not isinstance(shuffle_seed, int)):
        raise ValueError(f"shuffle_seed={shuffle_seed!r} is not allowed; expected None or an int.")
    if not isinstance(cache, (bool, str)):
        raise ValueError(f"cache={cache!r} is not allowed; expected True, False or a file path.")

    if isinstance(records, tf.data.Dataset):
        def from_record(record):
            image = _resize_uint8(record["image"], image_size)
            return image, _y_true_tensor(record["boxes"], record["classes"], max_boxes)

        ds = records.map(from_record, num_parallel_calls=AUTOTUNE)
        count = int(records.cardinality())
        buffer = min(count, 4096) if count > 0 else 4096
    else:
        if (
            not isinstance(records, (list, tuple)) or not records
            or not all(isinstance(r, dict) and {"image_path", "boxes", "classes"} <= set(r) for r in records)
        ):
            raise ValueError(
                f"records={_short(records)} is not allowed; expected a non-empty list of records "
                "from load_voc (dicts with 'image_path', 'boxes', 'classes') or a tf.data.Dataset "
                "from voc_tfds."
            )
        too_many = sum(len(r["boxes"]) > max_boxes for r in records)
        if too_many:
            logger.warning(
                "detection_dataset: %d image(s) have more than max_boxes=%d boxes; the first "
                "%d of each are used.", too_many, max_boxes, max_boxes,
            )
        paths = [os.fspath(r["image_path"]) for r in records]
        y_true = np.stack([_y_true_numpy(r, max_boxes) for r in records])
        ds = tf.data.Dataset.from_tensor_slices((paths, y_true))
        ds = ds.map(lambda p, y: (_load_image(p, image_size), y), num_parallel_calls=AUTOTUNE)
        buffer = len(records)
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if training:
        ds = ds.shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=AUTOTUNE)
    if training and augment:
        fn = detection_augmentation(seed=_seed(shuffle_seed, 10)) if augment is True else augment
        ds = ds.map(fn, num_parallel_calls=AUTOTUNE)
    if training and multi_scale:
        sizes = tf.constant(multi_scale, tf.int32)
        draws = tf.data.Dataset.random(seed=_seed(shuffle_seed, 20), rerandomize_each_iteration=True)

        def rescale(batch, draw):
            images, y = batch
            size = sizes[tf.cast(draw % len(multi_scale), tf.int32)]
            return tf.image.resize(images, tf.stack([size, size]), antialias=True), y

        ds = tf.data.Dataset.zip((ds, draws)).map(rescale, num_parallel_calls=AUTOTUNE)
    ds = ds.prefetch(AUTOTUNE)
    # As kapps.data.prepare: shard by example, not by file, under multi-worker training.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def _short(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
