"""BERT (kapps.models.language.bert): canonical counts, the backbone's masking, the masked-LM
and classifier heads, argument errors, and equality with keras-hub's BertBackbone.

The registry-wide contract (shapes, gradients, config, .keras, TFLite, a distributed step)
runs on the tiny configuration in tests/test_contract.py; tests/test_registry.py builds the
canonical models (bert_large included) and pins their counts and FLOPs."""

import keras
import numpy as np
import pytest

from kapps import testing
from kapps.models.language.bert import (
    BertMaskedLM,
    bert,
    bert_classifier,
    bert_masked_lm,
    bert_tiny,
    load_keras_hub_bert_weights,
)

TINY = dict(vocab_size=60, max_length=16, num_layers=2, hidden_dim=16, num_heads=2, mlp_dim=32)
VOCAB, HIDDEN = TINY["vocab_size"], TINY["hidden_dim"]


def _inputs(batch=3, seq=10, seed=0, vocab=VOCAB):
    """Random tokens, sentence A then sentence B, and trailing padding in two rows."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, (batch, seq)).astype("int32")
    segments = (np.arange(seq)[None, :] >= seq // 2).astype("int32").repeat(batch, axis=0)
    padding = np.ones((batch, seq), "int32")
    padding[0, 6:] = 0
    padding[1, 3:] = 0
    return [tokens, segments, padding]


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


@pytest.fixture(scope="module")
def backbone():
    return bert(**TINY)


def _count_without_initializing(builder):
    # Variables created in a StatelessScope(initialize_variables=False) get shapes but no
    # values: counting a canonical model costs its graph, not drawing ~1e8 random numbers.
    with keras.StatelessScope(initialize_variables=False):
        model = builder()
    count = model.count_params()
    # forget the variables Keras keeps for a later deferred initialization
    keras.backend.clear_session()
    return count


def test_canonical_counts():
    # Turc et al. 2019's BERT-Tiny (keras-hub's bert_tiny_en_uncased). bert_base (109,482,240)
    # and bert_large (335,141,888) take 3-15 s to build on 2 busy cores, so they are built and
    # pinned once, in tests/test_registry.py, against the published figures in kapps/specs.
    assert _count_without_initializing(bert_tiny) == 4_385_920


def test_backbone_outputs_names_and_padding(backbone):
    x = _inputs()
    out = backbone(x)
    assert [t.name for t in backbone.inputs] == ["token_ids", "segment_ids", "padding_mask"]
    assert set(out) == {"sequence_output", "pooled_output"}
    assert out["sequence_output"].shape == (3, 10, HIDDEN)
    assert out["pooled_output"].shape == (3, HIDDEN)
    names = {layer.name for layer in backbone.layers}
    assert {"token_embedding", "position_embedding", "segment_embedding", "embeddings_norm",
            "embeddings_dropout", "block1", "block2", "pooler"} <= names
    assert "block3" not in names
    # padded tokens are invisible: changing them changes no real position, nor the pooler
    changed = [x[0].copy(), x[1], x[2]]
    changed[0][x[2] == 0] = (changed[0][x[2] == 0] + 7) % VOCAB
    out2 = backbone(changed)
    real = x[2].astype(bool)
    np.testing.assert_allclose(_np(out2["sequence_output"])[real],
                               _np(out["sequence_output"])[real], atol=1e-6)
    np.testing.assert_allclose(_np(out2["pooled_output"]), _np(out["pooled_output"]), atol=1e-6)
    # ... while a real token does change the others (the attention is bidirectional)
    changed[0][2, 9] = (changed[0][2, 9] + 1) % VOCAB
    assert not np.allclose(_np(backbone(changed)["sequence_output"])[2, 0],
                           _np(out["sequence_output"])[2, 0], atol=1e-6)
    # segments matter
    flipped = [x[0], 1 - x[1], x[2]]
    assert not np.allclose(_np(backbone(flipped)["sequence_output"]),
                           _np(out["sequence_output"]))


@pytest.fixture(scope="module")
def no_pooler():
    return bert(**TINY, include_pooler=False)


def test_backbone_without_pooler(no_pooler, backbone):
    out = no_pooler(_inputs())
    assert set(out) == {"sequence_output"}
    assert "pooler" not in {layer.name for layer in no_pooler.layers}
    assert no_pooler.count_params() == backbone.count_params() - (HIDDEN * HIDDEN + HIDDEN)


def _layer_norm(x, gamma, beta, epsilon):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * gamma + beta


def test_masked_lm_head_is_tied_and_computes_berts_head(backbone):
    mlm = bert_masked_lm(backbone, next_sentence=True)
    x = _inputs()
    positions = np.array([[1, 4], [0, 2], [9, 3]], "int32")
    out = mlm([*x, positions])
    assert set(out) == {"masked_lm_logits", "next_sentence_logits"}
    assert out["masked_lm_logits"].shape == (3, 2, VOCAB)
    assert out["next_sentence_logits"].shape == (3, 2)
    assert mlm.backbone is backbone and backbone in mlm.layers
    # tied: the head adds Dense(H, H), LayerNorm, a vocab bias and Dense(H, 2); no V x H matrix
    head = (HIDDEN * HIDDEN + HIDDEN) + 2 * HIDDEN + VOCAB + (HIDDEN * 2 + 2)
    assert mlm.count_params() == backbone.count_params() + head
    embeddings = backbone.get_layer("token_embedding").embeddings
    assert sum(w is embeddings for w in mlm.weights) == 1
    assert not any(tuple(w.shape) == (HIDDEN, VOCAB) for w in mlm.weights)

    # the reference computation, in numpy, from the backbone's outputs and the head's weights
    features = backbone(x)
    seq = _np(features["sequence_output"])
    gathered = np.take_along_axis(seq, positions[..., None], axis=1)  # (3, 2, H)
    kernel, bias = mlm.get_layer("mlm_dense").get_weights()
    h = _np(keras.activations.gelu(gathered @ kernel + bias))  # the backbone's activation
    gamma, beta = mlm.get_layer("mlm_norm").get_weights()
    h = _layer_norm(h, gamma, beta, 1e-12)
    expected = h @ _np(embeddings).T + mlm.get_layer("mlm_bias").get_weights()[0]
    np.testing.assert_allclose(_np(out["masked_lm_logits"]), expected, atol=1e-5)
    nsp_kernel, nsp_bias = mlm.get_layer("next_sentence").get_weights()
    np.testing.assert_allclose(_np(out["next_sentence_logits"]),
                               _np(features["pooled_output"]) @ nsp_kernel + nsp_bias, atol=1e-5)
    testing.check_config(mlm)
    testing.check_gradients(mlm, [*x, positions])


def test_masked_lm_keras_roundtrip_keeps_the_tying(tmp_path):
    mlm = bert_masked_lm(bert(**TINY))
    x = [*_inputs(), np.array([[1, 4], [0, 2], [9, 3]], "int32")]
    assert mlm.output.shape == (None, None, VOCAB)  # one output without next_sentence
    path = tmp_path / "mlm.keras"
    mlm.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(_np(loaded(x)), _np(mlm(x)))
    assert isinstance(loaded, BertMaskedLM)
    assert len(loaded.weights) == len(mlm.weights)
    # the loaded head still reads the loaded backbone's embedding: moving it moves the logits
    embedding = loaded.backbone.get_layer("token_embedding")
    embedding.embeddings.assign(embedding.embeddings * 2.0)
    assert not np.allclose(_np(loaded(x)), _np(mlm(x)))


def test_classifier(backbone):
    classifier = bert_classifier(backbone, 3)
    x = _inputs()
    logits = classifier(x)
    assert logits.shape == (3, 3)
    assert backbone in classifier.layers
    pooled = _np(backbone(x)["pooled_output"])
    kernel, bias = classifier.get_layer("classifier").get_weights()
    np.testing.assert_allclose(_np(logits), pooled @ kernel + bias, atol=1e-5)
    assert classifier.count_params() == backbone.count_params() + HIDDEN * 3 + 3


@pytest.mark.parametrize(
    "overrides, argument",
    [
        ({"vocab_size": 0}, "vocab_size"),
        ({"max_length": -1}, "max_length"),
        ({"num_segments": 0}, "num_segments"),
        ({"num_layers": 1.5}, "num_layers"),
        ({"num_heads": 3}, "num_heads"),
        ({"dropout": 1.0}, "dropout"),
        ({"epsilon": 0}, "epsilon"),
        ({"activation": "nope"}, "activation"),
        ({"include_pooler": "yes"}, "include_pooler"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_builder_arguments(overrides, argument):
    with pytest.raises(ValueError, match=rf"{argument}=.*(not allowed|divide)"):
        bert(**{**TINY, **overrides})


def test_bad_head_arguments(backbone, no_pooler):
    with pytest.raises(ValueError, match="backbone=.*not allowed"):
        bert_masked_lm("bert")
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="backbone=.*not allowed"):
        bert_classifier(other, 2)
    with pytest.raises(ValueError, match="num_classes=0"):
        bert_classifier(backbone, 0)
    with pytest.raises(ValueError, match="dropout=-0.1"):
        bert_classifier(backbone, 2, dropout=-0.1)
    with pytest.raises(ValueError, match="include_pooler=False"):
        bert_classifier(no_pooler, 2)
    with pytest.raises(ValueError, match="next_sentence=True"):
        bert_masked_lm(no_pooler, next_sentence=True)
    assert bert_masked_lm(no_pooler).output.shape == (None, None, VOCAB)


@pytest.fixture(scope="module")
def keras_hub_backbone():
    import keras_hub  # a dependency of kapps (its tokenizers and samplers)

    hub = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB, num_layers=TINY["num_layers"], num_heads=TINY["num_heads"],
        hidden_dim=HIDDEN, intermediate_dim=TINY["mlp_dim"],
        max_sequence_length=TINY["max_length"],
    )
    # BERT's initialization (stddev 0.02) keeps every pre-activation near 0, where the GELU
    # forms and many wiring mistakes agree; weights of unit scale make the comparison sharp
    rng = np.random.default_rng(1)
    hub.set_weights([rng.normal(0.0, 0.5, w.shape).astype("float32") for w in hub.get_weights()])
    return hub


def test_equal_to_keras_hub_bert_backbone(keras_hub_backbone):
    hub = keras_hub_backbone
    ours = bert(**TINY, activation="gelu_tanh")
    assert ours.count_params() == hub.count_params()
    assert load_keras_hub_bert_weights(ours, hub) is ours
    x = _inputs(batch=4, seq=12, seed=3)
    x[1][3] = np.random.default_rng(4).integers(0, 2, 12)  # mixed segments
    expected = hub(dict(zip(["token_ids", "segment_ids", "padding_mask"], x)))
    got = ours(x)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(_np(got[key]), _np(expected[key]), atol=1e-5, err_msg=key)
    # the comparison is sharp: the exact GELU (our default) gives other numbers
    exact = load_keras_hub_bert_weights(bert(**TINY), hub)
    difference = np.abs(_np(exact(x)["sequence_output"]) - _np(expected["sequence_output"]))
    assert difference.max() > 5e-5  # five times the tolerance
    # and an MLM model's backbone loads the same way
    mlm = bert_masked_lm(bert(**TINY, activation="gelu_tanh"))
    load_keras_hub_bert_weights(mlm, hub)
    np.testing.assert_allclose(_np(mlm.backbone(x)["pooled_output"]),
                               _np(expected["pooled_output"]), atol=1e-5)


def test_keras_hub_weights_of_other_sizes_are_refused(keras_hub_backbone, backbone):
    hub = keras_hub_backbone
    with pytest.raises(ValueError, match="num_layers"):
        load_keras_hub_bert_weights(bert(**{**TINY, "num_layers": 1}), hub)
    with pytest.raises(ValueError, match="position_embedding"):
        load_keras_hub_bert_weights(bert(**{**TINY, "max_length": 32}), hub)
    with pytest.raises(ValueError, match="keras_hub_backbone=.*BertBackbone"):
        load_keras_hub_bert_weights(backbone, backbone)
