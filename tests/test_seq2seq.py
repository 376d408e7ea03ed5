"""Seq2Seq with attention (kapps.models.sequence.seq2seq, kapps.layers.recurrent_attention):
attention layers, the RNNsearch builder, step-by-step decoding, training, export."""

import inspect
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from kapps import export, testing
from kapps.layers.recurrent_attention import (
    AttentionDecoder,
    BahdanauAttention,
    LuongAttention,
    Maxout,
)
from kapps.layers.masks import TokenMask
from kapps.models.sequence.seq2seq import Seq2SeqDecoder, seq2seq_attention

TINY = dict(source_vocab_size=20, target_vocab_size=20, embedding_dim=8, units=8,
            attention_units=8)
PAD, START, END = 0, 1, 2


def _batch(seed=0, batch=3, source_len=6, target_len=5):
    """Random ids with padded rows (source lengths 6, 4, 2; target lengths 5, 3, 5)."""
    rng = np.random.default_rng(seed)
    source = rng.integers(3, 20, (batch, source_len)).astype("int32")
    target = rng.integers(3, 20, (batch, target_len)).astype("int32")
    target[:, 0] = START
    source[1, 4:] = PAD
    source[2, 2:] = PAD
    target[1, 3:] = PAD
    return {"source_ids": source, "target_ids": target}


# --------------------------------------------------------------------------------------------
# attention layers
# --------------------------------------------------------------------------------------------


def test_bahdanau_attention_matches_equations():
    attention = BahdanauAttention(5)
    attention.build((None, 4), None, (None, None, 6))
    rng = np.random.default_rng(0)
    query = rng.standard_normal((2, 4)).astype("float32")
    values = rng.standard_normal((2, 7, 6)).astype("float32")
    mask = np.arange(7)[None, :] < np.array([[7], [3]])
    keys = attention.project_keys(values)
    context, weights = attention(query, keys, values, source_mask=mask)
    wq, wk, v = (np.asarray(w) for w in attention.weights)
    scores = np.tanh(values @ wk + (query @ wq)[:, None, :]) @ v  # (2, 7)
    scores = np.where(mask, scores, -np.inf)
    expected = np.exp(scores - scores.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(weights), expected, atol=1e-6)
    np.testing.assert_allclose(np.asarray(context), np.einsum("bs,bsd->bd", expected, values),
                               atol=1e-5)
    assert np.all(np.asarray(weights)[1, 3:] == 0.0)
    assert [w.name for w in attention.weights] == ["query_kernel", "key_kernel", "score_vector"]


@pytest.mark.parametrize("score", ["dot", "general"])
def test_luong_attention_matches_equations(score):
    attention = LuongAttention(score)
    attention.build((None, 6), None, (None, None, 6))
    rng = np.random.default_rng(1)
    query = rng.standard_normal((2, 6)).astype("float32")
    values = rng.standard_normal((2, 4, 6)).astype("float32")
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    context, weights = attention(query, attention.project_keys(values), values, source_mask=mask)
    kernel = np.asarray(attention.kernel) if score == "general" else np.eye(6, dtype="float32")
    scores = np.einsum("bsv,vq,bq->bs", values, kernel, query)
    scores = np.where(mask, scores, -np.inf)
    expected = np.exp(scores - scores.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(weights), expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(context), np.einsum("bs,bsd->bd", expected, values),
                               atol=1e-5)


def test_small_layers():
    np.testing.assert_array_equal(
        np.asarray(Maxout()(np.array([[1.0, 3.0, 4.0, 2.0]], "float32"))), [[3.0, 4.0]]
    )
    assert Maxout(3)(np.zeros((2, 5, 12), "float32")).shape == (2, 5, 4)
    np.testing.assert_array_equal(
        np.asarray(TokenMask(3)(np.array([[5, 3, 0]], "int32"))), [[True, False, True]]
    )


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------


def test_default_is_the_paper_rnnsearch_and_param_count():
    """RNNsearch (Bahdanau et al. 2015), 30k vocabularies, m=620, n=n'=1000, l=500:

    source_embedding  30000 * 620                                  = 18,600,000
    encoder (x2)      GRU(620 -> 1000), reset before (bias 3n):
                      620*3000 + 1000*3000 + 3000 = 4,863,000;  x2 =  9,726,000
    decoder_init      1000*1000 + 1000                             =  1,001,000
    target_embedding  30000 * 620                                  = 18,600,000
    decoder           GRU([E y; c] = 620 + 2000 -> 1000):
                      2620*3000 + 1000*3000 + 3000                 = 10,863,000
                      attention W_q 1000*1000 + W_k 2000*1000 + v 1000 = 3,001,000
    readout           [s; E y; c] = 3620 -> 2*500: 3620*1000 + 1000  =  3,621,000
    logits            500*30000 + 30000                            = 15,030,000
    total                                                          = 80,442,000
    """
    model = seq2seq_attention()
    testing.check_param_counts(model, total=80_442_000, trainable=80_442_000)
    sizes = {layer.name: layer.count_params() for layer in model.layers}
    assert sizes["encoder"] == 9_726_000
    assert sizes["decoder"] == 13_864_000
    assert sizes["logits"] == 15_030_000
    del model
    keras.backend.clear_session()


def test_tiny_param_count_and_shapes():
    """Tiny (vocab 20, m=8, n=n'=8, maxout l=500 by default):
    160 + encoder 2*(8*24 + 8*24 + 24) = 816 + init 72 + 160
    + decoder (24*24 + 8*24 + 24) + attention (64 + 128 + 8) = 992
    + readout 32*1000 + 1000 = 33,000 + logits 500*20 + 20 = 10,020 -> 45,220;
    with maxout_units=8: readout 32*16 + 16 = 528, logits 8*20 + 20 = 180 -> 2,908."""
    model = seq2seq_attention(**TINY)
    testing.check_param_counts(model, total=45_220)
    testing.check_param_counts(seq2seq_attention(**TINY, maxout_units=8), total=2_908)
    testing.check_param_counts(seq2seq_attention(**TINY, maxout_units=None), total=160 + 816 + 72
                               + 160 + 992 + 32 * 20 + 20)
    inputs = _batch()
    testing.check_output_shapes(model, inputs)
    assert tuple(model.outputs[0].shape) == (None, None, 20)
    assert [t.name for t in model.inputs] == ["source_ids", "target_ids"]
    names = {layer.name for layer in model.layers}
    assert {"source_embedding", "encoder", "decoder_init", "target_embedding", "decoder",
            "readout", "maxout", "logits"} <= names
    testing.check_gradients(model, inputs)


def test_source_padding_and_target_causality():
    model = seq2seq_attention(**TINY, maxout_units=None)
    inputs = _batch(seed=2)
    logits = np.asarray(model(inputs))
    # more padding after a source sentence changes nothing
    longer = dict(inputs)
    longer["source_ids"] = np.pad(inputs["source_ids"], ((0, 0), (0, 3)))
    np.testing.assert_allclose(np.asarray(model(longer)), logits, atol=1e-5)
    # changing a later target token changes nothing before it
    changed = dict(inputs)
    changed["target_ids"] = inputs["target_ids"].copy()
    changed["target_ids"][:, 3] = 7
    np.testing.assert_allclose(np.asarray(model(changed))[:, :3], logits[:, :3], atol=1e-6)
    # the logits carry the target padding mask, so Keras losses skip padded positions
    out = model(inputs)
    np.testing.assert_array_equal(np.asarray(out._keras_mask), inputs["target_ids"] != PAD)
    labels = np.roll(inputs["target_ids"], -1, axis=1)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits).numpy()
    masked_mean = per_token[inputs["target_ids"] != PAD].mean()
    assert abs(model.evaluate(inputs, labels, verbose=0) - masked_mean) < 1e-5


@pytest.mark.parametrize(
    "overrides",
    [{}, {"attention": "luong"}, {"cell": "lstm"}, {"reset_after": True, "maxout_units": None}],
)
def test_step_by_step_decoding_matches_the_model(overrides):
    model = seq2seq_attention(**TINY, **overrides)
    inputs = _batch(seed=3)
    expected = np.asarray(model(inputs))
    decoder = Seq2SeqDecoder(model)
    state = decoder.start(tf.constant(inputs["source_ids"]), 5)
    assert all(s.shape[0] == 3 for s in state)
    got = []
    for position in range(5):
        logits, state, weights = decoder.step(
            tf.constant(inputs["target_ids"][:, position]), tf.constant(position), state
        )
        assert logits.dtype == tf.float32 and tuple(logits.shape) == (3, 20)
        assert tuple(weights.shape) == (3, 6)
        np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0, atol=1e-5)
        assert np.all(np.asarray(weights)[2, 2:] == 0.0)
        got.append(np.asarray(logits))
    assert np.abs(np.stack(got, 1) - expected).max() <= 1e-5

    # the same inside tf.function with a tf.while_loop: fixed state shapes
    @tf.function
    def decode(source, target):
        state = decoder.start(source, 5)

        def body(i, state, out):
            logits, state, _ = decoder.step(target[:, i], i, state)
            out = out.write(i, logits)
            return i + 1, state, out

        _, _, out = tf.while_loop(
            lambda i, *_: i < 5, body,
            (tf.constant(0), state, tf.TensorArray(tf.float32, size=5)),
        )
        return tf.transpose(out.stack(), (1, 0, 2))

    looped = decode(tf.constant(inputs["source_ids"]), tf.constant(inputs["target_ids"]))
    assert np.abs(np.asarray(looped) - expected).max() <= 1e-5


def test_decoder_with_search():
    from kapps.models.sequence import search

    model = seq2seq_attention(**TINY, maxout_units=None)
    source = _batch()["source_ids"]
    ids, weights = search.greedy_search(model, source, 6, start_id=START, end_id=END,
                                        return_attention=True)
    assert tuple(ids.shape) == (3, 6) and tuple(weights.shape) == (3, 6, 6)
    beams = search.beam_search(model, source, 6, start_id=START, end_id=END, beam_size=2)
    assert beams.shape == (3, 6)
    # the whole greedy loop (encoder, WHILE around Seq2SeqDecoder.step) as one TFLite graph
    flatbuffer = export.translator_to_tflite(model, source_length=6, max_length=6,
                                             start_id=START, end_id=END)
    runner = export.load_tflite(flatbuffer)
    for row in range(3):
        np.testing.assert_array_equal(np.asarray(runner(source[row:row + 1])),
                                      np.asarray(ids)[row:row + 1])


def test_config_covers_every_argument():
    model = seq2seq_attention(**TINY, attention="luong", cell="lstm", dropout=0.1, seed=4)
    testing.check_config(model)
    for cls in (BahdanauAttention, LuongAttention, AttentionDecoder, Maxout, TokenMask):
        assert keras.saving.get_registered_name(cls) == f"kapps>{cls.__name__}"
    decoder = model.get_layer("decoder")
    config = decoder.get_config()
    for arg in inspect.signature(AttentionDecoder.__init__).parameters:
        if arg not in ("self", "kwargs"):
            assert arg in config
    doc = seq2seq_attention.__doc__
    for part in ("Args:", "Returns:", "Example:", "Paper:", "Bahdanau", "pad_id", "30,000"):
        assert part in doc


def test_keras_round_trip(tmp_path):
    for overrides in ({}, {"attention": "luong", "cell": "lstm", "dropout": 0.2}):
        model = seq2seq_attention(**TINY, **overrides)
        testing.check_keras_roundtrip(model, _batch(seed=4), directory=tmp_path)


# TFLite parity of the training graph and one MirroredStrategy step run in
# tests/test_contract.py at the registry's tiny configuration.


def _reverse_task(n, rng, length=5):
    body = rng.integers(3, 20, (n, length)).astype("int32")
    lengths = rng.integers(2, length + 1, n)
    mask = np.arange(length)[None, :] < lengths[:, None]
    source = np.where(mask, body, PAD)
    reversed_ = np.zeros_like(source)
    for i, k in enumerate(lengths):
        reversed_[i, :k] = body[i, :k][::-1]
    labels = np.zeros((n, length + 1), "int32")
    labels[:, :length] = reversed_
    labels[np.arange(n), lengths] = END
    decoder_in = np.concatenate([np.full((n, 1), START, "int32"), labels[:, :-1]], axis=1)
    decoder_in[decoder_in == END] = PAD
    return {"source_ids": source, "target_ids": decoder_in}, labels


def test_learns_to_reverse():
    """The tiny configuration learns to reverse sentences of 2 to 5 tokens (320-odd Adam
    steps); greedy search then reverses held-out sentences."""
    from kapps.models.sequence import search

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y = _reverse_task(2048, rng)
    model = seq2seq_attention(**TINY, maxout_units=None)
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = time.time()
    first = model.evaluate(x, y, batch_size=256, verbose=0)
    history = model.fit(x, y, batch_size=64, epochs=6, verbose=0)
    last = history.history["loss"][-1]
    assert time.time() - start < 40
    assert first > 2.5 and last < 0.2 * first, (first, history.history["loss"])
    x_test, y_test = _reverse_task(64, np.random.default_rng(1))
    ids = np.asarray(search.greedy_search(model, x_test["source_ids"], 6, start_id=START,
                                          end_id=END))
    real = y_test != PAD
    assert (ids == y_test)[real].mean() > 0.8


@pytest.mark.parametrize(
    "overrides, argument",
    [
        ({"source_vocab_size": 0}, "source_vocab_size"),
        ({"target_vocab_size": 2.0}, "target_vocab_size"),
        ({"embedding_dim": -1}, "embedding_dim"),
        ({"units": None}, "units"),
        ({"attention_units": 0}, "attention_units"),
        ({"attention": "dot"}, "attention"),
        ({"cell": "rnn"}, "cell"),
        ({"maxout_units": 0}, "maxout_units"),
        ({"reset_after": "no"}, "reset_after"),
        ({"dropout": 1.5}, "dropout"),
        ({"pad_id": -1}, "pad_id"),
        ({"pad_id": 20}, "pad_id"),
        ({"seed": "x"}, "seed"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_arguments(overrides, argument):
    with pytest.raises(ValueError, match=f"^{argument}="):
        seq2seq_attention(**{**TINY, **overrides})


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="^units="):
        BahdanauAttention(0)
    with pytest.raises(ValueError, match="^score="):
        LuongAttention("concat")
    with pytest.raises(ValueError, match="^attention="):
        AttentionDecoder(4, attention="additive")
    with pytest.raises(ValueError, match="^pieces="):
        Maxout(0)
    with pytest.raises(ValueError, match="^pad_id="):
        TokenMask(-2)
    with pytest.raises(ValueError, match="score='dot'"):
        LuongAttention("dot").build((None, 4), None, (None, None, 8))
    with pytest.raises(ValueError, match="is not a seq2seq_attention model"):
        Seq2SeqDecoder(keras.Sequential([keras.layers.Dense(2)]))
