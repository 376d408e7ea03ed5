"""The registry: names, errors, metadata, and the canonical figures pinned against the code."""

import subprocess
import sys

import keras
import numpy as np
import pytest

import kapps
from kapps import registry
from kapps.flops import count_flops

EXPECTED = {"lenet5", "alexnet", "vgg11", "vgg13", "vgg16", "vgg19"}


def test_expected_models_are_registered():
    assert EXPECTED <= set(kapps.list_models())
    assert set(kapps.list_models(task="classification")) >= EXPECTED
    assert kapps.list_models(task="segmentation") == [
        n for n in kapps.list_models() if registry.get_spec(n).task == "segmentation"
    ]


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"name='vgg61'.*'vgg16'"):
        kapps.build("vgg61")
    with pytest.raises(ValueError, match="lenet5"):
        kapps.info("lenet")


def test_unknown_task():
    with pytest.raises(ValueError, match=r"task='vision'.*classification"):
        kapps.list_models(task="vision")


def test_info_fields():
    info = kapps.info("vgg16")
    assert info["params"] == 138_357_544
    assert info["published_params"] == 138_357_544
    assert info["input_shape"] == (224, 224, 3)
    assert info["task"] == "classification" and info["family"] == "VGG"
    assert "Simonyan" in info["paper"]
    assert info["flops"] > 30e9


def test_register_rejects_duplicates_and_bad_tasks():
    spec = registry.get_spec("lenet5")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(spec)
    import dataclasses

    with pytest.raises(ValueError, match="task='vision'"):
        registry.register(dataclasses.replace(spec, name="x", task="vision"))


def test_every_spec_is_complete():
    for name in kapps.list_models():
        spec = registry.get_spec(name)
        assert spec.tiny_params, f"{name} has no pinned tiny parameter count"
        assert spec.published_source and spec.paper
        assert callable(spec.builder_fn())


def test_builders_are_importable_directly():
    assert kapps.models.vgg16 is registry.get_spec("vgg16").builder_fn()
    assert kapps.models.lenet5.__doc__ and kapps.models.vgg19.__doc__


@pytest.mark.parametrize("name", kapps.list_models())
def test_canonical_counts_match_registry_and_published(name):
    spec = registry.get_spec(name)
    # Counting needs the weights' shapes, not their values: no initializer runs (GPT-2 XL's
    # 1.5 billion random numbers alone would take most of a minute)
    with keras.StatelessScope(initialize_variables=False):
        model = kapps.build(name)
    total = model.count_params()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert (total, trainable) == (spec.params, spec.trainable_params)
    published = trainable if spec.published_kind == "trainable" else total
    assert published == spec.published_params
    assert tuple(model.inputs[0].shape[1:]) == spec.input_shape
    if spec.flops is not None:
        assert count_flops(model, spec.flops_input_shape) == spec.flops
    del model
    keras.backend.clear_session()


def test_import_and_list_do_not_import_tensorflow():
    code = (
        "import sys, kapps; kapps.list_models(); kapps.info('vgg16'); "
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_build_passes_a_model_name_through():
    model = kapps.build("lenet5", name="my_lenet", input_shape=(28, 28, 1))
    assert model.name == "my_lenet"
