"""U-Net blocks (Ronneberger, Fischer, Brox 2015): two 3x3 convolutions, the contracting step
(convolutions, then 2x2 max-pooling) and the expanding step (2x upsampling, the skip
connection centre-cropped and concatenated, convolutions).

``UNetConvBlock`` holds the two convolutions; ``UNetEncoderBlock`` and ``UNetDecoderBlock``
are that block with the pooling before (encoder) or the upsampling and skip connection after
(decoder), so their weights read ``encoder1/conv1/kernel``, ``decoder2/upconv/kernel`` in a
model. The decoder's upsampling is the paper's learned 2x2 up-convolution (``"transpose"``),
a parameter-free bilinear resize with aligned corners (``"bilinear"``: TransUNet's cascaded
upsampler, PyTorch's ``nn.UpsamplingBilinear2d``) or nearest-neighbour repetition
(``"nearest"``: the DDPM denoiser of Ho et al. 2020).
"""

import keras
from keras import ops

from kapps._checks import check_choice, check_positive_int, check_rate
from kapps.layers.interpolation import BilinearResize2D
from kapps.layers.mbconv import _check_seed

PADDINGS = ("valid", "same")
UPSAMPLINGS = ("transpose", "bilinear", "nearest")


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not allowed; expected True or False.")
    return value


def _check_positive_float(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name}={value!r} is not allowed; expected a number > 0.")
    return float(value)


def _check_momentum(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"momentum={value!r} is not allowed; expected a number in [0, 1).")
    return float(value)


def center_crop(x, height, width):
    """The central ``height x width`` window of ``x`` of shape ``(batch, H, W, channels)``.

    The paper's skip connections: "the cropped feature map from the contracting path"
    (section 2), needed because every unpadded 3x3 convolution loses a border pixel. When
    ``H - height`` is odd the extra row is taken from the bottom (and the extra column from
    the right).

    Raises:
        ValueError: when the map is smaller than the window (sizes known).
    """
    rows, cols = x.shape[1], x.shape[2]
    if rows is not None and cols is not None and isinstance(height, int) and isinstance(width, int):
        if rows < height or cols < width:
            raise ValueError(
                f"cannot centre-crop a {rows}x{cols} map to {height}x{width}: the skip "
                "connection is smaller than the upsampled map."
            )
        if (rows, cols) == (height, width):
            return x
    else:
        rows, cols = ops.shape(x)[1], ops.shape(x)[2]
    top = (rows - height) // 2
    left = (cols - width) // 2
    return x[:, top:top + height, left:left + width, :]


@keras.saving.register_keras_serializable(package="kapps")
class UNetConvBlock(keras.layers.Layer):
    """Two 3x3 convolutions, each followed by (optional batch normalization and) ReLU.

    The unit U-Net repeats at every level: "two 3x3 convolutions (unpadded convolutions),
    each followed by a rectified linear unit" (section 2). With ``padding="valid"`` (the
    paper) each convolution trims one pixel per border, so the map shrinks by 4; with
    ``"same"`` it keeps its size. With ``batch_norm=True`` the convolutions have no bias (the
    normalization's offset replaces it). An optional dropout follows the second activation
    (the paper's "drop-out layers at the end of the contracting path", section 3.1).

    Args:
        filters: output channels of both convolutions.
        padding: ``"valid"`` (the paper) or ``"same"``.
        batch_norm: normalize after each convolution (not in the 2015 paper).
        activation: activation after each convolution (``"relu"``).
        dropout: dropout rate after the block (0 for none).
        momentum: batch-normalization momentum.
        epsilon: batch-normalization epsilon.
        kernel_initializer: initializer of the kernels (``"he_normal"``: the paper's
            Gaussian with standard deviation ``sqrt(2 / N)``, ``N = 9 * in_channels``).
        seed: optional integer seed of the dropout.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``.
        training: batch statistics and dropout only when True.

    Example:
        >>> block = UNetConvBlock(64)
        >>> tuple(block(keras.ops.ones((1, 572, 572, 1))).shape)
        (1, 568, 568, 64)

    Paper: Ronneberger, Fischer, Brox 2015, "U-Net: Convolutional Networks for Biomedical
    Image Segmentation", section 2 and Figure 1.
    """

    def __init__(
        self,
        filters,
        padding="valid",
        batch_norm=False,
        activation="relu",
        dropout=0.0,
        momentum=0.99,
        epsilon=1e-3,
        kernel_initializer="he_normal",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.padding = check_choice("padding", padding, PADDINGS)
        self.batch_norm = _check_bool("batch_norm", batch_norm)
        self.activation = keras.activations.get(activation)
        self.dropout = check_rate("dropout", dropout)
        self.momentum = _check_momentum(momentum)
        self.epsilon = _check_positive_float("epsilon", epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = _check_seed(seed)
        self.conv1, self.bn1 = self._conv_bn(1)
        self.conv2, self.bn2 = self._conv_bn(2)
        self.dropout_layer = (
            keras.layers.Dropout(dropout, seed=seed, dtype=self.dtype_policy, name="dropout")
            if dropout > 0
            else None
        )

    def _conv_bn(self, index):
        conv = keras.layers.Conv2D(
            self.filters,
            3,
            padding=self.padding,
            use_bias=not self.batch_norm,
            # a fresh initializer per kernel, so two kernels of one shape differ
            kernel_initializer=keras.initializers.get(
                keras.initializers.serialize(self.kernel_initializer)
            ),
            dtype=self.dtype_policy,
            name=f"conv{index}",
        )
        bn = (
            keras.layers.BatchNormalization(
                momentum=self.momentum, epsilon=self.epsilon, dtype=self.dtype_policy,
                name=f"bn{index}",
            )
            if self.batch_norm
            else None
        )
        return conv, bn

    def _check_input(self, shape, what="the input", convolved=True):
        if len(shape) != 4 or shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__} expects {what} as (batch, height, width, channels) "
                f"with known channels; received shape {tuple(shape)}."
            )
        if convolved and self.padding == "valid":
            for size in shape[1:3]:
                if size is not None and size < 5:
                    raise ValueError(
                        f"{what} of shape {tuple(shape)} is too small for two unpadded 3x3 "
                        "convolutions (padding='valid'); height and width must be at least 5."
                    )

    def _build_convs(self, shape):
        shape = tuple(shape)
        self.conv1.build(shape)
        shape = self.conv1.compute_output_shape(shape)
        if self.bn1 is not None:
            self.bn1.build(shape)
        self.conv2.build(shape)
        shape = self.conv2.compute_output_shape(shape)
        if self.bn2 is not None:
            self.bn2.build(shape)
        return shape

    def build(self, input_shape):
        self._check_input(input_shape)
        self._build_convs(input_shape)

    def _convs(self, x, training):
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2)):
            x = conv(x)
            if bn is not None:
                x = bn(x, training=training)
            x = self.activation(x)
        if self.dropout_layer is not None:
            x = self.dropout_layer(x, training=training)
        return x

    def call(self, inputs, training=None):
        return self._convs(inputs, training)

    def _convs_output_shape(self, shape):
        b, h, w, _ = shape
        if self.padding == "valid":
            h = None if h is None else h - 4
            w = None if w is None else w - 4
        return (b, h, w, self.filters)

    def compute_output_shape(self, input_shape):
        return self._convs_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "padding": self.padding,
                "batch_norm": self.batch_norm,
                "activation": keras.activations.serialize(self.activation),
                "dropout": self.dropout,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "seed": self.seed,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class UNetEncoderBlock(UNetConvBlock):
    """One step of U-Net's contracting path: two 3x3 convolutions, then 2x2 max-pooling.

    Returns both the pooled map (the next level's input) and the map before pooling (the
    skip connection the expanding path concatenates). The map before pooling must have even
    height and width, so that pooling loses no row or column and the expanding path can
    mirror it exactly (section 2: "select the input tile size such that all 2x2
    max-pooling operations are applied to a layer with an even x- and y-size").

    Args:
        filters: output channels of both convolutions (the paper doubles them per level:
            64, 128, 256, 512).
        padding: ``"valid"`` (the paper) or ``"same"``.
        batch_norm: normalize after each convolution.
        activation: activation after each convolution.
        dropout: dropout rate after the convolutions, before pooling (the skip sees it too;
            the paper's dropout at the end of the contracting path).
        momentum: batch-normalization momentum.
        epsilon: batch-normalization epsilon.
        kernel_initializer: initializer of the kernels.
        seed: optional integer seed of the dropout.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``.
        training: batch statistics and dropout only when True.

    Returns:
        ``(pooled, skip)``: ``(batch, h / 2, w / 2, filters)`` and ``(batch, h, w, filters)``,
        where ``h x w`` is the size after the convolutions (``height - 4`` for
        ``"valid"``).

    Example:
        >>> pooled, skip = UNetEncoderBlock(64)(keras.ops.ones((1, 572, 572, 1)))
        >>> tuple(pooled.shape), tuple(skip.shape)
        ((1, 284, 284, 64), (1, 568, 568, 64))

    Paper: Ronneberger, Fischer, Brox 2015, "U-Net", section 2 and Figure 1.
    """

    def __init__(
        self,
        filters,
        padding="valid",
        batch_norm=False,
        activation="relu",
        dropout=0.0,
        momentum=0.99,
        epsilon=1e-3,
        kernel_initializer="he_normal",
        seed=None,
        **kwargs,
    ):
        super().__init__(
            filters, padding=padding, batch_norm=batch_norm, activation=activation,
            dropout=dropout, momentum=momentum, epsilon=epsilon,
            kernel_initializer=kernel_initializer, seed=seed, **kwargs,
        )
        self.pool = keras.layers.MaxPooling2D(2, dtype=self.dtype_policy, name="pool")

    def build(self, input_shape):
        self._check_input(input_shape)
        shape = self._build_convs(input_shape)
        for size in shape[1:3]:
            if size is not None and size % 2:
                raise ValueError(
                    f"the input of shape {tuple(input_shape)} gives a {shape[1]}x{shape[2]} map "
                    "after the convolutions; 2x2 max-pooling needs an even height and width "
                    f"(padding={self.padding!r}). Choose another input size."
                )

    def call(self, inputs, training=None):
        skip = self._convs(inputs, training)
        return self.pool(skip), skip

    def compute_output_shape(self, input_shape):
        skip = self._convs_output_shape(input_shape)
        b, h, w, c = skip
        return (b, None if h is None else h // 2, None if w is None else w // 2, c), skip


@keras.saving.register_keras_serializable(package="kapps")
class UNetDecoderBlock(UNetConvBlock):
    """One step of U-Net's expanding path: upsample 2x, concatenate the skip, two 3x3 convs.

    The paper's step (section 2): "an upsampling of the feature map followed by a 2x2
    convolution ('up-convolution') that halves the number of feature channels, a
    concatenation with the correspondingly cropped feature map from the contracting path,
    and two 3x3 convolutions". The up-convolution is a stride-2 ``Conv2DTranspose`` with
    ``filters`` outputs (half the input channels in U-Net). The skip is centre-cropped to the
    upsampled map's size (it is larger when ``padding="valid"``; equal with ``"same"``) and
    concatenated after it (``[upsampled, skip]``, channels last).

    With ``upsampling="bilinear"`` (TransUNet's cascaded upsampler) or ``"nearest"``, the
    map is resized without weights and keeps its channels; the convolutions then see
    ``in_channels + skip_channels``. Without a skip (``skip=None``) the block is upsampling
    and convolutions only (TransUNet's last block).

    Args:
        filters: output channels of the up-convolution and of both 3x3 convolutions.
        padding: ``"valid"`` (the paper) or ``"same"``.
        batch_norm: normalize after each 3x3 convolution.
        activation: activation after each 3x3 convolution.
        dropout: dropout rate after the block.
        momentum: batch-normalization momentum.
        epsilon: batch-normalization epsilon.
        kernel_initializer: initializer of the kernels.
        seed: optional integer seed of the dropout.
        upsampling: ``"transpose"`` (the paper's 2x2 up-convolution), ``"bilinear"``
            (corners aligned, as PyTorch's ``nn.UpsamplingBilinear2d``) or ``"nearest"``.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)`` from the level below.
        skip: ``(batch, H, W, skip_channels)`` from the contracting path, with ``H >= 2 *
            height`` and ``W >= 2 * width``; or None.
        training: batch statistics and dropout only when True.

    Example:
        >>> block = UNetDecoderBlock(512)
        >>> x, skip = keras.ops.ones((1, 28, 28, 1024)), keras.ops.ones((1, 64, 64, 512))
        >>> tuple(block(x, skip).shape)  # 28 -> 56 (skip cropped 64 -> 56) -> 52
        (1, 52, 52, 512)

    Paper: Ronneberger, Fischer, Brox 2015, "U-Net", section 2 and Figure 1; bilinear
    variant: Chen et al. 2021, "TransUNet", section 3.2 ("cascaded upsampler").
    """

    def __init__(
        self,
        filters,
        padding="valid",
        batch_norm=False,
        activation="relu",
        dropout=0.0,
        momentum=0.99,
        epsilon=1e-3,
        kernel_initializer="he_normal",
        seed=None,
        upsampling="transpose",
        **kwargs,
    ):
        super().__init__(
            filters, padding=padding, batch_norm=batch_norm, activation=activation,
            dropout=dropout, momentum=momentum, epsilon=epsilon,
            kernel_initializer=kernel_initializer, seed=seed, **kwargs,
        )
        self.upsampling = check_choice("upsampling", upsampling, UPSAMPLINGS)
        if upsampling == "transpose":
            self.upconv = keras.layers.Conv2DTranspose(
                filters,
                2,
                strides=2,
                kernel_initializer=keras.initializers.get(
                    keras.initializers.serialize(self.kernel_initializer)
                ),
                dtype=self.dtype_policy,
                name="upconv",
            )
        elif upsampling == "bilinear":
            self.upconv = BilinearResize2D(2, align_corners=True, dtype=self.dtype_policy,
                                           name="upsample")
        else:
            self.upconv = keras.layers.UpSampling2D(2, interpolation="nearest",
                                                    dtype=self.dtype_policy, name="upsample")

    def build(self, inputs_shape, skip_shape=None):
        self._check_input(inputs_shape, convolved=False)  # upsampled before the convolutions
        inputs_shape = tuple(inputs_shape)
        self.upconv.build(inputs_shape)
        up = tuple(self.upconv.compute_output_shape(inputs_shape))
        channels = up[-1]
        if skip_shape is not None:
            if len(skip_shape) != 4 or skip_shape[-1] is None:
                raise ValueError(
                    f"skip of shape {tuple(skip_shape)} is not allowed; expected (batch, height, "
                    "width, channels) with known channels."
                )
            for axis, (s, u) in enumerate(zip(skip_shape[1:3], up[1:3])):
                if s is not None and u is not None and s < u:
                    raise ValueError(
                        f"skip of shape {tuple(skip_shape)} is smaller than the upsampled map "
                        f"{tuple(up)} along axis {axis + 1}; the skip must be at least as "
                        "large (it is centre-cropped)."
                    )
            channels += skip_shape[-1]
        self._check_input(up[:3] + (channels,), "the upsampled and concatenated map")
        self._build_convs(up[:3] + (channels,))

    def call(self, inputs, skip=None, training=None):
        x = self.upconv(inputs)  # (batch, 2h, 2w, filters or channels)
        if skip is not None:
            height = x.shape[1] if x.shape[1] is not None else ops.shape(x)[1]
            width = x.shape[2] if x.shape[2] is not None else ops.shape(x)[2]
            skip = center_crop(skip, height, width)
            x = ops.concatenate([x, ops.cast(skip, x.dtype)], axis=-1)
        return self._convs(x, training)

    def compute_output_shape(self, inputs_shape, skip_shape=None):
        up = tuple(self.upconv.compute_output_shape(tuple(inputs_shape)))
        return self._convs_output_shape(up)

    def get_config(self):
        config = super().get_config()
        config.update({"upsampling": self.upsampling})
        return config
