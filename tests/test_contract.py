"""The model contract on every registered model: a model is tested the moment it is
registered. Tiny configurations run every check; canonical ones are built to pin their
parameter counts (tests/test_registry.py).

Variants of one builder whose tiny overrides are the same (``vit_b16`` and ``vit_l32``, the
EfficientNets, ``resnet50`` and ``resnet152``: the overrides set every size the variants
differ in) often build the same tiny network. The first of each such group runs the whole contract; a
later variant whose tiny model has the same layers with the same configurations (names
aside: checked in the test, not assumed) checks its shapes, parameter count and
configuration, so the expensive checks (``.keras`` round trip, TFLite parity, a distributed
step) are not repeated on a network already checked. Variants whose tiny networks differ
(VGG's depths, ResNet's basic and bottleneck blocks, EfficientNet's dropout rates) run the
whole contract."""

import json

import pytest

import kapps
from kapps import registry, testing

#: What a variant whose tiny network was already checked still runs.
LIGHT_CHECKS = ("output_shapes", "param_counts", "config")


def _tiny_key(name):
    spec = registry.get_spec(name)
    return spec.builder.split(":")[0], repr(sorted(registry.tiny_overrides(name).items()))


def _structure(name):
    """The tiny model's layers and their configurations, names aside."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("name", "inbound_nodes")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    model = registry.build(name, **registry.tiny_overrides(name))
    return json.dumps([strip(layer.get_config()) for layer in model.layers], sort_keys=True, default=str)


def _twin_of(name):
    """The first registered model with the same builder and tiny overrides whose tiny network
    has the same layers, or ``name`` itself."""
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


@pytest.mark.parametrize("name", kapps.list_models())
def test_model_contract(name, tmp_path):
    twin_of = _twin_of(name)
    checks = testing.CHECKS if twin_of == name else LIGHT_CHECKS
    figures = testing.check_model_contract(name, checks=checks, directory=tmp_path)
    assert figures["params"][0] == registry.get_spec(name).tiny_params
    if twin_of == name and not registry.get_spec(name).tflite_note:
        assert figures["tflite_error"] <= 1e-4
