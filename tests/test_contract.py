"""The model contract on every registered model: a model is tested the moment it is
registered. Tiny configurations run every check; canonical ones are built to pin their
parameter counts (tests/test_registry.py)."""

import pytest

import kapps
from kapps import testing


@pytest.mark.parametrize("name", kapps.list_models())
def test_model_contract(name, tmp_path):
    figures = testing.check_model_contract(name, directory=tmp_path)
    assert figures["params"][0] == kapps.registry.get_spec(name).tiny_params
    if not kapps.registry.get_spec(name).tflite_note:
        assert figures["tflite_error"] <= 1e-4
