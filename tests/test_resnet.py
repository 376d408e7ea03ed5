"""ResNets (He et al. 2016): the residual blocks, the ImageNet and CIFAR builders, weights copied
by layer name, and clear errors. The registry-wide contract (tests/test_contract.py) runs every
check on each tiny configuration; the canonical counts are pinned in tests/test_registry.py and,
for the networks that build quickly, here; weights from keras.applications are tested in
tests/test_transfer.py."""

import keras
import numpy as np
import pytest

import kapps
from kapps.layers.residual import BasicBlock, BottleneckBlock, ZeroPadShortcut
from kapps.models.classification.resnet import (
    resnet,
    resnet18,
    resnet20,
    resnet50,
    resnet_cifar,
)

RNG = np.random.default_rng(0)
TINY = dict(input_shape=(32, 32, 3), num_classes=10, filters=(4, 4, 8, 8), blocks=(1, 1, 2, 1))


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def numpy(x):
    return keras.ops.convert_to_numpy(x)


# ----------------------------------------------------------------------------- layers


def test_zero_pad_shortcut_subsamples_and_appends_zero_channels():
    x = RNG.random((2, 7, 7, 3)).astype("float32")
    y = numpy(ZeroPadShortcut(5, strides=2)(x))
    assert y.shape == (2, 4, 4, 5)
    np.testing.assert_array_equal(y[..., :3], x[:, ::2, ::2, :])
    assert not y[..., 3:].any()
    shortcut = ZeroPadShortcut(5, strides=2)
    shortcut.build((None, 7, 7, 3))
    assert shortcut.count_params() == 0 and not shortcut.weights
    with pytest.raises(ValueError, match="filters=2 is smaller than the 3 input channels"):
        ZeroPadShortcut(2)(x)


def test_basic_block_shapes_and_counts():
    block = BasicBlock(8, strides=2, shortcut="projection", use_bias=False)
    assert block(keras.ops.ones((1, 9, 9, 4))).shape == (1, 5, 5, 8)
    # two 3x3 convolutions, a 1x1 projection, three batch normalizations (4 values a channel)
    assert block.count_params() == 9 * 4 * 8 + 9 * 8 * 8 + 4 * 8 + 3 * 4 * 8
    padded = BasicBlock(8, strides=2, shortcut="zero_pad")
    padded(keras.ops.ones((1, 8, 8, 4)))
    assert padded.count_params() == 9 * 4 * 8 + 9 * 8 * 8 + 2 * 4 * 8
    identity = BasicBlock(4)
    x = RNG.random((2, 6, 6, 4)).astype("float32")
    assert identity(x).shape == x.shape


def test_bottleneck_block_matches_keras_applications_layout():
    block = BottleneckBlock(64, shortcut="projection", use_bias=True)
    assert block(keras.ops.ones((1, 8, 8, 64))).shape == (1, 8, 8, 256)
    # conv2_block1 of keras.applications' ResNet50: 1x1 64->64, 3x3 64->64, 1x1 64->256, 1x1
    # projection 64->256, each with a bias, and four batch normalizations
    convs = (64 * 64 + 64) + (9 * 64 * 64 + 64) + (64 * 256 + 256) + (64 * 256 + 256)
    assert block.count_params() == convs + 4 * (64 + 64 + 256 + 256)


@pytest.mark.parametrize("stride_in, strides", [("1x1", (2, 1)), ("3x3", (1, 2))])
def test_bottleneck_stride_position(stride_in, strides):
    block = BottleneckBlock(4, strides=2, stride_in=stride_in, shortcut="projection")
    assert block(keras.ops.ones((1, 8, 8, 16))).shape == (1, 4, 4, 16)
    assert (block.conv1.strides[0], block.conv2.strides[0]) == strides


def test_block_config_round_trip():
    for block in (
        BasicBlock(8, strides=2, shortcut="zero_pad", kernel_regularizer=keras.regularizers.L2(1e-4)),
        BottleneckBlock(4, strides=2, expansion=2, stride_in="3x3", shortcut="projection"),
    ):
        clone = type(block).from_config(block.get_config())
        assert clone.get_config() == block.get_config()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: BasicBlock(0), "filters=0"),
        (lambda: BasicBlock(4, shortcut="B"), "shortcut='B'"),
        (lambda: BasicBlock(4, use_bias=1), "use_bias=1"),
        (lambda: BasicBlock(4, epsilon=0), "epsilon=0"),
        (lambda: BottleneckBlock(4, stride_in="first"), "stride_in='first'"),
        (lambda: BottleneckBlock(4, expansion=0), "expansion=0"),
    ],
)
def test_block_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_identity_shortcut_refuses_a_shape_change():
    with pytest.raises(ValueError, match=r"shortcut='identity' does not fit.*4 channels to 8"):
        BasicBlock(8)(keras.ops.ones((1, 8, 8, 4)))
    with pytest.raises(ValueError, match="strides=2"):
        BottleneckBlock(1, strides=2)(keras.ops.ones((1, 8, 8, 4)))


# ----------------------------------------------------------------------------- builders


def test_cifar_resnet20_is_the_papers_network():
    model = resnet20()
    assert trainable(model) == 269_722  # "0.27M", He et al. 2016, Table 6
    assert model.count_params() == 271_098
    weighted = [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
    ]
    assert len(weighted) == 20  # 6n + 2 with n = 3, and option A adds no convolution
    assert [model.get_layer(f"conv{s}_block1").output.shape[1:] for s in (2, 3, 4)] == [
        (32, 32, 16),
        (16, 16, 32),
        (8, 8, 64),
    ]
    assert model.get_layer("conv3_block1").shortcut == "zero_pad"
    assert model.get_layer("conv3_block2").shortcut == "identity"
    assert model.output_shape == (None, 10)
    probabilities = numpy(model(RNG.random((2, 32, 32, 3)).astype("float32")))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_cifar_option_b_projections():
    model = resnet_cifar(depth=20, shortcut="projection")
    # two 1x1 projections with batch normalization: 16->32 and 32->64
    assert model.count_params() - 271_098 == (16 * 32 + 4 * 32) + (32 * 64 + 4 * 64)


def test_imagenet_basic_blocks_project_only_where_the_shape_changes():
    model = resnet18(**{**TINY, "blocks": None})
    blocks = [layer for layer in model.layers if isinstance(layer, BasicBlock)]
    assert [b.name for b in blocks] == [f"conv{s}_block{i}" for s in (2, 3, 4, 5) for i in (1, 2)]
    assert [b.shortcut for b in blocks] == ["identity", "identity"] + ["projection", "identity"] * 3
    assert model.get_layer("pool1_pool").output.shape[1:3] == (8, 8)


def test_imagenet_feature_extractor_and_stride_in_3x3():
    model = resnet(depth=50, include_top=False, pooling="max", stride_in="3x3", **TINY)
    assert model.output_shape == (None, 32)
    assert model.get_layer("conv3_block1").conv2.strides == (2, 2)
    features = resnet(
        depth=101,
        include_top=False,
        input_shape=(None, None, 3),
        filters=TINY["filters"],
        blocks=(1, 1, 1, 1),
    )
    assert numpy(features(RNG.random((1, 64, 96, 3)).astype("float32"))).shape == (1, 2, 3, 32)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: resnet(depth=51), "depth=51"),
        (lambda: resnet(filters=(64, 128)), "filters="),
        (lambda: resnet(blocks=(3, 4, 0, 3)), "blocks="),
        (lambda: resnet(stride_in="v1.5"), "stride_in='v1.5'"),
        (lambda: resnet(use_bias="yes"), "use_bias='yes'"),
        (lambda: resnet(input_shape=(31, 31, 3)), r"input_shape=\(31, 31, 3\).*at least 32"),
        (lambda: resnet(input_shape=(None, None, 3)), "unknown size"),
        (lambda: resnet(pooling="sum"), "pooling='sum'"),
        (lambda: resnet(classifier_activation="sofmax"), "classifier_activation='sofmax'"),
        (lambda: resnet_cifar(depth=21), "depth=21"),
        (lambda: resnet_cifar(shortcut="identity"), "shortcut='identity'"),
        (lambda: resnet_cifar(filters=(32, 16, 64)), r"filters=\(32, 16, 64\).*must not decrease"),
        (lambda: resnet_cifar(input_shape=(4, 4, 3)), "at least 8"),
        (lambda: resnet_cifar(num_classes=0), "num_classes=0"),
        (lambda: resnet20(weights=3), "weights=3"),
    ],
)
def test_builder_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


# ----------------------------------------------------------------------------- weights
# (keras.applications' ResNet-50/101/152, their .keras and .weights.h5 files, and a twin of
# another depth: tests/test_transfer.py)


def test_a_reference_of_other_widths_names_the_first_layer_that_does_not_fit():
    reference = resnet50(**TINY)
    match = (
        r"weights=<keras.Model 'resnet50'> does not fit model 'wide': layer 'conv1_conv' "
        r"variable .* has shape \(7, 7, 3, 4\) but .* needs \(7, 7, 3, 8\)"
    )
    with pytest.raises(ValueError, match=match):
        resnet50(weights=reference, name="wide", **{**TINY, "filters": (8, 8, 16, 16)})


def test_a_reference_with_a_top_fits_a_headless_model_but_not_the_reverse():
    with_top = resnet50(**TINY)
    headless = resnet50(include_top=False, pooling="avg", weights=with_top, **TINY)
    x = RNG.random((2, 32, 32, 3)).astype("float32")
    pooled = with_top.get_layer("avg_pool").output
    np.testing.assert_allclose(
        numpy(keras.Model(with_top.inputs, pooled)(x)), numpy(headless(x)), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="reference has no layer 'predictions'"):
        resnet50(weights=headless, **TINY)
    deeper = resnet50(**{**TINY, "blocks": (1, 1, 3, 1)})
    with pytest.raises(ValueError, match="reference's layer 'conv4_block3_1_conv' has no counterpart"):
        resnet50(weights=deeper, **TINY)


def test_kapps_weights_files_round_trip(tmp_path):
    source = resnet50(**TINY)
    x = RNG.random((2, 32, 32, 3)).astype("float32")
    source.save_weights(tmp_path / "tiny.weights.h5")
    source.save(tmp_path / "tiny.keras")
    for path in (tmp_path / "tiny.weights.h5", str(tmp_path / "tiny.keras")):
        loaded = resnet50(weights=path, **TINY)
        np.testing.assert_allclose(numpy(loaded(x)), numpy(source(x)), rtol=1e-6)
    with pytest.raises(ValueError, match="weights="):
        resnet50(weights=tmp_path / "tiny.weights.h5", **{**TINY, "num_classes": 7})
    with pytest.raises(ValueError, match="no such file"):
        resnet20(weights=tmp_path / "missing.keras")


def test_registry_entries():
    names = [n for n in kapps.list_models(task="classification") if kapps.info(n)["family"] == "ResNet"]
    assert sorted(names) == sorted(
        f"resnet{d}" for d in (18, 34, 50, 101, 152, 20, 32, 44, 56, 110)
    )
    assert kapps.info("resnet50")["params"] == 25_636_712
    assert kapps.info("resnet101")["params"] == 44_707_176
    assert kapps.info("resnet152")["params"] == 60_419_944
    assert kapps.info("resnet56")["trainable_params"] == 853_018  # "0.85M"
    assert kapps.build("resnet44", **kapps.registry.tiny_overrides("resnet44")).name == "resnet44"
