"""The model contract on every registered model: a model is tested the moment it is
registered. Tiny configurations run every check; canonical ones are built to pin their
parameter counts (tests/test_registry.py).

Variants of one builder whose tiny overrides are the same (``vit_b16`` and ``vit_l32``, the
EfficientNets, ``resnet50`` and ``resnet152``: the overrides set every size the variants
differ in) often build the same tiny network. The first of each such group runs the whole contract; a
later variant whose tiny model has the same layers with the same configurations (names
aside: checked in the test, not assumed) checks its shapes, parameter count and
configuration, so the expensive checks (``.keras`` round trip, TFLite parity, gradients, a
distributed step) are not repeated on a network already checked.

The comparison leaves out one more thing than names: the ``rate`` of a top-level ``Dropout``
(or subclass) or ``StochasticDepth`` layer. The EfficientNets' tiny networks are the same but
for the rate of the dropout before the classifier (0.2 for B0 and B1, 0.3 for B2 and B3, ...).
A rate cannot change what the expensive checks see: in inference (the ``.keras`` round trip
and TFLite parity compare inference outputs) those layers are the identity whatever the rate,
and in training (gradients, the distributed step) a rate in [0, 1) only changes which
activations are zeroed and how the others are scaled, not the ops run, the variables or their
gradients' paths. The variant still builds its own network, whose shapes, parameter count and
configuration are checked (``kapps.testing.check_config`` covers kapps layers' rates; a rate
outside [0, 1) is refused when the layer is built). A rate inside another layer's
configuration (e.g. ``MBConvBlock``'s ``drop_rate``, which decides whether the block has a
``StochasticDepth`` layer at all) is compared like any other value, so such variants run the
whole contract. So do variants whose tiny networks differ otherwise (VGG's depths, ResNet's
basic and bottleneck blocks).

Each tiny network's structure is computed once per test process (many variants are compared
with the same first one)."""

import functools
import json

import keras
import pytest

import kapps
from kapps import registry, testing
from kapps.layers.mbconv import StochasticDepth

#: What a variant whose tiny network was already checked still runs.
LIGHT_CHECKS = ("output_shapes", "param_counts", "config")

#: Layers whose ``rate`` the twin comparison leaves out (see the module docstring).
RATE_ONLY_LAYERS = (keras.layers.Dropout, StochasticDepth)


def _tiny_key(name):
    spec = registry.get_spec(name)
    return spec.builder.split(":")[0], repr(sorted(registry.tiny_overrides(name).items()))


def _layer_structure(layer):
    """A layer's class and configuration, names aside (and the rate of a dropout layer)."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("name", "inbound_nodes")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    config = strip(layer.get_config())
    if isinstance(layer, RATE_ONLY_LAYERS):
        config.pop("rate", None)
    return [f"{type(layer).__module__}.{type(layer).__qualname__}", config]


@functools.lru_cache(maxsize=None)
def _structure(name):
    """The tiny model's layers and their configurations, names and dropout rates aside."""
    model = registry.build(name, **registry.tiny_overrides(name))
    return json.dumps([_layer_structure(layer) for layer in model.layers], sort_keys=True, default=str)


def _twin_of(name):
    """The first registered model with the same builder and tiny overrides whose tiny network
    has the same layers (dropout rates aside), or ``name`` itself."""
    earlier = [
        other for other in kapps.list_models()[: kapps.list_models().index(name)]
        if _tiny_key(other) == _tiny_key(name)
    ]
    if earlier:
        mine = _structure(name)
        for other in earlier:
            if _structure(other) == mine:
                return other
    return name


def test_dropout_rates_are_all_that_the_comparison_leaves_out():
    dense = keras.layers.Dense(3)
    assert _layer_structure(keras.layers.Dropout(0.2, name="a")) == _layer_structure(keras.layers.Dropout(0.5, name="b"))
    assert _layer_structure(StochasticDepth(0.1)) == _layer_structure(StochasticDepth(0.3))
    assert _layer_structure(keras.layers.SpatialDropout2D(0.1)) == _layer_structure(keras.layers.SpatialDropout2D(0.4))
    # other values of a dropout layer, and rates held by other layers, still count
    assert _layer_structure(keras.layers.Dropout(0.2, seed=1)) != _layer_structure(keras.layers.Dropout(0.2, seed=2))
    assert _layer_structure(keras.layers.Dropout(0.2)) != _layer_structure(keras.layers.SpatialDropout2D(0.2))
    assert _layer_structure(keras.layers.GaussianDropout(0.1)) != _layer_structure(keras.layers.GaussianDropout(0.3))
    assert _layer_structure(dense) != _layer_structure(keras.layers.Dense(4))


@pytest.mark.parametrize("name", kapps.list_models())
def test_model_contract(name, tmp_path):
    twin_of = _twin_of(name)
    checks = testing.CHECKS if twin_of == name else LIGHT_CHECKS
    figures = testing.check_model_contract(name, checks=checks, directory=tmp_path)
    assert figures["params"][0] == registry.get_spec(name).tiny_params
    if twin_of == name and not registry.get_spec(name).tflite_note:
        assert figures["tflite_error"] <= 1e-4
