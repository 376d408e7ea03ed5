"""ViT (Dosovitskiy et al. 2021): counts against keras-hub, variants, image sizes, weights at
another size and from keras-hub, attention rollout, bad arguments, GAP pooling.

The model contract (shapes, gradients, config, .keras, TFLite, MirroredStrategy) runs on the
tiny configuration in tests/test_contract.py; the canonical counts of every variant are pinned
in tests/test_registry.py.
"""

import importlib
import inspect
import math

import keras
import numpy as np
import pytest

import kapps
from kapps import registry
from kapps.flops import count_flops
from kapps.layers.position import resize_position_grid
from kapps.models.classification.vit import (
    VARIANTS,
    attention_rollout,
    attention_scores_model,
    rollout_from_scores,
    vit,
)

# the module (the package's attribute `vit` is the builder function of the same name)
vit_module = importlib.import_module("kapps.models.classification.vit")
_erf = np.vectorize(math.erf)  # exact GELU's error function, without scipy

TINY = dict(patch_size=8, hidden_dim=32, depth=2, num_heads=2, mlp_dim=64)
NAMES = ("vit_ti16", "vit_s16", "vit_b16", "vit_b32", "vit_l16", "vit_l32", "vit_h14")


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def images(n=2, size=(32, 32), seed=0):
    return np.random.default_rng(seed).random((n, *size, 3), dtype="float32")


def randomize(model, seed=0, scale=0.2):
    """Random weights everywhere (biases, norms and tokens too), so a mapping error shows."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(0.0, scale, tuple(w.shape)).astype("float32"))
    return model


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# -- counts ------------------------------------------------------------------------------------


def test_vit_b16_counts_equal_keras_hub():
    keras_hub = pytest.importorskip("keras_hub")
    model = vit_module.vit_b16()
    assert model.count_params() == trainable_count(model) == 86_567_656
    backbone = keras.Model(model.input, model.get_layer("encoder_norm").output)
    assert backbone.count_params() == 85_798_656
    assert tuple(backbone.output.shape) == (None, 197, 768)  # class token + 14 x 14 patches
    assert model.get_layer("position_embedding").embeddings.shape == (197, 768)
    assert count_flops(model) == registry.get_spec("vit_b16").flops
    del model, backbone
    keras.backend.clear_session()
    reference = keras_hub.models.ViTBackbone(
        image_shape=(224, 224, 3), patch_size=16, num_layers=12, num_heads=12, hidden_dim=768,
        mlp_dim=3072,
    )
    assert reference.count_params() == 85_798_656
    assert 85_798_656 + 768 * 1000 + 1000 == 86_567_656  # keras-hub's ViTImageClassifier head
    del reference
    keras.backend.clear_session()


def test_include_top_false_drops_exactly_the_head():
    top = vit(num_classes=10, input_shape=(32, 32, 3), **TINY)
    assert top.count_params() == registry.get_spec("vit_b16").tiny_params == 24_234
    features = vit(include_top=False, input_shape=(32, 32, 3), **TINY)
    assert top.count_params() - features.count_params() == 32 * 10 + 10
    assert tuple(features.output.shape) == (None, 17, 32)
    for pooling, layer in (("avg", "avg_pool"), ("max", "max_pool")):
        pooled = vit(include_top=False, pooling=pooling, input_shape=(32, 32, 3), **TINY)
        assert tuple(pooled.output.shape) == (None, 32) and pooled.get_layer(layer)
        # over the 16 patch tokens, the class token left out
        sequence = _sequence(pooled, images())
        reduce = np.mean if pooling == "avg" else np.max
        np.testing.assert_allclose(numpy(pooled(images())), reduce(sequence[:, 1:], axis=1),
                                   atol=1e-6)


def test_vit_h14_counts_are_linear_in_depth():
    # ViT-H/14 has 632M parameters (several GB to build with its FLOPs counted); every block
    # adds the same parameters and FLOPs, so one- and two-block models pin the whole count.
    spec = registry.get_spec("vit_h14")
    counts = []
    for depth in (1, 2):
        model = vit_module.vit_h14(depth=depth)
        counts.append((model.count_params(), count_flops(model)))
        del model
        keras.backend.clear_session()
    (p1, f1), (p2, f2) = counts
    assert p1 + 31 * (p2 - p1) == spec.params == 632_045_800
    assert f1 + 31 * (f2 - f1) == spec.flops


def test_variants_table_and_registry():
    assert VARIANTS == {
        "ti16": (16, 192, 12, 3, 768),
        "s16": (16, 384, 12, 6, 1536),
        "b16": (16, 768, 12, 12, 3072),
        "b32": (32, 768, 12, 12, 3072),
        "l16": (16, 1024, 24, 16, 4096),
        "l32": (32, 1024, 24, 16, 4096),
        "h14": (14, 1280, 32, 16, 5120),
    }
    for name in NAMES:
        spec = registry.get_spec(name)
        assert spec.family == "ViT" and spec.task == "classification"
        assert spec.input_shape == (224, 224, 3) and spec.params == spec.trainable_params
        builder = spec.builder_fn()
        assert builder is getattr(vit_module, name) and builder.__name__ == name
        defaults = {k: p.default for k, p in inspect.signature(builder).parameters.items()}
        patch, dim, depth, heads, mlp = VARIANTS[name[4:]]
        assert (defaults["patch_size"], defaults["hidden_dim"], defaults["depth"],
                defaults["num_heads"], defaults["mlp_dim"]) == (patch, dim, depth, heads, mlp)
        assert defaults["name"] == name and defaults["classifier_pooling"] == "token"
        assert list(defaults)[:6] == ["num_classes", "input_shape", "include_top", "pooling",
                                      "classifier_activation", "weights"]
    model = kapps.build("vit_s16", **registry.tiny_overrides("vit_s16"))
    assert model.name == "vit_s16" and model.count_params() == 24_234
    names = [layer.name for layer in model.layers]
    assert names[:5] == ["image", "patch_embedding", "class_token", "position_embedding",
                         "encoder_block1"]
    assert names[5:] == ["encoder_block2", "encoder_norm", "token_select", "token_features",
                         "predictions", "probabilities"]


# -- image sizes ---------------------------------------------------------------------------------


def test_any_size_divisible_by_the_patch_builds_and_others_raise():
    model = vit(num_classes=3, input_shape=(24, 40, 3), **TINY)  # a 3 x 5 grid
    assert tuple(model(images(2, (24, 40))).shape) == (2, 3)
    assert model.get_layer("position_embedding").embeddings.shape == (1 + 15, 32)
    one = vit(num_classes=3, input_shape=(8, 8, 1), **TINY)  # a single patch
    assert tuple(one(np.zeros((1, 8, 8, 1))).shape) == (1, 3)
    for shape in ((30, 32, 3), (32, 36, 3)):
        with pytest.raises(ValueError, match=r"input_shape=\(\d+, \d+, 3\).*patch_size=\(8, 8\)"):
            vit(input_shape=shape, **TINY)
    with pytest.raises(ValueError, match=r"input_shape=\(None, 32, 3\)"):
        vit(input_shape=(None, 32, 3), **TINY)


# -- weights -----------------------------------------------------------------------------------


def _replay(model, x):
    """``model``'s layers up to the final LayerNorm called eagerly on ``x`` of any size (the
    position layer interpolates its grid on the fly)."""
    for layer in model.layers[1:]:
        x = layer(x)
        if layer.name == "encoder_norm":
            return numpy(x)


def _sequence(model, x):
    return numpy(keras.Model(model.input, model.get_layer("encoder_norm").output)(x))


def test_weights_from_another_image_size_resize_the_position_grid(tmp_path):
    small = randomize(vit(num_classes=10, input_shape=(32, 32, 3), **TINY))
    table = numpy(small.get_layer("position_embedding").embeddings)
    expected = numpy(resize_position_grid(table, (4, 4), (8, 8), num_prefix_tokens=1))
    np.testing.assert_array_equal(
        expected, numpy(small.get_layer("position_embedding").interpolate(65)))
    small.save(tmp_path / "small.keras")
    small.save_weights(tmp_path / "small.weights.h5")
    x = images(2, (64, 64))
    for weights in (small, str(tmp_path / "small.keras"), str(tmp_path / "small.weights.h5")):
        large = vit(num_classes=10, input_shape=(64, 64, 3), weights=weights, **TINY)
        np.testing.assert_array_equal(numpy(large.get_layer("position_embedding").embeddings),
                                      expected)
        np.testing.assert_array_equal(table[0], expected[0])  # the class token's, unchanged
        for ours, theirs in zip(large.weights, small.weights):
            if "position_embedding" not in ours.path:
                np.testing.assert_array_equal(numpy(ours), numpy(theirs))
        np.testing.assert_array_equal(_sequence(large, x), _replay(small, x))
    keras.backend.clear_session()


def test_weights_that_do_not_fit_raise_and_a_new_head_warns(tmp_path):
    source = vit(num_classes=10, input_shape=(32, 32, 3), **TINY)
    with pytest.warns(UserWarning, match="head layer 'predictions'.*keeps its initialization"):
        vit(num_classes=5, input_shape=(32, 32, 3), weights=source, **TINY)
    headless = vit(include_top=False, input_shape=(32, 32, 3), weights=source, **TINY)
    assert headless.count_params() == source.count_params() - 330
    with pytest.raises(ValueError, match="reference has 2 encoder blocks, the model 3"):
        vit(input_shape=(32, 32, 3), weights=source, **{**TINY, "depth": 3})
    with pytest.raises(ValueError, match=r"layer 'encoder_block1/mlp_dense1'"):
        vit(num_classes=7, input_shape=(32, 32, 3), weights=source, **{**TINY, "mlp_dim": 48})
    with pytest.raises(ValueError, match="class token.*classifier_pooling='gap'"):
        vit(input_shape=(32, 32, 3), weights=source, classifier_pooling="gap", **TINY)
    with pytest.raises(ValueError, match="neither a kapps ViT.*nor a keras-hub"):
        vit(input_shape=(32, 32, 3), weights=kapps.build("lenet5"), **TINY)
    with pytest.raises(ValueError, match="no such file"):
        vit(input_shape=(32, 32, 3), weights=str(tmp_path / "missing.keras"), **TINY)
    keras.backend.clear_session()


def test_weights_from_keras_hub_give_its_outputs():
    keras_hub = pytest.importorskip("keras_hub")
    hub = dict(patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
    backbone = randomize(keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), **hub))
    classifier = keras_hub.models.ViTImageClassifier(
        backbone=backbone, num_classes=10, intermediate_dim=16
    )
    randomize(classifier, seed=1)
    x = images(3)
    features = vit(include_top=False, input_shape=(32, 32, 3), weights=backbone, **TINY)
    assert np.max(np.abs(numpy(features(x)) - numpy(backbone(x)))) <= 1e-4
    model = vit(num_classes=10, input_shape=(32, 32, 3), weights=classifier,
                classifier_activation=None, representation_size=16, **TINY)
    assert np.max(np.abs(numpy(model(x)) - numpy(classifier(x)))) <= 1e-4
    # at another size: the grid is resized as for kapps models
    large = vit(num_classes=10, input_shape=(48, 48, 3), weights=classifier,
                classifier_activation=None, representation_size=16, **TINY)
    np.testing.assert_array_equal(numpy(large.weights[-1]), numpy(model.weights[-1]))
    table = numpy(backbone.get_layer("vit_patching_and_embedding").position_embedding.embeddings)
    np.testing.assert_allclose(numpy(large.get_layer("position_embedding").embeddings),
                               numpy(resize_position_grid(table, (4, 4), (6, 6), 1)))
    gap = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=10, pooling="gap")
    with pytest.raises(ValueError, match="pooling='gap'.*include_top=False"):
        vit(num_classes=10, input_shape=(32, 32, 3), weights=gap, **TINY)
    with pytest.raises(ValueError, match="layer_norm_epsilon"):
        vit(include_top=False, input_shape=(32, 32, 3), weights=backbone,
            layer_norm_epsilon=1e-5, **TINY)
    keras.backend.clear_session()


# -- attention rollout -------------------------------------------------------------------------


def _layer_norm(x, norm):
    gamma, beta = (numpy(w) for w in norm.weights)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + norm.epsilon) * gamma + beta


def numpy_vit(model, x):
    """The tiny ViT computed in float64 numpy from its weights: ``(features, [scores])``."""
    patch = model.get_layer("patch_embedding")
    kernel, bias = (numpy(w).astype(np.float64) for w in patch.weights)
    p = patch.patch_size[0]
    n, h, w, c = x.shape
    # (n, h, w, c) -> (n, h/p, p, w/p, p, c) -> (n, h/p * w/p, p * p * c), patches row by row
    patches = x.reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    tokens = patches.reshape(n, -1, p * p * c) @ kernel.reshape(-1, kernel.shape[-1]) + bias
    token = numpy(model.get_layer("class_token").token)
    tokens = np.concatenate([np.broadcast_to(token, (n, 1, tokens.shape[-1])), tokens], axis=1)
    tokens = tokens + numpy(model.get_layer("position_embedding").embeddings)
    all_scores = []
    for i in range(1, 3):
        block = model.get_layer(f"encoder_block{i}")
        mha = block.attention
        heads, dim = mha.num_heads, mha.key_dim
        y = _layer_norm(tokens, block.attention_norm)
        q, k, v = (y @ numpy(kern) + numpy(b) for kern, b in (
            (mha.query_kernel, mha.query_bias), (mha.key_kernel, mha.key_bias),
            (mha.value_kernel, mha.value_bias)))
        # (n, t, heads * dim) -> (n, heads, t, dim)
        q, k, v = (a.reshape(n, -1, heads, dim).transpose(0, 2, 1, 3) for a in (q, k, v))
        logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dim)
        scores = np.exp(logits - logits.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        all_scores.append(scores)
        attended = (scores @ v).transpose(0, 2, 1, 3).reshape(n, -1, heads * dim)
        tokens = tokens + attended @ numpy(mha.output_kernel) + numpy(mha.output_bias)
        y = _layer_norm(tokens, block.mlp_norm)
        y = y @ numpy(block.mlp_dense1.kernel) + numpy(block.mlp_dense1.bias)
        y = 0.5 * y * (1.0 + _erf(y / np.sqrt(2.0)))  # exact GELU
        tokens = tokens + y @ numpy(block.mlp_dense2.kernel) + numpy(block.mlp_dense2.bias)
    return _layer_norm(tokens, model.get_layer("encoder_norm")), all_scores


def test_rollout_equals_a_direct_numpy_computation():
    model = randomize(vit(num_classes=10, input_shape=(32, 32, 3), **TINY), scale=0.3)
    x = images(3)
    features, scores = numpy_vit(model, x.astype(np.float64))
    np.testing.assert_allclose(_sequence(model, x), features, atol=2e-4)
    for s, theirs in zip(scores, attention_scores_model(model)(x)):
        np.testing.assert_allclose(numpy(theirs), s, atol=2e-5)
    # Abnar & Zuidema: A_l = (mean over heads + I) / row sums; rollout = A_2 A_1; row 0
    a = [(s.mean(axis=1) + np.eye(17)) / (s.mean(axis=1) + np.eye(17)).sum(-1, keepdims=True)
         for s in scores]
    expected = np.einsum("bij,bjk->bik", a[1], a[0])[:, 0, 1:].reshape(3, 4, 4)
    maps = attention_rollout(model, x)
    assert maps.shape == (3, 4, 4) and maps.dtype == np.float64
    np.testing.assert_allclose(maps, expected, atol=1e-5)
    np.testing.assert_allclose(attention_rollout(model, x, batch_size=2), maps, atol=1e-7)
    fused = attention_rollout(model, x, head_fusion="max", discard_ratio=0.5)
    assert fused.shape == (3, 4, 4) and np.all(fused >= 0)
    np.testing.assert_allclose(
        fused.reshape(3, 16),
        rollout_from_scores(scores, 1, head_fusion="max", discard_ratio=0.5), atol=1e-5)


def test_rollout_of_uniform_attention_is_uniform_and_shares_the_weights(tmp_path):
    model = vit(num_classes=10, input_shape=(24, 40, 3), **TINY)  # a 3 x 5 grid
    for i in (1, 2):
        mha = model.get_layer(f"encoder_block{i}").attention
        for w in (mha.query_kernel, mha.query_bias, mha.key_kernel, mha.key_bias):
            w.assign(np.zeros(w.shape, "float32"))  # every logit 0: uniform attention
    maps = attention_rollout(model, images(2, (24, 40)))
    assert maps.shape == (2, 3, 5)
    np.testing.assert_allclose(maps, np.full_like(maps, maps.mean()), rtol=1e-6)
    scores_model = attention_scores_model(model)
    assert attention_scores_model(model) is scores_model  # built once
    assert {id(w) for w in scores_model.weights} <= {id(w) for w in model.weights}
    x = images(2, (24, 40))
    assert [tuple(s.shape) for s in scores_model(x)] == [(2, 2, 16, 16)] * 2
    before = numpy(model(x))
    model.save(tmp_path / "m.keras")  # the extra calls leave the model as it was
    np.testing.assert_array_equal(numpy(keras.saving.load_model(tmp_path / "m.keras")(x)), before)
    gap = vit(num_classes=10, input_shape=(32, 32, 3), classifier_pooling="gap", **TINY)
    assert attention_rollout(gap, images(1)).shape == (1, 4, 4)


def test_rollout_rejects_bad_arguments():
    model = vit(num_classes=10, input_shape=(32, 32, 3), **TINY)
    with pytest.raises(ValueError, match="head_fusion='median'"):
        attention_rollout(model, images(1), head_fusion="median")
    with pytest.raises(ValueError, match="discard_ratio=1.0"):
        attention_rollout(model, images(1), discard_ratio=1.0)
    with pytest.raises(ValueError, match=r"images of shape \(1, 16, 16, 3\)"):
        attention_rollout(model, images(1, (16, 16)))
    with pytest.raises(ValueError, match="is not allowed; expected a kapps ViT"):
        attention_rollout(kapps.build("lenet5"), np.zeros((1, 32, 32, 1)))


# -- arguments, pooling, regularization --------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"patch_size": 0}, "patch_size=0"),
        ({"hidden_dim": 31}, r"num_heads=2 does not divide hidden_dim=31"),
        ({"depth": 0}, "depth=0"),
        ({"mlp_dim": -1}, "mlp_dim=-1"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"attention_dropout": -0.1}, "attention_dropout=-0.1"),
        ({"stochastic_depth_rate": 2}, "stochastic_depth_rate=2"),
        ({"classifier_pooling": "cls"}, "classifier_pooling='cls'"),
        ({"representation_size": 0}, "representation_size=0"),
        ({"layer_norm_epsilon": 0}, "layer_norm_epsilon=0"),
        ({"seed": -1}, "seed=-1"),
        ({"pooling": "sum"}, "pooling='sum'"),
        ({"num_classes": 0}, "num_classes=0"),
        ({"weights": 3}, "weights=3"),
        ({"name": ""}, "name=''"),
    ],
)
def test_bad_arguments_raise(overrides, match):
    arguments = {"input_shape": (32, 32, 3), **TINY, **overrides}
    with pytest.raises(ValueError, match=match):
        vit(**arguments)


def test_gap_pooling_has_no_class_token():
    token = vit(num_classes=10, input_shape=(32, 32, 3), **TINY)
    gap = vit(num_classes=10, input_shape=(32, 32, 3), classifier_pooling="gap", **TINY)
    names = {layer.name for layer in gap.layers}
    assert "class_token" not in names and "gap" in names and "token_select" not in names
    # no class token and one position vector fewer
    assert token.count_params() - gap.count_params() == 2 * 32
    assert gap.get_layer("position_embedding").embeddings.shape == (16, 32)
    randomize(gap)
    x = images(2)
    sequence = _sequence(gap, x)
    logits = sequence.mean(axis=1) @ numpy(gap.get_layer("predictions").kernel) + numpy(
        gap.get_layer("predictions").bias)
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(numpy(gap(x)), probabilities / probabilities.sum(-1, keepdims=True),
                               atol=1e-5)


def test_dropout_stochastic_depth_and_representation():
    model = vit(num_classes=10, input_shape=(32, 32, 3), dropout=0.1, attention_dropout=0.1,
                stochastic_depth_rate=0.2, representation_size=24, seed=3,
                **{**TINY, "depth": 3})
    rates = [model.get_layer(f"encoder_block{i}").stochastic_depth_rate for i in (1, 2, 3)]
    assert rates == pytest.approx([0.0, 0.1, 0.2])
    assert model.get_layer("embedding_dropout").rate == 0.1
    pre_logits = model.get_layer("pre_logits")
    assert pre_logits.units == 24 and pre_logits.activation is keras.activations.tanh
    x = images(4)
    np.testing.assert_array_equal(numpy(model(x)), numpy(model(x)))  # inference: deterministic
    assert not np.allclose(numpy(model(x, training=True)), numpy(model(x)))
