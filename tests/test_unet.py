"""U-Net: the paper's network (count, 572 -> 388 geometry), the valid-padding size rules, the
skip crop checked against a NumPy forward pass, heads, argument errors and the blocks'
configs. The tiny model's full contract (TFLite parity, MirroredStrategy step, .keras round
trip) runs in tests/test_contract.py."""

import keras
import numpy as np
import pytest

import kapps
from kapps.layers.unet import (
    UNetConvBlock,
    UNetDecoderBlock,
    UNetEncoderBlock,
    center_crop,
)
from kapps.models.segmentation.unet import unet, unet_output_size, valid_unet_input_size

TINY = kapps.registry.tiny_overrides("unet")


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _images(shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype="float32")


# -- NumPy reference ------------------------------------------------------------------------


def _conv_valid(x, kernel, bias):
    """(batch, H, W, in) * (kh, kw, in, out) -> (batch, H - kh + 1, W - kw + 1, out)."""
    kh, kw = kernel.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    # windows: (batch, H', W', in, kh, kw)
    return np.einsum("bhwcij,ijco->bhwo", windows, kernel) + bias


def _upconv(x, kernel, bias):
    """2x2 stride-2 transposed convolution; Keras' kernel is (2, 2, out, in)."""
    b, h, w, _ = x.shape
    out = np.zeros((b, 2 * h, 2 * w, kernel.shape[2]), dtype=x.dtype)
    for a in range(2):
        for c in range(2):
            out[:, a::2, c::2, :] = np.einsum("bhwi,oi->bhwo", x, kernel[a, c])
    return out + bias


def _relu(x):
    return np.maximum(x, 0)


def _block(layer, x):
    x = _relu(_conv_valid(x, *(_np(w) for w in layer.conv1.weights)))
    return _relu(_conv_valid(x, *(_np(w) for w in layer.conv2.weights)))


# -- the paper's network --------------------------------------------------------------------


def test_paper_network_count_geometry_and_names():
    model = unet()
    assert model.count_params() == 31_030_658
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 31_030_658
    # Figure 1: a 572x572 tile gives a 388x388 map of 2 classes
    assert tuple(model.inputs[0].shape) == (None, 572, 572, 1)
    assert tuple(model.output.shape) == (None, 388, 388, 2)
    assert [layer.name for layer in model.layers] == [
        "image", "encoder1", "encoder2", "encoder3", "encoder4", "bottleneck",
        "decoder4", "decoder3", "decoder2", "decoder1", "predictions", "probabilities",
    ]
    # Figure 1's sizes: skips 568, 280, 136, 64; bottleneck 28; decoders 52, 100, 196, 388
    skips = [model.get_layer(f"encoder{i}").output[1].shape[1] for i in range(1, 5)]
    assert skips == [568, 280, 136, 64]
    assert model.get_layer("bottleneck").output.shape[1:] == (28, 28, 1024)
    ups = [model.get_layer(f"decoder{i}").output.shape[1] for i in (4, 3, 2, 1)]
    assert ups == [52, 100, 196, 388]
    paths = [w.path for w in model.get_layer("decoder2").weights]
    assert "decoder2/upconv/kernel" in paths and "decoder2/conv1/kernel" in paths
    assert tuple(model.get_layer("decoder4").upconv.kernel.shape) == (2, 2, 512, 1024)
    assert model.get_layer("probabilities").activation is keras.activations.softmax
    assert model.get_layer("encoder1").dropout_layer is None  # dropout=0.0 by default
    del model
    keras.backend.clear_session()


def test_valid_size_rules():
    assert unet_output_size(572) == 388
    assert valid_unet_input_size(388) == 572
    assert valid_unet_input_size(1) == 188 and unet_output_size(188) == 4
    assert unet_output_size(44, depth=2) == 4 and unet_output_size(60, depth=2) == 20
    for wanted in (1, 50, 101, 300):
        size = valid_unet_input_size(wanted, depth=3)
        assert unet_output_size(size, depth=3) >= wanted
        # the smallest: one step down (2 ** depth) is too small or not allowed at all
        assert size == valid_unet_input_size(1, depth=3) or (
            unet_output_size(size - 8, depth=3) < wanted
        )
    with pytest.raises(ValueError, match=r"input_size=570.*556 or 572"):
        unet_output_size(570)
    with pytest.raises(ValueError, match=r"input_size=100.*smallest allowed size is 188"):
        unet_output_size(100)
    with pytest.raises(ValueError, match=r"min_output=0"):
        valid_unet_input_size(0)


def test_two_valid_sizes_eager():
    for size, out in ((44, 4), (60, 20)):
        model = unet(**{**TINY, "input_shape": (size, size, 1)})
        y = _np(model(_images((2, size, size, 1))))
        assert y.shape == (2, out, out, 2) == (2, *model.output.shape[1:])
        np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)


def test_same_padding_keeps_size_at_two_sizes():
    model = unet(num_classes=3, input_shape=(32, 48, 2), depth=3, filters=4, padding="same",
                 batch_norm=True)
    assert tuple(model.output.shape) == (None, 32, 48, 3)
    assert _np(model(_images((1, 32, 48, 2)))).shape == (1, 32, 48, 3)
    # batch norm replaces the convolutions' biases
    assert [w.name for w in model.get_layer("encoder1").conv1.weights] == ["kernel"]
    free = unet(num_classes=1, input_shape=(None, None, 1), depth=2, filters=4, padding="same")
    for h, w in ((16, 16), (24, 40)):
        assert _np(free(_images((1, h, w, 1)))).shape == (1, h, w, 1)


def test_skip_crop_matches_numpy_forward():
    """Depth 1, valid padding: 18 -> 14 (skip) -> 7 -> 3 (bottleneck) -> 6, the 14x14 skip
    cropped to rows/columns 4..9, -> 2x2; the whole network recomputed in NumPy."""
    model = unet(num_classes=3, input_shape=(18, 18, 2), depth=1, filters=2,
                 classifier_activation=None)
    x = _images((2, 18, 18, 2), seed=3)
    skip = _block(model.get_layer("encoder1"), x)
    assert skip.shape == (2, 14, 14, 2)
    pooled = skip.reshape(2, 7, 2, 7, 2, 2).max(axis=(2, 4))
    h = _block(model.get_layer("bottleneck"), pooled)  # (2, 3, 3, 4)
    decoder = model.get_layer("decoder1")
    up = _upconv(h, *(_np(w) for w in decoder.upconv.weights))  # (2, 6, 6, 2)
    h = np.concatenate([up, skip[:, 4:10, 4:10, :]], axis=-1)  # [upsampled, cropped skip]
    h = _block(decoder, h)  # (2, 2, 2, 2)
    expected = _conv_valid(h, *(_np(w) for w in model.get_layer("predictions").weights))
    np.testing.assert_allclose(_np(model(x)), expected, rtol=1e-4, atol=1e-5)


def test_center_crop_takes_the_middle():
    x = np.arange(2 * 7 * 6 * 1, dtype="float32").reshape(2, 7, 6, 1)
    np.testing.assert_array_equal(_np(center_crop(x, 3, 2)), x[:, 2:5, 2:4, :])
    # odd difference: the extra row and column come off the bottom and the right
    np.testing.assert_array_equal(_np(center_crop(x, 4, 3)), x[:, 1:5, 1:4, :])
    with pytest.raises(ValueError, match="smaller"):
        center_crop(x, 8, 2)


def test_heads():
    sigmoid = unet(**{**TINY, "num_classes": 1})
    assert sigmoid.get_layer("probabilities").activation is keras.activations.sigmoid
    y = _np(sigmoid(_images((1, 44, 44, 1))))
    assert y.shape == (1, 4, 4, 1) and np.all((y > 0) & (y < 1))
    softmax = unet(**{**TINY, "num_classes": 3})
    assert softmax.get_layer("probabilities").activation is keras.activations.softmax
    np.testing.assert_allclose(_np(softmax(_images((1, 44, 44, 1)))).sum(-1), 1.0, atol=1e-5)
    logits = unet(**{**TINY, "num_classes": 3, "classifier_activation": None})
    x = _images((1, 44, 44, 1))
    head = keras.Model(logits.inputs[0], logits.get_layer("predictions").output)
    np.testing.assert_array_equal(_np(logits(x)), _np(head(x)))
    explicit = unet(**{**TINY, "num_classes": 1, "classifier_activation": "softmax"})
    assert explicit.get_layer("probabilities").activation is keras.activations.softmax


def test_dropout_at_the_end_of_the_contracting_path():
    model = unet(**TINY, dropout=0.5)
    assert model.get_layer("encoder1").dropout_layer is None
    assert model.get_layer("encoder2").dropout_layer.rate == 0.5
    assert model.get_layer("bottleneck").dropout_layer.rate == 0.5
    assert model.get_layer("decoder2").dropout_layer is None
    x = _images((1, 44, 44, 1))
    np.testing.assert_array_equal(_np(model(x)), _np(model(x)))  # inference: no dropout
    assert model.count_params() == kapps.registry.get_spec("unet").tiny_params


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"depth": 0}, r"depth=0"),
        ({"filters": -1}, r"filters=-1"),
        ({"num_classes": 0}, r"num_classes=0"),
        ({"padding": "full"}, r"padding='full'"),
        ({"dropout": 1.0}, r"dropout=1.0"),
        ({"batch_norm": "yes"}, r"batch_norm='yes'"),
        ({"classifier_activation": "nope"}, r"classifier_activation='nope'"),
        ({"input_shape": (46, 46, 1)}, r"input_shape=\(46, 46, 1\).*44 or 48"),
        ({"input_shape": (None, 44, 1)}, r"input_shape=\(None, 44, 1\).*unknown"),
        ({"input_shape": (44, 44)}, r"input_shape=\(44, 44\)"),
        ({"input_shape": (30, 32, 1), "padding": "same"}, r"input_shape=\(30, 32, 1\).*28 or 32"),
        ({"name": ""}, r"name=''"),
    ],
)
def test_bad_arguments(overrides, match):
    with pytest.raises(ValueError, match=match):
        unet(**{**TINY, **overrides})


def test_layer_errors():
    with pytest.raises(ValueError, match=r"upsampling='cubic'"):
        UNetDecoderBlock(4, upsampling="cubic")
    with pytest.raises(ValueError, match=r"padding='full'"):
        UNetConvBlock(4, padding="full")
    with pytest.raises(ValueError, match="even height and width"):
        UNetEncoderBlock(4)(keras.ops.ones((1, 11, 12, 1)))  # 7x8 after the convolutions
    with pytest.raises(ValueError, match="smaller than the upsampled map"):
        UNetDecoderBlock(4)(keras.ops.ones((1, 4, 4, 8)), keras.ops.ones((1, 6, 6, 4)))


@pytest.mark.parametrize(
    "layer",
    [
        UNetConvBlock(8, padding="same", batch_norm=True, dropout=0.2, seed=3, name="c"),
        UNetEncoderBlock(8, activation="elu", momentum=0.9, epsilon=1e-5, name="e"),
        UNetDecoderBlock(8, upsampling="transpose", kernel_initializer="glorot_uniform"),
        UNetDecoderBlock(8, padding="same", batch_norm=True, upsampling="bilinear"),
        UNetDecoderBlock(8, padding="same", upsampling="nearest"),
    ],
    ids=["conv", "encoder", "decoder_transpose", "decoder_bilinear", "decoder_nearest"],
)
def test_layer_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    for arg in ("filters", "padding", "batch_norm", "activation", "dropout", "momentum",
                "epsilon", "kernel_initializer", "seed"):
        assert arg in config
    if isinstance(layer, UNetDecoderBlock):
        assert config["upsampling"] == layer.upsampling


def test_decoder_upsampling_modes_and_no_skip():
    x = _images((1, 5, 6, 8))
    skip = _images((1, 10, 12, 3), seed=1)
    bilinear = UNetDecoderBlock(4, padding="same", upsampling="bilinear")
    assert tuple(bilinear(x, skip).shape) == (1, 10, 12, 4)
    assert tuple(bilinear.conv1.kernel.shape) == (3, 3, 8 + 3, 4)  # no weights upsample
    nearest = UNetDecoderBlock(4, padding="same", upsampling="nearest")
    assert tuple(nearest(x).shape) == (1, 10, 12, 4)  # no skip: upsampling and convs
    assert tuple(nearest.conv1.kernel.shape) == (3, 3, 8, 4)
    encoder = UNetEncoderBlock(4, padding="same")
    pooled, skip = encoder(_images((2, 8, 6, 3)))
    assert tuple(pooled.shape) == (2, 4, 3, 4) and tuple(skip.shape) == (2, 8, 6, 4)
    assert encoder.compute_output_shape((2, 8, 6, 3)) == ((2, 4, 3, 4), (2, 8, 6, 4))
