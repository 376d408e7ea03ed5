"""kapps.data.voc: Pascal VOC folders (the BCCD copy in shared/data), TFDS voc, detection
batches and augmentation that moves boxes with the image."""

import logging
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import tensorflow as tf

from kapps.data import DatasetCorruptError, DatasetNotFoundError
from kapps.data import voc

#: Split sizes stated in shared/data/README.md.
BCCD_SPLITS = {"train": 205, "val": 87, "trainval": 292, "test": 72}
BCCD_BOXES = 4888

# ------------------------------------------------------------------------ BCCD on disk


@pytest.fixture(scope="module")
def bccd(data_dir):
    root = data_dir / "bccd"
    if not root.is_dir():
        pytest.skip(f"BCCD not found at {root} (set KAPPS_SHARED_DIR to the shared/ folder)")
    return root


@pytest.fixture(scope="module")
def loaded(bccd):
    return {split: voc.load_voc(bccd, split, with_stats=True) for split in BCCD_SPLITS}


def _ids(bccd, split):
    lines = (bccd / "ImageSets" / "Main" / f"{split}.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip()]


@pytest.fixture(scope="module")
def raw(bccd):
    """Independent parse with plain ElementTree: {id: (width, height, [(name, x0, y0, x1, y1)])}
    in the files' 1-based inclusive pixel values."""
    out = {}
    for path in sorted((bccd / "Annotations").glob("*.xml")):
        root = ET.parse(path).getroot()
        objects = [
            (o.find("name").text, *(float(o.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")))
            for o in root.iter("object")
        ]
        out[path.stem] = (int(root.find("size/width").text), int(root.find("size/height").text), objects)
    return out


def _degenerate(obj):
    _, x0, y0, x1, y1 = obj
    return x1 <= x0 or y1 <= y0


def _outside(obj, width, height):
    _, x0, y0, x1, y1 = obj
    return x0 < 1 or y0 < 1 or x1 > width or y1 > height


def test_bccd_splits_counts_disjoint_and_files(bccd, loaded):
    ids = {}
    for split, (records, _, stats) in loaded.items():
        ids[split] = [r["image_id"] for r in records]
        assert len(records) == BCCD_SPLITS[split] == stats.images
        assert ids[split] == _ids(bccd, split)  # file order; the trailing blank line is skipped
        for r in records:
            assert os.path.isfile(r["image_path"]) and os.path.basename(r["image_path"]) == r["image_id"] + ".jpg"
            assert (r["width"], r["height"]) == (640, 480)
    train, val, test = set(ids["train"]), set(ids["val"]), set(ids["test"])
    assert not train & val and not train & test and not val & test
    assert set(ids["trainval"]) == train | val
    assert len(train | val | test) == len(list((bccd / "JPEGImages").glob("*.jpg")))


def test_bccd_class_names_and_boxes_match_an_independent_parse(loaded, raw):
    names = sorted({o[0] for _, _, objects in raw.values() for o in objects})
    assert names == ["Platelets", "RBC", "WBC"]
    assert sum(len(objects) for _, _, objects in raw.values()) == BCCD_BOXES
    degenerate = [(i, o) for i, (_, _, objects) in raw.items() for o in objects if _degenerate(o)]
    outside = [(i, o) for i, (w, h, objects) in raw.items() for o in objects if _outside(o, w, h)]
    # The README's "two boxes are degenerate or out of bounds": both are zero-size RBCs.
    assert len(degenerate) == 2 and not outside
    assert sorted(i for i, _ in degenerate) == ["BloodImage_00338", "BloodImage_00343"]

    for split, (records, classes, stats) in loaded.items():
        assert classes == tuple(names)  # the same ids in every split
        expected_dropped = [i for i, _ in degenerate if i in {r["image_id"] for r in records}]
        assert stats.dropped == len(expected_dropped)
        assert sorted(stats.dropped_files) == sorted(f"{i}.xml" for i in expected_dropped)
        assert stats.clipped == 0 and stats.clipped_files == () and stats.difficult_skipped == 0
        assert stats.boxes == sum(len(r["boxes"]) for r in records)
        for r in records:
            width, height, objects = raw[r["image_id"]]
            kept = [o for o in objects if not _degenerate(o)]
            want = np.array([[(x0 - 1) / width, (y0 - 1) / height, x1 / width, y1 / height]
                             for _, x0, y0, x1, y1 in kept], np.float32).reshape(-1, 4)
            assert r["boxes"].dtype == np.float32 and r["boxes"].shape == (len(kept), 4)
            assert r["classes"].dtype == np.int32 and r["difficult"].dtype == bool
            np.testing.assert_allclose(r["boxes"], want, atol=1e-6)
            assert [classes[c] for c in r["classes"]] == [o[0] for o in kept]
            assert not r["difficult"].any()
            boxes = r["boxes"]
            assert (boxes >= 0).all() and (boxes <= 1).all()
            assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    kept_total = sum(loaded[s][2].boxes for s in ("train", "val", "test"))
    assert kept_total == BCCD_BOXES - len(degenerate)


def test_bccd_dropped_boxes_are_logged_by_file(bccd, caplog):
    with caplog.at_level(logging.WARNING, logger="kapps.data.voc"):
        voc.load_voc(bccd, "trainval")
    text = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "dropped 2" in text and "BloodImage_00338.xml" in text and "BloodImage_00343.xml" in text


def test_box_sizes_are_the_relative_widths_and_heights(loaded, raw):
    records = loaded["train"][0]
    sizes = voc.box_sizes(records)
    want = [
        ((x1 - x0 + 1) / w, (y1 - y0 + 1) / h)
        for r in records for w, h, objects in [raw[r["image_id"]]]
        for _, x0, y0, x1, y1 in objects if x1 > x0 and y1 > y0
    ]
    assert sizes.dtype == np.float32 and sizes.shape == (len(want), 2)
    np.testing.assert_allclose(sizes, want, atol=1e-6)


# ------------------------------------------------------------------------ synthetic folders


def _annotation(path, filename, size, objects):
    width, height = size
    parts = [f"<annotation><filename>{filename}</filename>"
             f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for name, box, difficult in objects:
        coords = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
        parts.append(f"<object><name>{name}</name><difficult>{int(difficult)}</difficult>"
                     f"<bndbox>{coords}</bndbox></object>")
    path.write_text("".join(parts) + "</annotation>")


def _toy_voc(root, annotations, splits, size=(40, 30)):
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image_id, objects in annotations.items():
        image = np.full((size[1], size[0], 3), 128, np.uint8)
        tf.io.write_file(os.fspath(root / "JPEGImages" / f"{image_id}.jpg"), tf.io.encode_jpeg(image))
        _annotation(root / "Annotations" / f"{image_id}.xml", f"{image_id}.jpg", size, objects)
    for split, text in splits.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text(text)
    return root


def test_clipping_dropping_difficult_and_class_names(tmp_path, caplog):
    objects = [
        ("dog", (1, 1, 20, 15), False),  # -> (0, 0, 20, 15)
        ("cat", (30, 10, 55, 25), False),  # reaches past x = 40: clipped to (29, 9, 40, 25)
        ("cat", (45, 5, 60, 20), False),  # wholly outside: dropped
        ("dog", (10, 10, 10, 20), False),  # xmin == xmax: dropped
        ("person", (5, 5, 15, 15), True),
    ]
    root = _toy_voc(tmp_path, {"a": objects, "b": []}, {"train": "a\n\nb\n", "test": "b\n"})
    with caplog.at_level(logging.WARNING, logger="kapps.data.voc"):
        records, classes, stats = voc.load_voc(root, "train", with_stats=True)
    assert classes == voc.VOC_CLASSES and len(classes) == 20  # every name is a VOC name
    assert (stats.clipped, stats.dropped, stats.boxes) == (1, 2, 3)
    assert stats.clipped_files == ("a.xml",) and stats.dropped_files == ("a.xml",)
    messages = [r.getMessage() for r in caplog.records]
    assert any("clipped 1" in m and "a.xml" in m for m in messages)
    assert any("dropped 2" in m and "a.xml" in m for m in messages)
    a, b = records
    np.testing.assert_allclose(a["boxes"], [[0, 0, 20 / 40, 15 / 30], [29 / 40, 9 / 30, 1, 25 / 30],
                                            [4 / 40, 4 / 30, 15 / 40, 15 / 30]], atol=1e-6)
    assert [classes[c] for c in a["classes"]] == ["dog", "cat", "person"]
    assert a["difficult"].tolist() == [False, False, True]
    assert b["boxes"].shape == (0, 4) and b["classes"].shape == (0,)

    easy, _, easy_stats = voc.load_voc(root, "train", keep_difficult=False, with_stats=True)
    assert easy_stats.difficult_skipped == 1 and [classes[c] for c in easy[0]["classes"]] == ["dog", "cat"]

    mine, names = voc.load_voc(root, "test", class_names=["person", "dog", "cat"])
    assert names == ("person", "dog", "cat") and len(mine) == 1
    with pytest.raises(ValueError, match=r"a\.xml.*'person'.*not in class_names"):
        voc.load_voc(root, "train", class_names=("dog", "cat"))

    # A non-VOC name anywhere in the folder's lists: sorted names, the same for every split.
    _toy_voc(root, {"c": [("zebra", (2, 2, 9, 9), False)]}, {"other": "c\n"})
    assert voc.load_voc(root, "test")[1] == ("cat", "dog", "person", "zebra")
    assert voc.load_voc(root, "other")[1] == ("cat", "dog", "person", "zebra")


def test_missing_data_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        voc.load_voc(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value) and "BCCD_Dataset" in str(info.value)
    (tmp_path / "half" / "Annotations").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="JPEGImages"):
        voc.load_voc(tmp_path / "half")
    root = _toy_voc(tmp_path / "toy", {"a": []}, {"train": "a\nghost\n", "val": "a\n"})
    with pytest.raises(DatasetNotFoundError, match=r"no split 'tset'.*\['train', 'val'\]"):
        voc.load_voc(root, "tset")
    with pytest.raises(DatasetCorruptError, match="ghost"):
        voc.load_voc(root, "train")
    with pytest.raises(ValueError, match="split="):
        voc.load_voc(root, "")


def test_voc_tfds_without_prepared_data_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        voc.voc_tfds("train", data_dir=tmp_path, download=False)
    assert "voc/2007" in str(info.value) and str(tmp_path) in str(info.value)
    with pytest.raises(ValueError, match="year=2010"):
        voc.voc_tfds("train", data_dir=tmp_path, download=False, year=2010)


def test_voc_tfds_converts_tfds_boxes_to_the_load_voc_convention(monkeypatch):
    # A stand-in for TFDS' voc features: bbox is (ymin, xmin, ymax, xmax) of the raw 1-based
    # values divided by the size; a 40x20 image with raw boxes (1, 1, 40, 20) and (11, 6, 20, 10).
    example = {
        "image": tf.zeros((20, 40, 3), tf.uint8),
        "image/filename": tf.constant("000001.jpg"),
        "objects": {
            "bbox": tf.constant([[1 / 20, 1 / 40, 1.0, 1.0], [6 / 20, 11 / 40, 10 / 20, 20 / 40]]),
            "label": tf.constant([14, 11], tf.int64),
            "is_difficult": tf.constant([False, True]),
        },
    }
    calls = []

    def fake_load_tfds(name, split, data_dir, **kwargs):
        calls.append((name, split))
        return tf.data.Dataset.from_tensors(example)

    monkeypatch.setattr(voc, "load_tfds", fake_load_tfds)
    ds, classes = voc.voc_tfds("val", year=2012)
    assert classes == voc.VOC_CLASSES and calls == [("voc/2012", "validation")]
    record = next(iter(ds))
    np.testing.assert_allclose(record["boxes"], [[0, 0, 1, 1], [10 / 40, 5 / 20, 20 / 40, 10 / 20]], atol=1e-6)
    assert record["classes"].numpy().tolist() == [14, 11] and record["difficult"].numpy().tolist() == [False, True]
    assert (int(record["width"]), int(record["height"])) == (40, 20)
    easy = next(iter(voc.voc_tfds("trainval", keep_difficult=False)[0]))
    assert calls[-1] == ("voc/2007", "train+validation") and easy["classes"].numpy().tolist() == [14]
    np.testing.assert_allclose(voc.box_sizes(ds), [[1, 1], [10 / 40, 5 / 20]], atol=1e-6)


# ------------------------------------------------------------------------ batches


def test_detection_dataset_shapes_padding_and_images(loaded, caplog):
    records = loaded["train"][0][:3]
    with caplog.at_level(logging.WARNING, logger="kapps.data.voc"):
        ds = voc.detection_dataset(records, image_size=64, batch_size=2, max_boxes=12)
    assert any("max_boxes=12" in r.getMessage() for r in caplog.records)  # BCCD images hold more
    assert ds.element_spec[0].shape.as_list() == [None, 64, 64, 3]
    batches = list(ds)
    assert [len(b[0]) for b in batches] == [2, 1]
    images = np.concatenate([b[0].numpy() for b in batches])
    y_true = np.concatenate([b[1].numpy() for b in batches])
    assert batches[0][0].dtype == tf.float32 and batches[0][1].dtype == tf.float32
    assert y_true.shape == (3, 12, 5) and images.min() >= 0 and images.max() <= 1
    for image, rows, record in zip(images, y_true, records):
        m = min(len(record["boxes"]), 12)
        np.testing.assert_allclose(rows[:m, :4], record["boxes"][:m])
        np.testing.assert_array_equal(rows[:m, 4], record["classes"][:m])
        assert (rows[m:] == -1).all()
        original = tf.io.decode_jpeg(tf.io.read_file(record["image_path"]))
        want = tf.image.resize(original, (64, 64), antialias=True).numpy() / 255
        np.testing.assert_allclose(image, want, atol=1 / 255 + 1e-6)

    # A tf.data source (the voc_tfds form): uint8 images of any size, boxes and classes.
    source = tf.data.Dataset.from_tensors({
        "image": tf.zeros((30, 40, 3), tf.uint8),
        "boxes": tf.constant([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]]),
        "classes": tf.constant([4, 0]),
    })
    images, y_true = next(iter(voc.detection_dataset(source, image_size=32, batch_size=1, max_boxes=3)))
    assert images.shape == (1, 32, 32, 3)
    np.testing.assert_allclose(y_true[0], [[0.1, 0.2, 0.5, 0.6, 4], [0, 0, 1, 1, 0], [-1] * 5])


def _bright_boxes(count=16, size=48, seed=0):
    """Black images with one white rectangle each, its rel_xyxy box in row 0 of y_true."""
    rng = np.random.default_rng(seed)
    images = np.zeros((count, size, size, 3), np.float32)
    y_true = np.full((count, 3, 5), -1.0, np.float32)
    for i in range(count):
        w, h = rng.integers(8, 20, 2)
        x0, y0 = rng.integers(0, size - w + 1), rng.integers(0, size - h + 1)
        images[i, y0:y0 + h, x0:x0 + w] = 1.0
        y_true[i, 0] = [x0 / size, y0 / size, (x0 + w) / size, (y0 + h) / size, 7]
    return images, y_true


def _check_boxes_follow_bright_pixels(images, y_true, longest_side):
    """Every kept box covers the bright rectangle; an image whose box was removed keeps at
    most a sliver (one row or column) of it. Returns the number of removed boxes."""
    size = images.shape[1]
    removed = 0
    for image, rows in zip(images, y_true):
        assert (rows[1:] == -1).all()
        bright = image[..., 0] > 0.75
        if (rows[0] == -1).all():
            removed += 1
            assert bright.sum() <= longest_side
            continue
        x0, y0, x1, y1, label = rows[0]
        assert label == 7 and 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        px0, py0, px1, py1 = x0 * size, y0 * size, x1 * size, y1 * size
        inside = image[int(np.ceil(py0)) + 1:int(py1) - 1, int(np.ceil(px0)) + 1:int(px1) - 1, 0]
        if inside.size:
            assert inside.mean() > 0.9
        ys, xs = np.nonzero(bright)
        assert xs.min() >= px0 - 1 and xs.max() + 1 <= px1 + 1
        assert ys.min() >= py0 - 1 and ys.max() + 1 <= py1 + 1
    return removed


@pytest.mark.parametrize(
    "kwargs",
    [
        {"flip": "horizontal_and_vertical", "translate": 0.0, "zoom": 0.0},
        {"flip": None, "translate": 0.6, "zoom": 0.0},
        {"flip": None, "translate": 0.0, "zoom": 0.5},
    ],
    ids=["flip", "translate", "zoom"],
)
def test_augmentation_moves_boxes_with_the_image(kwargs):
    images, y_true = _bright_boxes()
    augment = voc.detection_augmentation(hue=0.0, saturation=1.0, exposure=1.0, seed=3, **kwargs)
    ds = tf.data.Dataset.from_tensor_slices((images, y_true)).batch(8).repeat(2).map(augment)
    out_boxes, removed = [], 0
    for batch_images, batch_y in ds:
        removed += _check_boxes_follow_bright_pixels(batch_images.numpy(), batch_y.numpy(), 20)
        out_boxes.append(batch_y.numpy()[:, 0, :4])
    moved = np.abs(np.concatenate(out_boxes) - np.concatenate([y_true[:, 0, :4]] * 2)).max(axis=1)
    assert (moved > 0.05).sum() >= 4  # the boxes did move
    if kwargs["translate"]:
        assert removed >= 1  # some rectangles left the image and their rows became padding


def test_photometric_jitter_changes_pixels_not_boxes():
    images, y_true = _bright_boxes(count=4)
    images = images * np.array([0.6, 0.3, 0.15], np.float32) + 0.05  # coloured, so hue acts
    augment = voc.detection_augmentation(flip=None, translate=0.0, zoom=0.0, seed=0)
    out_images, out_y = augment(tf.constant(images), tf.constant(y_true))
    np.testing.assert_allclose(out_y.numpy(), y_true)
    out = out_images.numpy()
    assert out.min() >= 0 and out.max() <= 1 and np.abs(out - images).max() > 0.05

    # Exposure alone scales every pixel of an image by one factor in [1/1.5, 1.5].
    only_exposure = voc.detection_augmentation(
        flip=None, translate=0.0, zoom=0.0, hue=0.0, saturation=1.0, exposure=1.5, seed=1)
    out = only_exposure(tf.constant(images), tf.constant(y_true))[0].numpy()
    ratios = out / images
    for ratio in ratios:
        assert 1 / 1.5 - 1e-4 <= ratio.min() and ratio.max() <= 1.5 + 1e-4
        np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-3)
    assert np.ptp(ratios.mean(axis=(1, 2, 3))) > 0.01  # a different factor per image


def _check_targets(y_true):
    valid = y_true[..., 4] >= 0
    assert (y_true[~valid] == -1).all()
    assert (y_true[valid][:, :4] >= 0).all() and (y_true[valid][:, :4] <= 1).all()
    assert (y_true[valid][:, 2:4] > y_true[valid][:, 0:2]).all()
    assert not (np.diff(valid.astype(int), axis=1) > 0).any()  # boxes first, then padding


def test_training_batches_shuffle_and_multi_scale(loaded):
    records = loaded["train"][0][:6]
    ds = voc.detection_dataset(records, image_size=64, batch_size=2, max_boxes=40, training=True,
                               augment=False, multi_scale=(32, 64, 96), shuffle_seed=1)
    sizes, orders = [], []
    for _ in range(3):
        order = []
        for images, y_true in ds:
            assert images.shape[1] == images.shape[2] and images.shape[3] == 3
            sizes.append(images.shape[1])
            _check_targets(y_true.numpy())
            for first_box in y_true.numpy()[:, 0, :4]:  # identifies the record (no augmentation)
                order.append(next(i for i, r in enumerate(records) if np.allclose(r["boxes"][0], first_box)))
        orders.append(order)
    assert set(sizes) <= {32, 64, 96} and len(set(sizes)) >= 2 and len(sizes) == 9
    assert all(sorted(o) == list(range(6)) for o in orders) and len({tuple(o) for o in orders}) > 1

    augmented = voc.detection_dataset(records[:4], image_size=64, batch_size=4, max_boxes=40,
                                      training=True, shuffle_seed=2)
    images, y_true = next(iter(augmented))
    assert images.shape == (4, 64, 64, 3) and 0 <= images.numpy().min() and images.numpy().max() <= 1
    _check_targets(y_true.numpy())


_RECORD = [{"image_path": "x.jpg", "boxes": np.zeros((0, 4), np.float32), "classes": np.zeros(0, np.int32)}]


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"image_size": 0}, "image_size"),
        ({"batch_size": -1}, "batch_size"),
        ({"max_boxes": 0}, "max_boxes"),
        ({"multi_scale": (320, 100)}, "multi_scale"),
        ({"multi_scale": ()}, "multi_scale"),
        ({"augment": "yes"}, "augment"),
        ({"shuffle_seed": 1.5}, "shuffle_seed"),
        ({"records": []}, "records"),
        ({"records": [{"boxes": []}]}, "records"),
    ],
)
def test_detection_dataset_bad_arguments(kwargs, name):
    arguments = {"records": _RECORD, "image_size": 64, "batch_size": 2, **kwargs}
    with pytest.raises(ValueError, match=f"{name}="):
        voc.detection_dataset(arguments.pop("records"), **arguments)


@pytest.mark.parametrize(
    "kwargs",
    [{"flip": "diagonal"}, {"translate": 1.0}, {"zoom": -0.1}, {"hue": 0.6}, {"saturation": 0.5},
     {"exposure": True}, {"fill_value": 2.0}],
)
def test_detection_augmentation_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=f"{next(iter(kwargs))}="):
        voc.detection_augmentation(**kwargs)
