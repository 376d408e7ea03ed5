"""Denoising diffusion (Ho, Jain, Abbeel 2020, "Denoising Diffusion Probabilistic Models";
Song, Meng, Ermon 2021, "Denoising Diffusion Implicit Models"): the noise schedule, one step
of each sampler, and the layers of the noise-predicting U-Net.

The forward process adds Gaussian noise in ``T`` small steps of variance ``beta_t``; with
``alpha_t = 1 - beta_t`` and ``alpha_bar_t = prod_{s <= t} alpha_s`` any step is reachable
in one draw (Ho et al. eq. 4)::

    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,    eps ~ N(0, I)    (q_sample)

A network ``eps_theta(x_t, t)`` learns to predict ``eps``; the samplers run the process
backwards from ``x_T ~ N(0, I)``:

- ``ancestral_step``: Algorithm 2 of Ho et al., one step per ``t`` (all ``T`` of them);
- ``ddim_step``: eq. 12 of Song et al., between any two timesteps, so a sampler can visit only
  ``steps << T`` of them (``ddim_timesteps``); ``eta`` scales its noise from 0 (deterministic)
  to 1 (the DDPM posterior's variance).

Both clip the predicted ``x_0`` to ``[-1, 1]`` by default, as Ho et al.'s code does
(``clip_denoised=True``): the data lie there, and early predictions from pure noise
overshoot. Timesteps are 0-based here (``t = 0 .. T-1``), the paper's ``t = 1 .. T``
shifted by one, as in the official code.

Layers (all TFLite builtin ops): ``TimestepEmbedding`` (sinusoidal encoding and a 2-layer
MLP), ``GroupNorm`` (``keras.layers.GroupNormalization``'s computation in fewer graph ops),
``DiffusionResBlock`` (a residual block with the time embedding added in the middle),
``DiffusionAttention`` (single-head self-attention over all positions) and ``DDIMSampler``
(a fixed number of deterministic DDIM steps unrolled in one graph, for phones).
"""

import copy

import keras
import numpy as np
from keras import ops

from kapps._checks import check_bool, check_epsilon, check_positive_int, check_rate
from kapps.layers.mbconv import _check_seed, swish

#: Ho et al.'s code initialises the layers that end a residual branch (the second conv of a
#: block, the attention's output projection, the final conv) with ``init_scale=0``, which it
#: implements as variance scaling 1e-10 (``diffusion_tf/nn.py``, ``default_init``): the
#: network starts as (almost) the identity, yet gradients reach every weight.
ZERO_INIT_SCALE = 1e-10

#: Ho et al.'s GroupNorm (``tf.contrib.layers.group_norm``): 32 groups, epsilon 1e-6.
MAX_GROUPS = 32
GROUP_NORM_EPSILON = 1e-6


def near_zero_initializer():
    """Ho et al.'s ``init_scale=0`` initializer: variance scaling (fan_avg, uniform) with scale
    ``ZERO_INIT_SCALE``; the other layers use scale 1, which is Keras' ``glorot_uniform``."""
    return keras.initializers.VarianceScaling(
        scale=ZERO_INIT_SCALE, mode="fan_avg", distribution="uniform"
    )


def group_count(channels, max_groups=MAX_GROUPS):
    """The GroupNorm group count for ``channels``: the largest divisor of ``channels`` that is
    at most ``max_groups`` (32, Ho et al.) and leaves at least 4 channels per group (the
    narrowest groups of Ho et al.'s model, 128 channels in 32 groups): 128 and wider -> 32,
    64 -> 16, 32 -> 8, 48 -> 12, 8 -> 2, 3 -> 1."""
    channels = int(channels)
    for groups in range(max(1, min(int(max_groups), channels // 4)), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


# -- the noise schedule and the sampler steps ----------------------------------------------


def linear_beta_schedule(timesteps=1000, beta_start=1e-4, beta_end=0.02):
    """The schedule of Ho et al. (section 4): ``beta_t`` linear from ``beta_start`` to
    ``beta_end`` over ``timesteps`` steps, with ``alpha_t = 1 - beta_t`` and ``alpha_bar_t =
    prod_{s <= t} alpha_s``, computed in float64 (as the official code).

    Args:
        timesteps: ``T`` (1000 in the paper).
        beta_start: ``beta_1`` (1e-4).
        beta_end: ``beta_T`` (0.02).

    Returns:
        A dict of float64 numpy arrays of shape ``(timesteps,)``: ``betas``, ``alphas``,
        ``alpha_bars``.

    Raises:
        ValueError: unless ``timesteps`` is a positive int and ``0 < beta_start <= beta_end
            < 1``.

    Example:
        >>> schedule = linear_beta_schedule()
        >>> round(float(schedule["alpha_bars"][-1]), 6)  # x_T is almost pure noise
        4e-05
    """
    check_positive_int("timesteps", timesteps)
    check_betas(beta_start, beta_end)
    betas = np.linspace(beta_start, beta_end, timesteps, dtype=np.float64)
    alphas = 1.0 - betas
    return {"betas": betas, "alphas": alphas, "alpha_bars": np.cumprod(alphas)}


def check_betas(beta_start, beta_end):
    """Raise unless ``0 < beta_start <= beta_end < 1``; return them as floats."""
    for name, value in (("beta_start", beta_start), ("beta_end", beta_end)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(f"{name}={value!r} is not allowed; expected a number in (0, 1).")
    if beta_start > beta_end:
        raise ValueError(
            f"beta_start={beta_start!r} is not allowed with beta_end={beta_end!r}; expected "
            "beta_start <= beta_end (the noise grows along the chain)."
        )
    return float(beta_start), float(beta_end)


def ddim_timesteps(timesteps, steps):
    """The timesteps a ``steps``-step DDIM sampler visits, increasing: ``0, c, 2c, ...,
    (steps - 1) c`` with ``c = timesteps // steps`` (Song et al.'s "linear" skip, section
    D.2; ``steps = timesteps`` visits every step).

    Raises:
        ValueError: unless ``1 <= steps <= timesteps``.
    """
    check_positive_int("timesteps", timesteps)
    check_steps(steps, timesteps)
    return np.arange(steps, dtype=np.int64) * (timesteps // steps)


def check_steps(steps, timesteps):
    """Raise unless ``steps`` is an int in ``[1, timesteps]``; return it."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not (
        1 <= steps <= timesteps
    ):
        raise ValueError(
            f"steps={steps!r} is not allowed; expected an integer in [1, {timesteps}] (the "
            "model's number of diffusion timesteps)."
        )
    return int(steps)


def check_eta(eta):
    """Raise unless ``eta`` is a number in ``[0, 1]``; return it as a float."""
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 <= eta <= 1:
        raise ValueError(
            f"eta={eta!r} is not allowed; expected a number in [0, 1] (0: deterministic DDIM, "
            "1: the DDPM posterior variance)."
        )
    return float(eta)


def q_sample(x0, alpha_bar, noise):
    """Ho et al. eq. 4: ``sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) noise``; ``alpha_bar``
    broadcasts against ``x0`` (``(batch, 1, 1, 1)`` for a batch of images)."""
    alpha_bar = ops.cast(alpha_bar, x0.dtype)
    return ops.sqrt(alpha_bar) * x0 + ops.sqrt(1.0 - alpha_bar) * noise


def predict_x0(x_t, eps, alpha_bar, clip_denoised=True):
    """The clean image implied by a noise prediction, inverting eq. 4: ``(x_t - sqrt(1 -
    alpha_bar) eps) / sqrt(alpha_bar)``, clipped to ``[-1, 1]`` when ``clip_denoised``."""
    alpha_bar = ops.cast(alpha_bar, x_t.dtype)
    x0 = (x_t - ops.sqrt(1.0 - alpha_bar) * eps) / ops.sqrt(alpha_bar)
    return ops.clip(x0, -1.0, 1.0) if clip_denoised else x0


def ancestral_step(x_t, eps, beta, alpha_bar, alpha_bar_prev, noise=None, clip_denoised=True):
    """One step of Ho et al.'s Algorithm 2 with ``sigma_t^2 = beta_t``: ``x_t -> x_{t-1}``.

    Written as the official code computes it: the mean of the posterior ``q(x_{t-1} | x_t,
    x_0)`` (eq. 7) at the predicted ``x_0``, ``beta_t sqrt(alpha_bar_prev) / (1 - alpha_bar)
    x_0 + sqrt(alpha_t) (1 - alpha_bar_prev) / (1 - alpha_bar) x_t``, plus ``sqrt(beta_t)
    noise``. Without clipping that mean equals Algorithm 2's ``(x_t - beta_t / sqrt(1 -
    alpha_bar) eps) / sqrt(alpha_t)`` exactly; with clipping, ``x_0`` is clipped first.

    Args:
        x_t: ``(batch, H, W, C)``.
        eps: the predicted noise, like ``x_t``.
        beta, alpha_bar: ``beta_t`` and ``alpha_bar_t``, broadcastable to ``x_t``.
        alpha_bar_prev: ``alpha_bar_{t-1}`` (1 at the last step, ``t = 0``).
        noise: ``z ~ N(0, I)`` like ``x_t``, or None for none (the last step adds none).
        clip_denoised: clip the predicted ``x_0`` to ``[-1, 1]``.

    Returns:
        ``x_{t-1}``.
    """
    dtype = x_t.dtype
    beta, alpha_bar, alpha_bar_prev = (
        ops.cast(v, dtype) for v in (beta, alpha_bar, alpha_bar_prev)
    )
    x0 = predict_x0(x_t, eps, alpha_bar, clip_denoised)
    mean = (beta * ops.sqrt(alpha_bar_prev) / (1.0 - alpha_bar)) * x0 + (
        ops.sqrt(1.0 - beta) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    ) * x_t
    return mean if noise is None else mean + ops.sqrt(beta) * noise


def ddim_step(x_t, eps, alpha_bar, alpha_bar_prev, eta=0.0, noise=None, clip_denoised=True):
    """One DDIM step (Song et al. eq. 12) from timestep ``t`` to an earlier ``prev``::

        x_prev = sqrt(alpha_bar_prev) x0 + sqrt(1 - alpha_bar_prev - sigma^2) eps + sigma z
        sigma = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar))
                    sqrt(1 - alpha_bar / alpha_bar_prev)

    (eq. 16). ``eta = 0`` is deterministic; ``eta = 1`` with ``prev = t - 1`` is DDPM
    ancestral sampling with the posterior variance ``sigma^2 = tilde beta_t``. With
    ``clip_denoised`` the predicted ``x0`` is clipped to ``[-1, 1]`` and ``eps`` recomputed
    from the clipped ``x0`` (as guided-diffusion's ``ddim_sample``), so the two terms stay
    consistent.

    Args:
        x_t: ``(batch, H, W, C)``.
        eps: the predicted noise, like ``x_t``.
        alpha_bar, alpha_bar_prev: ``alpha_bar`` at ``t`` and at ``prev`` (1 after the last
            step), broadcastable to ``x_t``.
        eta: the noise scale, a float or a scalar tensor.
        noise: ``z ~ N(0, I)`` like ``x_t``; None for none (fine when ``eta = 0``).
        clip_denoised: clip the predicted ``x0`` to ``[-1, 1]``.

    Returns:
        ``x_prev``.
    """
    dtype = x_t.dtype
    alpha_bar, alpha_bar_prev = ops.cast(alpha_bar, dtype), ops.cast(alpha_bar_prev, dtype)
    x0 = predict_x0(x_t, eps, alpha_bar, clip_denoised)
    if clip_denoised:
        eps = (x_t - ops.sqrt(alpha_bar) * x0) / ops.sqrt(1.0 - alpha_bar)
    sigma = ops.cast(eta, dtype) * ops.sqrt(
        (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev)
    )
    # max(., 0): rounding can make 1 - alpha_bar_prev - sigma^2 a hair negative at eta = 1
    direction = ops.sqrt(ops.maximum(1.0 - alpha_bar_prev - ops.square(sigma), 0.0)) * eps
    x_prev = ops.sqrt(alpha_bar_prev) * x0 + direction
    return x_prev if noise is None else x_prev + sigma * noise


def timestep_encoding(timesteps, dim, max_wavelength=10000.0):
    """The Transformer's sinusoidal encoding (Vaswani et al. 2017, section 3.5) of one
    timestep per example: ``[t, 2i] -> sin(t / max_wavelength^(2i/dim))``, ``[t, 2i+1] ->
    cos(...)``; row ``t`` of ``kapps.layers.sinusoidal_encoding``, for a batch of ``t``.

    Args:
        timesteps: ``(batch,)`` integers (or floats).
        dim: number of features.
        max_wavelength: the base 10000.

    Returns:
        ``(batch, dim)`` float32.
    """
    features = np.arange(dim)
    # 1 / max_wavelength^(2i/dim) for features 2i and 2i+1: (dim,), a constant
    rates = np.power(float(max_wavelength), -2.0 * (features // 2) / dim).astype("float32")
    # (batch, 1) * (1, dim) -> (batch, dim)
    angles = ops.expand_dims(ops.cast(timesteps, "float32"), 1) * ops.expand_dims(
        ops.convert_to_tensor(rates), 0
    )
    return ops.where(ops.convert_to_tensor(features % 2 == 0), ops.sin(angles), ops.cos(angles))


# -- U-Net layers -------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="kapps")
class TimestepEmbedding(keras.layers.Layer):
    """Embed diffusion timesteps: sinusoidal encoding, ``Dense(units)``, swish, ``Dense(units)``.

    Ho et al.'s ``temb`` (appendix B: "Diffusion time t is specified by adding the Transformer
    sinusoidal position embedding into each residual block"): ``dim`` sinusoidal features of
    ``t`` (``timestep_encoding``) through a 2-layer MLP of width ``units`` (4 x the base
    width in the paper's U-Net). Each residual block applies swish and its own Dense to the
    result. The official code lays the sinusoid out as ``[sin..., cos...]`` with frequencies
    ``10000^(-i / (dim/2 - 1))``; this layer uses the Transformer's interleaved formula, which
    differs by a feature permutation (absorbed by the first Dense) and slightly different
    frequencies.

    Args:
        dim: number of sinusoidal features (the U-Net's base width).
        units: width of the MLP (4 x ``dim`` in the paper).
        max_wavelength: base of the sinusoid (10000).
        **kwargs: standard layer arguments.

    Call arguments:
        timesteps: ``(batch,)`` int timesteps.

    Returns:
        ``(batch, units)``.

    Example:
        >>> embed = TimestepEmbedding(32, 128)
        >>> tuple(embed(np.array([0, 999], "int32")).shape)
        (2, 128)

    Paper: Ho, Jain, Abbeel 2020, "Denoising Diffusion Probabilistic Models", appendix B;
    Vaswani et al. 2017, section 3.5.
    """

    def __init__(self, dim, units, max_wavelength=10000.0, **kwargs):
        super().__init__(**kwargs)
        self.dim = check_positive_int("dim", dim)
        self.units = check_positive_int("units", units)
        self.max_wavelength = check_epsilon(max_wavelength, "max_wavelength")
        self.dense0 = keras.layers.Dense(units, dtype=self.dtype_policy, name="dense0")
        self.dense1 = keras.layers.Dense(units, dtype=self.dtype_policy, name="dense1")

    def build(self, input_shape):
        self.dense0.build((None, self.dim))
        self.dense1.build((None, self.units))

    def call(self, timesteps):
        x = timestep_encoding(timesteps, self.dim, self.max_wavelength)
        x = ops.cast(x, self.compute_dtype)
        return self.dense1(swish(self.dense0(x)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update({"dim": self.dim, "units": self.units, "max_wavelength": self.max_wavelength})
        return config


@keras.saving.register_keras_serializable(package="kapps")
class GroupNorm(keras.layers.Layer):
    """Group normalization of ``(batch, H, W, C)`` feature maps: the channels are split into
    ``groups`` groups; each group of each example is normalised to zero mean and unit
    variance over its positions and channels, then scaled and shifted per channel.

    The same computation and weights (``gamma``, ``beta``) as
    ``keras.layers.GroupNormalization(groups, epsilon=epsilon)`` on channels-last maps, in
    fewer graph ops (about 15 instead of 40: static shapes, the group moments on a
    ``(batch, H*W, groups, C/groups)`` view, scale and shift folded into one multiply-add).
    A denoising U-Net holds dozens of these and a DDIM sampler unrolls the U-Net once per
    step, so graph tracing, TFLite conversion and the graph size all scale with it. The 4-D
    view also keeps every tensor within TFLite's (and its GPU delegate's) 4 dimensions.

    Args:
        groups: number of groups; must divide the channels (``group_count`` picks one).
        epsilon: added to the variance (1e-6, Ho et al.'s ``tf.contrib`` GroupNorm).
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, H, W, C)``.

    Example:
        >>> norm = GroupNorm(8)
        >>> tuple(norm(np.ones((2, 4, 4, 16), "float32")).shape)
        (2, 4, 4, 16)

    Paper: Wu and He 2018, "Group Normalization".
    """

    def __init__(self, groups=MAX_GROUPS, epsilon=GROUP_NORM_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.groups = check_positive_int("groups", groups)
        self.epsilon = check_epsilon(epsilon)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"GroupNorm expects (batch, H, W, C) with known C; received shape "
                f"{tuple(input_shape)}."
            )
        channels = input_shape[-1]
        if channels % self.groups:
            raise ValueError(
                f"groups={self.groups!r} does not divide the input's {channels} channels."
            )
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

    def call(self, inputs):
        _, height, width, channels = inputs.shape
        if height is None or width is None:
            height, width = ops.shape(inputs)[1], ops.shape(inputs)[2]
        size = channels // self.groups
        # (batch, H, W, C) -> (batch, H*W, groups, C/groups): one group per slice of axis 2
        x = ops.reshape(ops.cast(inputs, "float32"), (-1, height * width, self.groups, size))
        mean = ops.mean(x, axis=(1, 3), keepdims=True)  # (batch, 1, groups, 1)
        variance = ops.mean(ops.square(x - mean), axis=(1, 3), keepdims=True)
        # x * gamma / std + (beta - mean * gamma / std): one multiply-add on the full map
        scale = ops.rsqrt(variance + self.epsilon) * ops.reshape(
            ops.cast(self.gamma, "float32"), (1, 1, self.groups, size)
        )
        beta = ops.reshape(ops.cast(self.beta, "float32"), (1, 1, self.groups, size))
        shift = beta - mean * scale
        x = ops.reshape(x * scale + shift, (-1, height, width, channels))  # back to the grid
        return ops.cast(x, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"groups": self.groups, "epsilon": self.epsilon})
        return config


def _group_norm(channels, name, dtype):
    return GroupNorm(group_count(channels), GROUP_NORM_EPSILON, dtype=dtype, name=name)


def _conv(filters, kernel_size, name, dtype, initializer="glorot_uniform"):
    return keras.layers.Conv2D(
        filters, kernel_size, padding="same", kernel_initializer=initializer, dtype=dtype,
        name=name,
    )


@keras.saving.register_keras_serializable(package="kapps")
class DiffusionResBlock(keras.layers.Layer):
    """A residual block conditioned on the timestep (Ho et al.'s ``resnet_block``).

    ``h = conv1(swish(GroupNorm(x))) + Dense(swish(temb))`` (one bias per channel, broadcast
    over the positions), ``h = conv2(dropout(swish(GroupNorm(h))))``, output ``x + h``; when
    the channel count changes, ``x`` goes through a 1x1 convolution (``shortcut``, the code's
    ``nin_shortcut``) first. 3x3 convolutions, ``same`` padding; ``conv2`` starts near zero
    (``ZERO_INIT_SCALE``), so the block starts as (almost) the identity.

    Args:
        filters: output channels.
        dropout: dropout rate before ``conv2`` (0.1 for CIFAR-10 in the paper).
        seed: optional integer seed of the dropout.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, H, W, channels)``.
        temb: ``(batch, temb_dim)``, the output of ``TimestepEmbedding``.
        training: dropout only when True.

    Returns:
        ``(batch, H, W, filters)``.

    Example:
        >>> block = DiffusionResBlock(64)
        >>> tuple(block(np.zeros((2, 8, 8, 32), "float32"), np.zeros((2, 128), "float32")).shape)
        (2, 8, 8, 64)

    Paper: Ho, Jain, Abbeel 2020, appendix B (PixelCNN++-style residual blocks with group
    normalization; ``diffusion_tf/models/unet.py``).
    """

    def __init__(self, filters, dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.dropout = check_rate("dropout", dropout)
        self.seed = _check_seed(seed)
        dtype = self.dtype_policy
        # norm1 and shortcut depend on the input's channels: created in build
        self.norm1 = None
        self.shortcut = None
        self.conv1 = _conv(filters, 3, "conv1", dtype)
        self.temb_proj = keras.layers.Dense(filters, dtype=dtype, name="temb_proj")
        self.norm2 = _group_norm(filters, "norm2", dtype)
        self.drop = keras.layers.Dropout(dropout, seed=seed, dtype=dtype, name="dropout")
        self.conv2 = _conv(filters, 3, "conv2", dtype, near_zero_initializer())

    def build(self, inputs_shape, temb_shape):
        channels = inputs_shape[-1]
        # the first norm sees the input's channels, which may differ from `filters`
        self.norm1 = _group_norm(channels, "norm1", self.dtype_policy)
        self.norm1.build(inputs_shape)
        self.conv1.build(inputs_shape)
        self.temb_proj.build(temb_shape)
        out_shape = (*inputs_shape[:-1], self.filters)
        self.norm2.build(out_shape)
        self.conv2.build(out_shape)
        if channels != self.filters:
            self.shortcut = _conv(self.filters, 1, "shortcut", self.dtype_policy)
            self.shortcut.build(inputs_shape)

    def call(self, inputs, temb, training=None):
        h = self.conv1(swish(self.norm1(inputs)))
        t = self.temb_proj(swish(temb))
        # (batch, filters) -> (batch, 1, 1, filters): one bias per channel at every position
        h = h + ops.expand_dims(ops.expand_dims(t, 1), 1)
        h = self.drop(swish(self.norm2(h)), training=training)
        h = self.conv2(h)
        x = inputs if self.shortcut is None else self.shortcut(inputs)
        return x + h

    def compute_output_shape(self, inputs_shape, temb_shape):
        return (*inputs_shape[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "dropout": self.dropout, "seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package="kapps")
class DiffusionAttention(keras.layers.Layer):
    """Single-head self-attention over all ``H x W`` positions, with a residual connection
    (Ho et al.'s ``attn_block``).

    ``h = GroupNorm(x)``; queries, keys and values are 1x1 convolutions of ``h`` to the same
    ``C`` channels (computed as one convolution to ``3C``, ``qkv``, and split: the same
    parameters as the official code's three); every position attends to every other,
    ``softmax(q k^T / sqrt(C)) v``; a last 1x1 convolution (``proj_out``, starting near zero)
    and ``x + h``. Runs as reshapes and batched matrix products (TFLite builtins).

    Args:
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, H, W, C)`` with known ``H``, ``W``, ``C``.

    Returns:
        ``(batch, H, W, C)``.

    Example:
        >>> attention = DiffusionAttention()
        >>> tuple(attention(np.zeros((2, 8, 8, 64), "float32")).shape)
        (2, 8, 8, 64)

    Paper: Ho, Jain, Abbeel 2020, appendix B ("self-attention block at the 16 x 16
    resolution"); Wang et al. 2018, "Non-local Neural Networks".
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # every sublayer's width is the input's channel count: created in build
        self.norm = self.qkv = self.proj_out = None

    def build(self, input_shape):
        if len(input_shape) != 4 or None in tuple(input_shape[1:]):
            raise ValueError(
                f"DiffusionAttention expects (batch, H, W, C) with known H, W and C; received "
                f"shape {tuple(input_shape)}."
            )
        channels = input_shape[-1]
        dtype = self.dtype_policy
        self.norm = _group_norm(channels, "norm", dtype)
        self.norm.build(input_shape)
        self.qkv = _conv(3 * channels, 1, "qkv", dtype)
        self.qkv.build(input_shape)
        self.proj_out = _conv(channels, 1, "proj_out", dtype, near_zero_initializer())
        self.proj_out.build(input_shape)

    def call(self, inputs):
        _, height, width, channels = inputs.shape
        # (batch, H, W, 3C) -> (batch, H*W, 3C): one row per position
        qkv = ops.reshape(self.qkv(self.norm(inputs)), (-1, height * width, 3 * channels))
        q, k, v = ops.split(qkv, 3, axis=-1)  # each (batch, HW, C)
        # (batch, HW, C) x (batch, C, HW) -> (batch, HW, HW): every position scores every other
        scores = ops.matmul(q, ops.transpose(k, (0, 2, 1))) * ops.cast(channels ** -0.5, q.dtype)
        weights = ops.softmax(ops.cast(scores, "float32"), axis=-1)
        h = ops.matmul(ops.cast(weights, v.dtype), v)  # (batch, HW, C)
        h = ops.reshape(h, (-1, height, width, channels))  # back to the grid
        return inputs + self.proj_out(h)

    def compute_output_shape(self, input_shape):
        return input_shape


# -- sampling in one graph -----------------------------------------------------------------


@keras.saving.register_keras_serializable(package="kapps")
class DDIMSampler(keras.layers.Layer):
    """Deterministic DDIM sampling (``eta = 0``) with a fixed number of steps, unrolled in one
    graph: noise ``x_T`` in, images in ``[0, 1]`` out.

    Runs ``denoiser`` at each of the ``steps`` timesteps of ``ddim_timesteps(num_timesteps,
    steps)``, from the last to 0, with ``ddim_step`` in between (Song et al. eq. 12, the
    predicted ``x0`` clipped to ``[-1, 1]`` when ``clip_denoised``), then maps ``[-1, 1]`` to
    ``[0, 1]``. The loop is unrolled (``steps`` copies of the denoiser's ops that share its
    weights), so the model converts to TFLite with builtin ops only: a phone runs the whole
    sampler as one call. The schedule constants are folded in as float32.

    Args:
        denoiser: a model from ``(noisy_images, timesteps)`` to the predicted noise
            (``ddpm_unet``); its weights are shared, not copied.
        steps: number of denoiser evaluations (1 .. ``num_timesteps``).
        num_timesteps: ``T`` of the schedule the denoiser was trained with.
        beta_start, beta_end: that schedule's linear betas.
        clip_denoised: clip the predicted ``x0`` at every step.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, H, W, C)`` standard normal noise.

    Returns:
        ``(batch, H, W, C)`` images in ``[0, 1]``.

    Example:
        >>> sampler = DDIMSampler(denoiser, steps=10)
        >>> images = sampler(np.random.standard_normal((4, 28, 28, 1)).astype("float32"))

    Paper: Song, Meng, Ermon 2021, "Denoising Diffusion Implicit Models", eq. 12 and section
    4.2 (accelerated generation).
    """

    def __init__(self, denoiser, steps=10, num_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                 clip_denoised=True, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(denoiser, keras.Model):
            raise ValueError(
                f"denoiser={denoiser!r} is not allowed; expected a keras.Model from "
                "(noisy_images, timesteps) to the predicted noise."
            )
        self.denoiser = denoiser
        self.num_timesteps = check_positive_int("num_timesteps", num_timesteps)
        self.steps = check_steps(steps, num_timesteps)
        self.beta_start, self.beta_end = check_betas(beta_start, beta_end)
        self.clip_denoised = check_bool("clip_denoised", clip_denoised)
        alpha_bars = linear_beta_schedule(num_timesteps, beta_start, beta_end)["alpha_bars"]
        self._alpha_bars = alpha_bars.astype("float32")
        self._timesteps = [int(t) for t in ddim_timesteps(num_timesteps, steps)]

    def build(self, input_shape):
        if not self.denoiser.built:
            self.denoiser.build([input_shape, (input_shape[0],)])

    def call(self, inputs):
        x = inputs
        # (batch,) of one timestep, for the denoiser's per-example timestep input
        ones = ops.ones_like(x[:, 0, 0, 0], dtype="int32")
        for i in reversed(range(len(self._timesteps))):
            t = self._timesteps[i]
            eps = self.denoiser([x, ones * t], training=False)
            alpha_bar = self._alpha_bars[t]
            alpha_bar_prev = self._alpha_bars[self._timesteps[i - 1]] if i > 0 else np.float32(1.0)
            x = ddim_step(x, eps, alpha_bar, alpha_bar_prev, 0.0, None, self.clip_denoised)
        return ops.clip((x + 1.0) * 0.5, 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "denoiser": keras.saving.serialize_keras_object(self.denoiser),
                "steps": self.steps,
                "num_timesteps": self.num_timesteps,
                "beta_start": self.beta_start,
                "beta_end": self.beta_end,
                "clip_denoised": self.clip_denoised,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # deserializing pops keys from the nested dict: work on a copy, leave the caller's
        denoiser = copy.deepcopy(config["denoiser"])
        config["denoiser"] = keras.saving.deserialize_keras_object(denoiser)
        return cls(**config)
