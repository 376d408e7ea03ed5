"""Residual blocks (He et al. 2016): the basic block, the bottleneck block and the parameter-free
"option A" shortcut of the CIFAR networks."""

import keras
from keras import ops

from kapps._checks import check_choice, check_positive_int

SHORTCUTS = ("identity", "projection", "zero_pad")


def _check_float(name, value, low=0.0):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > low:
        raise ValueError(f"{name}={value!r} is not allowed; expected a number > {low:g}.")
    return float(value)


@keras.saving.register_keras_serializable(package="kapps")
class ZeroPadShortcut(keras.layers.Layer):
    """The parameter-free shortcut of the CIFAR ResNets ("option A", He et al. 2016, Sec. 4.2).

    The input is subsampled by taking every ``strides``-th row and column (what a 1x1 convolution
    of stride 2 would see) and the missing channels are appended as zeros, so the shortcut
    matches a block that doubles the channels and halves the resolution without adding a
    single weight.

    Args:
        filters: output channels, at least the input's.
        strides: subsampling step along height and width.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)`` with ``channels <= filters``.

    Example:
        >>> shortcut = ZeroPadShortcut(32, strides=2)
        >>> shortcut(keras.ops.ones((1, 32, 32, 16))).shape
        (1, 16, 16, 32)

    Paper: He, Zhang, Ren, Sun 2016, "Deep Residual Learning for Image Recognition", Sec. 3.3
    (option A) and Sec. 4.2.
    """

    def __init__(self, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.strides = check_positive_int("strides", strides)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels > self.filters:
            raise ValueError(
                f"filters={self.filters!r} is smaller than the {channels} input channels; the "
                "zero-padding shortcut can only add channels."
            )
        self._extra = self.filters - channels

    def call(self, inputs):
        s = self.strides
        x = inputs[:, ::s, ::s, :] if s > 1 else inputs
        if self._extra:
            # (batch, h, w, channels) -> (batch, h, w, filters): new channels are zeros.
            x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, self._extra]])
        return x

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        s = self.strides
        h = None if h is None else -(-h // s)
        w = None if w is None else -(-w // s)
        return (b, h, w, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "strides": self.strides})
        return config


class _ResidualBlock(keras.layers.Layer):
    """What the basic and bottleneck blocks share: checks, conv/BN factories, the shortcut."""

    def __init__(
        self,
        filters,
        strides,
        shortcut,
        use_bias,
        momentum,
        epsilon,
        kernel_initializer,
        kernel_regularizer,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.strides = check_positive_int("strides", strides)
        self.shortcut = check_choice("shortcut", shortcut, SHORTCUTS)
        if not isinstance(use_bias, bool):
            raise ValueError(f"use_bias={use_bias!r} is not allowed; expected True or False.")
        self.use_bias = use_bias
        self.momentum = _check_float("momentum", momentum)
        self.epsilon = _check_float("epsilon", epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def _conv(self, filters, kernel_size, strides, name):
        return keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="same",
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
            name=name,
        )

    def _bn(self, name):
        return keras.layers.BatchNormalization(
            momentum=self.momentum, epsilon=self.epsilon, name=name
        )

    def _make_shortcut(self, out_channels):
        """Create the shortcut sublayers (called first in ``__init__``, so a projection's
        variables come first, as ``_0_conv``/``_0_bn`` do in keras.applications)."""
        self.shortcut_conv = self.shortcut_bn = self.shortcut_pad = None
        if self.shortcut == "projection":
            self.shortcut_conv = self._conv(out_channels, 1, self.strides, "shortcut_conv")
            self.shortcut_bn = self._bn("shortcut_bn")
        elif self.shortcut == "zero_pad":
            self.shortcut_pad = ZeroPadShortcut(out_channels, self.strides, name="shortcut_pad")

    def _build_shortcut(self, input_shape, out_channels):
        channels = input_shape[-1]
        if self.shortcut == "identity" and (self.strides != 1 or channels != out_channels):
            raise ValueError(
                f"shortcut='identity' does not fit: the block maps {channels} channels to "
                f"{out_channels} with strides={self.strides}; use shortcut='projection' or "
                "'zero_pad' when the shape changes."
            )
        if self.shortcut_conv is not None:
            self.shortcut_conv.build(input_shape)
            self.shortcut_bn.build(self.shortcut_conv.compute_output_shape(input_shape))
        if self.shortcut_pad is not None:
            self.shortcut_pad.build(input_shape)

    def _apply_shortcut(self, inputs, training):
        if self.shortcut_conv is not None:
            return self.shortcut_bn(self.shortcut_conv(inputs), training=training)
        if self.shortcut_pad is not None:
            return self.shortcut_pad(inputs)
        return inputs

    def _output_shape(self, input_shape, out_channels):
        b, h, w, _ = input_shape
        s = self.strides
        h = None if h is None else -(-h // s)
        w = None if w is None else -(-w // s)
        return (b, h, w, out_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "strides": self.strides,
                "shortcut": self.shortcut,
                "use_bias": self.use_bias,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)
                if self.kernel_regularizer is not None
                else None,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class BasicBlock(_ResidualBlock):
    """Two 3x3 convolutions with a shortcut: the block of ResNet-18/34 and the CIFAR ResNets.

    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``, with the stride in the first
    convolution (He et al. 2016, Fig. 2 and Fig. 5 left).

    Args:
        filters: output channels of both convolutions.
        strides: stride of the first convolution (2 halves the resolution).
        shortcut: ``"identity"`` (shape unchanged), ``"projection"`` (1x1 convolution and batch
            normalization, the paper's option B) or ``"zero_pad"`` (subsample and append zero
            channels, option A, no parameters).
        use_bias: whether the convolutions have biases (keras.applications' ResNets do, although
            batch normalization makes them redundant).
        momentum: batch-normalization momentum.
        epsilon: batch-normalization epsilon (keras.applications uses 1.001e-5).
        kernel_initializer: initializer of the kernels.
        kernel_regularizer: optional regularizer of the kernels (weight decay).
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``.
        training: whether batch normalization uses batch statistics.

    Example:
        >>> block = BasicBlock(32, strides=2, shortcut="zero_pad")
        >>> block(keras.ops.ones((1, 32, 32, 16))).shape
        (1, 16, 16, 32)

    Paper: He, Zhang, Ren, Sun 2016, "Deep Residual Learning for Image Recognition".
    """

    def __init__(
        self,
        filters,
        strides=1,
        shortcut="identity",
        use_bias=False,
        momentum=0.99,
        epsilon=1.001e-5,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(
            filters,
            strides,
            shortcut,
            use_bias,
            momentum,
            epsilon,
            kernel_initializer,
            kernel_regularizer,
            **kwargs,
        )
        self._make_shortcut(self.filters)
        self.conv1 = self._conv(self.filters, 3, self.strides, "conv1")
        self.bn1 = self._bn("bn1")
        self.conv2 = self._conv(self.filters, 3, 1, "conv2")
        self.bn2 = self._bn("bn2")

    def build(self, input_shape):
        self._build_shortcut(input_shape, self.filters)
        self.conv1.build(input_shape)
        shape = self.conv1.compute_output_shape(input_shape)
        self.bn1.build(shape)
        self.conv2.build(shape)
        self.bn2.build(shape)

    def call(self, inputs, training=None):
        shortcut = self._apply_shortcut(inputs, training)
        x = ops.relu(self.bn1(self.conv1(inputs), training=training))
        x = self.bn2(self.conv2(x), training=training)
        return ops.relu(x + shortcut)

    def compute_output_shape(self, input_shape):
        return self._output_shape(input_shape, self.filters)


@keras.saving.register_keras_serializable(package="kapps")
class BottleneckBlock(_ResidualBlock):
    """1x1 reduce, 3x3, 1x1 expand, with a shortcut: the block of ResNet-50/101/152.

    ``relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))``; the output has
    ``expansion * filters`` channels (He et al. 2016, Fig. 5 right).

    Args:
        filters: channels of the 1x1 reduction and the 3x3 convolution.
        strides: stride of the block (2 halves the resolution).
        expansion: output channels are ``expansion * filters`` (4 in the paper).
        stride_in: ``"1x1"`` puts the stride in the first 1x1 convolution (ResNet v1, as the
            paper's released models and keras.applications do, the default) and ``"3x3"`` in
            the 3x3 convolution (the "v1.5" form of later implementations, slightly more
            accurate and a little slower).
        shortcut: ``"identity"``, ``"projection"`` (1x1 convolution with the block's stride and
            batch normalization) or ``"zero_pad"`` (parameter-free option A).
        use_bias: whether the convolutions have biases (keras.applications' do).
        momentum: batch-normalization momentum.
        epsilon: batch-normalization epsilon (keras.applications uses 1.001e-5).
        kernel_initializer: initializer of the kernels.
        kernel_regularizer: optional regularizer of the kernels (weight decay).
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``.
        training: whether batch normalization uses batch statistics.

    Example:
        >>> block = BottleneckBlock(64, shortcut="projection")
        >>> block(keras.ops.ones((1, 56, 56, 64))).shape
        (1, 56, 56, 256)

    Paper: He, Zhang, Ren, Sun 2016, "Deep Residual Learning for Image Recognition", Sec. 4.1.
    """

    def __init__(
        self,
        filters,
        strides=1,
        expansion=4,
        stride_in="1x1",
        shortcut="identity",
        use_bias=False,
        momentum=0.99,
        epsilon=1.001e-5,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(
            filters,
            strides,
            shortcut,
            use_bias,
            momentum,
            epsilon,
            kernel_initializer,
            kernel_regularizer,
            **kwargs,
        )
        self.expansion = check_positive_int("expansion", expansion)
        self.stride_in = check_choice("stride_in", stride_in, ("1x1", "3x3"))
        out = self.expansion * self.filters
        first, middle = (self.strides, 1) if self.stride_in == "1x1" else (1, self.strides)
        self._make_shortcut(out)
        self.conv1 = self._conv(self.filters, 1, first, "conv1")
        self.bn1 = self._bn("bn1")
        self.conv2 = self._conv(self.filters, 3, middle, "conv2")
        self.bn2 = self._bn("bn2")
        self.conv3 = self._conv(out, 1, 1, "conv3")
        self.bn3 = self._bn("bn3")

    def build(self, input_shape):
        self._build_shortcut(input_shape, self.expansion * self.filters)
        self.conv1.build(input_shape)
        shape = self.conv1.compute_output_shape(input_shape)
        self.bn1.build(shape)
        self.conv2.build(shape)
        shape = self.conv2.compute_output_shape(shape)
        self.bn2.build(shape)
        self.conv3.build(shape)
        self.bn3.build(self.conv3.compute_output_shape(shape))

    def call(self, inputs, training=None):
        shortcut = self._apply_shortcut(inputs, training)
        x = ops.relu(self.bn1(self.conv1(inputs), training=training))
        x = ops.relu(self.bn2(self.conv2(x), training=training))
        x = self.bn3(self.conv3(x), training=training)
        return ops.relu(x + shortcut)

    def compute_output_shape(self, input_shape):
        return self._output_shape(input_shape, self.expansion * self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"expansion": self.expansion, "stride_in": self.stride_in})
        return config
