"""DenseNet: the blocks, weights that do not fit, DenseNet-BC, and clear errors.

The registry-wide contract (tests/test_contract.py) runs every check on the tiny configurations;
this module pins the canonical figures and what is particular to DenseNet.
"""

import keras
import numpy as np
import pytest

from kapps.layers.dense_block import DenseBlock, DenseLayer, TransitionBlock
from kapps.models.classification.densenet import (
    densenet,
    densenet121,
    densenet_bc_100,
)

RNG = np.random.default_rng(0)
TINY = dict(input_shape=(32, 32, 3), num_classes=10, growth_rate=4)


def numpy(x):
    return keras.ops.convert_to_numpy(x)


# ----------------------------------------------------------------------------- blocks


def test_dense_layer_adds_growth_rate_channels_with_the_papers_parameters():
    layer = DenseLayer(8)
    assert tuple(layer(keras.ops.ones((2, 6, 6, 16))).shape) == (2, 6, 6, 24)
    # BN(16) with 4 values per channel, 1x1 16->32, BN(32), 3x3 32->8; no biases.
    assert layer.count_params() == 4 * 16 + 16 * 32 + 4 * 32 + 9 * 32 * 8
    assert [w.path for w in layer.weights][:2] == ["dense_layer/0_bn/gamma", "dense_layer/0_bn/beta"]
    plain = DenseLayer(8, bottleneck=False)
    assert plain.compute_output_shape((None, 6, 6, 16)) == (None, 6, 6, 24)
    assert tuple(plain(keras.ops.ones((1, 6, 6, 16))).shape) == (1, 6, 6, 24)
    assert plain.count_params() == 4 * 16 + 9 * 16 * 8


def test_dense_block_keeps_its_input_and_transition_halves():
    x = RNG.random((2, 8, 8, 6)).astype("float32")
    block = DenseBlock(3, growth_rate=4, name="conv2")
    y = numpy(block(x))
    assert y.shape == (2, 8, 8, 18)
    np.testing.assert_array_equal(y[..., :6], x)  # concatenation passes the input through
    assert [layer.name for layer in block.dense_layers] == ["block1", "block2", "block3"]
    transition = TransitionBlock(9)
    assert tuple(transition(y).shape) == (2, 4, 4, 9)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: DenseLayer(0), "growth_rate=0"),
        (lambda: DenseLayer(4, bottleneck="yes"), "bottleneck='yes'"),
        (lambda: DenseBlock(0, 4), "num_layers=0"),
        (lambda: DenseBlock(2, 4, bottleneck_width=0), "bottleneck_width=0"),
        (lambda: TransitionBlock(2.5), "filters=2.5"),
    ],
)
def test_block_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ----------------------------------------------------------------------------- weights
# (keras.applications' DenseNet-121/169/201, their .keras and .weights.h5 files: tests/test_transfer.py)


def test_mismatched_reference_names_the_first_layer_that_does_not_fit():
    reference = densenet121(blocks=(1, 1), **TINY)
    first = (
        r"first layer that does not fit is 'pool2/conv' of the reference: its variable 19 of 36, "
        r"'pool2/conv/kernel' \(1, 1, 12, 6\), where the model has 'conv2/block2/1_conv/kernel' "
        r"\(1, 1, 12, 16\)"
    )
    with pytest.raises(ValueError, match=first):
        densenet121(blocks=(2, 1), **TINY, weights=reference)
    with pytest.raises(ValueError, match=r"2 more variables, from layer 'predictions'"):
        densenet121(blocks=(1, 1), **TINY, include_top=False, weights=reference)
    headless = densenet121(blocks=(1, 1), **TINY, include_top=False)
    with pytest.raises(ValueError, match=r"model's layer 'predictions'.*2 variables are missing"):
        densenet121(blocks=(1, 1), **TINY, weights=headless)
    ours = densenet121(blocks=(1, 1), **TINY, weights=reference)
    x = RNG.random((1, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(numpy(ours(x)), numpy(reference(x)))


# ----------------------------------------------------------------------------- DenseNet-BC and options
# (The canonical counts and FLOPs of every name are pinned by tests/test_registry.py against
# kapps/specs/densenet.py; tests/test_transfer.py checks them against keras.applications.)


def test_densenet_bc_structure():
    model = densenet_bc_100(growth_rate=4)  # the paper's depth at a narrow width
    blocks = [model.get_layer(f"conv{i}") for i in (2, 3, 4)]
    assert [b.num_layers for b in blocks] == [16, 16, 16]
    assert [tuple(b.output.shape[1:]) for b in blocks] == [(32, 32, 72), (16, 16, 100), (8, 8, 114)]
    assert model.get_layer("conv1").kernel.shape == (3, 3, 3, 8)  # 2k filters
    assert [model.get_layer(f"pool{i}").filters for i in (2, 3)] == [36, 50]  # compression 0.5
    assert model.output_shape == (None, 10)


def test_generic_builder_options_and_names():
    plain = densenet(blocks=(2, 2), stem="cifar", bottleneck=False, compression=1.0, **TINY)
    assert plain.name == "densenet_7"  # stem, 4 convolutions, 1 transition, top
    assert plain.get_layer("pool2").filters == 8 + 2 * 4
    features = densenet121(blocks=(1, 1), **TINY, include_top=False, pooling="avg")
    assert features.output_shape == (None, 10)  # 8 + 4, halved to 6, + 4
    any_size = densenet121(blocks=(1, 1), growth_rate=4, input_shape=(None, None, 3))
    assert numpy(any_size(RNG.random((1, 40, 48, 3)).astype("float32"))).shape == (1, 1000)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"blocks": ()}, r"blocks=\(\)"),
        ({"blocks": (2, 0)}, r"blocks=\(2, 0\)"),
        ({"compression": 0}, "compression=0"),
        ({"compression": 1.5}, "compression=1.5"),
        ({"stem": "tiny"}, "stem='tiny'"),
        ({"stem_filters": 0}, "stem_filters=0"),
        ({"input_shape": (16, 16, 3)}, r"input_shape=\(16, 16, 3\).*at least 32"),
        ({"pooling": "sum"}, "pooling='sum'"),
        ({"classifier_activation": "sofmax"}, "classifier_activation='sofmax'"),
        ({"bottleneck": 1}, "bottleneck=1"),
    ],
)
def test_densenet_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        densenet(**{"blocks": (1, 1, 1, 1), "growth_rate": 4, "input_shape": (32, 32, 3), **kwargs})


@pytest.mark.parametrize("depth", [99, 4, "100"])
def test_densenet_bc_bad_depth(depth):
    with pytest.raises(ValueError, match=f"depth={depth!r}"):
        densenet_bc_100(depth=depth)
