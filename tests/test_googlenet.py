"""GoogLeNet: the Inception module, Table 1's network, the auxiliary heads, the BatchNorm form,
and clear errors. The registry-wide contract (tests/test_contract.py) runs every check on the
tiny configuration (batch-normalized); the paper's plain form is checked here with a fixed seed.
"""

import keras
import numpy as np
import pytest

from kapps import registry, testing
from kapps.layers.conv import ConvBNAct
from kapps.layers.inception import Inception
from kapps.layers.normalization import LocalResponseNormalization
from kapps.models.classification.googlenet import INCEPTION_TABLE, googlenet

RNG = np.random.default_rng(0)
SHORT_TABLE = (INCEPTION_TABLE[0], "pool", INCEPTION_TABLE[3], "pool", INCEPTION_TABLE[-1])


def test_inception_module_concatenates_the_four_branches():
    block = Inception(64, 96, 128, 16, 32, 32)  # inception (3a)
    x = RNG.random((1, 28, 28, 192)).astype("float32")
    y = keras.ops.convert_to_numpy(block(x))
    assert y.shape == (1, 28, 28, 256) and block.output_channels == 256
    # Weights and biases of 1x1, 1x1->3x3, 1x1->5x5 and the pool projection.
    weights = 192 * 64 + 192 * 96 + 9 * 96 * 128 + 192 * 16 + 25 * 16 * 32 + 192 * 32
    assert block.count_params() == weights + 64 + 96 + 128 + 16 + 32 + 32
    # The first 64 channels are the 1x1 branch.
    np.testing.assert_allclose(
        y[..., :64], keras.ops.convert_to_numpy(block.branch1x1(x)), rtol=1e-6, atol=1e-6
    )
    normalized = Inception(4, 4, 8, 2, 4, 4, batch_norm=True)
    normalized.build((None, 8, 8, 6))
    assert all(isinstance(c, ConvBNAct) and c.batch_norm for c in (normalized.branch1x1, normalized.branch5x5))
    with pytest.raises(ValueError, match="filters_5x5_reduce=0"):
        Inception(64, 96, 128, 0, 32, 32)
    with pytest.raises(ValueError, match="batch_norm='no'"):
        Inception(64, 96, 128, 16, 32, 32, batch_norm="no")


def test_table_1_network():
    model = googlenet()
    assert model.count_params() == 6_998_552 == registry.get_spec("googlenet").params
    sizes = {
        "conv1_7x7": (112, 112, 64),
        "pool1": (56, 56, 64),
        "conv2_3x3": (56, 56, 192),
        "pool2": (28, 28, 192),
        "inception_3a": (28, 28, 256),
        "inception_3b": (28, 28, 480),
        "pool3": (14, 14, 480),
        "inception_4a": (14, 14, 512),
        "inception_4d": (14, 14, 528),
        "inception_4e": (14, 14, 832),
        "pool4": (7, 7, 832),
        "inception_5b": (7, 7, 1024),
    }
    assert {n: tuple(model.get_layer(n).output.shape[1:]) for n in sizes} == sizes
    assert isinstance(model.get_layer("pool1_norm"), LocalResponseNormalization)
    assert model.get_layer("dropout").rate == 0.4
    assert model.output_shape == (None, 1000)
    with_aux = googlenet(aux_logits=True)
    # Each head: 1x1 conv of 128, fc 4*4*128 -> 1024, linear 1024 -> 1000 (Section 5).
    heads = (512 + 528) * 128 + 2 * 128 + 2 * (2048 * 1024 + 1024 + 1024 * 1000 + 1000)
    assert with_aux.count_params() == 6_998_552 + heads
    assert [tuple(o.shape) for o in with_aux.outputs] == [(None, 1000)] * 3
    assert tuple(with_aux.get_layer("aux1_pool").output.shape[1:]) == (4, 4, 512)
    del model, with_aux
    keras.backend.clear_session()


def test_paper_form_passes_the_checks_with_a_fixed_seed():
    keras.utils.set_random_seed(0)
    model = googlenet(
        input_shape=(32, 32, 3), num_classes=10, width_multiplier=0.25, inception_table=SHORT_TABLE
    )
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model._flatten_layers())
    x = testing.sample_inputs(model)
    testing.check_output_shapes(model, x)
    testing.check_gradients(model, x)
    assert testing.check_tflite_parity(model, x) <= 1e-4


def test_auxiliary_heads_train_with_loss_weights():
    keras.utils.set_random_seed(0)
    model = googlenet(
        input_shape=(80, 80, 3), num_classes=5, width_multiplier=0.0625, aux_logits=True
    )
    assert model.output_names == ["probabilities", "aux1_probabilities", "aux2_probabilities"]
    model.compile("sgd", loss=["sparse_categorical_crossentropy"] * 3, loss_weights=[1.0, 0.3, 0.3])
    x = RNG.random((2, 80, 80, 3)).astype("float32")
    y = np.array([1, 3])
    loss = model.train_on_batch(x, [y, y, y])
    assert np.all(np.isfinite(loss))
    assert [tuple(o.shape) for o in model(x, training=False)] == [(2, 5)] * 3


def test_batch_norm_form_drops_lrn_by_default():
    model = googlenet(input_shape=(32, 32, 3), num_classes=10, width_multiplier=0.0625, batch_norm=True)
    assert model.get_layer("conv1_7x7").batch_norm and model.get_layer("inception_5b").batch_norm
    assert not any(isinstance(layer, LocalResponseNormalization) for layer in model.layers)
    features = googlenet(input_shape=(None, None, 3), include_top=False, pooling="avg", width_multiplier=0.0625)
    assert features.output_shape == (None, 64)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"aux_logits": True, "include_top": False}, "aux_logits=True is not allowed with include_top=False"),
        ({"aux_logits": True, "input_shape": (64, 64, 3)}, r"input_shape=\(64, 64, 3\).*at least 65"),
        ({"aux_logits": True, "inception_table": SHORT_TABLE}, r"named \('4a', '4d'\)"),
        ({"width_multiplier": 0}, "width_multiplier=0"),
        ({"lrn": "yes"}, "lrn='yes'"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"input_shape": (16, 16, 3)}, "at least 32"),
        ({"inception_table": ()}, r"inception_table=\(\)"),
        ({"inception_table": (("3a", (64, 96)),)}, "inception_table="),
        ({"inception_table": (INCEPTION_TABLE[0], INCEPTION_TABLE[0])}, "repeated module names"),
        ({"classifier_activation": "sofmax"}, "classifier_activation='sofmax'"),
    ],
)
def test_googlenet_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        googlenet(**{"width_multiplier": 0.0625, **kwargs})
