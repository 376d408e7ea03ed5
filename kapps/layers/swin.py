"""Swin Transformer layers: attention inside shifted windows, the Swin block, patch merging.

Self-attention over all ``H x W`` tokens of an image costs ``(HW)^2``; Swin restricts it to
non-overlapping ``M x M`` windows (``HW * M^2``, linear in the image size) and alternates two
window grids from block to block: the regular one (W-MSA) and one shifted by ``M // 2``
(SW-MSA), so information crosses window borders (Liu et al. 2021, section 3.2). The shifted
grid is computed as a *cyclic shift* of the map (``roll`` by ``-M // 2``) followed by the
regular partition; windows then contain tokens that were not neighbours before the roll, and
a mask stops them from attending to each other (Figure 4). Each head adds a learned bias
``B[dy, dx]`` that depends only on the relative position of query and key inside the window,
read from a ``(2M - 1)^2 x heads`` table (section 3.2, "Relative position bias").

Everything here converts to TFLite with builtin ops only:

- window partition and reverse are reshapes around one 4-D ``TRANSPOSE``: the reference
  code's ``(B, H/M, M, W/M, M, C)`` 6-D permutation is avoided by folding the window-row
  axis into the batch and the in-window column into the channels;
- the cyclic shift is two ``STRIDED_SLICE`` + ``CONCATENATION`` per axis (``tf.roll`` is
  not a TFLite builtin);
- the relative-position index and the shift mask are numpy constants computed at build time
  from the static feature-map size (``relative_position_index``, ``shifted_window_mask``);
  the index is not a weight, so parameter counts match the reference implementation;
- the attention itself is ``kapps.layers.ScaledDotProductAttention`` on
  ``(batch, windows, heads, tokens, dim)`` tensors, so the per-window mask
  ``(1, windows, 1, tokens, tokens)`` and the bias ``(heads, tokens, tokens)`` broadcast
  without tiling over the batch (5-D ``BATCH_MATMUL``/``SELECT_V2``/``ADD`` are builtins).
"""

import math

import keras
import numpy as np
from keras import ops

from kapps._checks import check_positive_int, check_rate
from kapps.layers.attention import MultiHeadAttention
from kapps.layers.mbconv import StochasticDepth, _check_seed

#: The reference implementation's initializer of linear layers and the bias table
#: (``trunc_normal_(std=.02)``).
DEFAULT_INITIALIZER = {"class_name": "TruncatedNormal", "config": {"stddev": 0.02}}


def _fresh(initializer):
    """A new instance of ``initializer`` (one instance would give equal weights equal values)."""
    return keras.initializers.get(keras.initializers.serialize(initializer))


def _check_epsilon(epsilon):
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
        raise ValueError(f"epsilon={epsilon!r} is not allowed; expected a number > 0.")
    return float(epsilon)


# --------------------------------------------------------------------------------------------
# Constants computed with numpy at build time
# --------------------------------------------------------------------------------------------


def relative_position_index(window_size):
    """Index into the ``(2M - 1)^2`` bias table for every (query, key) pair of an M x M window.

    Token ``t = row * M + col``. For a query at ``(r1, c1)`` and a key at ``(r2, c2)`` the
    relative position ``(r1 - r2, c1 - c2)`` lies in ``[-(M - 1), M - 1]^2``; shifted to
    ``[0, 2M - 2]^2`` it is read row-major: ``(r1 - r2 + M - 1) * (2M - 1) + c1 - c2 + M - 1``
    (the reference implementation's ``relative_position_index`` buffer).

    Args:
        window_size: the window side ``M``.

    Returns:
        An int32 numpy array of shape ``(M * M, M * M)`` with values in ``[0, (2M - 1)^2)``.

    Example:
        >>> relative_position_index(2)
        array([[4, 3, 1, 0],
               [5, 4, 2, 1],
               [7, 6, 4, 3],
               [8, 7, 5, 4]], dtype=int32)
    """
    m = check_positive_int("window_size", window_size)
    rows, cols = np.divmod(np.arange(m * m), m)  # (tokens,) each
    d_rows = rows[:, None] - rows[None, :] + m - 1  # (queries, keys) in [0, 2M - 2]
    d_cols = cols[:, None] - cols[None, :] + m - 1
    return (d_rows * (2 * m - 1) + d_cols).astype("int32")


def _partition_numpy(array, window_size):
    """``(H, W)`` -> ``(windows, M * M)``, windows row-major, tokens row-major in each."""
    h, w = array.shape
    m = window_size
    array = array.reshape(h // m, m, w // m, m).transpose(0, 2, 1, 3)
    return array.reshape(-1, m * m)


def shifted_window_mask(height, width, window_size, shift_size):
    """Which tokens may attend to each other inside the windows of a cyclically shifted map.

    After rolling the map by ``-shift_size`` along both axes, the last window row and column
    hold tokens from up to three regions along each axis (the map's bottom/right edge wrapped
    next to its top/left): ``[0, H - M)``, ``[H - M, H - s)`` and ``[H - s, H)`` (and the same
    for the width). Tokens attend only to tokens of their own region (Liu et al. 2021,
    section 3.2, Figure 4; the reference implementation's ``attn_mask``).

    Args:
        height, width: the feature-map size (multiples of ``window_size``).
        window_size: the window side ``M``.
        shift_size: the cyclic shift ``s``; 0 gives all-True masks.

    Returns:
        A boolean numpy array ``(windows, M * M, M * M)``, True = may attend; windows in
        row-major order of the window grid.

    Example:
        >>> shifted_window_mask(4, 4, 2, 1).shape
        (4, 4, 4)
    """
    m, s = window_size, shift_size
    labels = np.zeros((height, width), dtype="int32")
    if s:
        bounds_h = ((0, height - m), (height - m, height - s), (height - s, height))
        bounds_w = ((0, width - m), (width - m, width - s), (width - s, width))
        region = 0
        for h0, h1 in bounds_h:
            for w0, w1 in bounds_w:
                labels[h0:h1, w0:w1] = region
                region += 1
    windows = _partition_numpy(labels, m)  # (windows, tokens)
    return windows[:, :, None] == windows[:, None, :]  # (windows, queries, keys)


def resolve_window(height, width, window_size, shift_size):
    """The window side and shift a block uses on a ``height x width`` map.

    As in the reference implementation, a map not larger than the window (``min(H, W) <= M``)
    is attended as one window of side ``min(H, W)`` without shift; otherwise the given window
    and shift are kept. Both sides must be multiples of the window used.

    Returns:
        ``(window, shift)``.

    Raises:
        ValueError: when the map is not divisible by the window, naming the sizes.
    """
    window, shift = window_size, shift_size
    if min(height, width) <= window_size:
        window, shift = min(height, width), 0
    if height % window or width % window:
        raise ValueError(
            f"a {height}x{width} feature map is not divisible into {window}x{window} windows "
            f"(window_size={window_size}); both sides must be multiples of the window."
        )
    return window, shift


# --------------------------------------------------------------------------------------------
# Tensor helpers (keras.ops, TFLite builtins)
# --------------------------------------------------------------------------------------------


def window_partition(x, window_size):
    """``(batch, H, W, C)`` -> ``(batch, windows, M * M, C)``: non-overlapping M x M windows.

    Windows come in row-major order of the window grid, tokens in row-major order inside each
    window (as the reference ``window_partition``). Built from reshapes and one 4-D transpose:
    folding the window row into the batch and the in-window column into the channels avoids
    the reference's 6-D permutation.

    Example:
        >>> tuple(window_partition(keras.ops.ones((2, 8, 8, 3)), 4).shape)
        (2, 4, 16, 3)
    """
    _, height, width, channels = x.shape
    m = window_size
    rows, cols = height // m, width // m
    # (batch, H, W, C) -> (batch * H/M, M, W/M, M * C): row r of window-row i, window-col j
    x = ops.reshape(x, (-1, m, cols, m * channels))
    x = ops.transpose(x, (0, 2, 1, 3))  # (batch * H/M, W/M, M, M * C)
    return ops.reshape(x, (-1, rows * cols, m * m, channels))  # (batch, windows, M*M, C)


def window_reverse(windows, window_size, height, width):
    """``(batch, windows, M * M, C)`` -> ``(batch, H, W, C)``, the inverse of
    ``window_partition``."""
    channels = windows.shape[-1]
    m = window_size
    cols = width // m
    # (batch, windows, M*M, C) -> (batch * H/M, W/M, M, M * C)
    x = ops.reshape(windows, (-1, cols, m, m * channels))
    x = ops.transpose(x, (0, 2, 1, 3))  # (batch * H/M, M, W/M, M * C)
    return ops.reshape(x, (-1, height, width, channels))


def cyclic_shift(x, shift):
    """Roll a ``(batch, H, W, C)`` map by ``shift`` along height and width.

    The same values as ``keras.ops.roll(x, (shift, shift), axis=(1, 2))`` (element ``i`` moves
    to ``i + shift`` modulo the size), computed as slices and a concatenation per axis because
    ``tf.roll`` has no TFLite builtin.
    """
    for axis in (1, 2):
        size = x.shape[axis]
        k = (-shift) % size  # output starts at input index k
        if k == 0:
            continue
        if axis == 1:
            x = ops.concatenate([x[:, k:], x[:, :k]], axis=1)
        else:
            x = ops.concatenate([x[:, :, k:], x[:, :, :k]], axis=2)
    return x


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="kapps")
class WindowAttention(keras.layers.Layer):
    """Multi-head self-attention inside each window, with a learned relative-position bias.

    For every window separately, ``softmax(Q K^T / sqrt(d) + B) V`` with
    ``B[h, i, j] = table[index[i, j], h]``: the table holds ``(2M - 1)^2`` values per head, one
    per relative offset between two tokens of an ``M x M`` window, and ``index`` is the
    constant ``relative_position_index(M)`` (not a weight). The projections are a
    ``kapps.layers.MultiHeadAttention`` (query/key/value/output, with biases: the same
    ``4 (C^2 + C)`` parameters as the reference's fused ``qkv`` and ``proj``); the attention is
    its ``ScaledDotProductAttention`` (softmax in float32, boolean masks).

    The window side ``M`` is read from the input, ``(batch, windows, M * M, dim)``, at build
    time, so a block can shrink its window to a small feature map (see
    ``SwinTransformerBlock``).

    Args:
        dim: width of the tokens (input and output); must be divisible by ``num_heads``.
        num_heads: attention heads, each of ``dim // num_heads`` features.
        dropout: dropout on the output projection (the reference's ``proj_drop``).
        attention_dropout: dropout on the attention weights.
        use_bias: whether the query/key/value and output projections have biases.
        kernel_initializer: initializer of the projection kernels.
        bias_table_initializer: initializer of the relative-position bias table.
        seed: optional integer seed of the dropouts.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, windows, M * M, dim)`` (see ``window_partition``).
        attention_mask: optional boolean ``(windows, M * M, M * M)`` (or broadcastable to
            ``(batch, windows, heads, M * M, M * M)`` when given with 5 axes), True = may
            attend: ``shifted_window_mask`` for shifted windows.
        return_attention_scores: also return the weights ``(batch, windows, heads, M*M, M*M)``.
        training: dropout only when True.

    Returns:
        ``(batch, windows, M * M, dim)``, or ``(output, scores)``.

    Example:
        >>> attention = WindowAttention(dim=32, num_heads=2)
        >>> tuple(attention(keras.ops.ones((2, 4, 16, 32))).shape)
        (2, 4, 16, 32)

    Paper: Liu et al. 2021, "Swin Transformer: Hierarchical Vision Transformer using Shifted
    Windows", section 3.2 (W-MSA, relative position bias).
    """

    def __init__(
        self,
        dim,
        num_heads,
        dropout=0.0,
        attention_dropout=0.0,
        use_bias=True,
        kernel_initializer=DEFAULT_INITIALIZER,
        bias_table_initializer=DEFAULT_INITIALIZER,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dim = check_positive_int("dim", dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        if dim % num_heads:
            raise ValueError(
                f"dim={dim!r} is not divisible by num_heads={num_heads!r}; each head gets "
                "dim / num_heads features."
            )
        self.dropout = check_rate("dropout", dropout)
        self.attention_dropout = check_rate("attention_dropout", attention_dropout)
        if not isinstance(use_bias, bool):
            raise ValueError(f"use_bias={use_bias!r} is not allowed; expected True or False.")
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_table_initializer = keras.initializers.get(bias_table_initializer)
        self.seed = _check_seed(seed)
        self.attention = MultiHeadAttention(
            num_heads,
            dim // num_heads,
            dropout=self.attention_dropout,
            use_bias=use_bias,
            output_dim=dim,
            kernel_initializer=_fresh(self.kernel_initializer),
            seed=seed,
            dtype=self.dtype_policy,
            name="attention",
        )
        self.output_dropout = keras.layers.Dropout(
            self.dropout,
            seed=None if seed is None else seed + 1,
            dtype=self.dtype_policy,
            name="output_dropout",
        )

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] != self.dim or input_shape[2] is None:
            raise ValueError(
                f"dim={self.dim!r} does not match the input of shape {tuple(input_shape)}; "
                f"expected (batch, windows, window_tokens, {self.dim})."
            )
        tokens = input_shape[2]
        m = math.isqrt(tokens)
        if m * m != tokens:
            raise ValueError(
                f"WindowAttention expects square windows of M*M tokens; received {tokens} "
                f"tokens per window (input shape {tuple(input_shape)})."
            )
        self.window_size = m
        self.bias_table = self.add_weight(
            name="relative_position_bias_table",
            shape=((2 * m - 1) ** 2, self.num_heads),
            initializer=_fresh(self.bias_table_initializer),
        )
        # A constant, not a weight: (M*M * M*M,) indices into the table.
        self.position_index = relative_position_index(m).reshape(-1)
        flat = (None, tokens, self.dim)
        self.attention.build(flat, flat)

    def relative_position_bias(self):
        """The bias ``(heads, M * M, M * M)`` gathered from the table."""
        tokens = self.window_size**2
        bias = ops.take(self.bias_table, self.position_index, axis=0)  # (tokens^2, heads)
        bias = ops.reshape(bias, (tokens, tokens, self.num_heads))
        return ops.transpose(bias, (2, 0, 1))  # (heads, queries, keys)

    def call(self, inputs, attention_mask=None, return_attention_scores=False, training=None):
        mha = self.attention
        windows, tokens = inputs.shape[1], inputs.shape[2]
        heads, depth = self.num_heads, self.dim // self.num_heads
        x = ops.reshape(inputs, (-1, tokens, self.dim))  # (batch * windows, tokens, dim)

        def split(projected):
            # (batch*windows, tokens, heads*depth) -> (batch*windows, heads, tokens, depth)
            # -> (batch, windows, heads, tokens, depth): windows get their own axis so the
            # per-window mask broadcasts over the batch
            return ops.reshape(mha.split_heads(projected), (-1, windows, heads, tokens, depth))

        q = split(mha.project_query(x))
        k = split(mha.project_key(x))
        v = split(mha.project_value(x))
        if attention_mask is not None:
            attention_mask = ops.cast(attention_mask, "bool")
            if len(attention_mask.shape) == 3:
                # (windows, q, k) -> (1, windows, 1, q, k): EXPAND_DIMS, a TFLite builtin
                attention_mask = ops.expand_dims(ops.expand_dims(attention_mask, 1), 0)
        result = mha.attention(
            q,
            k,
            v,
            attention_mask=attention_mask,
            attention_bias=self.relative_position_bias(),
            return_attention_scores=return_attention_scores,
            training=training,
        )
        heads_out, scores = result if return_attention_scores else (result, None)
        # (batch, windows, heads, tokens, depth) -> (batch*windows, heads, tokens, depth)
        heads_out = ops.reshape(heads_out, (-1, heads, tokens, depth))
        merged = mha.merge_heads(heads_out)  # (batch*windows, tokens, dim)
        output = ops.matmul(merged, ops.cast(mha.output_kernel, merged.dtype))
        if mha.output_bias is not None:
            output = output + ops.cast(mha.output_bias, merged.dtype)
        output = self.output_dropout(output, training=training)
        output = ops.reshape(output, (-1, windows, tokens, self.dim))
        return (output, scores) if return_attention_scores else output

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "dim": self.dim,
                "num_heads": self.num_heads,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_table_initializer": keras.initializers.serialize(
                    self.bias_table_initializer
                ),
                "seed": self.seed,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class SwinTransformerBlock(keras.layers.Layer):
    """One Swin block on a ``(batch, H, W, dim)`` map: (shifted-)window attention, then an MLP.

    ``x = x + DropPath(reverse(WindowAttention(partition(shift(LN(x))))))`` and
    ``x = x + DropPath(MLP(LN(x)))`` with ``MLP = Dense(mlp_ratio * dim) -> GELU -> Dense(dim)``
    (pre-LN; section 3.1, eq. 3). With ``shift_size = 0`` the windows are the regular grid
    (W-MSA); with ``shift_size > 0`` (``window_size // 2`` in the paper) the map is rolled by
    ``-shift_size`` first and back afterwards, and a constant mask keeps tokens of different
    regions apart (SW-MSA). Stacks alternate the two.

    The feature-map size must be static. As in the reference implementation, when the map is
    not larger than the window (``min(H, W) <= window_size``) the block attends over one
    window of side ``min(H, W)`` and does not shift (see ``resolve_window``); the window and
    shift in use are ``resolved_window_size`` and ``resolved_shift_size`` after building.

    Args:
        dim: width of the tokens; must be divisible by ``num_heads``.
        num_heads: attention heads.
        window_size: the window side ``M`` (7 in the paper).
        shift_size: the cyclic shift, in ``[0, window_size)``; 0 for W-MSA.
        mlp_ratio: hidden width of the MLP relative to ``dim``.
        dropout: dropout on the attention projection's output and in the MLP (after the GELU
            and after the second dense layer), as the reference implementation.
        attention_dropout: dropout on the attention weights.
        stochastic_depth_rate: probability of dropping each residual branch for an example.
        epsilon: layer-normalization epsilon (PyTorch's default 1e-5, as the reference).
        kernel_initializer: initializer of the kernels (truncated normal, std 0.02).
        seed: optional integer seed of the dropouts and stochastic depth.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, H, W, dim)`` with static ``H`` and ``W``.
        training: dropout and stochastic depth only when True.

    Example:
        >>> block = SwinTransformerBlock(dim=32, num_heads=2, window_size=4, shift_size=2)
        >>> tuple(block(keras.ops.ones((1, 8, 8, 32))).shape)
        (1, 8, 8, 32)

    Paper: Liu et al. 2021, "Swin Transformer", sections 3.1-3.2, Figure 3(b).
    """

    def __init__(
        self,
        dim,
        num_heads,
        window_size=7,
        shift_size=0,
        mlp_ratio=4.0,
        dropout=0.0,
        attention_dropout=0.0,
        stochastic_depth_rate=0.0,
        epsilon=1e-5,
        kernel_initializer=DEFAULT_INITIALIZER,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dim = check_positive_int("dim", dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.window_size = check_positive_int("window_size", window_size)
        if isinstance(shift_size, bool) or not isinstance(shift_size, int) or not (
            0 <= shift_size < window_size
        ):
            raise ValueError(
                f"shift_size={shift_size!r} is not allowed; expected an integer in "
                f"[0, window_size={window_size}) (window_size // 2 in the paper)."
            )
        self.shift_size = shift_size
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or not (
            mlp_ratio > 0
        ):
            raise ValueError(f"mlp_ratio={mlp_ratio!r} is not allowed; expected a number > 0.")
        self.mlp_ratio = float(mlp_ratio)
        self.dropout = check_rate("dropout", dropout)
        self.attention_dropout = check_rate("attention_dropout", attention_dropout)
        self.stochastic_depth_rate = check_rate("stochastic_depth_rate", stochastic_depth_rate)
        self.epsilon = _check_epsilon(epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = _check_seed(seed)
        self.mlp_dim = int(dim * self.mlp_ratio)
        if self.mlp_dim < 1:
            raise ValueError(
                f"mlp_ratio={mlp_ratio!r} gives an MLP of {self.mlp_dim} units for dim={dim}; "
                "expected at least one."
            )

        def seed_at(offset):
            return None if seed is None else seed + offset

        common = {"dtype": self.dtype_policy}
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.epsilon, name="attention_norm", **common
        )
        self.attention = WindowAttention(
            dim,
            num_heads,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            kernel_initializer=_fresh(self.kernel_initializer),
            seed=seed_at(0),
            name="attention",
            **common,
        )
        self.attention_drop_path = StochasticDepth(
            self.stochastic_depth_rate, seed=seed_at(2), name="attention_drop_path", **common
        )
        self.mlp_norm = keras.layers.LayerNormalization(
            epsilon=self.epsilon, name="mlp_norm", **common
        )
        # exact (erf) GELU as PyTorch's nn.GELU in the reference implementation
        self.mlp_dense1 = keras.layers.Dense(
            self.mlp_dim,
            activation="gelu",
            kernel_initializer=_fresh(self.kernel_initializer),
            name="mlp_dense1",
            **common,
        )
        self.mlp_dropout1 = keras.layers.Dropout(
            self.dropout, seed=seed_at(3), name="mlp_dropout1", **common
        )
        self.mlp_dense2 = keras.layers.Dense(
            dim, kernel_initializer=_fresh(self.kernel_initializer), name="mlp_dense2", **common
        )
        self.mlp_dropout2 = keras.layers.Dropout(
            self.dropout, seed=seed_at(4), name="mlp_dropout2", **common
        )
        self.mlp_drop_path = StochasticDepth(
            self.stochastic_depth_rate, seed=seed_at(5), name="mlp_drop_path", **common
        )

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] != self.dim:
            raise ValueError(
                f"dim={self.dim!r} does not match the input of shape {tuple(input_shape)}; "
                f"expected (batch, height, width, {self.dim})."
            )
        height, width = input_shape[1], input_shape[2]
        if height is None or width is None:
            raise ValueError(
                f"SwinTransformerBlock needs a static feature-map size (the shift mask is a "
                f"constant); received shape {tuple(input_shape)}."
            )
        window, shift = resolve_window(height, width, self.window_size, self.shift_size)
        self.resolved_window_size, self.resolved_shift_size = window, shift
        self.shift_mask = (
            shifted_window_mask(height, width, window, shift) if shift else None
        )  # (windows, tokens, tokens) numpy constant
        windows = (height // window) * (width // window)
        self.attention_norm.build(input_shape)
        self.attention.build((None, windows, window * window, self.dim))
        self.mlp_norm.build(input_shape)
        self.mlp_dense1.build(input_shape)
        self.mlp_dense2.build(tuple(input_shape[:-1]) + (self.mlp_dim,))

    def attend(self, inputs, return_attention_scores=False, training=None):
        """The attention branch alone: ``reverse(WindowAttention(partition(shift(LN(x)))))``,
        before stochastic depth (and the scores ``(batch, windows, heads, M*M, M*M)`` of the
        shifted map when asked)."""
        height, width = inputs.shape[1], inputs.shape[2]
        window, shift = self.resolved_window_size, self.resolved_shift_size
        x = self.attention_norm(inputs)
        if shift:
            x = cyclic_shift(x, -shift)
        windows = window_partition(x, window)  # (batch, windows, M*M, dim)
        mask = None if self.shift_mask is None else ops.convert_to_tensor(self.shift_mask)
        result = self.attention(
            windows,
            attention_mask=mask,
            return_attention_scores=return_attention_scores,
            training=training,
        )
        windows, scores = result if return_attention_scores else (result, None)
        x = window_reverse(windows, window, height, width)  # (batch, H, W, dim)
        if shift:
            x = cyclic_shift(x, shift)
        return (x, scores) if return_attention_scores else x

    def call(self, inputs, training=None):
        branch = self.attend(inputs, training=training)
        x = inputs + self.attention_drop_path(branch, training=training)
        h = self.mlp_dropout1(self.mlp_dense1(self.mlp_norm(x)), training=training)
        h = self.mlp_dropout2(self.mlp_dense2(h), training=training)
        return x + self.mlp_drop_path(h, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "dim": self.dim,
                "num_heads": self.num_heads,
                "window_size": self.window_size,
                "shift_size": self.shift_size,
                "mlp_ratio": self.mlp_ratio,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "stochastic_depth_rate": self.stochastic_depth_rate,
                "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "seed": self.seed,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class PatchMerging(keras.layers.Layer):
    """Halve a ``(batch, H, W, C)`` map and double its width: 2x2 neighbours concatenated,
    layer-normalized and projected ``4C -> 2C`` (no bias).

    The four neighbours are concatenated in the reference implementation's order, top-left,
    bottom-left, top-right, bottom-right (``x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2],
    x[1::2, 1::2]``), so its weights carry over. Strided slices and a concatenation: TFLite
    builtins.

    Args:
        dim: channels ``C`` of the input; the output has ``2 * C``.
        epsilon: layer-normalization epsilon.
        kernel_initializer: initializer of the projection.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, H, W, dim)`` with even ``H`` and ``W``.

    Example:
        >>> tuple(PatchMerging(96)(keras.ops.ones((1, 56, 56, 96))).shape)
        (1, 28, 28, 192)

    Paper: Liu et al. 2021, "Swin Transformer", section 3.1 ("Patch merging").
    """

    def __init__(self, dim, epsilon=1e-5, kernel_initializer=DEFAULT_INITIALIZER, **kwargs):
        super().__init__(**kwargs)
        self.dim = check_positive_int("dim", dim)
        self.epsilon = _check_epsilon(epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.norm = keras.layers.LayerNormalization(
            epsilon=self.epsilon, dtype=self.dtype_policy, name="norm"
        )
        self.reduction = keras.layers.Dense(
            2 * dim,
            use_bias=False,
            kernel_initializer=_fresh(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="reduction",
        )

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] != self.dim:
            raise ValueError(
                f"dim={self.dim!r} does not match the input of shape {tuple(input_shape)}; "
                f"expected (batch, height, width, {self.dim})."
            )
        for axis, size in (("height", input_shape[1]), ("width", input_shape[2])):
            if size is not None and size % 2:
                raise ValueError(
                    f"PatchMerging needs an even feature map; its {axis} is {size} (input "
                    f"shape {tuple(input_shape)})."
                )
        merged = tuple(input_shape[:-1]) + (4 * self.dim,)
        self.norm.build(merged)
        self.reduction.build(merged)

    def call(self, inputs):
        x = ops.concatenate(
            [
                inputs[:, 0::2, 0::2],  # top-left of each 2x2 group
                inputs[:, 1::2, 0::2],  # bottom-left
                inputs[:, 0::2, 1::2],  # top-right
                inputs[:, 1::2, 1::2],  # bottom-right
            ],
            axis=-1,
        )  # (batch, H/2, W/2, 4C)
        return self.reduction(self.norm(x))  # (batch, H/2, W/2, 2C)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return (b, None if h is None else h // 2, None if w is None else w // 2, 2 * self.dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "dim": self.dim,
                "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
