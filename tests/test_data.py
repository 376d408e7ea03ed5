"""kapps.data: TFDS sources and their errors, image folders, the shared pipeline."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from kapps import data
from kapps.data import tfds as tfds_source

MNIST_VERSION_DIR = os.path.join("mnist", "3.0.1")


# ------------------------------------------------------------------------------- TFDS


def test_load_tfds_mnist_on_real_data(tfds_dir):
    ds = data.load_tfds("mnist", "test[:100]", tfds_dir, download=False)
    assert ds.element_spec[0].shape == (28, 28, 1) and ds.element_spec[0].dtype == tf.uint8
    assert ds.element_spec[1].dtype == tf.int64
    images, labels = next(iter(ds.batch(100)))
    assert images.shape == (100, 28, 28, 1)
    assert set(np.unique(labels.numpy())) <= set(range(10)) and len(np.unique(labels.numpy())) > 5
    assert images.numpy().max() == 255


def test_load_tfds_reads_tfds_data_dir(tfds_dir, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", os.fspath(tfds_dir))
    assert data.tfds_data_dir() == os.path.abspath(tfds_dir)
    ds, info = data.load_tfds("mnist", "test[:10]", download=False, with_info=True)
    assert info.splits["test"].num_examples == 10_000
    assert len(list(ds)) == 10


def test_mnist_batches(tfds_dir):
    ds = data.mnist("test", 64, data_dir=tfds_dir, take=200, download=False)
    batches = list(ds)
    assert [len(b[0]) for b in batches] == [64, 64, 64, 8]
    images, labels = batches[0]
    assert images.shape == (64, 28, 28, 1) and images.dtype == tf.float32
    assert labels.shape == (64,) and labels.dtype == tf.int32
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) == pytest.approx(1.0)

    padded = data.mnist("train", 32, data_dir=tfds_dir, take=64, pad_to=32, seed=0, drop_remainder=True)
    images, _ = next(iter(padded))
    assert images.shape == (32, 32, 32, 1)
    # Two-pixel black border around the 28x28 digit.
    assert float(tf.reduce_max(images[:, :2])) == 0.0 and float(tf.reduce_max(images[:, -2:])) == 0.0
    with pytest.raises(ValueError, match="split='validation'"):
        data.mnist("validation", data_dir=tfds_dir)


def test_missing_tfds_dir_says_where_it_looked(tmp_path):
    missing = tmp_path / "no_data_here"
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load_tfds("mnist", "test", missing, download=False)
    message = str(info.value)
    assert str(missing) in message
    assert f"tfds build mnist --data_dir {missing}" in message
    assert "TFDS_DATA_DIR" in message and "--tfds-data-dir" in message
    assert isinstance(info.value, FileNotFoundError)


def test_missing_data_offline_fails_at_once_without_download(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(tfds_source, "_network_reachable", lambda *a, **k: calls.append(1) or False)
    with pytest.raises(data.DatasetNotFoundError, match="no network"):
        data.load_tfds("mnist", "test", tmp_path, download=True)
    assert calls == [1]


def _fake_mnist(tmp_path, tfds_dir, shards=()):
    """A copy of the prepared MNIST metadata (and only the named shards) under tmp_path."""
    target = tmp_path / MNIST_VERSION_DIR
    target.mkdir(parents=True)
    for name in ("dataset_info.json", "features.json", *shards):
        shutil.copy(tfds_dir / MNIST_VERSION_DIR / name, target / name)
    return target


def test_garbled_dataset_info_is_a_corrupt_error(tmp_path, tfds_dir):
    target = _fake_mnist(tmp_path, tfds_dir)
    (target / "dataset_info.json").write_text('{"name": "mnist", garbage')
    with pytest.raises(data.DatasetCorruptError, match="unreadable metadata"):
        data.load_tfds("mnist", "test", tmp_path, download=False)


def test_missing_shards_are_a_corrupt_error(tmp_path, tfds_dir):
    _fake_mnist(tmp_path, tfds_dir)
    with pytest.raises(data.DatasetCorruptError) as info:
        data.load_tfds("mnist", "test", tmp_path, download=False)
    assert "missing 1 shard" in str(info.value) and str(tmp_path) in str(info.value)


def test_truncated_shard_is_a_corrupt_error(tmp_path, tfds_dir):
    target = _fake_mnist(tmp_path, tfds_dir, shards=["mnist-test.tfrecord-00000-of-00001"])
    with open(tfds_dir / MNIST_VERSION_DIR / "mnist-train.tfrecord-00000-of-00001", "rb") as f:
        (target / "mnist-train.tfrecord-00000-of-00001").write_bytes(f.read(100_000))
    with pytest.raises(data.DatasetCorruptError, match="truncated"):
        data.load_tfds("mnist", "test", tmp_path, download=False)


def test_version_folder_without_info_is_a_corrupt_error(tmp_path):
    (tmp_path / MNIST_VERSION_DIR).mkdir(parents=True)
    (tmp_path / MNIST_VERSION_DIR / "mnist-test.tfrecord-00000-of-00001").write_bytes(b"x")
    with pytest.raises(data.DatasetCorruptError, match="no dataset_info.json"):
        data.load_tfds("mnist", "test", tmp_path, download=False)


def test_unknown_tfds_name_suggests_close_names(tmp_path):
    with pytest.raises(ValueError, match="name='mnistt'.*'mnist'"):
        data.load_tfds("mnistt", "test", tmp_path, download=False)


def test_unknown_split_keeps_the_tfds_message(tfds_dir):
    with pytest.raises(ValueError, match="Unknown split 'validation'"):
        data.load_tfds("mnist", "validation", tfds_dir, download=False)


# ------------------------------------------------------------------------ image folders


def test_image_folder_on_cifar10(data_dir):
    root = data_dir / "cifar10" / "test"
    ds, class_names = data.image_folder(root, 32, shuffle=True, seed=0)
    assert class_names == sorted(class_names) and len(class_names) == 10 and "airplane" in class_names
    assert ds.element_spec[0].shape == (32, 32, 3)
    batches = list(data.prepare(ds, 50).take(4))
    for images, labels in batches:
        assert images.shape == (50, 32, 32, 3) and images.dtype == tf.float32
        assert labels.dtype == tf.int32
        assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
    labels = np.concatenate([b[1].numpy() for b in batches])
    assert len(np.unique(labels)) >= 8  # shuffled over classes, not 200 airplanes
    paths, all_labels, _ = data.list_image_folder(root)
    assert len(paths) == len(all_labels) == 2000

    gray, _ = data.image_folder(root, (24, 16), channels=1, class_names=["cat", "dog"])
    image, label = next(iter(gray))
    assert image.shape == (24, 16, 1) and int(label) == 0


def test_image_folder_errors(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="does not exist"):
        data.image_folder(tmp_path / "missing", 32)
    with pytest.raises(data.DatasetNotFoundError, match="no class sub-folders"):
        data.image_folder(tmp_path, 32)
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "notes.txt").write_text("no images")
    with pytest.raises(data.DatasetNotFoundError, match="no images"):
        data.image_folder(tmp_path, 32)
    with pytest.raises(data.DatasetNotFoundError, match=r"\['dogs'\]"):
        data.image_folder(tmp_path, 32, class_names=["cats", "dogs"])
    with pytest.raises(ValueError, match="image_size"):
        data.image_folder(tmp_path, (32, 0))
    with pytest.raises(ValueError, match="channels=4"):
        data.image_folder(tmp_path, 32, channels=4)


# ------------------------------------------------------------------------------ pipeline


def _examples(n=10):
    images = np.arange(n * 4 * 4, dtype=np.float32).reshape(n, 4, 4, 1) / (n * 16)
    return tf.data.Dataset.from_tensor_slices((images, np.arange(n, dtype=np.int32)))


def test_prepare_batches_and_drops_the_remainder():
    assert [len(y) for _, y in data.prepare(_examples(), 4)] == [4, 4, 2]
    assert [len(y) for _, y in data.prepare(_examples(), 4, drop_remainder=True)] == [4, 4]
    with pytest.raises(ValueError, match="batch_size=0"):
        data.prepare(_examples(), 0)


def test_prepare_shuffles_repeatably_and_per_epoch():
    def order(seed):
        ds = data.prepare(_examples(), 10, shuffle=True, seed=seed, cache=True)
        return [list(y.numpy()) for _, y in ds] + [list(y.numpy()) for _, y in ds]

    epoch1, epoch2 = order(1)
    assert [epoch1, epoch2] == order(1)
    assert sorted(epoch1) == list(range(10)) and epoch1 != list(range(10))
    assert epoch1 != epoch2  # a new order every epoch


def test_prepare_maps_and_augments():
    ds = data.prepare(
        _examples(),
        5,
        map_fn=lambda x, y: (x * 2.0, y),
        batch_map_fn=lambda x, y: (x, y + 100),
        augment=data.image_augmentation(translate=0.4, rotate=0.2, flip="horizontal", seed=3),
    )
    plain = data.prepare(_examples(), 5, map_fn=lambda x, y: (x * 2.0, y))
    (aug_x, aug_y), (plain_x, plain_y) = next(iter(ds)), next(iter(plain))
    assert aug_x.shape == plain_x.shape and aug_x.dtype == tf.float32
    np.testing.assert_array_equal(aug_y.numpy(), plain_y.numpy() + 100)
    assert not np.allclose(aug_x.numpy(), plain_x.numpy())
    repeat = next(iter(ds))[1]  # labels untouched by augmentation
    np.testing.assert_array_equal(repeat.numpy(), aug_y.numpy())


def test_image_augmentation_arguments():
    assert data.image_augmentation() is None
    layers = data.image_augmentation(translate=0.1, rotate=0.05, zoom=0.1, flip="horizontal").layers
    assert [type(layer).__name__ for layer in layers] == [
        "RandomFlip",
        "RandomTranslation",
        "RandomRotation",
        "RandomZoom",
    ]
    with pytest.raises(ValueError, match="translate=1.5"):
        data.image_augmentation(translate=1.5)
    with pytest.raises(ValueError, match="flip='sideways'"):
        data.image_augmentation(flip="sideways")



# ------------------------------------------------------------------------------- CIFAR-10


def test_cifar10_from_the_local_folder(data_dir):
    folder = data_dir / "cifar10"
    ds = data.cifar10("test", 100, folder=folder, take=250, cache=False)
    batches = list(ds)
    assert [len(b[1]) for b in batches] == [100, 100, 50]
    images, labels = (np.concatenate(a) for a in zip(*[(b[0].numpy(), b[1].numpy()) for b in batches]))
    assert images.shape == (250, 32, 32, 3) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.max() > 0.9
    assert labels.dtype == np.int32
    # take= gives a balanced subset, not the first class folders
    assert np.bincount(labels, minlength=10).tolist() == [25] * 10
    # the same image the folder holds, scaled to [0, 1]
    first = sorted(os.listdir(folder / "test" / "airplane"))[0]
    raw = tf.io.decode_image(tf.io.read_file(str(folder / "test" / "airplane" / first)), channels=3)
    np.testing.assert_allclose(images[0], raw.numpy() / 255.0, atol=1e-6)
    assert labels[0] == data.CIFAR10_CLASSES.index("airplane")
    # skip= and take= split without overlap
    head = np.concatenate([b[1].numpy() for b in data.cifar10("test", 50, folder=folder, take=20, cache=False)])
    tail = np.concatenate([b[1].numpy() for b in data.cifar10("test", 50, folder=folder, skip=10, take=10, cache=False)])
    np.testing.assert_array_equal(head[10:], tail)


def test_cifar10_errors(tmp_path, data_dir):
    with pytest.raises(data.DatasetNotFoundError, match=r"no 'train' sub-folder.*airplane, automobile"):
        data.cifar10("train", folder=tmp_path)
    with pytest.raises(ValueError, match=r"split='validation' is not allowed"):
        data.cifar10("validation", folder=tmp_path)
    with pytest.raises(ValueError, match=r"split='train\[:10\]' is not allowed with folder="):
        data.cifar10("train[:10]", folder=data_dir / "cifar10")
    with pytest.raises(ValueError, match="skip=-1"):
        data.cifar10("test", folder=data_dir / "cifar10", skip=-1)
    with pytest.raises(data.DatasetNotFoundError, match="cifar10"):
        data.cifar10("test", data_dir=tmp_path, download=False)


def test_random_crop_flip_shifts_whole_pixels_and_flips():
    images = tf.reshape(tf.range(64 * 8 * 8 * 2, dtype=tf.float32) + 1, (64, 8, 8, 2))
    out = data.random_crop_flip(pad=2, seed=3)(images).numpy()
    assert out.shape == (64, 8, 8, 2)
    padded = np.pad(images.numpy(), [(0, 0), (2, 2), (2, 2), (0, 0)])
    flipped = 0
    for i in range(64):
        # each output is one of the 25 integer crops of the padded image, maybe mirrored
        crops = [padded[i, t:t + 8, l:l + 8] for t in range(5) for l in range(5)]
        plain = any(np.array_equal(out[i], c) for c in crops)
        mirrored = any(np.array_equal(out[i], c[:, ::-1]) for c in crops)
        assert plain or mirrored, i
        flipped += mirrored and not plain
    assert 16 < flipped < 48  # about half
    offsets = {tuple(np.argwhere(out[i, ..., 0] > 0)[0]) for i in range(64)}
    assert len(offsets) > 5  # offsets differ from image to image
    same = data.random_crop_flip(pad=0, flip=False)(images)
    np.testing.assert_array_equal(same.numpy(), images.numpy())
    with pytest.raises(ValueError, match="pad=-1"):
        data.random_crop_flip(pad=-1)
