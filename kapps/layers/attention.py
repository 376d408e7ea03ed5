"""Attention from first principles: scaled dot products, masks and multi-head attention.

Every token asks a question (its *query*), every token it may look at offers a label (its
*key*) and a content (its *value*). The answer for one query is the average of the values,
weighted by how well the query matches each key: ``softmax(q . k / sqrt(d_k))``. Doing this
for all queries at once is two matrix products, ``softmax(Q K^T / sqrt(d_k)) V`` (Vaswani et
al. 2017, section 3.2.1, ``ScaledDotProductAttention``).
Multi-head attention runs ``num_heads`` such attentions in parallel on learned linear
projections of the inputs and mixes their concatenated outputs with one more projection
(section 3.2.2, ``MultiHeadAttention``).

Mask convention (the same as ``keras.layers.MultiHeadAttention``): a boolean
``attention_mask`` broadcastable to the attention scores ``(batch, [heads,] query_len,
key_len)`` in which **True (1) means "may attend"** and False (0) means "blocked". A mask
with fewer axes than the scores gets the missing axes inserted before its last two, so a
``(batch, query_len, key_len)`` mask applies to every head and a ``(query_len, key_len)``
mask to every example. Two helpers build the usual masks with TFLite-builtin ops only:

- ``padding_mask(token_mask)``: ``(batch, key_len)`` "this token is real" flags to a
  ``(batch, 1, key_len)`` mask (every query ignores padded keys);
- ``causal_mask(query_len, key_len, offset)``: ``(1, query_len, key_len)``, query ``i`` sees
  keys ``j <= i + offset`` (the future is blocked; ``offset`` is the number of cached tokens
  in incremental decoding).

Combine masks with ``keras.ops.logical_and``.
"""

import math

import keras
import numpy as np
from keras import ops

from kapps._checks import check_positive_int, check_rate
from kapps.layers.mbconv import _check_seed

#: The masked logit: exp(-1e9 - max) is exactly 0 in float32 (softmax runs in float32).
_MASKED_LOGIT = -1e9


def padding_mask(token_mask):
    """A ``(batch, 1, seq)`` attention mask from ``(batch, seq)`` token flags.

    Args:
        token_mask: ``(batch, seq)``, nonzero (True) for real tokens and 0 (False) for
            padding; any dtype.

    Returns:
        A boolean ``(batch, 1, seq)`` tensor: every query may attend to the real keys only.
        The new axis is added with ``keras.ops.expand_dims``, which stays a builtin TFLite op
        (``x[:, None, :]`` becomes a new-axis strided slice, which does not).

    Example:
        >>> tuple(padding_mask(np.array([[1, 1, 0]])).shape)
        (1, 1, 3)
    """
    return ops.expand_dims(ops.cast(token_mask, "bool"), 1)


def causal_mask(query_length, key_length=None, offset=0):
    """A ``(1, query_length, key_length)`` mask that blocks attention to later positions.

    Query ``i`` stands at position ``i + offset`` and may attend to key ``j`` when
    ``j <= i + offset``. With ``offset=0`` the mask is lower triangular and aligned at the top
    left, as ``keras.layers.MultiHeadAttention(use_causal_mask=True)`` builds it; in cached
    decoding the ``query_length`` new tokens follow ``offset`` cached ones, so
    ``offset = key_length - query_length``.

    Built from ``keras.ops.arange`` comparisons (RANGE, LESS_EQUAL and EXPAND_DIMS in TFLite,
    all builtins; constant-folded when the lengths are static).

    Args:
        query_length: number of queries (int or scalar tensor).
        key_length: number of keys; defaults to ``query_length``.
        offset: position of the first query (int or scalar tensor).

    Returns:
        A boolean tensor of shape ``(1, query_length, key_length)``.

    Example:
        >>> keras.ops.convert_to_numpy(causal_mask(3))[0].astype(int)
        array([[1, 0, 0],
               [1, 1, 0],
               [1, 1, 1]])
    """
    if key_length is None:
        key_length = query_length
    rows = ops.arange(query_length, dtype="int32") + ops.cast(offset, "int32")
    cols = ops.arange(key_length, dtype="int32")
    # (query, 1) >= (1, key) -> (query, key)
    mask = ops.greater_equal(ops.expand_dims(rows, 1), ops.expand_dims(cols, 0))
    return ops.expand_dims(mask, 0)  # (1, query, key)


def _fresh(initializer):
    """A new instance of ``initializer`` (two weights of one shape sharing an instance would
    get the same values from a seeded initializer)."""
    return keras.initializers.get(keras.initializers.serialize(initializer))


def _expand_mask(mask, rank):
    """Insert axes before the last two of ``mask`` until it has ``rank`` axes (the heads axis
    first, as keras.layers.MultiHeadAttention does)."""
    mask = ops.cast(mask, "bool")
    if len(mask.shape) > rank:
        raise ValueError(
            f"attention_mask has shape {tuple(mask.shape)}, more axes than the attention "
            f"scores (rank {rank}); expected a mask broadcastable to (batch, [heads,] "
            "query_len, key_len)."
        )
    while len(mask.shape) < rank:
        mask = ops.expand_dims(mask, -3)
    return mask


@keras.saving.register_keras_serializable(package="kapps")
class ScaledDotProductAttention(keras.layers.Layer):
    """``softmax(Q K^T / sqrt(d_k)) V``: every query averages the values, weighted by how well
    it matches each key.

    The dot product ``q . k`` of a query with a key grows with their length ``d_k``; dividing
    by ``sqrt(d_k)`` keeps the logits at unit scale so the softmax does not saturate (Vaswani
    et al. 2017, section 3.2.1, footnote 4). Masked positions get the logit -1e9 before the
    softmax and weight exactly 0 after it (so a query whose keys are all masked gets weight 0
    everywhere and outputs zeros, as Keras' masked softmax does). The logits are cast to
    float32 for the masking and the softmax and the weights cast back to the compute dtype,
    as ``keras.ops.dot_product_attention`` does: under ``mixed_float16`` the -1e9 would be
    -inf in float16 (NaN for a fully masked query) and small weights would underflow.
    Dropout is applied to the weights, not to the returned scores.

    Inputs may carry any leading axes: ``(batch, seq, dim)`` for single-head attention or
    ``(batch, heads, seq, dim)`` for heads attended in parallel.

    Args:
        dropout: dropout rate on the attention weights, in ``[0, 1)``.
        scale: multiplier of the logits; ``None`` means ``1 / sqrt(d_k)``.
        seed: optional integer seed of the layer's ``keras.random.SeedGenerator`` (dropout).
        **kwargs: standard layer arguments.

    Call arguments:
        query: ``(..., query_len, d_k)``.
        key: ``(..., key_len, d_k)``.
        value: ``(..., key_len, d_v)``.
        attention_mask: optional boolean mask broadcastable to ``(..., query_len, key_len)``;
            True means "may attend" (missing axes are inserted before the last two).
        use_causal_mask: also block every key after the query's own position (top-left
            aligned lower triangle, as in Keras).
        return_attention_scores: also return the attention weights.
        training: dropout only when True.
        attention_bias: optional float tensor broadcastable (numpy rules) to the logits
            ``(..., query_len, key_len)``, added to the scaled logits in float32 before the
            mask and the softmax: a learned relative-position bias (Swin, T5). Masked
            positions stay blocked whatever their bias.

    Returns:
        ``(..., query_len, d_v)``, or the tuple ``(output, scores)`` with scores of shape
        ``(..., query_len, key_len)`` when ``return_attention_scores`` is True.

    Example:
        >>> attention = ScaledDotProductAttention()
        >>> q = keras.ops.ones((2, 4, 5, 8))  # (batch, heads, seq, dim)
        >>> out, scores = attention(q, q, q, use_causal_mask=True, return_attention_scores=True)
        >>> tuple(out.shape), tuple(scores.shape)
        ((2, 4, 5, 8), (2, 4, 5, 5))

    Paper: Vaswani et al. 2017, "Attention Is All You Need", section 3.2.1.
    """

    def __init__(self, dropout=0.0, scale=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.dropout = check_rate("dropout", dropout)
        if scale is not None and (
            isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0
        ):
            raise ValueError(f"scale={scale!r} is not allowed; expected None or a number > 0.")
        self.scale = None if scale is None else float(scale)
        self.seed = _check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(
        self,
        query,
        key,
        value,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
        attention_bias=None,
    ):
        depth = query.shape[-1]
        scale = self.scale if self.scale is not None else 1.0 / math.sqrt(depth)
        # Scale the queries (query_len * d_k products) rather than the logits (query_len *
        # key_len), as Keras does: the same numbers up to rounding, less work.
        query = query * ops.cast(scale, query.dtype)
        # (..., query_len, d_k) x (..., d_k, key_len) -> (..., query_len, key_len)
        logits = ops.matmul(query, ops.swapaxes(key, -1, -2))
        logits = ops.cast(logits, "float32")
        if attention_bias is not None:
            logits = logits + ops.cast(attention_bias, "float32")
        rank = len(logits.shape)
        mask = None
        if attention_mask is not None:
            mask = _expand_mask(attention_mask, rank)
        if use_causal_mask:
            causal = _expand_mask(causal_mask(ops.shape(logits)[-2], ops.shape(logits)[-1]), rank)
            mask = causal if mask is None else ops.logical_and(mask, causal)
        if mask is not None:
            logits = ops.where(mask, logits, _MASKED_LOGIT)
        if logits.shape[-1] == 1:
            # one key (the first step of cached decoding) gets all the weight; ops.softmax
            # would warn that a softmax over one element is constant
            weights = ops.ones_like(logits)
        else:
            weights = ops.softmax(logits, axis=-1)
        if mask is not None:
            weights = ops.where(mask, weights, 0.0)  # rows with no allowed key: all zeros
        weights = ops.cast(weights, self.compute_dtype)
        dropped = weights
        if training and self.dropout > 0.0:
            dropped = keras.random.dropout(weights, self.dropout, seed=self.seed_generator)
        # (..., query_len, key_len) x (..., key_len, d_v) -> (..., query_len, d_v)
        output = ops.matmul(dropped, ops.cast(value, self.compute_dtype))
        if return_attention_scores:
            return output, weights
        return output

    def get_config(self):
        config = super().get_config()
        config.update({"dropout": self.dropout, "scale": self.scale, "seed": self.seed})
        return config


def _check_keras_mha_arrays(arrays):
    """Validate the weight arrays of a keras.layers.MultiHeadAttention (Keras order)."""
    arrays = [np.asarray(a) for a in arrays]
    if len(arrays) not in (4, 8):
        raise ValueError(
            f"weights has {len(arrays)} arrays; expected the 8 arrays of a Keras "
            "MultiHeadAttention with biases (query, key, value, attention_output kernels and "
            "biases, in that order) or its 4 kernels without biases. A gated MHA "
            "(use_gate=True) is not supported."
        )
    step = 2 if len(arrays) == 8 else 1
    kernels = arrays[::step]
    names = ("query", "key", "value", "attention_output")
    for name, kernel in zip(names, kernels):
        if kernel.ndim != 3:
            raise ValueError(
                f"the {name} kernel has shape {kernel.shape}; expected 3 axes ((dim, heads, "
                "head_dim) for query/key/value, (heads, head_dim, out) for the output). A "
                "multi-axis output_shape or attention_axes is not supported."
            )
    return arrays


def convert_keras_mha_weights(weights):
    """Map the weights of a ``keras.layers.MultiHeadAttention`` to ``MultiHeadAttention``'s.

    Keras (and keras-hub checkpoints, which use the same layout) keep each projection as an
    ``EinsumDense`` with the heads as a separate kernel axis; this layer keeps plain matrices,
    heads concatenated along the output axis, head ``h`` in columns ``h*head_dim`` to
    ``(h+1)*head_dim``:

    ======================  =========================  ============================
    projection              Keras shape                kapps shape
    ======================  =========================  ============================
    query/key/value kernel  ``(dim, heads, head_dim)``  ``(dim, heads * head_dim)``
    query/key/value bias    ``(heads, head_dim)``       ``(heads * head_dim,)``
    output kernel           ``(heads, head_dim, out)``  ``(heads * head_dim, out)``
    output bias             ``(out,)``                  ``(out,)``
    ======================  =========================  ============================

    A row-major reshape does it: ``(dim, heads, head_dim) -> (dim, heads * head_dim)`` puts
    head ``h`` at exactly those columns, which is how ``split_heads`` reads them back.

    Args:
        weights: the Keras layer's ``get_weights()`` (8 arrays in the order query kernel,
            query bias, key kernel, key bias, value kernel, value bias, output kernel, output
            bias; or the 4 kernels when ``use_bias=False``).

    Returns:
        A list of numpy arrays in this layer's ``get_weights()`` order.

    Example:
        >>> ours.set_weights(convert_keras_mha_weights(keras_mha.get_weights()))
    """
    arrays = _check_keras_mha_arrays(weights)
    step = 2 if len(arrays) == 8 else 1
    out = []
    for i in range(4):
        kernel = arrays[i * step]
        a, b, c = kernel.shape
        if i < 3:
            out.append(kernel.reshape(a, b * c))  # (dim, heads, head_dim) -> (dim, heads*head_dim)
        else:
            out.append(kernel.reshape(a * b, c))  # (heads, head_dim, out) -> (heads*head_dim, out)
        if step == 2:
            out.append(arrays[i * step + 1].reshape(-1))  # (heads, head_dim) -> (heads*head_dim,)
    return out


@keras.saving.register_keras_serializable(package="kapps")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention: ``num_heads`` scaled dot-product attentions on learned linear
    projections, run in parallel, concatenated and projected back.

    ``head_h = Attention(query W_Q^h, key W_K^h, value W_V^h)`` and
    ``output = concat(head_1, ..., head_H) W_O`` (Vaswani et al. 2017, section 3.2.2). Each
    head sees a ``key_dim``-dimensional projection, so heads can attend to different things
    (one to the previous word, one to the subject, ...) at the cost of a single full-width
    attention. All heads are computed at once: the projections are single matrices of
    ``num_heads * key_dim`` columns, reshaped and transposed to ``(batch, heads, seq, dim)``.

    The arguments, call signature, mask convention (True = may attend) and outputs follow
    ``keras.layers.MultiHeadAttention`` (3-D inputs, ``attention_axes=None``, no gate); with
    the same weights the outputs agree to float rounding. ``from_keras`` /
    ``load_keras_weights`` copy a Keras layer's weights (see ``convert_keras_mha_weights``
    for the layout). Keras' implicit masks (``Embedding(mask_zero=True)``) are not read: pass
    ``attention_mask`` (see ``padding_mask``).

    Key/value cache for incremental decoding (GPT generation): the keys and values of
    earlier tokens do not change when a token is appended, so they need not be recomputed.
    Pass ``cache=(keys, values)``, the projected keys and values of the earlier tokens, each
    ``(batch, heads, past_len, head_dim)`` (start with ``empty_cache(batch)``); the layer
    projects only the new tokens, appends them, attends over all of them, and returns
    ``(output, new_cache)``. With ``use_causal_mask=True`` the new queries stand at
    positions ``past_len, past_len + 1, ...``.

    A growing cache changes shape at every step, which a compiled loop (``tf.while_loop``,
    XLA, a TFLite ``WHILE``) cannot carry. For those pass ``cache_index`` as well: the cache
    is then a fixed-size buffer ``(batch, heads, max_len, head_dim)``, the new keys and
    values are written in place at positions ``cache_index, cache_index + 1, ...``
    (``keras.ops.slice_update``, TFLite ``DYNAMIC_UPDATE_SLICE``), and the queries attend to
    the whole buffer with a causal mask offset by ``cache_index``, so slots not yet written
    are never seen (GPT-2's decoding in keras-hub works the same way). For other caching
    schemes (cross-attention keys computed once per source sentence) use the pieces
    directly::

        q = mha.split_heads(mha.project_query(x_new))            # (batch, heads, 1, key_dim)
        k = ops.concatenate([k_past, mha.split_heads(mha.project_key(x_new))], axis=2)
        v = ops.concatenate([v_past, mha.split_heads(mha.project_value(x_new))], axis=2)
        y = mha.attend(q, k, v, attention_mask=causal_mask(1, past_len + 1, past_len))

    Args:
        num_heads: number of attention heads.
        key_dim: size of each head's queries and keys.
        value_dim: size of each head's values; defaults to ``key_dim``.
        dropout: dropout rate on the attention weights.
        use_bias: whether the four projections have biases.
        output_dim: size of the output; defaults to the query's last dimension.
        kernel_initializer: initializer of the projection kernels.
        bias_initializer: initializer of the biases.
        seed: optional integer seed of the attention dropout.
        **kwargs: standard layer arguments.

    Call arguments:
        query: ``(batch, query_len, query_dim)``.
        value: ``(batch, key_len, value_dim_in)``.
        key: ``(batch, key_len, key_dim_in)``; defaults to ``value``.
        attention_mask: optional boolean mask broadcastable to ``(batch, [heads,] query_len,
            key_len)``, True = may attend; with a cache, ``key_len`` counts the cached tokens.
        use_causal_mask: block attention to later positions.
        return_attention_scores: also return the attention weights
            ``(batch, heads, query_len, key_len)``.
        training: dropout only when True.
        cache: optional ``(keys, values)`` of earlier tokens, see above.
        cache_index: with ``cache``, a scalar int: the cache is a fixed-size buffer and the
            new tokens go to positions ``cache_index, ...`` (see above).

    Returns:
        ``(batch, query_len, output_dim)``; ``(output, scores)`` with
        ``return_attention_scores``; ``(output, new_cache)`` or ``(output, scores,
        new_cache)`` when a cache is passed.

    Example:
        >>> mha = MultiHeadAttention(num_heads=4, key_dim=16)
        >>> x = keras.ops.ones((2, 10, 64))
        >>> y, scores = mha(x, x, use_causal_mask=True, return_attention_scores=True)
        >>> tuple(y.shape), tuple(scores.shape)
        ((2, 10, 64), (2, 4, 10, 10))

    Paper: Vaswani et al. 2017, "Attention Is All You Need", section 3.2.2.
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        dropout=0.0,
        use_bias=True,
        output_dim=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.key_dim = check_positive_int("key_dim", key_dim)
        self.value_dim = (
            key_dim if value_dim is None else check_positive_int("value_dim", value_dim)
        )
        self.dropout = check_rate("dropout", dropout)
        if not isinstance(use_bias, bool):
            raise ValueError(f"use_bias={use_bias!r} is not allowed; expected True or False.")
        self.use_bias = use_bias
        self.output_dim = (
            None if output_dim is None else check_positive_int("output_dim", output_dim)
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.seed = _check_seed(seed)
        self.attention = ScaledDotProductAttention(
            dropout=self.dropout, seed=seed, dtype=self.dtype_policy, name="attention"
        )

    def _projection(self, name, in_dim, out_dim):
        kernel = self.add_weight(
            name=f"{name}_kernel",
            shape=(in_dim, out_dim),
            initializer=_fresh(self.kernel_initializer),
        )
        bias = None
        if self.use_bias:
            bias = self.add_weight(
                name=f"{name}_bias", shape=(out_dim,), initializer=_fresh(self.bias_initializer)
            )
        return kernel, bias

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        for name, shape in (("query", query_shape), ("value", value_shape), ("key", key_shape)):
            if len(shape) != 3 or shape[-1] is None:
                raise ValueError(
                    f"{name} has shape {tuple(shape)}; expected (batch, seq, features) with a "
                    "known feature size."
                )
        if None not in (key_shape[1], value_shape[1]) and key_shape[1] != value_shape[1]:
            raise ValueError(
                f"key has {key_shape[1]} tokens but value has {value_shape[1]}; they must match."
            )
        out_dim = self.output_dim or query_shape[-1]
        # Creation order = keras.layers.MultiHeadAttention's (query, key, value, output), so
        # get_weights() lines up with convert_keras_mha_weights.
        self.query_kernel, self.query_bias = self._projection(
            "query", query_shape[-1], self.num_heads * self.key_dim
        )
        self.key_kernel, self.key_bias = self._projection(
            "key", key_shape[-1], self.num_heads * self.key_dim
        )
        self.value_kernel, self.value_bias = self._projection(
            "value", value_shape[-1], self.num_heads * self.value_dim
        )
        self.output_kernel, self.output_bias = self._projection(
            "output", self.num_heads * self.value_dim, out_dim
        )

    # -- the pieces, public so that callers can build their own caches ----------------------

    @staticmethod
    def _dense(x, kernel, bias):
        y = ops.matmul(x, ops.cast(kernel, x.dtype))
        if bias is not None:
            y = y + ops.cast(bias, x.dtype)
        return y

    def project_query(self, query):
        """``(batch, seq, query_dim) -> (batch, seq, heads * key_dim)``."""
        return self._dense(query, self.query_kernel, self.query_bias)

    def project_key(self, key):
        """``(batch, seq, key_dim_in) -> (batch, seq, heads * key_dim)``."""
        return self._dense(key, self.key_kernel, self.key_bias)

    def project_value(self, value):
        """``(batch, seq, value_dim_in) -> (batch, seq, heads * value_dim)``."""
        return self._dense(value, self.value_kernel, self.value_bias)

    def split_heads(self, x):
        """``(batch, seq, heads * dim) -> (batch, heads, seq, dim)``."""
        shape = ops.shape(x)
        dim = x.shape[-1] // self.num_heads
        # (batch, seq, heads*dim) -> (batch, seq, heads, dim): head h = columns h*dim..(h+1)*dim
        x = ops.reshape(x, (shape[0], shape[1], self.num_heads, dim))
        return ops.transpose(x, (0, 2, 1, 3))  # (batch, heads, seq, dim)

    def merge_heads(self, x):
        """``(batch, heads, seq, dim) -> (batch, seq, heads * dim)`` (concatenate the heads)."""
        x = ops.transpose(x, (0, 2, 1, 3))  # (batch, seq, heads, dim)
        shape = ops.shape(x)
        return ops.reshape(x, (shape[0], shape[1], self.num_heads * x.shape[-1]))

    def attend(
        self,
        query,
        key,
        value,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
    ):
        """Attention of projected, split queries/keys/values, heads merged and projected.

        ``query``: ``(batch, heads, query_len, key_dim)``; ``key``: ``(batch, heads, key_len,
        key_dim)``; ``value``: ``(batch, heads, key_len, value_dim)``. Returns ``(batch,
        query_len, output_dim)`` (and the scores when asked). ``use_causal_mask`` aligns the
        triangle at the top left; for cached decoding pass ``causal_mask(query_len, key_len,
        offset)`` as ``attention_mask`` instead.
        """
        result = self.attention(
            query,
            key,
            value,
            attention_mask=attention_mask,
            use_causal_mask=use_causal_mask,
            return_attention_scores=return_attention_scores,
            training=training,
        )
        heads, scores = result if return_attention_scores else (result, None)
        output = self._dense(self.merge_heads(heads), self.output_kernel, self.output_bias)
        return (output, scores) if return_attention_scores else output

    def empty_cache(self, batch_size, dtype=None):
        """A cache holding no tokens: ``(keys, values)`` of shapes ``(batch_size, heads, 0,
        key_dim)`` and ``(batch_size, heads, 0, value_dim)``."""
        dtype = dtype or self.compute_dtype
        return (
            ops.zeros((batch_size, self.num_heads, 0, self.key_dim), dtype=dtype),
            ops.zeros((batch_size, self.num_heads, 0, self.value_dim), dtype=dtype),
        )

    def call(
        self,
        query,
        value,
        key=None,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
        cache=None,
        cache_index=None,
    ):
        if key is None:
            key = value
        if cache_index is not None and cache is None:
            raise ValueError("cache_index is only allowed with a cache; pass cache=(keys, values).")
        q = self.split_heads(self.project_query(query))  # (batch, heads, query_len, key_dim)
        k = self.split_heads(self.project_key(key))  # (batch, heads, key_len, key_dim)
        v = self.split_heads(self.project_value(value))  # (batch, heads, key_len, value_dim)
        if cache is not None:
            past_keys, past_values = cache
            if cache_index is None:  # growing cache: append
                past = ops.shape(past_keys)[2]
                k = ops.concatenate([ops.cast(past_keys, k.dtype), k], axis=2)
                v = ops.concatenate([ops.cast(past_values, v.dtype), v], axis=2)
            else:  # fixed-size cache: write in place, (batch, heads, max_len, dim)
                past = ops.cast(cache_index, "int32")
                start = [0, 0, past, 0]
                k = ops.slice_update(ops.cast(past_keys, k.dtype), start, k)
                v = ops.slice_update(ops.cast(past_values, v.dtype), start, v)
            if use_causal_mask:
                # the new queries follow the `past` cached tokens
                causal = causal_mask(ops.shape(q)[2], ops.shape(k)[2], offset=past)
                attention_mask = (
                    causal
                    if attention_mask is None
                    else ops.logical_and(ops.cast(attention_mask, "bool"), causal)
                )
                use_causal_mask = False
        result = self.attend(
            q,
            k,
            v,
            attention_mask=attention_mask,
            use_causal_mask=use_causal_mask,
            return_attention_scores=return_attention_scores,
            training=training,
        )
        if cache is None:
            return result
        result = result if return_attention_scores else (result,)
        return (*result, (k, v))

    # -- interoperability with keras.layers.MultiHeadAttention -----------------------------

    def load_keras_weights(self, source):
        """Copy the weights of a built ``keras.layers.MultiHeadAttention`` (or its
        ``get_weights()`` list, e.g. from a keras-hub checkpoint) into this built layer.

        Raises:
            ValueError: if the layer is not built or the shapes do not correspond.
        """
        if isinstance(source, keras.layers.MultiHeadAttention):
            source = source.get_weights()
        arrays = convert_keras_mha_weights(source)
        if not self.built:
            raise ValueError(
                f"layer {self.name!r} is not built; build it (or use MultiHeadAttention."
                "from_keras) before loading weights."
            )
        ours = self.get_weights()
        if len(arrays) != len(ours) or any(a.shape != b.shape for a, b in zip(arrays, ours)):
            raise ValueError(
                f"the Keras weights {[a.shape for a in arrays]} (after reshaping) do not fit "
                f"layer {self.name!r} with weights {[b.shape for b in ours]}; check num_heads, "
                "key_dim, value_dim, use_bias and the input sizes."
            )
        self.set_weights(arrays)

    @classmethod
    def from_keras(cls, layer, **kwargs):
        """A built ``MultiHeadAttention`` with the configuration and weights of the built
        ``keras.layers.MultiHeadAttention`` ``layer``; ``kwargs`` (e.g. ``name``) go to the
        constructor. The input sizes are read from the kernel shapes."""
        if not isinstance(layer, keras.layers.MultiHeadAttention) or not layer.built:
            raise ValueError(
                f"layer={layer!r} is not allowed; expected a built keras.layers.MultiHeadAttention."
            )
        arrays = _check_keras_mha_arrays(layer.get_weights())
        step = 2 if len(arrays) == 8 else 1
        q_kernel, k_kernel, v_kernel, o_kernel = arrays[::step]
        config = layer.get_config()
        ours = cls(
            num_heads=config["num_heads"],
            key_dim=config["key_dim"],
            value_dim=config["value_dim"],
            dropout=config["dropout"],
            use_bias=config["use_bias"],
            output_dim=o_kernel.shape[-1],
            seed=config.get("seed"),
            **kwargs,
        )
        ours.build(
            (None, None, q_kernel.shape[0]),
            (None, None, v_kernel.shape[0]),
            (None, None, k_kernel.shape[0]),
        )
        ours.load_keras_weights(arrays)
        return ours

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "output_dim": self.output_dim,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "seed": self.seed,
            }
        )
        return config
