"""DenseNet: the blocks, keras.applications' counts and weights, DenseNet-BC, and clear errors.

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


def randomize(model, seed=0):
    """Give every variable distinct random values (BN statistics included), so a transfer that
    swapped two variables of the same shape would show in the outputs."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape, kind = tuple(w.shape), w.path.rsplit("/", 1)[-1]
        if kind == "kernel":
            value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
        elif kind in ("gamma", "moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.standard_normal(shape) * 0.1
        w.assign(value.astype("float32"))


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


# ----------------------------------------------------------------------------- keras.applications


def test_densenet121_counts_and_copies_keras_applications_weights():
    reference = keras.applications.DenseNet121(
        weights=None, input_shape=(32, 32, 3), classifier_activation=None
    )
    randomize(reference)
    ours = densenet121(input_shape=(32, 32, 3), classifier_activation=None, weights=reference)
    assert ours.count_params() == reference.count_params() == 8_062_504
    x = RNG.random((2, 32, 32, 3)).astype("float32")
    # One forward pass each, returning the last feature map and the logits.
    (ours_features, ours_logits), (reference_features, reference_logits) = (
        [numpy(y) for y in keras.Model(m.input, [m.get_layer("relu").output, m.output])(x)]
        for m in (ours, reference)
    )
    assert ours_features.shape == (2, 1, 1, 1024) and ours_logits.shape == (2, 1000)
    assert np.abs(ours_features - reference_features).max() <= 1e-4
    assert np.abs(ours_logits - reference_logits).max() <= 1e-4


def test_mismatched_reference_names_the_first_layer_that_does_not_fit():
    reference = densenet121(blocks=(1, 1), **TINY)
    with pytest.raises(ValueError, match=r"first layer that does not fit is 'pool2/conv'.*needs"):
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
# kapps/specs/densenet.py; DenseNet-121's is also checked against keras.applications above.)


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
