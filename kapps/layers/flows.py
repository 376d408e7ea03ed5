"""Normalizing-flow layers of RealNVP (Dinh, Sohl-Dickstein and Bengio 2017, "Density
estimation using Real NVP"): invertible maps with a cheap log-determinant of the Jacobian.

Every bijection here has the same interface:

- ``forward(x) -> (y, log_det)``: ``log_det`` is ``log |det dy/dx|`` per example, shape
  ``(batch,)``;
- ``inverse(y) -> x``: the exact inverse of ``forward``;
- ``call(inputs, inverse=False)``: ``forward`` (returning the pair) or, with ``inverse=True``,
  ``inverse`` (returning the tensor), so a functional model can run either direction and
  share the weights.

The layers:

- ``LogitTransform``: images in ``[0, 1]`` to the logit space the flow models (section 4.1),
  with the dequantisation offset;
- ``Squeeze2D`` (``squeeze2d`` / ``unsqueeze2d``): ``2 x 2 x c`` blocks to ``1 x 1 x 4c``
  (section 3.6);
- ``AffineCoupling``: ``y = x * exp(s) + t`` on the half of the variables that a checkerboard
  or channel mask leaves free (sections 3.3 and 3.4), ``s`` and ``t`` from a
  ``CouplingResNet``;
- ``MultiScaleFlow``: the multi-scale architecture of section 3.6.

Normalisation choice. The paper's ``s``/``t`` ResNets use batch normalization and weight
normalization, and it also puts batch normalization on the coupling outputs, with running
averages and its own log-determinant term (section 3.7, appendix E). Batch statistics make a
flow's training-mode map differ from its inference-mode map (and depend on the other examples
of the batch), so the density trained is not exactly the one evaluated, and the exact-inverse
property holds only in inference mode. Here the ``s``/``t`` networks are plain convolutions
without normalization: ``forward`` and ``inverse`` are the same deterministic maps in training
and inference, with no extra log-determinant terms. The networks start close to zero output
(small last-layer weights), so every coupling starts near the identity, and ``s`` is bounded
by ``tanh`` (section 4.1), which together keep the small flows used here trainable with Adam.
Weight normalization (a deterministic reparameterisation, the other half of the paper's
choice) was tried and left out: it doubled the number of graph operations per convolution,
and with it the time to trace, export and convert these flows, which the test suite pays.
"""

import math

import keras
import numpy as np
from keras import ops

from kapps._checks import check_bool, check_choice, check_positive_int

MASKS = ("checkerboard", "channel")


def _check_open_interval(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < high:
        raise ValueError(
            f"{name}={value!r} is not allowed; expected a number in ({low:g}, {high:g})."
        )
    return float(value)


def check_non_negative_int(name, value):
    """Raise unless ``value`` is an int >= 0 (bools are refused); return it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}={value!r} is not allowed; expected an integer >= 0.")
    return value


def _per_example_sum(x):
    """Sum over every axis but the first: ``(batch, ...) -> (batch,)``."""
    return ops.sum(x, axis=tuple(range(1, len(x.shape))))


def squeeze2d(x):
    """RealNVP's squeeze (section 3.6): each ``2 x 2 x c`` block becomes ``1 x 1 x 4c``.

    Output channel ``(2 * dy + dx) * c + k`` holds input pixel ``(2i + dy, 2j + dx)``,
    channel ``k`` (the order of ``tf.nn.space_to_depth``). So after a squeeze the first half
    of the channels is the top row of every block and the second half the bottom row: the
    channel masks that follow split the variables differently from the checkerboard masks
    before (section 3.6, Figure 3).

    Args:
        x: ``(batch, height, width, channels)`` with even height and width.

    Returns:
        ``(batch, height / 2, width / 2, 4 * channels)``.
    """
    _, height, width, channels = x.shape
    # (batch, H/2, dy, W/2, dx, C): split each spatial axis into blocks of 2
    x = ops.reshape(x, (-1, height // 2, 2, width // 2, 2, channels))
    # (batch, H/2, W/2, dy, dx, C): the block offsets next to the channels
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, height // 2, width // 2, 4 * channels))


def unsqueeze2d(y):
    """The inverse of ``squeeze2d``: ``(batch, h, w, 4c) -> (batch, 2h, 2w, c)``."""
    _, height, width, channels = y.shape
    # (batch, h, w, dy, dx, c)
    y = ops.reshape(y, (-1, height, width, 2, 2, channels // 4))
    # (batch, h, dy, w, dx, c)
    y = ops.transpose(y, (0, 1, 3, 2, 4, 5))
    return ops.reshape(y, (-1, 2 * height, 2 * width, channels // 4))


def checkerboard_mask(height, width, reverse=False):
    """The checkerboard mask ``b`` of section 3.4 as a ``(1, height, width, 1)`` float32
    numpy array: 1 where the sum of the spatial coordinates is odd (the pixels the coupling
    conditions on and leaves unchanged), 0 elsewhere; ``reverse`` swaps the two."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    mask = ((rows + cols) % 2 == 1).astype("float32")
    if reverse:
        mask = 1.0 - mask
    return mask.reshape(1, height, width, 1)


#: initializer of the s/t networks' last convolution: outputs about 0.01 of the hidden
#: activations' size whatever the width, so every coupling starts close to the identity
_OUTPUT_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1e-4, "mode": "fan_in", "distribution": "truncated_normal"},
}


@keras.saving.register_keras_serializable(package="kapps")
class CouplingResNet(keras.layers.Layer):
    """The ``s`` and ``t`` network of a coupling layer: a small residual convolutional net.

    ``conv_in`` (3x3, ``filters``), then ``num_res_blocks`` residual blocks ``x + conv2(relu(
    conv1(relu(x))))`` (3x3, ``filters``), then ``relu`` and ``conv_out`` (3x3,
    ``output_channels``). Plain convolutions without normalization (see
    ``kapps.layers.flows`` for why). ``conv_out`` starts with small random weights (outputs
    about 1% of its inputs' size), so every coupling starts close to the identity, which a
    deep flow needs to train; not zero, so gradients reach every weight from the first step.

    Args:
        filters: feature maps of the hidden convolutions.
        num_res_blocks: residual blocks (0: ``conv_in``, ``relu``, ``conv_out``).
        output_channels: channels of the output (``2 x`` the transformed channels: ``s`` and
            ``t``).
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``.

    Returns:
        ``(batch, height, width, output_channels)``.

    Example:
        >>> net = CouplingResNet(16, 2, output_channels=4)
        >>> tuple(net(keras.ops.ones((2, 8, 8, 3))).shape)
        (2, 8, 8, 4)

    Paper: Dinh et al. 2017, "Density estimation using Real NVP", section 4.1 (deep
    convolutional residual networks for ``s`` and ``t``).
    """

    def __init__(self, filters, num_res_blocks, output_channels, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.num_res_blocks = check_non_negative_int("num_res_blocks", num_res_blocks)
        self.output_channels = check_positive_int("output_channels", output_channels)

        def conv(width, name, initializer="he_normal"):
            return keras.layers.Conv2D(
                width, 3, padding="same", kernel_initializer=initializer,
                dtype=self.dtype_policy, name=name,
            )

        self.conv_in = conv(filters, "conv_in")
        # two flat lists (conv1 and conv2 of each block) rather than a list of pairs, which
        # Keras' layer tracking would not look into
        self.block_conv1 = [conv(filters, f"block{i + 1}_conv1") for i in range(num_res_blocks)]
        self.block_conv2 = [conv(filters, f"block{i + 1}_conv2") for i in range(num_res_blocks)]
        self.conv_out = conv(output_channels, "conv_out", _OUTPUT_INITIALIZER)

    def build(self, input_shape):
        self.conv_in.build(input_shape)
        hidden = (*input_shape[:-1], self.filters)
        for conv1, conv2 in zip(self.block_conv1, self.block_conv2):
            conv1.build(hidden)
            conv2.build(hidden)
        self.conv_out.build(hidden)

    def call(self, inputs):
        x = self.conv_in(inputs)
        for conv1, conv2 in zip(self.block_conv1, self.block_conv2):
            x = x + conv2(ops.relu(conv1(ops.relu(x))))
        return self.conv_out(ops.relu(x))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "num_res_blocks": self.num_res_blocks,
                "output_channels": self.output_channels,
            }
        )
        return config


class _Bijection(keras.layers.Layer):
    """``call(inputs, inverse=False)`` dispatching to ``forward`` / ``inverse``."""

    def call(self, inputs, inverse=False):
        if inverse:
            return self.inverse(inputs)
        return self.forward(inputs)

    def _ensure_built(self, x):
        # forward/inverse may be called directly, not through __call__
        if not self.built:
            self.build(tuple(x.shape))

    def output_shape_of(self, input_shape, inverse=False):
        """The shape ``forward`` (``inverse``) gives for inputs of ``input_shape``: the same,
        unless a subclass changes it."""
        return tuple(input_shape)

    def compute_output_spec(self, inputs, inverse=False):
        # from the shapes alone: tracing a whole flow symbolically takes seconds
        y = keras.KerasTensor(self.output_shape_of(inputs.shape, inverse), dtype=self.compute_dtype)
        if inverse:
            return y
        return y, keras.KerasTensor((inputs.shape[0],), dtype=self.compute_dtype)


@keras.saving.register_keras_serializable(package="kapps")
class AffineCoupling(_Bijection):
    """RealNVP's affine coupling layer with a checkerboard or a channel-wise mask.

    With a binary mask ``b`` (1: variables that condition and stay unchanged),

        ``y = b * x + (1 - b) * (x * exp(s(b * x)) + t(b * x))``      (section 3.4, eq. 9)

    whose Jacobian is triangular: ``log |det dy/dx| = sum((1 - b) * s)``. The inverse needs
    ``s`` and ``t`` only at ``b * y = b * x``: ``x = b * y + (1 - b) * (y - t) * exp(-s)``.
    ``s = scale * tanh(raw)``, with a learned ``scale`` per channel (section 4.1: "a
    hyperbolic tangent function multiplied by a learned scale"), so ``exp(s)`` stays bounded;
    ``t`` is the affine output of the network.

    - ``mask="checkerboard"``: ``b`` is 1 where ``row + column`` is odd (``reverse_mask``:
      even); the network sees ``b * x`` and ``b`` itself as an extra channel, so it knows
      which pixels it predicts. Works with any number of channels.
    - ``mask="channel"``: ``b`` is 1 on the first half of the channels (``reverse_mask``: the
      second half); the network sees that half only. Needs an even number of channels.

    Args:
        channels: channels of the input (fixed: the network's output width depends on it).
        mask: ``"checkerboard"`` or ``"channel"``.
        reverse_mask: swap the two halves (consecutive couplings alternate, section 3.5).
        filters: feature maps of the ``s``/``t`` ResNet.
        num_res_blocks: residual blocks of the ``s``/``t`` ResNet.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``.
        inverse: run ``inverse`` instead of ``forward``.

    Returns:
        ``(y, log_det)`` (``log_det`` of shape ``(batch,)``), or ``x`` with ``inverse=True``.

    Example:
        >>> coupling = AffineCoupling(4, "channel", filters=16, num_res_blocks=1)
        >>> y, log_det = coupling(x)          # x: (batch, h, w, 4)
        >>> x_again = coupling(y, inverse=True)

    Paper: Dinh et al. 2017, "Density estimation using Real NVP", sections 3.3-3.5 and 4.1.
    """

    def __init__(self, channels, mask, reverse_mask=False, filters=64, num_res_blocks=8, **kwargs):
        super().__init__(**kwargs)
        self.channels = check_positive_int("channels", channels)
        self.mask = check_choice("mask", mask, MASKS)
        self.reverse_mask = check_bool("reverse_mask", reverse_mask)
        self.filters = check_positive_int("filters", filters)
        self.num_res_blocks = check_non_negative_int("num_res_blocks", num_res_blocks)
        if mask == "channel" and channels % 2:
            raise ValueError(
                f"channels={channels!r} is not allowed with mask='channel'; expected an even "
                "number (half the channels condition the other half)."
            )
        # s and t for every transformed channel
        transformed = channels if mask == "checkerboard" else channels // 2
        self.transformed_channels = transformed
        self.net = CouplingResNet(
            filters, num_res_blocks, 2 * transformed, dtype=self.dtype_policy, name="resnet"
        )

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] != self.channels:
            raise ValueError(
                f"channels={self.channels!r} does not match the input of shape "
                f"{tuple(input_shape)}; expected (batch, height, width, {self.channels})."
            )
        self.scale = self.add_weight(
            name="scale", shape=(self.transformed_channels,), initializer="ones"
        )
        if self.mask == "checkerboard":
            # conditioning pixels + the mask itself
            self.net.build((*input_shape[:-1], self.channels + 1))
        else:
            self.net.build((*input_shape[:-1], self.channels // 2))

    def _checkerboard(self, x):
        mask = ops.convert_to_tensor(
            checkerboard_mask(x.shape[1], x.shape[2], self.reverse_mask), dtype=x.dtype
        )
        return mask, 1.0 - mask

    def _scale_shift(self, conditioning):
        """``s`` (bounded by ``scale``) and ``t`` from the conditioning variables."""
        raw = self.net(conditioning)
        n = self.transformed_channels
        log_scale = ops.cast(self.scale, raw.dtype) * ops.tanh(raw[..., :n])
        return log_scale, raw[..., n:]

    def _checkerboard_net_input(self, x, mask):
        # (batch, H, W, C + 1): the conditioning pixels and the mask, broadcast over the batch
        return ops.concatenate([x * mask, ops.zeros_like(x[..., :1]) + mask], axis=-1)

    def _channel_halves(self, x):
        half = self.channels // 2
        first, second = x[..., :half], x[..., half:]
        # (conditioning, transformed)
        return (second, first) if self.reverse_mask else (first, second)

    def _channel_join(self, conditioning, transformed):
        parts = [transformed, conditioning] if self.reverse_mask else [conditioning, transformed]
        return ops.concatenate(parts, axis=-1)

    def forward(self, x):
        """``(y, log |det dy/dx|)``, the second of shape ``(batch,)``."""
        self._ensure_built(x)
        if self.mask == "checkerboard":
            mask, free = self._checkerboard(x)
            log_scale, shift = self._scale_shift(self._checkerboard_net_input(x, mask))
            log_scale, shift = log_scale * free, shift * free
            # where mask == 1: log_scale = shift = 0, so y = x there
            return x * ops.exp(log_scale) + shift, _per_example_sum(log_scale)
        conditioning, transformed = self._channel_halves(x)
        log_scale, shift = self._scale_shift(conditioning)
        transformed = transformed * ops.exp(log_scale) + shift
        return self._channel_join(conditioning, transformed), _per_example_sum(log_scale)

    def inverse(self, y):
        """The ``x`` with ``forward(x)[0] == y``."""
        self._ensure_built(y)
        if self.mask == "checkerboard":
            mask, free = self._checkerboard(y)
            # y * mask == x * mask: the network sees what it saw in forward
            log_scale, shift = self._scale_shift(self._checkerboard_net_input(y, mask))
            return (y - shift * free) * ops.exp(-log_scale * free)
        conditioning, transformed = self._channel_halves(y)
        log_scale, shift = self._scale_shift(conditioning)
        return self._channel_join(conditioning, (transformed - shift) * ops.exp(-log_scale))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "mask": self.mask,
                "reverse_mask": self.reverse_mask,
                "filters": self.filters,
                "num_res_blocks": self.num_res_blocks,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class Squeeze2D(_Bijection):
    """RealNVP's squeeze as a bijection: ``2 x 2 x c`` blocks to ``1 x 1 x 4c`` (section 3.6).

    A permutation of the variables, so ``log_det`` is 0. See ``squeeze2d`` for the channel
    order.

    Args:
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)`` with even height and width (or, with
            ``inverse=True``, channels a multiple of 4).
        inverse: unsqueeze instead.

    Returns:
        ``(y, log_det)`` with ``y`` of shape ``(batch, height / 2, width / 2, 4 * channels)``
        and zero ``log_det`` of shape ``(batch,)``, or the unsqueezed tensor with
        ``inverse=True``.

    Example:
        >>> y, log_det = Squeeze2D()(keras.ops.ones((2, 4, 4, 1)))
        >>> tuple(y.shape)
        (2, 2, 2, 4)

    Paper: Dinh et al. 2017, "Density estimation using Real NVP", section 3.6 and Figure 3.
    """

    def output_shape_of(self, input_shape, inverse=False):
        batch, height, width, channels = input_shape
        if inverse:
            if channels % 4:
                raise ValueError(
                    f"inputs of shape {tuple(input_shape)} cannot be unsqueezed; expected "
                    "channels a multiple of 4."
                )
            return (batch, 2 * height, 2 * width, channels // 4)
        if height % 2 or width % 2:
            raise ValueError(
                f"inputs of shape {tuple(input_shape)} cannot be squeezed; expected even "
                "height and width."
            )
        return (batch, height // 2, width // 2, 4 * channels)

    def forward(self, x):
        """``(squeeze2d(x), 0)``."""
        self.output_shape_of(x.shape)
        return squeeze2d(x), ops.zeros_like(x[:, 0, 0, 0])

    def inverse(self, y):
        """``unsqueeze2d(y)``."""
        self.output_shape_of(y.shape, inverse=True)
        return unsqueeze2d(y)


@keras.saving.register_keras_serializable(package="kapps")
class LogitTransform(_Bijection):
    """Images in ``[0, 1]`` to the logit space RealNVP models, with dequantisation (sec. 4.1).

    For grey levels ``pixel = x * (num_bins - 1)`` in ``{0, ..., num_bins - 1}`` and an offset
    ``u`` in ``[0, 1)`` (uniform noise in training; the bin centre ``u = 0.5`` otherwise):

        ``v = (pixel + u) / num_bins``               in ``(0, 1)``
        ``p = alpha + (1 - 2 alpha) v``               in ``(alpha, 1 - alpha)``
        ``y = logit(p) = log p - log(1 - p)``

    ``alpha`` keeps ``y`` away from the infinite ends of the logit (section 4.1 writes
    ``logit(alpha + (1 - alpha) x)`` with ``alpha = .05``; this is the symmetric form of the
    reference code's ``data_constraint = .9``, ``p = .05 + .9 v``, so ``p`` stays ``alpha``
    from both ends). ``log_det`` is ``log |det dy/dx|`` with respect to the input ``x``:

        ``sum(log((num_bins - 1) / num_bins) + log(1 - 2 alpha) - log p - log(1 - p))``

    ``inverse`` inverts the map at ``u = 0.5``: ``x = (num_bins * v - 0.5) / (num_bins - 1)``
    (no clipping, so it is exact; ``RealNVP.decode`` clips to ``[0, 1]``).

    Args:
        alpha: the logit margin (0.05, section 4.1); in ``(0, 0.5)``.
        num_bins: grey levels of the data (256 for 8-bit images).
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: images ``(batch, ...)`` in ``[0, 1]`` (or logits with ``inverse=True``).
        inverse: run ``inverse`` instead of ``forward`` (at the bin centre).

    Returns:
        ``(y, log_det)``, ``log_det`` of shape ``(batch,)``; or images with ``inverse=True``.

    Example:
        >>> logit = LogitTransform()
        >>> y, log_det = logit(images)                       # bin centres
        >>> y, log_det = logit.forward(images, noise=u)      # dequantised, u ~ U[0, 1)
        >>> images_again = logit(y, inverse=True)

    Paper: Dinh et al. 2017, "Density estimation using Real NVP", section 4.1; Theis, van den
    Oord and Bethge 2016, "A note on the evaluation of generative models" (dequantisation).
    """

    def __init__(self, alpha=0.05, num_bins=256, **kwargs):
        super().__init__(**kwargs)
        self.alpha = _check_open_interval("alpha", alpha, 0.0, 0.5)
        self.num_bins = check_positive_int("num_bins", num_bins)
        if num_bins < 2:
            raise ValueError(f"num_bins={num_bins!r} is not allowed; expected an integer >= 2.")

    def forward(self, x, noise=None):
        """``(y, log |det dy/dx|)``; ``noise``: the offsets ``u`` (same shape as ``x``, in
        ``[0, 1)``), or None for the bin centres."""
        levels = self.num_bins - 1
        offset = 0.5 if noise is None else ops.cast(noise, x.dtype)
        v = (x * levels + offset) / self.num_bins
        p = self.alpha + (1.0 - 2.0 * self.alpha) * v
        y = ops.log(p) - ops.log(1.0 - p)
        constant = math.log(levels / self.num_bins) + math.log(1.0 - 2.0 * self.alpha)
        log_det = _per_example_sum(constant - ops.log(p) - ops.log(1.0 - p))
        return y, log_det

    def inverse(self, y):
        """The ``x`` with ``forward(x)[0] == y`` (bin centres)."""
        v = (ops.sigmoid(y) - self.alpha) / (1.0 - 2.0 * self.alpha)
        return (v * self.num_bins - 0.5) / (self.num_bins - 1)

    def get_config(self):
        config = super().get_config()
        config.update({"alpha": self.alpha, "num_bins": self.num_bins})
        return config


@keras.saving.register_keras_serializable(package="kapps")
class MultiScaleFlow(_Bijection):
    """RealNVP's multi-scale architecture (section 3.6): the whole invertible flow.

    For ``scale = 1 .. num_scales - 1`` on a ``(h, w, c)`` tensor: 3 couplings with alternating
    checkerboard masks, a squeeze to ``(h/2, w/2, 4c)``, 3 couplings with alternating channel
    masks, then half the channels (``2c``) are factored out: they are final latent variables,
    and the other half goes on to the next scale. The last scale is 4 couplings with
    alternating checkerboard masks. For MNIST's ``(28, 28, 1)`` and 3 scales::

        (28, 28, 1) -> 3 checkerboard -> squeeze (14, 14, 4) -> 3 channel -> factor out 2
        (14, 14, 2) -> 3 checkerboard -> squeeze (7, 7, 8)   -> 3 channel -> factor out 4
        (7, 7, 4)   -> 4 checkerboard

    The latent ``z`` has the input's shape: at each scale the factored-out half and the
    next scale's latent are concatenated on the channels and unsqueezed, as the reference
    code does, so ``inverse`` takes noise of the image's shape. Every ``s``/``t`` network has
    ``filters`` feature maps at every scale (the paper does not say how the width changes
    with scale; the reference code doubles it, which costs more at the small scales).

    Sub-layer names: ``scale{i}_checkerboard{j}``, ``scale{i}_channel{j}``.

    Args:
        channels: channels of the input image.
        num_scales: scales (``num_scales - 1`` squeezes; height and width must be divisible
            by ``2 ** (num_scales - 1)``).
        filters: feature maps of every coupling's ``s``/``t`` ResNet.
        num_res_blocks: residual blocks of every ``s``/``t`` ResNet.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``.
        inverse: run ``inverse`` instead of ``forward``.

    Returns:
        ``(z, log_det)`` with ``z`` of the input's shape and ``log_det`` of shape
        ``(batch,)``, or ``x`` with ``inverse=True``.

    Example:
        >>> flow = MultiScaleFlow(1, num_scales=2, filters=16, num_res_blocks=1)
        >>> z, log_det = flow(x)                 # x: (batch, 8, 8, 1)
        >>> x_again = flow(z, inverse=True)

    Paper: Dinh et al. 2017, "Density estimation using Real NVP", section 3.6 and Figure 4.
    """

    #: couplings per scale (section 3.6)
    CHECKERBOARD_COUPLINGS = 3
    CHANNEL_COUPLINGS = 3
    FINAL_COUPLINGS = 4

    def __init__(self, channels, num_scales=2, filters=64, num_res_blocks=8, **kwargs):
        super().__init__(**kwargs)
        self.channels = check_positive_int("channels", channels)
        self.num_scales = check_positive_int("num_scales", num_scales)
        self.filters = check_positive_int("filters", filters)
        self.num_res_blocks = check_non_negative_int("num_res_blocks", num_res_blocks)

        def coupling(c, mask, scale, j):
            return AffineCoupling(
                c, mask, reverse_mask=j % 2 == 1, filters=filters,
                num_res_blocks=num_res_blocks, dtype=self.dtype_policy,
                name=f"scale{scale}_{mask}{j + 1}",
            )

        # one flat list in forward order (Keras tracks the layers of a list): per scale but
        # the last, CHECKERBOARD_COUPLINGS then CHANNEL_COUPLINGS; then FINAL_COUPLINGS
        self.coupling_layers = []
        c = channels
        for scale in range(1, num_scales):
            self.coupling_layers += [
                coupling(c, "checkerboard", scale, j) for j in range(self.CHECKERBOARD_COUPLINGS)
            ]
            self.coupling_layers += [
                coupling(4 * c, "channel", scale, j) for j in range(self.CHANNEL_COUPLINGS)
            ]
            c *= 2  # (h, w, c) -> squeeze (h/2, w/2, 4c) -> keep half: (h/2, w/2, 2c)
        self.coupling_layers += [
            coupling(c, "checkerboard", num_scales, j) for j in range(self.FINAL_COUPLINGS)
        ]

    def _scales(self):
        """``[(checkerboard couplings, channel couplings)]`` of every scale but the last,
        and the last scale's couplings."""
        per_scale = self.CHECKERBOARD_COUPLINGS + self.CHANNEL_COUPLINGS
        scales = []
        for i in range(self.num_scales - 1):
            layers = self.coupling_layers[i * per_scale:(i + 1) * per_scale]
            split = self.CHECKERBOARD_COUPLINGS
            scales.append((layers[:split], layers[split:]))
        return scales, self.coupling_layers[(self.num_scales - 1) * per_scale:]

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] != self.channels:
            raise ValueError(
                f"channels={self.channels!r} does not match the input of shape "
                f"{tuple(input_shape)}; expected (batch, height, width, {self.channels})."
            )
        _, height, width, c = input_shape
        step = 2 ** (self.num_scales - 1)
        if height is None or width is None or height % step or width % step:
            raise ValueError(
                f"num_scales={self.num_scales!r} does not fit inputs of shape "
                f"{tuple(input_shape)}: height and width must be known and divisible by "
                f"2 ** (num_scales - 1) = {step}."
            )
        batch = input_shape[0]
        scales, final = self._scales()
        for checkerboard, channel in scales:
            for layer in checkerboard:
                layer.build((batch, height, width, c))
            height, width = height // 2, width // 2
            for layer in channel:
                layer.build((batch, height, width, 4 * c))
            c *= 2
        for layer in final:
            layer.build((batch, height, width, c))

    def forward(self, x):
        """``(z, log |det dz/dx|)``; ``z`` has ``x``'s shape."""
        self._ensure_built(x)
        scales, final = self._scales()
        log_det = ops.zeros_like(x[:, 0, 0, 0])
        factored = []
        h = x
        for checkerboard, channel in scales:
            for layer in checkerboard:
                h, ld = layer.forward(h)
                log_det = log_det + ld
            h = squeeze2d(h)  # (batch, h/2, w/2, 4c)
            for layer in channel:
                h, ld = layer.forward(h)
                log_det = log_det + ld
            # factor out the first half of the channels: (batch, h/2, w/2, 2c) each
            half = h.shape[-1] // 2
            factored.append(h[..., :half])
            h = h[..., half:]
        for layer in final:
            h, ld = layer.forward(h)
            log_det = log_det + ld
        z = h
        for part in reversed(factored):
            # (batch, h/2, w/2, 2c) + (batch, h/2, w/2, 2c) -> (batch, h, w, c)
            z = unsqueeze2d(ops.concatenate([part, z], axis=-1))
        return z, log_det

    def inverse(self, z):
        """The ``x`` with ``forward(x)[0] == z``."""
        self._ensure_built(z)
        scales, final = self._scales()
        factored = []
        h = z
        for _ in scales:
            h = squeeze2d(h)  # (batch, h/2, w/2, 4c): factored-out half, then the rest
            half = h.shape[-1] // 2
            factored.append(h[..., :half])
            h = h[..., half:]
        for layer in reversed(final):
            h = layer.inverse(h)
        for (checkerboard, channel), part in zip(reversed(scales), reversed(factored)):
            h = ops.concatenate([part, h], axis=-1)
            for layer in reversed(channel):
                h = layer.inverse(h)
            h = unsqueeze2d(h)  # (batch, h, w, c)
            for layer in reversed(checkerboard):
                h = layer.inverse(h)
        return h

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "num_scales": self.num_scales,
                "filters": self.filters,
                "num_res_blocks": self.num_res_blocks,
            }
        )
        return config
