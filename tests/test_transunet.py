"""TransUNet: the canonical R50-ViT-B/16 counted against the official PyTorch modules, its
geometry (the unpadded pooling and the padded 1/4 skip), other sizes and options, and the new
layers (weight-standardized convolution, BiT unit, corner-aligned bilinear upsampling)
checked against NumPy / TensorFlow references. The tiny model's full contract (TFLite parity,
MirroredStrategy step, .keras round trip) runs in tests/test_contract.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kapps
from kapps.layers.bit import BiTBottleneck
from kapps.layers.interpolation import BilinearResize2D
from kapps.layers.standardized_conv import StandardizedConv2D, standardize_kernel
from kapps.models.segmentation.transunet import transunet

TINY = kapps.registry.tiny_overrides("transunet")


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _images(shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype="float32")


def _official_count(num_classes=9, channels=3, tokens=196, hidden_dim=768, depth=12,
                    mlp_dim=3072, resnet_blocks=(3, 4, 9), resnet_width=64, head_channels=512,
                    decoder_channels=(256, 128, 64, 16), num_skips=3):
    """``sum(p.numel() for p in model.parameters())`` of the official PyTorch
    ``VisionTransformer(CONFIGS["R50-ViT-B_16"])``, module by module (``ResNetV2``,
    ``Embeddings``, ``Encoder``, ``DecoderCup``, ``SegmentationHead``); GroupNorm,
    LayerNorm and BatchNorm2d each have a weight and a bias per channel."""
    def unit(cin, cout, cmid, projection):  # PreActBottleneck
        n = cin * cmid + 2 * cmid + 9 * cmid * cmid + 2 * cmid + cmid * cout + 2 * cout
        return n + (cin * cout + 2 * cout if projection else 0)

    n = 49 * channels * resnet_width + 2 * resnet_width  # root: StdConv2d 7x7 + GroupNorm
    cin = resnet_width
    for stage, units in enumerate(resnet_blocks):
        cmid = resnet_width * 2**stage
        for u in range(units):
            n += unit(cin, 4 * cmid, cmid, u == 0)
            cin = 4 * cmid
    n += cin * hidden_dim + hidden_dim  # patch_embeddings: Conv2d 1x1 with bias
    n += tokens * hidden_dim  # position_embeddings
    block = 2 * 2 * hidden_dim + 4 * (hidden_dim * hidden_dim + hidden_dim)  # 2 LN, q k v out
    block += hidden_dim * mlp_dim + mlp_dim + mlp_dim * hidden_dim + hidden_dim  # fc1, fc2
    n += depth * block + 2 * hidden_dim  # + encoder_norm
    n += 9 * hidden_dim * head_channels + 2 * head_channels  # conv_more (no bias) + BN
    skips = [c if i < num_skips else 0 for i, c in enumerate((8 * resnet_width,
                                                              4 * resnet_width,
                                                              resnet_width, 0))]
    cin = head_channels
    for cout, skip in zip(decoder_channels, skips):
        n += 9 * (cin + skip) * cout + 2 * cout + 9 * cout * cout + 2 * cout
        cin = cout
    return n + 9 * cin * num_classes + num_classes  # segmentation head (with bias)


def _bn_statistics(head_channels=512, decoder_channels=(256, 128, 64, 16)):
    """Moving mean and variance per batch-normalized channel: Keras weights, PyTorch buffers."""
    return 2 * (head_channels + 2 * sum(decoder_channels))


# -- canonical model ------------------------------------------------------------------------


def test_canonical_count_equals_official_and_geometry():
    model = transunet()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == _official_count() == 105_277_081  # the literature's 105.28M
    assert model.count_params() == 105_277_081 + _bn_statistics() == 105_279_961
    assert tuple(model.output.shape) == (None, 224, 224, 9)
    shapes = {
        "root_relu": (112, 112, 64),  # 1/2 skip
        "root_pool": (55, 55, 64),  # unpadded 3x3/2 pooling, as the official code
        "block1_unit3": (55, 55, 256),
        "skip_pad": (56, 56, 256),  # 1/4 skip, zero-padded at the bottom and right
        "block2_unit4": (28, 28, 512),  # 1/8 skip
        "block3_unit9": (14, 14, 1024),
        "patch_embedding": (196, 768),
        "encoder_block12": (196, 768),
        "conv_more": (14, 14, 512),
        "decoder1": (28, 28, 256),
        "decoder2": (56, 56, 128),
        "decoder3": (112, 112, 64),
        "decoder4": (224, 224, 16),
    }
    for name, shape in shapes.items():
        assert tuple(model.get_layer(name).output.shape[1:]) == shape, name
    assert sum(name.startswith("encoder_block") for name in
               (layer.name for layer in model.layers)) == 12
    assert model.get_layer("block3_unit9").name == "block3_unit9"
    with pytest.raises(ValueError):
        model.get_layer("block3_unit10")
    # the decoder sees [upsampled, skip]: 512 + 512, 256 + 256, 128 + 64, then 64 alone
    in_channels = [model.get_layer(f"decoder{i}").conv1.kernel.shape[2] for i in range(1, 5)]
    assert in_channels == [1024, 512, 192, 64]
    assert model.get_layer("position_embedding").embeddings.shape == (196, 768)
    assert model.get_layer("encoder_block1").dropout == 0.1
    del model
    keras.backend.clear_session()


@pytest.mark.parametrize("num_skips", [0, 1, 2])
def test_fewer_skips_count(num_skips):
    model = transunet(**{**TINY, "num_skips": num_skips})
    config = {k: TINY[k] for k in ("hidden_dim", "depth", "mlp_dim", "resnet_blocks",
                                   "resnet_width", "head_channels", "decoder_channels")}
    expected = _official_count(num_classes=3, channels=1, tokens=4, num_skips=num_skips,
                               **config)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == expected
    assert model.count_params() == expected + _bn_statistics(16, (16, 8, 8, 4))


def test_tiny_count_and_two_input_sizes():
    model = transunet(**TINY)
    assert model.count_params() == kapps.registry.get_spec("transunet").tiny_params
    config = {k: TINY[k] for k in ("hidden_dim", "depth", "mlp_dim", "resnet_blocks",
                                   "resnet_width", "head_channels", "decoder_channels")}
    assert model.count_params() == (
        _official_count(num_classes=3, channels=1, tokens=4, **config)
        + _bn_statistics(16, (16, 8, 8, 4))
    )
    y = _np(model(_images((2, 32, 32, 1))))
    assert y.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)
    wide = transunet(**{**TINY, "input_shape": (48, 64, 3)})  # a 3x4 grid of tokens
    assert wide.get_layer("position_embedding").embeddings.shape == (12, 16)
    assert wide.get_layer("skip_pad").output.shape[1:3] == (12, 16)
    assert _np(wide(_images((1, 48, 64, 3)))).shape == (1, 48, 64, 3)


def test_heads():
    one = transunet(**{**TINY, "num_classes": 1})
    assert one.get_layer("probabilities").activation is keras.activations.sigmoid
    y = _np(one(_images((1, 32, 32, 1))))
    assert y.shape == (1, 32, 32, 1) and np.all((y > 0) & (y < 1))
    logits = transunet(**{**TINY, "classifier_activation": None})
    x = _images((1, 32, 32, 1))
    head = keras.Model(logits.inputs[0], logits.get_layer("segmentation_head").output)
    np.testing.assert_array_equal(_np(logits(x)), _np(head(x)))


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"input_shape": (30, 32, 1)}, r"input_shape=\(30, 32, 1\).*16 or 32"),
        ({"input_shape": (None, 32, 1)}, r"input_shape=\(None, 32, 1\)"),
        ({"num_heads": 3}, r"num_heads=3.*hidden_dim=16"),
        ({"resnet_groups": 3}, r"resnet_groups=3.*resnet_width=8"),
        ({"num_skips": 4}, r"num_skips=4"),
        ({"decoder_channels": (16, 8, 8)}, r"decoder_channels=\(16, 8, 8\)"),
        ({"resnet_blocks": (1, 1)}, r"resnet_blocks=\(1, 1\)"),
        ({"dropout": 1.0}, r"dropout=1.0"),
        ({"num_classes": 0}, r"num_classes=0"),
        ({"classifier_activation": "nope"}, r"classifier_activation='nope'"),
        ({"name": ""}, r"name=''"),
    ],
)
def test_bad_arguments(overrides, match):
    with pytest.raises(ValueError, match=match):
        transunet(**{**TINY, **overrides})


# -- layers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(5, 7), (4, 4), (1, 3)])
def test_bilinear_upsampling_matches_tensorflow(size):
    x = _images((2, *size, 3))
    aligned = tf.compat.v1.image.resize_bilinear(x, (2 * size[0], 2 * size[1]),
                                                 align_corners=True)
    np.testing.assert_allclose(_np(BilinearResize2D(2)(x)), aligned.numpy(), atol=1e-6)
    half_pixel = keras.layers.UpSampling2D(3, interpolation="bilinear")(x)
    np.testing.assert_allclose(_np(BilinearResize2D(3, align_corners=False)(x)),
                               _np(half_pixel), atol=1e-6)
    # corners keep their values
    up = _np(BilinearResize2D(2)(x))
    np.testing.assert_allclose(up[:, [0, -1]][:, :, [0, -1]], x[:, [0, -1]][:, :, [0, -1]],
                               atol=1e-6)


def test_bilinear_upsampling_with_unknown_sizes():
    inputs = keras.Input((None, None, 3))
    assert tuple(BilinearResize2D(2)(inputs).shape) == (None, None, None, 3)
    spec = [tf.TensorSpec((None, None, None, 3), "float32")]  # sizes known only at run time
    x = _images((1, 5, 7, 3))
    aligned = tf.function(BilinearResize2D(2), input_signature=spec)
    expected = tf.compat.v1.image.resize_bilinear(x, (10, 14), align_corners=True)
    np.testing.assert_allclose(aligned(x).numpy(), expected.numpy(), atol=1e-6)
    half = tf.function(BilinearResize2D(2, align_corners=False), input_signature=spec)
    expected = keras.layers.UpSampling2D(2, interpolation="bilinear")(x)
    np.testing.assert_allclose(half(x).numpy(), _np(expected), atol=1e-6)


def _conv(x, kernel, strides=1, pad=0):
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw = kernel.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    windows = windows[:, ::strides, ::strides]  # (batch, H', W', in, kh, kw)
    return np.einsum("bhwcij,ijco->bhwo", windows, kernel)


def _standardized(kernel, epsilon=1e-5):
    mean = kernel.mean(axis=(0, 1, 2), keepdims=True)
    var = kernel.var(axis=(0, 1, 2), keepdims=True)
    return (kernel - mean) / np.sqrt(var + epsilon)


def _group_norm(x, groups, epsilon, gamma, beta):
    b, h, w, c = x.shape
    g = x.reshape(b, h, w, groups, c // groups)
    mean = g.mean(axis=(1, 2, 4), keepdims=True)
    var = g.var(axis=(1, 2, 4), keepdims=True)
    return ((g - mean) / np.sqrt(var + epsilon)).reshape(b, h, w, c) * gamma + beta


def test_standardized_conv_uses_a_normalized_kernel():
    conv = StandardizedConv2D(4, 3, strides=2, padding="same")
    x = _images((1, 8, 8, 3))
    y = _np(conv(x))
    kernel = _np(conv.kernel)
    np.testing.assert_allclose(y, _np(keras.ops.conv(x, _standardized(kernel), 2, "same")),
                               rtol=1e-5, atol=1e-5)
    standardized = _np(standardize_kernel(kernel))
    np.testing.assert_allclose(standardized.mean(axis=(0, 1, 2)), 0.0, atol=1e-6)
    variance = kernel.var(axis=(0, 1, 2))  # std is 1 up to the epsilon: sqrt(v / (v + eps))
    np.testing.assert_allclose(standardized.std(axis=(0, 1, 2)),
                               np.sqrt(variance / (variance + 1e-5)), rtol=1e-5)
    assert [w.name for w in conv.weights] == ["kernel"]  # BiT's convolutions have no bias
    # scaling the stored kernel does not change the output (the point of standardization),
    # up to the epsilon's share of the variance
    conv.kernel.assign(kernel * 7.0)
    np.testing.assert_allclose(_np(conv(x)), y, rtol=1e-3, atol=1e-3)


def test_bit_unit_matches_numpy_reference():
    """Stride 2 on an even size: the 3x3 convolution must pad 1 pixel on every side (PyTorch
    ``padding=1``), not Keras' asymmetric "same"."""
    unit = BiTBottleneck(8, bottleneck_filters=4, strides=2, projection=True, groups=2)
    x = _images((2, 6, 6, 4), seed=1)
    for w in unit.weights:  # non-trivial norms
        if "gamma" in w.path or "beta" in w.path:
            w.assign(np.random.default_rng(2).normal(size=w.shape).astype("float32"))
    y = _np(unit(x))

    def gn(name, h, groups, eps):
        layer = getattr(unit, name)
        return _group_norm(h, groups, eps, _np(layer.gamma), _np(layer.beta))

    def kernel(name):
        return _standardized(_np(getattr(unit, name).kernel))

    shortcut = gn("gn_proj", _conv(x, kernel("conv_proj"), strides=2), 8, 1e-5)
    h = np.maximum(gn("gn1", _conv(x, kernel("conv1")), 2, 1e-6), 0)
    h = np.maximum(gn("gn2", _conv(h, kernel("conv2"), strides=2, pad=1), 2, 1e-6), 0)
    h = gn("gn3", _conv(h, kernel("conv3")), 2, 1e-6)
    np.testing.assert_allclose(y, np.maximum(shortcut + h, 0), rtol=1e-4, atol=1e-4)
    assert y.shape == (2, 3, 3, 8) and unit.compute_output_shape((2, 6, 6, 4)) == (2, 3, 3, 8)


def test_bit_unit_errors():
    with pytest.raises(ValueError, match=r"projection=False.*strides=2"):
        BiTBottleneck(8, strides=2, groups=2)
    with pytest.raises(ValueError, match=r"groups=3"):
        BiTBottleneck(8, groups=3)
    with pytest.raises(ValueError, match=r"projection=False.*4 input channels"):
        BiTBottleneck(8, groups=2)(keras.ops.ones((1, 4, 4, 4)))


@pytest.mark.parametrize(
    "layer",
    [
        StandardizedConv2D(8, 3, strides=2, padding="same", epsilon=1e-4, name="s"),
        BiTBottleneck(16, bottleneck_filters=8, strides=2, projection=True, groups=4,
                      projection_groups=2, epsilon=1e-5, name="u"),
        BilinearResize2D(4, align_corners=False, name="b"),
    ],
    ids=["standardized_conv", "bit_bottleneck", "bilinear"],
)
def test_layer_config_round_trip(layer):
    import inspect

    config = layer.get_config()
    for arg, p in inspect.signature(type(layer).__init__).parameters.items():
        if arg != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            assert arg in config, arg
    assert type(layer).from_config(config).get_config() == config
