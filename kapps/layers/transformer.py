"""Transformer blocks: self-attention and an MLP with residual connections (encoder), plus
cross-attention to a second sequence (decoder).

One block is two (encoder) or three (decoder) sub-layers, each wrapped as
``x + sublayer(x)``:

- **pre-LN** (``norm_first=True``, the default; ViT, GPT-2): ``x + f(LayerNorm(x))``. The
  residual path stays an identity from input to output, which trains deep stacks without
  learning-rate warm-up; models end with one more ``LayerNorm``.
- **post-LN** (``norm_first=False``; the original Transformer and BERT):
  ``LayerNorm(x + f(x))``.

Dropout is applied to each sub-layer's output before it is added (Vaswani et al. 2017,
section 5.4), stochastic depth (``kapps.layers.StochasticDepth``) drops the whole
sub-layer for some examples (DeiT and later ViTs).
"""

import keras

from kapps._checks import check_positive_int, check_rate
from kapps.layers.attention import MultiHeadAttention
from kapps.layers.mbconv import StochasticDepth, _check_seed


class _TransformerBlock(keras.layers.Layer):
    """What both blocks share: argument checks, the MLP, dropouts and the residual wiring."""

    def __init__(
        self,
        hidden_dim,
        num_heads,
        mlp_dim,
        dropout,
        attention_dropout,
        stochastic_depth_rate,
        norm_first,
        epsilon,
        activation,
        use_bias,
        kernel_initializer,
        seed,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        if hidden_dim % num_heads:
            raise ValueError(
                f"hidden_dim={hidden_dim!r} is not divisible by num_heads={num_heads!r}; each "
                "head gets hidden_dim / num_heads features."
            )
        self.mlp_dim = check_positive_int("mlp_dim", mlp_dim)
        self.dropout = check_rate("dropout", dropout)
        self.attention_dropout = check_rate("attention_dropout", attention_dropout)
        self.stochastic_depth_rate = check_rate("stochastic_depth_rate", stochastic_depth_rate)
        if not isinstance(norm_first, bool):
            raise ValueError(f"norm_first={norm_first!r} is not allowed; expected True or False.")
        self.norm_first = norm_first
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"epsilon={epsilon!r} is not allowed; expected a number > 0.")
        self.epsilon = float(epsilon)
        self.activation = keras.activations.get(activation)
        if not isinstance(use_bias, bool):
            raise ValueError(f"use_bias={use_bias!r} is not allowed; expected True or False.")
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = _check_seed(seed)
        self.key_dim = hidden_dim // num_heads
        self._seed_offset = 0  # each random sublayer gets seed + its own offset

    def _next_seed(self):
        if self.seed is None:
            return None
        self._seed_offset += 1
        return self.seed + self._seed_offset

    def _initializer(self):
        # a fresh instance per sublayer, so equal shapes do not get equal values
        return keras.initializers.get(keras.initializers.serialize(self.kernel_initializer))

    def _attention(self, name):
        return MultiHeadAttention(
            self.num_heads,
            self.key_dim,
            dropout=self.attention_dropout,
            use_bias=self.use_bias,
            output_dim=self.hidden_dim,
            kernel_initializer=self._initializer(),
            seed=self._next_seed(),
            dtype=self.dtype_policy,
            name=name,
        )

    def _norm(self, name):
        return keras.layers.LayerNormalization(
            epsilon=self.epsilon, dtype=self.dtype_policy, name=name
        )

    def _dropout(self, name):
        return keras.layers.Dropout(
            self.dropout, seed=self._next_seed(), dtype=self.dtype_policy,
            name=name,
        )

    def _drop_path(self, name):
        return StochasticDepth(
            self.stochastic_depth_rate, seed=self._next_seed(),
            dtype=self.dtype_policy, name=name,
        )

    def _make_mlp(self):
        self.mlp_dense1 = keras.layers.Dense(
            self.mlp_dim, activation=self.activation, use_bias=self.use_bias,
            kernel_initializer=self._initializer(), dtype=self.dtype_policy, name="mlp_dense1",
        )
        self.mlp_dense2 = keras.layers.Dense(
            self.hidden_dim, use_bias=self.use_bias, kernel_initializer=self._initializer(),
            dtype=self.dtype_policy, name="mlp_dense2",
        )
        self.mlp_norm = self._norm("mlp_norm")
        self.mlp_dropout = self._dropout("mlp_dropout")
        self.mlp_drop_path = self._drop_path("mlp_drop_path")

    def _build_mlp(self, shape):
        self.mlp_norm.build(shape)
        self.mlp_dense1.build(shape)
        self.mlp_dense2.build(shape[:-1] + (self.mlp_dim,))

    def _check_width(self, name, shape):
        if len(shape) != 3 or shape[-1] != self.hidden_dim:
            raise ValueError(
                f"hidden_dim={self.hidden_dim!r} does not match {name} of shape "
                f"{tuple(shape)}; expected (batch, tokens, {self.hidden_dim})."
            )

    def _residual(self, x, norm, sublayer, dropout, drop_path, training):
        """``x + f(norm(x))`` (pre-LN) or ``norm(x + f(x))`` (post-LN); ``sublayer`` returns
        ``(y, extras)``, the extras (scores, cache) are passed through."""
        y, extras = sublayer(norm(x) if self.norm_first else x)
        y = drop_path(dropout(y, training=training), training=training)
        x = x + y
        return (x if self.norm_first else norm(x)), extras

    def _mlp(self, x, training):
        def mlp(h):
            return self.mlp_dense2(self.mlp_dense1(h)), None

        x, _ = self._residual(
            x, self.mlp_norm, mlp, self.mlp_dropout, self.mlp_drop_path, training
        )
        return x

    def compute_output_spec(self, inputs, *args, **kwargs):
        # A block maps (batch, tokens, hidden_dim) to the same shape. Saying so spares Keras
        # tracing the whole block to learn it for every functional call (a third of a second
        # per block: 15 s for GPT-2 XL's 48). Scores and caches are still traced.
        if kwargs.get("return_attention_scores") or kwargs.get("cache") is not None:
            return super().compute_output_spec(inputs, *args, **kwargs)
        return keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "stochastic_depth_rate": self.stochastic_depth_rate,
                "norm_first": self.norm_first,
                "epsilon": self.epsilon,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "seed": self.seed,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class TransformerEncoderBlock(_TransformerBlock):
    """Self-attention then an MLP, each with a residual connection and layer normalization.

    ``x = x + MHA(LN(x))``, ``x = x + MLP(LN(x))`` (pre-LN, default) or
    ``x = LN(x + MHA(x))``, ``x = LN(x + MLP(x))`` (post-LN), with
    ``MLP(x) = Dense(hidden_dim)(activation(Dense(mlp_dim)(x)))``. The block of ViT (pre-LN),
    BERT (post-LN, ``epsilon=1e-12``) and, with ``use_causal_mask=True``, GPT (pre-LN):
    a decoder without cross-attention is this block with a causal mask.

    Args:
        hidden_dim: width of the tokens (input and output); must be divisible by ``num_heads``.
        num_heads: attention heads, each of ``hidden_dim // num_heads`` features.
        mlp_dim: width of the MLP's hidden layer (4 * hidden_dim in the papers).
        dropout: dropout on each sub-layer's output before the residual addition.
        attention_dropout: dropout on the attention weights.
        stochastic_depth_rate: probability of skipping each sub-layer for an example.
        norm_first: pre-LN (True) or post-LN (False).
        epsilon: layer-normalization epsilon (ViT 1e-6, BERT 1e-12).
        activation: the MLP's activation (``"gelu"``, the exact erf form; GPT-2 used the tanh
            approximation).
        use_bias: whether the projections and the MLP have biases.
        kernel_initializer: initializer of every kernel.
        seed: optional integer seed of the dropouts and stochastic depth.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, tokens, hidden_dim)``.
        attention_mask: optional boolean mask broadcastable to ``(batch, [heads,] tokens,
            tokens)``, True = may attend (``kapps.layers.attention.padding_mask``).
        use_causal_mask: block attention to later tokens (GPT).
        return_attention_scores: also return the attention weights ``(batch, heads, tokens,
            tokens)`` (attention rollout, attention maps).
        training: dropout and stochastic depth only when True.
        cache: optional ``(keys, values)`` of the self-attention for incremental decoding
            (see ``MultiHeadAttention``; start with ``block.attention.empty_cache(batch)``).
        cache_index: with ``cache``, the position of the first new token in a fixed-size
            cache (see ``MultiHeadAttention``).

    Returns:
        ``(batch, tokens, hidden_dim)``; with ``return_attention_scores`` the tuple
        ``(outputs, scores)``; with a cache ``(outputs, new_cache)`` or
        ``(outputs, scores, new_cache)``.

    Example:
        >>> block = TransformerEncoderBlock(64, num_heads=4, mlp_dim=256)
        >>> tuple(block(keras.ops.ones((2, 10, 64))).shape)
        (2, 10, 64)

    Paper: Vaswani et al. 2017, "Attention Is All You Need", section 3.1; pre-LN: Xiong et
    al. 2020, "On Layer Normalization in the Transformer Architecture"; Dosovitskiy et al.
    2021 (ViT), eq. 2-3.
    """

    def __init__(
        self,
        hidden_dim,
        num_heads,
        mlp_dim,
        dropout=0.0,
        attention_dropout=0.0,
        stochastic_depth_rate=0.0,
        norm_first=True,
        epsilon=1e-6,
        activation="gelu",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        seed=None,
        **kwargs,
    ):
        super().__init__(
            hidden_dim, num_heads, mlp_dim, dropout, attention_dropout, stochastic_depth_rate,
            norm_first, epsilon, activation, use_bias, kernel_initializer, seed, **kwargs,
        )
        self.attention_norm = self._norm("attention_norm")
        self.attention = self._attention("attention")
        self.attention_dropout_layer = self._dropout("attention_output_dropout")
        self.attention_drop_path = self._drop_path("attention_drop_path")
        self._make_mlp()

    def build(self, input_shape):
        self._check_width("the input", input_shape)
        input_shape = tuple(input_shape)
        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self._build_mlp(input_shape)

    def call(
        self,
        inputs,
        attention_mask=None,
        use_causal_mask=False,
        return_attention_scores=False,
        training=None,
        cache=None,
        cache_index=None,
    ):
        def attend(h):
            result = self.attention(
                h, h, attention_mask=attention_mask, use_causal_mask=use_causal_mask,
                return_attention_scores=return_attention_scores, training=training, cache=cache,
                cache_index=cache_index,
            )
            if cache is None and not return_attention_scores:
                return result, ()
            return result[0], tuple(result[1:])  # (scores,), (cache,) or (scores, cache)

        x, extras = self._residual(
            inputs, self.attention_norm, attend, self.attention_dropout_layer,
            self.attention_drop_path, training,
        )
        x = self._mlp(x, training)
        return (x, *extras) if extras else x


@keras.saving.register_keras_serializable(package="kapps")
class TransformerDecoderBlock(_TransformerBlock):
    """Masked self-attention, cross-attention to a context sequence, then an MLP.

    The decoder of the original Transformer (Vaswani et al. 2017, section 3.1, Figure 1
    right): the target tokens attend to the earlier target tokens (causal mask), then to the
    encoder's output (queries from the decoder, keys and values from the context), then
    pass through the MLP; each sub-layer has its residual connection and layer normalization
    (pre-LN by default; the paper's post-LN with ``norm_first=False``).

    Args:
        hidden_dim: width of the target tokens; must be divisible by ``num_heads``.
        num_heads: attention heads of both attentions.
        mlp_dim: width of the MLP's hidden layer.
        dropout: dropout on each sub-layer's output before the residual addition.
        attention_dropout: dropout on the attention weights.
        stochastic_depth_rate: probability of skipping each sub-layer for an example.
        norm_first: pre-LN (True) or post-LN (False, the paper).
        epsilon: layer-normalization epsilon.
        activation: the MLP's activation (the paper used ReLU).
        use_bias: whether the projections and the MLP have biases.
        kernel_initializer: initializer of every kernel.
        seed: optional integer seed of the dropouts and stochastic depth.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: target tokens ``(batch, target_len, hidden_dim)``.
        context: encoder outputs ``(batch, source_len, context_dim)``.
        attention_mask: optional mask of the self-attention, broadcastable to ``(batch,
            [heads,] target_len, target_len)`` (target padding), combined with the causal mask.
        context_mask: optional mask of the cross-attention, broadcastable to ``(batch,
            [heads,] target_len, source_len)`` (``padding_mask(source_flags)``).
        use_causal_mask: block attention to later target tokens (True; set False only for
            a non-autoregressive decoder).
        return_attention_scores: also return ``(self_scores, cross_scores)``.
        training: dropout and stochastic depth only when True.
        cache: optional ``(keys, values)`` of the self-attention for incremental decoding;
            the cross-attention is recomputed from ``context``.

    Returns:
        ``(batch, target_len, hidden_dim)``; with ``return_attention_scores`` the tuple
        ``(outputs, (self_scores, cross_scores))``; with a cache ``(outputs, new_cache)`` or
        ``(outputs, (self_scores, cross_scores), new_cache)``.

    Example:
        >>> block = TransformerDecoderBlock(64, num_heads=4, mlp_dim=256)
        >>> tuple(block(keras.ops.ones((2, 7, 64)), keras.ops.ones((2, 9, 64))).shape)
        (2, 7, 64)

    Paper: Vaswani et al. 2017, "Attention Is All You Need", sections 3.1 and 3.2.3.
    """

    def __init__(
        self,
        hidden_dim,
        num_heads,
        mlp_dim,
        dropout=0.0,
        attention_dropout=0.0,
        stochastic_depth_rate=0.0,
        norm_first=True,
        epsilon=1e-6,
        activation="gelu",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        seed=None,
        **kwargs,
    ):
        super().__init__(
            hidden_dim, num_heads, mlp_dim, dropout, attention_dropout, stochastic_depth_rate,
            norm_first, epsilon, activation, use_bias, kernel_initializer, seed, **kwargs,
        )
        self.self_attention_norm = self._norm("self_attention_norm")
        self.self_attention = self._attention("self_attention")
        self.self_attention_dropout = self._dropout("self_attention_dropout")
        self.self_attention_drop_path = self._drop_path("self_attention_drop_path")
        self.cross_attention_norm = self._norm("cross_attention_norm")
        self.cross_attention = self._attention("cross_attention")
        self.cross_attention_dropout = self._dropout("cross_attention_dropout")
        self.cross_attention_drop_path = self._drop_path("cross_attention_drop_path")
        self._make_mlp()

    def build(self, inputs_shape, context_shape):
        self._check_width("the inputs", inputs_shape)
        if len(context_shape) != 3 or context_shape[-1] is None:
            raise ValueError(
                f"context has shape {tuple(context_shape)}; expected (batch, source_len, "
                "features) with a known feature size."
            )
        inputs_shape, context_shape = tuple(inputs_shape), tuple(context_shape)
        self.self_attention_norm.build(inputs_shape)
        self.self_attention.build(inputs_shape, inputs_shape)
        self.cross_attention_norm.build(inputs_shape)
        self.cross_attention.build(inputs_shape, context_shape)
        self._build_mlp(inputs_shape)

    def call(
        self,
        inputs,
        context,
        attention_mask=None,
        context_mask=None,
        use_causal_mask=True,
        return_attention_scores=False,
        training=None,
        cache=None,
    ):
        def self_attend(h):
            result = self.self_attention(
                h, h, attention_mask=attention_mask, use_causal_mask=use_causal_mask,
                return_attention_scores=return_attention_scores, training=training, cache=cache,
            )
            if cache is None and not return_attention_scores:
                return result, ()
            return result[0], tuple(result[1:])

        def cross_attend(h):
            result = self.cross_attention(
                h, context, attention_mask=context_mask,
                return_attention_scores=return_attention_scores, training=training,
            )
            return (result[0], (result[1],)) if return_attention_scores else (result, ())

        x, self_extras = self._residual(
            inputs, self.self_attention_norm, self_attend, self.self_attention_dropout,
            self.self_attention_drop_path, training,
        )
        x, cross_extras = self._residual(
            x, self.cross_attention_norm, cross_attend, self.cross_attention_dropout,
            self.cross_attention_drop_path, training,
        )
        x = self._mlp(x, training)
        outputs = (x,)
        if return_attention_scores:
            outputs += ((self_extras[0], cross_extras[0]),)
        if cache is not None:
            outputs += (self_extras[-1],)
        return outputs if len(outputs) > 1 else x
