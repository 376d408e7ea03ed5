"""The Transformer for translation (kapps.models.sequence.transformer) and SharedEmbedding."""

import inspect

import numpy as np
import pytest
import tensorflow as tf

import keras

from kapps import testing
from kapps.layers.embedding import SharedEmbedding
from kapps.layers.masks import TokenMask
from kapps.models.sequence.transformer import (
    VARIANTS,
    TransformerDecoder,
    transformer,
    transformer_base,
)

TINY = dict(vocab_size=24, hidden_dim=16, num_layers=2, num_heads=2, mlp_dim=32)
#: 24*16 shared embedding + 2 encoder blocks of 2,224 + 2 decoder blocks of 3,344
TINY_PARAMS = 11_520


def _ids(rng, shape, low=1, high=24):
    return rng.integers(low, high, shape).astype("int32")


def _batch(seed=0, source_len=7, target_len=5):
    rng = np.random.default_rng(seed)
    source = _ids(rng, (3, source_len))
    source[0, source_len - 2:] = 0  # padded sentence
    return source, _ids(rng, (3, target_len))


@pytest.fixture(scope="module")
def tiny():
    return transformer(**TINY)


# -- SharedEmbedding ----------------------------------------------------------------------


def test_shared_embedding_forward_reverse_and_tying():
    layer = SharedEmbedding(10, 8)
    ids = np.array([[1, 2, 3], [4, 5, 0]], "int32")
    vectors = np.asarray(layer(ids))
    table = np.asarray(layer.embeddings)
    assert vectors.shape == (2, 3, 8)
    np.testing.assert_allclose(vectors, table[ids] * np.sqrt(8), rtol=1e-6)  # section 3.4
    hidden = np.random.default_rng(0).standard_normal((2, 3, 8)).astype("float32")
    logits = np.asarray(layer(hidden, reverse=True))
    assert logits.shape == (2, 3, 10)
    np.testing.assert_allclose(logits, hidden @ table.T, rtol=1e-5, atol=1e-6)
    assert len(layer.weights) == 1  # one matrix, no bias

    unscaled = SharedEmbedding(10, 8, scale=False)
    np.testing.assert_allclose(np.asarray(unscaled(ids)), np.asarray(unscaled.embeddings)[ids])
    # tensor2tensor's initialisation: normal with stddev hidden_dim ** -0.5
    big = SharedEmbedding(2000, 64)
    big.build()
    assert abs(float(np.std(np.asarray(big.embeddings))) - 64**-0.5) < 0.01


def test_shared_embedding_config_and_errors():
    layer = SharedEmbedding(10, 8, scale=False, embeddings_initializer="zeros", name="e")
    config = layer.get_config()
    for key in ("vocab_size", "hidden_dim", "scale", "embeddings_initializer"):
        assert key in config
    assert SharedEmbedding.from_config(config).get_config() == config
    default = SharedEmbedding(10, 16).get_config()
    assert SharedEmbedding.from_config(default).get_config() == default
    assert TokenMask.from_config(TokenMask(3).get_config()).pad_id == 3
    for kwargs, word in (
        (dict(vocab_size=0, hidden_dim=8), "vocab_size=0"),
        (dict(vocab_size=10, hidden_dim=2.0), "hidden_dim=2.0"),
        (dict(vocab_size=10, hidden_dim=8, scale=1), "scale=1"),
    ):
        with pytest.raises(ValueError, match=word):
            SharedEmbedding(**kwargs)
    with pytest.raises(ValueError, match="hidden_dim=8"):
        SharedEmbedding(10, 8)(np.zeros((1, 2, 5), "float32"), reverse=True)
    with pytest.raises(ValueError, match="pad_id=-1"):
        TokenMask(-1)


# -- the model ----------------------------------------------------------------------------


def test_output_shapes_and_layer_names(tiny):
    assert [t.name for t in tiny.inputs] == ["source_ids", "target_ids"]
    assert tuple(tiny.outputs[0].shape) == (None, None, 24)
    for source_len, target_len in ((7, 5), (3, 9)):
        source, target = _batch(source_len=source_len, target_len=target_len)
        testing.check_output_shapes(tiny, [source, target])
        assert tuple(tiny([source, target]).shape) == (3, target_len, 24)
    names = {layer.name for layer in tiny.layers}
    assert {"embedding", "source_mask", "encoder_block1", "encoder_block2", "decoder_block1",
            "decoder_block2", "logits"} <= names
    assert not {"encoder_norm", "decoder_norm", "encoder_block3"} & names  # post-LN, N=2
    # one matrix for encoder input, decoder input and output projection (section 3.4)
    assert [w.path for w in tiny.weights if "embedding" in w.path] == ["embedding/embeddings"]
    block = tiny.get_layer("decoder_block1")
    assert block.norm_first is False and block.dropout == 0.1 and block.epsilon == 1e-6
    testing.check_gradients(tiny, list(_batch()))


def test_padding_and_causality_are_masked(tiny):
    source, target = _batch()
    logits = np.asarray(tiny([source, target]))
    # more padding after a sentence changes nothing: padded keys get no attention
    longer = np.concatenate([source, np.zeros((3, 4), "int32")], axis=1)
    np.testing.assert_allclose(np.asarray(tiny([longer, target])), logits, atol=1e-5)
    # ... and without the mask the pads would be attended to
    unpadded = source.copy()
    unpadded[0, -2:] = 5
    assert np.abs(np.asarray(tiny([unpadded, target]))[0] - logits[0]).max() > 1e-3
    # a later target token does not change earlier logits (causal self-attention)
    changed = target.copy()
    changed[:, 3] = (changed[:, 3] % 23) + 1
    after = np.asarray(tiny([source, changed]))
    np.testing.assert_allclose(after[:, :3], logits[:, :3], atol=1e-6)
    assert np.abs(after[:, 3:] - logits[:, 3:]).max() > 1e-4


def test_other_pad_id_and_separate_embeddings():
    model = transformer(**{**TINY, "vocab_size": 20}, target_vocab_size=30,
                        share_embeddings=False, pad_id=3)
    # 20*16 source + 30*16 target embedding + 16*30 output projection (no bias)
    assert model.count_params() == TINY_PARAMS - 24 * 16 + 20 * 16 + 30 * 16 + 16 * 30
    names = {layer.name for layer in model.layers}
    assert {"source_embedding", "target_embedding", "output_projection"} <= names
    assert model.get_layer("source_mask").pad_id == 3
    rng = np.random.default_rng(1)
    source, target = _ids(rng, (2, 6), 4, 20), _ids(rng, (2, 4), 4, 30)
    source[:, 4:] = 3
    logits = np.asarray(model([source, target]))
    assert logits.shape == (2, 4, 30)
    longer = np.concatenate([source, np.full((2, 3), 3, "int32")], axis=1)
    np.testing.assert_allclose(np.asarray(model([longer, target])), logits, atol=1e-5)
    _check_stepping(model, source, target)


def test_param_counts(tiny):
    testing.check_param_counts(tiny, TINY_PARAMS, TINY_PARAMS)
    # pre-LN adds encoder_norm and decoder_norm (2 * 2 * 16)
    testing.check_param_counts(transformer(**TINY, norm_first=True), TINY_PARAMS + 64)
    assert VARIANTS["base"] == (512, 6, 8, 2048, 0.1) and VARIANTS["big"][:4] == (1024, 6, 16, 4096)
    base = transformer_base()
    testing.check_param_counts(base, 63_082_496, 63_082_496)
    assert base.name == "transformer_base"
    assert base.get_layer("encoder_block6").dropout == 0.1
    # the builder's defaults are "base"
    defaults = {k: p.default for k, p in inspect.signature(transformer).parameters.items()}
    assert (defaults["hidden_dim"], defaults["num_layers"], defaults["num_heads"],
            defaults["mlp_dim"], defaults["dropout"]) == VARIANTS["base"]
    keras.backend.clear_session()
    # transformer_big (214,245,376) is built and counted by tests/test_registry.py


def test_config_and_keras_roundtrip(tiny, tmp_path):
    testing.check_config(tiny)
    testing.check_config(transformer(**TINY, share_embeddings=False))
    # pre-LN with the shared matrix called both ways (reverse=True is saved with the node)
    pre_ln = transformer(**TINY, norm_first=True, pad_id=2)
    source, target = _batch()
    testing.check_keras_roundtrip(pre_ln, [source, target], directory=str(tmp_path))
    loaded = keras.saving.load_model(_saved(pre_ln, tmp_path), compile=False)
    assert loaded.get_layer("source_mask").pad_id == 2
    assert TransformerDecoder(loaded).pad_id == 2


def _saved(model, directory):
    path = str(directory / "model.keras")
    model.save(path)
    return path


# (TFLite parity and one MirroredStrategy step: tests/test_contract.py, at this size)


# -- decoding -----------------------------------------------------------------------------


def _check_stepping(model, source, target):
    """Stepping positions 0..T-1 with the teacher-forced tokens gives the model's logits,
    eagerly and in a tf.function."""
    full = np.asarray(model([source, target]))
    decoder = TransformerDecoder(model)
    length = target.shape[1]

    def run(step):
        state = decoder.start(source, length)
        rows, weights = [], []
        for position in range(length):
            logits, state, attention = step(target[:, position], tf.constant(position), state)
            rows.append(np.asarray(logits))
            weights.append(np.asarray(attention))
        return np.stack(rows, axis=1), np.stack(weights, axis=1)

    eager, attention = run(decoder.step)
    assert eager.dtype == np.float32 and eager.shape == full.shape
    assert np.abs(eager - full).max() <= 1e-5
    graph, _ = run(tf.function(decoder.step))
    assert np.abs(graph - full).max() <= 1e-5
    # cross-attention of the last block, mean over heads: rows sum to 1, pads get 0
    assert attention.shape == (source.shape[0], length, source.shape[1])
    np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-5)
    pad = decoder.pad_id
    assert np.all(attention[np.broadcast_to((source == pad)[:, None, :], attention.shape)] == 0)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_steps_match_full_model(norm_first):
    model = transformer(**TINY, norm_first=norm_first)
    source, target = _batch(seed=2)
    _check_stepping(model, source, target)


def test_decoder_in_while_loop(tiny):
    source, _ = _batch()
    decoder = TransformerDecoder(tiny)
    max_length = 6

    @tf.function
    def greedy(source_ids):
        state = decoder.start(source_ids, max_length)
        out = tf.zeros((3, max_length), "int32")

        def body(i, previous, out, state):
            logits, state, _ = decoder.step(previous, i, state)
            token = tf.argmax(logits, axis=-1, output_type=tf.int32)
            out = tf.where(tf.equal(tf.range(max_length), i)[None, :], token[:, None], out)
            return i + 1, token, out, state

        loop = (tf.constant(0), tf.fill([3], 1), out, state)
        return tf.while_loop(lambda i, *_: i < max_length, body, loop)[2]

    ids = greedy(tf.constant(source)).numpy()
    # the same ids by teacher forcing the full model with its own greedy choices
    target = np.ones((3, 1), "int32")
    for _ in range(max_length):
        step = np.asarray(tiny([source, target]))[:, -1].argmax(-1).astype("int32")
        target = np.concatenate([target, step[:, None]], axis=1)
    np.testing.assert_array_equal(ids, target[:, 1:])


def test_decoder_rejects_other_models():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="decoder_block")])
    with pytest.raises(ValueError, match="transformer"):
        TransformerDecoder(model)
    with pytest.raises(ValueError, match="max_length=0"):
        TransformerDecoder(transformer(**TINY)).start(np.ones((1, 3), "int32"), 0)


# -- training and errors ------------------------------------------------------------------


def test_copy_task_trains():
    keras.utils.set_random_seed(0)
    model = transformer(vocab_size=24, hidden_dim=32, num_layers=1, num_heads=2, mlp_dim=64,
                        dropout=0.0)
    rng = np.random.default_rng(0)
    source = _ids(rng, (1024, 6), 3, 24)
    decoder_input = np.concatenate([np.ones((1024, 1), "int32"), source[:, :-1]], axis=1)
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit([source, decoder_input], source, batch_size=64, epochs=6, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.3 * losses[0], losses
    assert np.isfinite(losses).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(vocab_size=0), "vocab_size=0"),
        (dict(target_vocab_size=30), "target_vocab_size=30"),
        (dict(target_vocab_size=-1, share_embeddings=False), "target_vocab_size=-1"),
        (dict(hidden_dim=15), "num_heads=2 does not divide hidden_dim=15"),
        (dict(num_layers=0), "num_layers=0"),
        (dict(num_heads=0), "num_heads=0"),
        (dict(mlp_dim=1.5), "mlp_dim=1.5"),
        (dict(dropout=1.0), "dropout=1.0"),
        (dict(attention_dropout=-0.1), "attention_dropout=-0.1"),
        (dict(norm_first="yes"), "norm_first='yes'"),
        (dict(activation="nope"), "activation='nope'"),
        (dict(activation=None), "activation=None"),
        (dict(epsilon=0), "epsilon=0"),
        (dict(share_embeddings=1), "share_embeddings=1"),
        (dict(pad_id=24), r"pad_id=24 .*\[0, 24\)"),
        (dict(pad_id=True), "pad_id=True"),
        (dict(name=""), "name=''"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        transformer(**{**TINY, **kwargs})
