import keras
import pytest

from kapps.flops import count_flops


def test_conv_dense_and_grouped_conv_counts():
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(6, 3, padding="same")(inputs)  # 8*8*6 outputs x 3*3*4 MACs
    x = keras.layers.Conv2D(6, 3, padding="same", groups=2)(x)  # x 3*3*3 MACs
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)  # 8*8*6 x 3*3
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5)(x)  # 384 x 5
    model = keras.Model(inputs, outputs)
    macs = 8 * 8 * 6 * 9 * 4 + 8 * 8 * 6 * 9 * 3 + 8 * 8 * 6 * 9 + 384 * 5
    assert count_flops(model) == 2 * macs


def test_attention_style_matmuls_are_counted():
    inputs = keras.Input((5, 8))
    outputs = keras.layers.Lambda(lambda t: keras.ops.einsum("bqd,bkd->bqk", t, t))(inputs)
    model = keras.Model(inputs, outputs)
    assert count_flops(model) == 2 * 5 * 5 * 8


def test_unknown_size_needs_input_shape():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    with pytest.raises(ValueError, match="input_shape"):
        count_flops(model)
    assert count_flops(model, input_shape=(4, 4, 3)) == 2 * 4 * 4 * 2 * 3
