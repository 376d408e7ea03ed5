"""kapps.layers: each layer's math against an independent computation, its config, its errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kapps import layers
from kapps.layers import (
    ConvBNAct,
    EuclideanRBF,
    LocalResponseNormalization,
    PartialConv2D,
    ScaledTanh,
    TrainableSubsampling,
)

RNG = np.random.default_rng(0)


def roundtrip(layer, x):
    """Output of ``layer`` and of a layer rebuilt from its config with the same weights."""
    y = keras.ops.convert_to_numpy(layer(x))
    clone = type(layer).from_config(layer.get_config())
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(x)), y, rtol=1e-6, atol=1e-6)
    return y


@pytest.mark.parametrize("depth", [3, 5, 7])
def test_lrn_matches_tensorflow(depth):
    x = RNG.standard_normal((2, 6, 6, 16)).astype("float32") * 10
    ours = roundtrip(LocalResponseNormalization(depth=depth), x)
    reference = tf.nn.local_response_normalization(
        x, depth_radius=(depth - 1) // 2, bias=2.0, alpha=1e-4, beta=0.75
    )
    np.testing.assert_allclose(ours, reference.numpy(), rtol=1e-5, atol=1e-6)


def test_lrn_paper_defaults_and_errors():
    config = LocalResponseNormalization().get_config()
    assert (config["depth"], config["k"], config["alpha"], config["beta"]) == (5, 2.0, 1e-4, 0.75)
    with pytest.raises(ValueError, match="depth=4"):
        LocalResponseNormalization(depth=4)
    with pytest.raises(ValueError, match="depth=0"):
        LocalResponseNormalization(depth=0)


def test_scaled_tanh_fixes_plus_minus_one():
    y = roundtrip(ScaledTanh(), np.array([[-1.0, 0.0, 1.0, 50.0]], "float32"))
    np.testing.assert_allclose(y[0, :3], [-1.0, 0.0, 1.0], atol=1e-4)
    assert y[0, 3] == pytest.approx(1.7159, abs=1e-4)


def test_trainable_subsampling_is_scaled_window_sum():
    x = RNG.random((1, 4, 4, 2)).astype("float32")
    layer = TrainableSubsampling(2)
    layer.build(x.shape)
    layer.coefficient.assign([2.0, -1.0])
    layer.bias.assign([0.5, 0.0])
    y = roundtrip(layer, x)
    window = x.reshape(1, 2, 2, 2, 2, 2).sum(axis=(2, 4))
    np.testing.assert_allclose(y, window * [2.0, -1.0] + [0.5, 0.0], rtol=1e-5)
    assert len(layer.trainable_weights) == 2 and layer.count_params() == 4


def test_partial_conv_equals_masked_full_conv():
    table = [[0, 2], [1], [0, 1, 2]]
    x = RNG.random((2, 7, 7, 3)).astype("float32")
    layer = PartialConv2D(table, kernel_size=3)
    y = roundtrip(layer, x)
    assert layer.count_params() == 9 * 6 + 3
    full = keras.ops.convert_to_numpy(layer.full_kernel())
    for o, row in enumerate(table):
        for i in range(3):
            assert np.any(full[:, :, i, o] != 0) == (i in row)
    reference = tf.nn.conv2d(x, full, 1, "VALID") + layer.bias.numpy()
    np.testing.assert_allclose(y, reference.numpy(), rtol=1e-5, atol=1e-6)


def test_partial_conv_errors():
    with pytest.raises(ValueError, match="connection_table"):
        PartialConv2D([[0, 0]])
    with pytest.raises(ValueError, match="connection_table"):
        PartialConv2D([])
    with pytest.raises(ValueError, match="at least 4"):
        PartialConv2D([[3]])(np.zeros((1, 5, 5, 2), "float32"))


def test_euclidean_rbf_outputs_negated_squared_distance():
    layer = EuclideanRBF(10)
    x = RNG.standard_normal((3, 84)).astype("float32")
    y = roundtrip(layer, x)
    codes = layers.lenet_output_codes(10)
    expected = -((x[:, None, :] - codes[None]) ** 2).sum(-1)
    np.testing.assert_allclose(y, expected, rtol=1e-4)
    assert layer.trainable_weights == [] and layer.count_params() == 840
    assert set(np.unique(codes)) == {-1.0, 1.0}
    # each digit code is its own nearest code
    assert (np.argmax(keras.ops.convert_to_numpy(layer(codes)), axis=1) == np.arange(10)).all()


def test_conv_bn_act_shapes_groups_and_errors():
    block = ConvBNAct(8, 3, strides=2, groups=2)
    y = roundtrip(block, RNG.random((2, 8, 8, 4)).astype("float32"))
    assert y.shape == (2, 4, 4, 8)
    assert block.conv.use_bias is False  # the normalization's offset replaces the bias
    assert ConvBNAct(8, 3, batch_norm=False).conv.use_bias is True
    with pytest.raises(ValueError, match="groups=3"):
        ConvBNAct(8, 3, groups=3)
    with pytest.raises(ValueError, match="groups=2 does not divide the 3 input channels"):
        ConvBNAct(8, 3, groups=2)(np.zeros((1, 4, 4, 3), "float32"))
    with pytest.raises(ValueError, match="padding='full'"):
        ConvBNAct(8, 3, padding="full")
