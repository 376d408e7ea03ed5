"""Classic CNN classifiers: the papers' architectures, their options, and clear errors."""

import keras
import numpy as np
import pytest

import kapps
from kapps.models import alexnet, lenet5, vgg, vgg16

RNG = np.random.default_rng(0)


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def outputs(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


# ----------------------------------------------------------------------------- LeNet-5


@pytest.mark.parametrize("size", [28, 32])
def test_lenet5_paper_has_60000_trainable_parameters_per_layer(size):
    model = lenet5(input_shape=(size, size, 1))
    assert trainable(model) == 60_000
    per_layer = {n: model.get_layer(n).count_params() for n in ("c1", "s2", "c3", "s4", "c5", "f6")}
    assert per_layer == {"c1": 156, "s2": 12, "c3": 1_516, "s4": 32, "c5": 48_120, "f6": 10_164}
    assert model.get_layer("output").trainable_weights == []
    assert model.output_shape == (None, 10)


def test_lenet5_pads_28_to_32_centred():
    model = lenet5(input_shape=(28, 28, 1))
    pad = model.get_layer("pad_to_32")
    x = RNG.random((1, 28, 28, 1)).astype("float32")
    padded = keras.ops.convert_to_numpy(pad(x))
    assert padded.shape == (1, 32, 32, 1)
    np.testing.assert_array_equal(padded[0, 2:30, 2:30], x[0])
    assert padded[0, :2].sum() == 0 and padded[0, :, 30:].sum() == 0
    assert "pad_to_32" not in [layer.name for layer in lenet5().layers]


def test_lenet5_modern_has_61706_parameters():
    model = lenet5(variant="modern")
    assert model.count_params() == trainable(model) == 61_706
    probabilities = outputs(model, RNG.random((3, 32, 32, 1)).astype("float32"))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_lenet5_feature_extractor():
    assert lenet5(include_top=False).output_shape == (None, 1, 1, 120)
    assert lenet5(include_top=False, pooling="avg").output_shape == (None, 120)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"variant": "lenet1"}, "variant='lenet1'"),
        ({"input_shape": (64, 64, 1)}, r"input_shape=\(64, 64, 1\).*between 28 and 32"),
        ({"input_shape": (28, 28)}, r"input_shape=\(28, 28\)"),
        ({"num_classes": 0}, "num_classes=0"),
        ({"pooling": "sum"}, "pooling='sum'"),
        ({"classifier_activation": "sofmax"}, "classifier_activation='sofmax'"),
        ({"include_top": "yes"}, "include_top='yes'"),
    ],
)
def test_lenet5_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lenet5(**kwargs)


# ----------------------------------------------------------------------------- AlexNet


def test_alexnet_two_towers_and_single_tower_counts():
    two = alexnet()
    assert two.count_params() == 60_965_224
    assert [two.get_layer(f"conv{i}").groups for i in range(1, 6)] == [1, 2, 1, 2, 2]
    assert two.get_layer("conv1").output.shape[1:3] == (55, 55)
    assert two.get_layer("conv5_pool").output.shape[1:] == (6, 6, 256)
    del two
    one = alexnet(groups=1)
    assert one.count_params() == 62_378_344
    del one
    keras.backend.clear_session()


def test_alexnet_bad_arguments():
    with pytest.raises(ValueError, match=r"groups=3 does not divide filters\[1\]=256"):
        alexnet(groups=3)
    with pytest.raises(ValueError, match=r"input_shape=\(66, 66, 3\).*at least 67"):
        alexnet(input_shape=(66, 66, 3))
    with pytest.raises(ValueError, match="dropout=1.5"):
        alexnet(dropout=1.5)
    with pytest.raises(ValueError, match="filters="):
        alexnet(filters=(96, 256))


# ----------------------------------------------------------------------------- VGG

TINY = dict(num_classes=10, filters=(4, 8, 8, 16, 16), fc_units=16)


def test_vgg_configurations_have_the_papers_depths():
    for name, depth in (("vgg11", 8), ("vgg13", 10), ("vgg16", 13), ("vgg19", 16)):
        model = kapps.build(name, input_shape=(32, 32, 3), **TINY)
        convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
        dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
        assert (len(convs), len(dense)) == (depth, 3), name
        assert model.name == name


def test_vgg_fully_convolutional_reuses_dense_weights_as_convolutions():
    dense = vgg16(input_shape=(224, 224, 3), **TINY)
    conv = vgg16(input_shape=(None, None, 3), fully_convolutional=True, weights=dense, **TINY)
    assert conv.count_params() == dense.count_params()
    x = RNG.random((1, 224, 224, 3)).astype("float32")
    np.testing.assert_allclose(
        outputs(conv, x)[:, 0, 0, :], outputs(dense, x), rtol=1e-4, atol=1e-6
    )
    score_map = outputs(conv, RNG.random((1, 288, 256, 3)).astype("float32"))
    assert score_map.shape == (1, 3, 2, 10)  # (288/32 - 6, 256/32 - 6)
    np.testing.assert_allclose(score_map.sum(axis=-1), 1.0, rtol=1e-5)


def test_vgg16_has_keras_applications_layer_names():
    # (weights from keras.applications, its .keras and .weights.h5 files: tests/test_transfer.py)
    reference = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    ours = vgg16(include_top=False, input_shape=(32, 32, 3))
    assert ours.count_params() == reference.count_params()
    assert [layer.name for layer in ours.layers[1:]] == [layer.name for layer in reference.layers[1:]]


def test_vgg_batch_norm_variant():
    model = vgg16(input_shape=(32, 32, 3), batch_norm=True, **TINY)
    assert isinstance(model.get_layer("block1_conv1"), kapps.layers.ConvBNAct)


def test_weights_files(tmp_path):
    source = vgg16(input_shape=(32, 32, 3), **TINY)
    x = RNG.random((2, 32, 32, 3)).astype("float32")
    source.save_weights(tmp_path / "tiny.weights.h5")
    source.save(tmp_path / "tiny.keras")
    for path in (tmp_path / "tiny.weights.h5", str(tmp_path / "tiny.keras")):
        loaded = vgg16(input_shape=(32, 32, 3), weights=path, **TINY)
        np.testing.assert_allclose(outputs(loaded, x), outputs(source, x), rtol=1e-6)
    other = dict(TINY, num_classes=7)
    for path in (tmp_path / "tiny.weights.h5", tmp_path / "tiny.keras"):
        with pytest.raises(ValueError, match="weights="):
            vgg16(input_shape=(32, 32, 3), weights=path, **other)
    with pytest.raises(ValueError, match="no such file"):
        vgg16(input_shape=(32, 32, 3), weights=tmp_path / "missing.weights.h5", **TINY)
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.weights\.h5 or \.keras"):
        vgg16(input_shape=(32, 32, 3), weights=tmp_path / "w.npz", **TINY)
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="could not be read"):
        vgg16(input_shape=(32, 32, 3), weights=tmp_path / "bad.keras", **TINY)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"config": "C"}, "config='C'"),
        ({"input_shape": (16, 16, 3)}, r"input_shape=\(16, 16, 3\).*at least 32"),
        ({"input_shape": (None, None, 3)}, "unknown size"),
        ({"fully_convolutional": True, "input_shape": (128, 128, 3)}, "at least 224"),
        ({"fully_convolutional": True, "include_top": False}, "include_top=False"),
        ({"num_classes": -1}, "num_classes=-1"),
        ({"fc_units": 0}, "fc_units=0"),
    ],
)
def test_vgg_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        vgg(**{"filters": TINY["filters"], "fc_units": 16, **kwargs})


@pytest.mark.parametrize("variant", ["lecun98", "modern"])
def test_lenet5_int8_tflite_converts_and_runs(variant):
    from kapps import export

    model = lenet5(input_shape=(28, 28, 1), variant=variant)
    digits = RNG.random((64, 28, 28, 1)).astype("float32")
    runner = export.TFLiteRunner(
        export.to_tflite(model, quantize="int8", representative_data=digits)
    )
    assert {d["dtype"] for d in runner.input_details + runner.output_details} == {np.dtype(np.int8)}
    probabilities = runner(digits[:8])
    assert probabilities.shape == (8, 10)
    # int8 outputs are still probability vectors (quantized in steps of 1/256); how close they
    # stay to float32 on real digits is measured by the recipe (metrics.json)
    assert np.all(probabilities >= 0) and np.all(probabilities <= 1)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=10 / 256)
