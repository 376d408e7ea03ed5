"""Attention layers: the math against direct computations and keras.layers.MultiHeadAttention,
masks, the key/value cache, position embeddings, transformer blocks, CBAM, TFLite parity and
the layer contract (config, .keras round trip, unknown batch, gradients, mixed precision)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from kapps import export, testing
from kapps.layers.attention import (
    MultiHeadAttention,
    ScaledDotProductAttention,
    causal_mask,
    convert_keras_mha_weights,
    padding_mask,
)
from kapps.layers.patches import ClassToken, PatchEmbedding
from kapps.layers.position import PositionalEncoding, PositionEmbedding, sinusoidal_encoding
from kapps.layers.spatial_attention import SpatialAttention
from kapps.layers.transformer import TransformerDecoderBlock, TransformerEncoderBlock

RNG = np.random.default_rng(0)


def normal(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype("float32")


def numpy_of(x):
    return np.asarray(ops.convert_to_numpy(x))


def reference_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d)) v with masked weights set to 0, in float64."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    logits = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        logits = np.where(mask, logits, -np.inf)
    logits = logits - logits.max(axis=-1, keepdims=True)
    weights = np.exp(logits)
    weights = weights / weights.sum(axis=-1, keepdims=True)
    return weights @ v, weights


# --------------------------------------------------------------------------------------------
# Scaled dot-product attention and masks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("heads", [None, 3])
def test_sdpa_matches_numpy(heads):
    lead = (2,) if heads is None else (2, heads)
    q, k, v = normal(*lead, 4, 8), normal(*lead, 6, 8), normal(*lead, 6, 5)
    keys = np.ones((2, 6), bool)
    keys[1, 4:] = False
    causal = np.tril(np.ones((4, 6), bool))  # (queries, keys)
    padding = keys.reshape(2, *(1,) * (len(lead) - 1), 1, 6)  # (batch, [1,] 1, keys)
    mask = padding_mask(keys)  # (batch, 1, keys): the layer inserts the heads axis
    attention = ScaledDotProductAttention()
    for kwargs, expected_mask in [
        ({}, None),
        ({"attention_mask": mask}, padding),
        ({"use_causal_mask": True}, causal),
        ({"attention_mask": mask, "use_causal_mask": True}, padding & causal),
    ]:
        out, scores = attention(q, k, v, return_attention_scores=True, **kwargs)
        ref_out, ref_scores = reference_attention(q, k, v, expected_mask)
        np.testing.assert_allclose(numpy_of(out), ref_out, atol=1e-5)
        np.testing.assert_allclose(numpy_of(scores), ref_scores, atol=1e-6)
        # without return_attention_scores: the output alone
        np.testing.assert_allclose(numpy_of(attention(q, k, v, **kwargs)), ref_out, atol=1e-5)


def test_sdpa_fully_masked_query_gets_zero_weights_and_custom_scale():
    q, k, v = normal(1, 2, 4), normal(1, 3, 4), normal(1, 3, 4)
    mask = np.array([[[True, False, True], [False, False, False]]])
    out, scores = ScaledDotProductAttention()(
        q, k, v, attention_mask=mask, return_attention_scores=True
    )
    np.testing.assert_array_equal(numpy_of(scores)[0, 1], 0.0)
    np.testing.assert_array_equal(numpy_of(out)[0, 1], 0.0)
    # scale=1/sqrt(d) written out is the default
    scaled = ScaledDotProductAttention(scale=0.5)(q, k, v)
    np.testing.assert_allclose(numpy_of(scaled), reference_attention(q, k, v)[0], atol=1e-6)


def test_sdpa_dropout_is_seeded_and_training_only():
    q = normal(2, 5, 4)
    a, b = ScaledDotProductAttention(0.5, seed=3), ScaledDotProductAttention(0.5, seed=3)
    inference = numpy_of(a(q, q, q))
    np.testing.assert_allclose(inference, reference_attention(q, q, q)[0], atol=1e-5)
    dropped = numpy_of(a(q, q, q, training=True))
    assert not np.allclose(dropped, inference)
    np.testing.assert_array_equal(dropped, numpy_of(b(q, q, q, training=True)))


def test_causal_mask_helper():
    np.testing.assert_array_equal(numpy_of(causal_mask(3))[0], np.tril(np.ones((3, 3), bool)))
    # two new queries after 3 cached tokens: query i sees keys j <= i + 3
    np.testing.assert_array_equal(
        numpy_of(causal_mask(2, 5, offset=3))[0],
        [[True, True, True, True, False], [True, True, True, True, True]],
    )
    assert tuple(padding_mask(np.ones((4, 7))).shape) == (4, 1, 7)


# --------------------------------------------------------------------------------------------
# Multi-head attention against keras.layers.MultiHeadAttention
# --------------------------------------------------------------------------------------------

MHA_CASES = {
    "self": dict(cross=False, padding=False, causal=False),
    "self_padding": dict(cross=False, padding=True, causal=False),
    "self_causal": dict(cross=False, padding=False, causal=True),
    "self_padding_causal": dict(cross=False, padding=True, causal=True),
    "cross_padding": dict(cross=True, padding=True, causal=False),
    "cross_padding_causal": dict(cross=True, padding=True, causal=True),
    "cross_full_mask_no_bias": dict(cross=True, padding="full", causal=False, use_bias=False),
}


@pytest.mark.parametrize("case", list(MHA_CASES))
def test_mha_equals_keras(case):
    spec = MHA_CASES[case]
    batch, t, d = 3, 5, 12
    query = normal(batch, t, d)
    if spec["cross"]:  # different query/key lengths and feature sizes, separate key
        value, key = normal(batch, 7, 10), normal(batch, 7, 9)
    else:
        value = key = query
    s = value.shape[1]
    reference = keras.layers.MultiHeadAttention(
        num_heads=3, key_dim=4, value_dim=6, use_bias=spec.get("use_bias", True)
    )
    reference(query, value, key)
    for w in reference.weights:  # non-zero biases, so a misplaced bias shows
        w.assign(normal(*w.shape, scale=0.5))
    ours = MultiHeadAttention.from_keras(reference)
    kwargs = {}
    if spec["padding"] is True:
        keep = np.ones((batch, s), bool)
        keep[0, s - 2:] = False
        keep[2, 1] = False
        kwargs["attention_mask"] = padding_mask(keep)
    elif spec["padding"] == "full":
        mask = RNG.random((batch, t, s)) < 0.6
        mask[..., 0] = True  # every query keeps a key (Keras' two paths differ otherwise)
        kwargs["attention_mask"] = mask
    if spec["causal"]:
        kwargs["use_causal_mask"] = True

    expected, expected_scores = reference(query, value, key, return_attention_scores=True, **kwargs)
    got, scores = ours(query, value, key, return_attention_scores=True, **kwargs)
    assert np.abs(numpy_of(got) - numpy_of(expected)).max() <= 1e-5
    assert np.abs(numpy_of(scores) - numpy_of(expected_scores)).max() <= 1e-5
    # Keras' fused path (no scores requested) gives the same output
    fused = reference(query, value, key, **kwargs)
    assert np.abs(numpy_of(ours(query, value, key, **kwargs)) - numpy_of(fused)).max() <= 1e-5


def test_convert_keras_mha_weights_layout_and_errors():
    reference = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=5)
    x = normal(1, 4, 6)
    reference(x, x)
    converted = convert_keras_mha_weights(reference.get_weights())
    assert [a.shape for a in converted] == [
        (6, 6), (6,), (6, 6), (6,), (6, 10), (10,), (10, 6), (6,)
    ]
    # head h of the query kernel is columns h*3 .. h*3+2
    np.testing.assert_array_equal(converted[0][:, 3:6], reference.get_weights()[0][:, 1, :])
    ours = MultiHeadAttention(2, 3, value_dim=5)
    ours(x, x)
    ours.load_keras_weights(reference)
    np.testing.assert_allclose(numpy_of(ours(x, x)), numpy_of(reference(x, x)), atol=1e-6)
    with pytest.raises(ValueError, match="do not fit"):
        wrong = MultiHeadAttention(3, 2, value_dim=5)
        wrong(x, x)
        wrong.load_keras_weights(reference)
    with pytest.raises(ValueError, match="weights has 3 arrays"):
        convert_keras_mha_weights(reference.get_weights()[:3])


def test_causal_mask_blocks_the_future():
    x = normal(2, 6, 16)
    later = x.copy()
    later[:, 4:] = normal(2, 2, 16)  # change tokens 4 and 5
    mha, block = MultiHeadAttention(4, 4), TransformerEncoderBlock(16, 4, 32)
    calls = (lambda z: mha(z, z, use_causal_mask=True), lambda z: block(z, use_causal_mask=True))
    for call in calls:
        before, after = numpy_of(call(x)), numpy_of(call(later))
        np.testing.assert_allclose(before[:, :4], after[:, :4], atol=1e-6)
        assert np.abs(before[:, 4:] - after[:, 4:]).max() > 1e-3


def test_padding_mask_ignores_padded_tokens():
    mha = MultiHeadAttention(2, 8)
    x = normal(2, 5, 16)
    keep = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    changed = x.copy()
    changed[0, 3:] = normal(2, 16, scale=10)  # the padding of example 0
    mask = padding_mask(keep)
    y, scores = mha(x, x, attention_mask=mask, return_attention_scores=True)
    y2 = mha(changed, changed, attention_mask=mask)
    np.testing.assert_allclose(numpy_of(y)[0, :3], numpy_of(y2)[0, :3], atol=1e-5)
    np.testing.assert_array_equal(numpy_of(scores)[0, :, :, 3:], 0.0)
    np.testing.assert_allclose(numpy_of(scores).sum(-1), 1.0, atol=1e-5)


def test_key_value_cache_matches_full_pass():
    x = normal(2, 6, 16)
    mha = MultiHeadAttention(4, 4)
    block = TransformerEncoderBlock(16, 4, 32)
    decoder = TransformerDecoderBlock(16, 4, 32)
    context = normal(2, 3, 16)
    full = [
        numpy_of(mha(x, x, use_causal_mask=True)),
        numpy_of(block(x, use_causal_mask=True)),
        numpy_of(decoder(x, context)),
    ]
    caches = [
        mha.empty_cache(2), block.attention.empty_cache(2), decoder.self_attention.empty_cache(2)
    ]
    steps = [[], [], []]
    # two tokens, then one at a time: the new queries follow the cached ones
    for start, stop in [(0, 2), (2, 3), (3, 4), (4, 6)]:
        piece = x[:, start:stop]
        y, caches[0] = mha(piece, piece, use_causal_mask=True, cache=caches[0])
        steps[0].append(y)
        y, caches[1] = block(piece, use_causal_mask=True, cache=caches[1])
        steps[1].append(y)
        y, caches[2] = decoder(piece, context, cache=caches[2])
        steps[2].append(y)
    for whole, pieces in zip(full, steps):
        stitched = np.concatenate([numpy_of(p) for p in pieces], axis=1)
        np.testing.assert_allclose(stitched, whole, atol=1e-5)
    assert tuple(caches[0][0].shape) == (2, 4, 6, 4)


def test_fixed_size_cache_matches_the_growing_cache():
    # a fixed buffer of 8 slots written in place gives what appending gives
    x = normal(2, 6, 16)
    block = TransformerEncoderBlock(16, 4, 32)
    full = numpy_of(block(x, use_causal_mask=True))
    keys = keras.ops.zeros((2, 4, 8, 4))
    cache = (keys, keys)
    pieces = []
    for start, stop in [(0, 3), (3, 4), (4, 6)]:
        y, cache = block(x[:, start:stop], use_causal_mask=True, cache=cache, cache_index=start)
        pieces.append(numpy_of(y))
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, atol=1e-5)
    assert tuple(cache[0].shape) == (2, 4, 8, 4)
    assert numpy_of(cache[0])[:, :, :6].any(axis=-1).all()  # slots 0-5 written
    np.testing.assert_array_equal(numpy_of(cache[0])[:, :, 6:], 0.0)  # slots 6-7 untouched
    with pytest.raises(ValueError, match="cache_index is only allowed with a cache"):
        block.attention(x, x, cache_index=0)


def test_block_output_spec_is_not_traced_but_stays_right():
    block = TransformerEncoderBlock(16, 4, 32)
    symbolic = block(keras.KerasTensor((None, None, 16)), use_causal_mask=True)
    assert tuple(symbolic.shape) == (None, None, 16)
    out, scores = block(keras.KerasTensor((None, 5, 16)), return_attention_scores=True)
    assert tuple(out.shape) == (None, 5, 16) and tuple(scores.shape) == (None, 4, 5, 5)


def test_mha_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_heads=0"):
        MultiHeadAttention(0, 4)
    with pytest.raises(ValueError, match="dropout=1.5"):
        MultiHeadAttention(2, 4, dropout=1.5)
    with pytest.raises(ValueError, match="use_bias='yes'"):
        MultiHeadAttention(2, 4, use_bias="yes")
    with pytest.raises(ValueError, match="scale=0"):
        ScaledDotProductAttention(scale=0)
    q = normal(1, 2, 4)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        ScaledDotProductAttention()(q, q, q, attention_mask=np.ones((1, 1, 1, 2, 2), bool))


# --------------------------------------------------------------------------------------------
# Patches and positions
# --------------------------------------------------------------------------------------------


def test_patch_embedding_is_flatten_and_project():
    images = normal(2, 8, 12, 3)
    embed = PatchEmbedding(4, 5)
    tokens = numpy_of(embed(images))
    assert tokens.shape == (2, 6, 5)
    kernel, bias = (numpy_of(w) for w in embed.projection.weights)
    # patches read row by row, each flattened as (row, column, channel)
    patches = images.reshape(2, 2, 4, 3, 4, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 6, 48)
    np.testing.assert_allclose(tokens, patches @ kernel.reshape(48, 5) + bias, atol=1e-5)
    grid = PatchEmbedding((4, 6), 5, flatten=False)
    assert tuple(grid(images).shape) == (2, 2, 2, 5)
    assert tuple(PatchEmbedding(4, 5).compute_output_shape((None, 8, 12, 3))) == (None, 6, 5)


def test_patch_embedding_errors_name_the_sizes():
    with pytest.raises(ValueError, match=r"image width 30 is not divisible by the patch size 16"):
        PatchEmbedding(16, 8)(keras.Input((32, 30, 3)))
    with pytest.raises(ValueError, match="patch_size=0"):
        PatchEmbedding(0, 8)
    with pytest.raises(ValueError, match="embed_dim=-1"):
        PatchEmbedding(4, -1)


def test_class_token_is_prepended():
    layer = ClassToken(initializer="random_normal")
    x = normal(3, 4, 6)
    y = numpy_of(layer(x))
    assert y.shape == (3, 5, 6)
    np.testing.assert_array_equal(y[:, 1:], x)
    np.testing.assert_array_equal(y[:, 0], np.broadcast_to(numpy_of(layer.token)[0], (3, 6)))


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_position_embedding_interpolates_the_grid(interpolation):
    layer = PositionEmbedding(1 + 4 * 4, num_prefix_tokens=1, interpolation=interpolation)
    x = normal(2, 17, 6)
    y = numpy_of(layer(x))
    table = numpy_of(layer.embeddings)
    np.testing.assert_allclose(y, x + table, atol=1e-6)  # same size: the table as built
    np.testing.assert_array_equal(numpy_of(layer.interpolate(17)), table)
    big = normal(2, 1 + 8 * 8, 6)
    y = numpy_of(layer(big)) - big
    expected_grid = tf.image.resize(table[1:].reshape(1, 4, 4, 6), (8, 8), method=interpolation)
    for example in y:
        np.testing.assert_allclose(example[1:], expected_grid.numpy().reshape(64, 6), atol=1e-5)
        np.testing.assert_allclose(example[0], table[0], atol=1e-6)  # class token kept
    with pytest.raises(ValueError, match="has 11 tokens.*10 patch tokens, which is not a square"):
        layer(normal(1, 11, 6))


def test_position_embedding_as_a_sequence_table():
    layer = PositionEmbedding(10, interpolation=None)
    x = normal(2, 4, 3)
    layer(x)
    table = numpy_of(layer.embeddings)
    np.testing.assert_allclose(numpy_of(layer(x)), x + table[:4], atol=1e-6)
    np.testing.assert_allclose(numpy_of(layer(x, start=5)), x + table[5:9], atol=1e-6)
    with pytest.raises(ValueError, match="more than num_positions=10"):
        layer(x, start=7)
    with pytest.raises(ValueError, match="num_prefix_tokens=5"):
        PositionEmbedding(5, num_prefix_tokens=5)
    with pytest.raises(ValueError, match="interpolation='nearest'"):
        PositionEmbedding(5, interpolation="nearest")


def paper_encoding(length, dim, start=0):
    """Vaswani et al. 2017, section 3.5, written out position by position."""
    expected = np.zeros((length, dim))
    for pos in range(start, start + length):
        for i in range(dim // 2):
            angle = pos / 10000 ** (2 * i / dim)
            expected[pos - start, 2 * i] = math.sin(angle)  # PE(pos, 2i)
            expected[pos - start, 2 * i + 1] = math.cos(angle)  # PE(pos, 2i+1)
    return expected


def test_positional_encoding_matches_the_paper():
    length, dim, start = 12, 10, 3
    expected = paper_encoding(length, dim, start)
    got = numpy_of(sinusoidal_encoding(length, dim, start))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    layer = PositionalEncoding()
    x = normal(2, length, dim)
    np.testing.assert_allclose(numpy_of(layer(x, start=start)), x + expected, atol=1e-5)
    # variable length: one model with an unknown sequence axis
    inputs = keras.Input((None, dim))
    model = keras.Model(inputs, PositionalEncoding()(inputs))
    for n in (3, 7):
        np.testing.assert_allclose(numpy_of(model(x[:, :n])) - x[:, :n], np.broadcast_to(
            paper_encoding(n, dim), (2, n, dim)), atol=1e-5)
    assert sinusoidal_encoding(4, 7).shape[-1] == 7  # odd widths end with a sine
    with pytest.raises(ValueError, match="start=-1"):
        layer(x, start=-1)


# --------------------------------------------------------------------------------------------
# Transformer blocks
# --------------------------------------------------------------------------------------------


def _one_step_lowers_loss(block, x, target):
    optimizer = keras.optimizers.SGD(0.05)
    with tf.GradientTape() as tape:
        before = tf.reduce_mean(tf.square(block(x, training=True) - target))
    grads = tape.gradient(before, block.trainable_weights)
    assert all(g is not None for g in grads)
    optimizer.apply_gradients(zip(grads, block.trainable_weights))
    after = tf.reduce_mean(tf.square(block(x, training=True) - target))
    return float(before), float(after)


def test_encoder_block_pre_and_post_ln_differ_and_train():
    x, target = normal(4, 6, 16), normal(4, 6, 16)
    pre = TransformerEncoderBlock(16, 4, 32, norm_first=True)
    post = TransformerEncoderBlock(16, 4, 32, norm_first=False)
    pre(x)
    post(x)
    post.set_weights(pre.get_weights())
    assert np.abs(numpy_of(pre(x)) - numpy_of(post(x))).max() > 1e-2
    out = numpy_of(post(x))  # post-LN ends with a LayerNorm: zero mean, unit variance per token
    np.testing.assert_allclose(out.mean(-1), 0.0, atol=1e-4)
    for block in (pre, post):
        before, after = _one_step_lowers_loss(block, x, target)
        assert after < before


def test_encoder_block_scores_and_regularization():
    x = normal(2, 5, 16)
    block = TransformerEncoderBlock(16, 2, 32, dropout=0.3, stochastic_depth_rate=0.3, seed=1)
    y, scores = block(x, return_attention_scores=True)
    assert tuple(scores.shape) == (2, 2, 5, 5)
    np.testing.assert_allclose(numpy_of(scores).sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(numpy_of(y), numpy_of(block(x)))  # inference: deterministic
    assert not np.allclose(numpy_of(block(x, training=True)), numpy_of(y))
    with pytest.raises(ValueError, match="hidden_dim=10 is not divisible by num_heads=4"):
        TransformerEncoderBlock(10, 4, 16)
    with pytest.raises(ValueError, match="hidden_dim=16 does not match"):
        TransformerEncoderBlock(16, 4, 16)(normal(1, 3, 8))


def test_decoder_block_masks_and_scores():
    x, context = normal(2, 4, 16), normal(2, 6, 12)
    block = TransformerDecoderBlock(16, 2, 32, norm_first=False, activation="relu")
    keep = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    y, (self_scores, cross_scores) = block(
        x, context, context_mask=padding_mask(keep), return_attention_scores=True
    )
    assert tuple(y.shape) == (2, 4, 16)
    assert tuple(self_scores.shape) == (2, 2, 4, 4) and tuple(cross_scores.shape) == (2, 2, 4, 6)
    future = np.triu(np.ones((4, 4), bool), 1)  # key after the query
    np.testing.assert_array_equal(numpy_of(self_scores)[..., future], 0.0)
    np.testing.assert_array_equal(numpy_of(cross_scores)[0, :, :, 4:], 0.0)


# --------------------------------------------------------------------------------------------
# Spatial attention and CBAM
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["spatial", "cbam"])
def test_spatial_attention_shapes_and_map(mode):
    x = normal(2, 9, 7, 32)
    layer = SpatialAttention(mode=mode, reduction_ratio=8)
    y, heat = layer(x, return_attention_map=True)
    assert tuple(y.shape) == x.shape and tuple(heat.shape) == (2, 9, 7, 1)
    heat = numpy_of(heat)
    assert heat.min() > 0 and heat.max() < 1
    if mode == "spatial":
        np.testing.assert_allclose(numpy_of(y), x * heat, atol=1e-6)
        assert layer.spatial_conv.kernel.shape == (1, 1, 32, 1)
    else:  # CBAM written out in numpy
        w1, b1, w2, b2 = (
            numpy_of(w)
            for w in (layer.channel_kernel1, layer.channel_bias1,
                      layer.channel_kernel2, layer.channel_bias2)
        )
        assert w1.shape == (32, 4)

        def mlp(z):
            return np.maximum(z @ w1 + b1, 0) @ w2 + b2

        def sigmoid(z):
            return 1 / (1 + np.exp(-z))

        gate = sigmoid(mlp(x.mean((1, 2), keepdims=True)) + mlp(x.max((1, 2), keepdims=True)))
        refined = x * gate
        descriptor = np.concatenate(
            [refined.mean(-1, keepdims=True), refined.max(-1, keepdims=True)], axis=-1
        )
        conv = numpy_of(layer.spatial_conv(descriptor))
        np.testing.assert_allclose(heat, sigmoid(conv), atol=1e-5)
        np.testing.assert_allclose(numpy_of(y), refined * heat, atol=1e-5)
        assert layer.spatial_conv.kernel.shape == (7, 7, 2, 1)
    with pytest.raises(ValueError, match="mode='channel'"):
        SpatialAttention(mode="channel")


# --------------------------------------------------------------------------------------------
# TFLite: builtin ops only, parity with Keras
# --------------------------------------------------------------------------------------------


def test_tflite_parity_mha_with_masks_and_encoder_block():
    tokens = keras.Input((6, 16), name="tokens")
    flags = keras.Input((6,), dtype="int32", name="flags")
    mask = padding_mask(flags)
    attended = MultiHeadAttention(2, 8, name="mha")(
        tokens, tokens, attention_mask=mask, use_causal_mask=True
    )
    encoded = TransformerEncoderBlock(16, 2, 32, name="block")(tokens, attention_mask=mask)
    model = keras.Model([tokens, flags], [attended, encoded])
    flatbuffer = export.to_tflite(model)  # raises UnsupportedOpsError on any non-builtin op
    x = normal(3, 6, 16)
    keep = np.ones((3, 6), "int32")
    keep[0, 4:] = 0
    keep[1, 1] = 0
    assert export.tflite_parity(model, flatbuffer, [x, keep]) <= 1e-5


# --------------------------------------------------------------------------------------------
# The layer contract: config, .keras, unknown batch, gradients, mixed precision
# --------------------------------------------------------------------------------------------


def _mha_model(dtype=None):
    x = keras.Input((5, 8))
    h = keras.layers.Dense(8, dtype=dtype)(x)
    mha = MultiHeadAttention(2, 4, value_dim=3, dropout=0.1, seed=2, dtype=dtype)
    y = mha(h, h, use_causal_mask=True)
    return keras.Model(x, y), normal(2, 5, 8)


def _sdpa_model(dtype=None):
    x = keras.Input((3, 5, 4))
    h = keras.layers.Dense(4, dtype=dtype)(x)
    y = ScaledDotProductAttention(dtype=dtype)(h, h, h, use_causal_mask=True)
    return keras.Model(x, y), normal(2, 3, 5, 4)


def _vit_stem_model(dtype=None):
    x = keras.Input((8, 8, 3))
    h = PatchEmbedding(4, 8, dtype=dtype)(x)
    h = ClassToken(dtype=dtype)(h)
    h = PositionEmbedding(5, num_prefix_tokens=1, dtype=dtype)(h)
    return keras.Model(x, h), normal(2, 8, 8, 3)


def _sequence_position_model(dtype=None):
    x = keras.Input((None, 6))
    h = keras.layers.Dense(6, dtype=dtype)(x)
    h = PositionEmbedding(8, interpolation=None, dtype=dtype)(h)
    h = PositionalEncoding(dtype=dtype)(h)
    return keras.Model(x, h), normal(2, 5, 6)


def _encoder_model(dtype=None):
    x = keras.Input((None, 8))  # unknown length: the causal mask is built at run time
    block = TransformerEncoderBlock(8, 2, 16, norm_first=False, epsilon=1e-12, dtype=dtype)
    y = block(x, use_causal_mask=True)
    return keras.Model(x, y), normal(2, 5, 8)


def _decoder_model(dtype=None):
    x, c = keras.Input((4, 8)), keras.Input((6, 10))
    y = TransformerDecoderBlock(8, 2, 16, dtype=dtype)(x, c)
    return keras.Model([x, c], y), [normal(2, 4, 8), normal(2, 6, 10)]


def _cbam_model(dtype=None):
    x = keras.Input((6, 6, 8))
    h = SpatialAttention(mode="cbam", reduction_ratio=4, dtype=dtype)(x)
    h = SpatialAttention(dtype=dtype)(h)
    return keras.Model(x, h), normal(2, 6, 6, 8)


CONTRACT_MODELS = {
    "mha": _mha_model,
    "sdpa": _sdpa_model,
    "vit_stem": _vit_stem_model,
    "sequence_positions": _sequence_position_model,
    "encoder": _encoder_model,
    "decoder": _decoder_model,
    "cbam": _cbam_model,
}


@pytest.mark.parametrize("name", list(CONTRACT_MODELS))
def test_layer_contract(name, tmp_path):
    model, inputs = CONTRACT_MODELS[name]()
    assert model.inputs[0].shape[0] is None  # unknown batch
    testing.check_output_shapes(model, inputs)
    testing.check_config(model)
    testing.check_keras_roundtrip(model, inputs, directory=tmp_path)
    testing.check_gradients(model, inputs)


@pytest.mark.parametrize("name", list(CONTRACT_MODELS))
def test_mixed_float16(name):
    model, inputs = CONTRACT_MODELS[name]("mixed_float16")
    reference, _ = CONTRACT_MODELS[name]()
    reference.set_weights(model.get_weights())
    outputs = numpy_of(model(inputs))
    assert outputs.dtype == np.float16 and np.all(np.isfinite(outputs))
    np.testing.assert_allclose(outputs, numpy_of(reference(inputs)), atol=0.05, rtol=0.05)


def test_mixed_float16_softmax_with_masks_and_large_logits():
    x = normal(2, 6, 16, scale=30.0)  # logits in the thousands
    keep = np.ones((2, 6), bool)
    keep[0] = False  # a fully masked example: -1e9 is -inf in float16
    half = MultiHeadAttention(2, 8, dtype="mixed_float16")
    full = MultiHeadAttention(2, 8)
    half(x, x)
    full(x, x)
    full.set_weights(half.get_weights())
    kwargs = dict(
        attention_mask=padding_mask(keep), use_causal_mask=True, return_attention_scores=True
    )
    y16, s16 = half(x, x, **kwargs)
    y32, s32 = full(x, x, **kwargs)
    assert s16.dtype == "float16" and np.all(np.isfinite(numpy_of(y16)))
    np.testing.assert_allclose(numpy_of(s16).astype("float32"), numpy_of(s32), atol=2e-2)
