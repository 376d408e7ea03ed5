"""Mobile inverted bottleneck blocks: squeeze-and-excitation, stochastic depth and MBConv."""

import keras
from keras import ops

from kapps._checks import check_choice, check_positive_int, check_rate
from kapps.layers.conv import ConvBNAct

#: EfficientNet's convolution initializer (the reference implementation's ``fan_out`` scaling).
CONV_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"},
}


@keras.saving.register_keras_serializable(package="kapps")
def swish(x):
    """Swish / SiLU, ``x * sigmoid(x)`` (Ramachandran et al. 2017; Elfwing et al. 2017).

    The same values as ``keras.activations.silu``, written out as two ops. TensorFlow's
    ``tf.nn.silu`` carries a custom gradient, and SavedModel export (the route to TFLite)
    traces one gradient function per call site: about three times slower export for an
    EfficientNet. Written out, autodiff handles it and TFLite gets LOGISTIC + MUL.
    """
    return x * ops.sigmoid(x)


def resolve_activation(activation):
    """``activation`` as a callable, with ``"swish"``/``"silu"`` (name or keras function)
    mapped to ``swish`` above; anything else as ``keras.activations.get`` returns it."""
    fn = keras.activations.get(activation)
    if fn is keras.activations.silu or fn is getattr(keras.activations, "swish", None):
        return swish
    return fn


def _check_seed(value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"seed={value!r} is not allowed; expected None or an integer >= 0.")
    return value


@keras.saving.register_keras_serializable(package="kapps")
class SqueezeExcitation(keras.layers.Layer):
    """Squeeze-and-excitation: reweight channels by a gate computed from their global average.

    The feature map is averaged over space ("squeeze"), passed through a 1x1 convolution down to
    ``squeeze_filters`` channels with ``activation`` and back up to ``filters`` channels with
    ``gate_activation`` ("excitation"), and the input is multiplied by that per-channel gate.
    The two 1x1 convolutions have biases; their weights are those of keras.applications'
    ``se_reduce`` and ``se_expand`` layers, in that order.

    Args:
        filters: channels of the input (and of the gate).
        squeeze_filters: channels of the bottleneck.
        activation: activation after the reduction (EfficientNet: swish; the SE paper:
            ``"relu"``). ``"swish"``/``"silu"`` become ``swish`` of this module.
        gate_activation: activation of the gate (``"sigmoid"``).
        kernel_initializer: initializer of both kernels.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, filters)``.

    Example:
        >>> se = SqueezeExcitation(16, 4)
        >>> se(keras.ops.ones((2, 8, 8, 16))).shape
        (2, 8, 8, 16)

    Paper: Hu, Shen, Sun 2018, "Squeeze-and-Excitation Networks", Section 3.
    """

    def __init__(
        self,
        filters,
        squeeze_filters,
        activation=swish,
        gate_activation="sigmoid",
        kernel_initializer=CONV_KERNEL_INITIALIZER,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.squeeze_filters = check_positive_int("squeeze_filters", squeeze_filters)
        self.activation = resolve_activation(activation)
        self.gate_activation = keras.activations.get(gate_activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        initializer = keras.initializers.serialize(self.kernel_initializer)
        self.reduce = keras.layers.Conv2D(
            squeeze_filters,
            1,
            activation=self.activation,
            kernel_initializer=keras.initializers.get(initializer),
            name="reduce",
        )
        self.expand = keras.layers.Conv2D(
            filters,
            1,
            activation=self.gate_activation,
            kernel_initializer=keras.initializers.get(initializer),
            name="expand",
        )

    def build(self, input_shape):
        if input_shape[-1] != self.filters:
            raise ValueError(
                f"filters={self.filters!r} does not match the {input_shape[-1]} input channels; "
                "the input must have `filters` channels."
            )
        pooled = (input_shape[0], 1, 1, self.filters)
        self.reduce.build(pooled)
        self.expand.build(self.reduce.compute_output_shape(pooled))

    def call(self, inputs):
        squeezed = ops.mean(inputs, axis=(1, 2), keepdims=True)  # (batch, 1, 1, filters)
        gate = self.expand(self.reduce(squeezed))
        return inputs * gate

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "squeeze_filters": self.squeeze_filters,
                "activation": keras.activations.serialize(self.activation),
                "gate_activation": keras.activations.serialize(self.gate_activation),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class StochasticDepth(keras.layers.Layer):
    """Drop a residual branch for whole examples during training ("drop connect").

    In training each example's branch is zeroed with probability ``rate`` and kept examples are
    scaled by ``1 / (1 - rate)``, so the expected output equals the input and inference (the
    identity) needs no rescaling. Add the result to the shortcut yourself:
    ``y = shortcut + StochasticDepth(rate)(branch)``. This is what keras.applications'
    EfficientNet does with ``Dropout(rate, noise_shape=(None, 1, 1, 1))``; it has no weights.

    Args:
        rate: probability of dropping the branch, in ``[0, 1)``.
        seed: optional integer seed of the layer's ``keras.random.SeedGenerator``.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: the residual branch, ``(batch, ...)``.
        training: drop only when True.

    Example:
        >>> drop = StochasticDepth(0.2, seed=0)
        >>> drop(keras.ops.ones((4, 2, 2, 3)), training=False).shape
        (4, 2, 2, 3)

    Paper: Huang, Sun, Liu, Sedra, Weinberger 2016, "Deep Networks with Stochastic Depth".
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_rate("rate", rate)
        self.seed = _check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        survival = 1.0 - self.rate
        # One draw per example, broadcast over every other axis: (batch, 1, ..., 1).
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        noise = keras.random.uniform(shape, seed=self.seed_generator, dtype=inputs.dtype)
        keep = ops.floor(survival + noise)  # 1 with probability `survival`, else 0
        return inputs / survival * keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package="kapps")
class MBConvBlock(keras.layers.Layer):
    """The mobile inverted bottleneck (MBConv) of MobileNetV2 and EfficientNet.

    1x1 expansion to ``input_filters * expand_ratio`` channels (skipped when the ratio is 1),
    a ``kernel_size`` depthwise convolution (carrying the stride), squeeze-and-excitation with
    ``max(1, int(input_filters * se_ratio))`` bottleneck channels, and a linear 1x1 projection
    to ``output_filters``. Each convolution is followed by batch normalization; all but the
    projection by ``activation``. When the stride is 1 and the channel counts agree, the input
    is added back after stochastic depth of rate ``drop_rate``.

    Stride-2 convolutions use ``"same"`` padding, which pads exactly as keras.applications'
    ``correct_pad`` + ``"valid"`` does for every input size. Sublayers are created in the order
    of keras.applications' ``block`` (expand conv/bn, dwconv, bn, se_reduce, se_expand,
    project conv/bn), so ``block.weights`` lines up with that block's variables.

    Args:
        input_filters: channels of the input.
        output_filters: channels of the output.
        kernel_size: side of the depthwise kernel.
        strides: stride of the depthwise convolution.
        expand_ratio: channel multiplier of the expansion.
        se_ratio: squeeze ratio relative to ``input_filters``; 0 disables squeeze-and-excitation.
        activation: activation after expansion, depthwise convolution and SE reduction;
            ``"swish"``/``"silu"`` become ``swish`` of this module (same values, faster export).
        drop_rate: stochastic-depth rate of the residual branch.
        id_skip: whether to add the shortcut when the shapes allow.
        momentum: batch-normalization momentum.
        epsilon: batch-normalization epsilon.
        kernel_initializer: initializer of every kernel.
        seed: optional seed of the stochastic depth.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, input_filters)``.
        training: batch statistics and stochastic depth when True.

    Example:
        >>> block = MBConvBlock(16, 24, kernel_size=3, strides=2, expand_ratio=6)
        >>> block(keras.ops.ones((1, 32, 32, 16))).shape
        (1, 16, 16, 24)

    Paper: Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks";
    Tan & Le 2019, "EfficientNet", Section 4 (MBConv with squeeze-and-excitation).
    """

    def __init__(
        self,
        input_filters,
        output_filters,
        kernel_size=3,
        strides=1,
        expand_ratio=1,
        se_ratio=0.25,
        activation=swish,
        drop_rate=0.0,
        id_skip=True,
        momentum=0.99,
        epsilon=1e-3,
        kernel_initializer=CONV_KERNEL_INITIALIZER,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_filters = check_positive_int("input_filters", input_filters)
        self.output_filters = check_positive_int("output_filters", output_filters)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.strides = check_choice("strides", strides, (1, 2))
        self.expand_ratio = check_positive_int("expand_ratio", expand_ratio)
        if isinstance(se_ratio, bool) or not isinstance(se_ratio, (int, float)) or not 0 <= se_ratio <= 1:
            raise ValueError(f"se_ratio={se_ratio!r} is not allowed; expected a number in [0, 1].")
        self.se_ratio = float(se_ratio)
        self.activation = resolve_activation(activation)
        self.drop_rate = check_rate("drop_rate", drop_rate)
        self.id_skip = bool(id_skip)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.seed = _check_seed(seed)

        self.filters = input_filters * expand_ratio
        self.use_residual = id_skip and strides == 1 and input_filters == output_filters
        # Each sublayer gets its own initializer instance (from the serialized form).
        initializer = keras.initializers.serialize(self.kernel_initializer)
        common = {"momentum": self.momentum, "epsilon": self.epsilon, "kernel_initializer": initializer}
        self.expand = (
            ConvBNAct(self.filters, 1, activation=self.activation, name="expand", **common)
            if expand_ratio != 1
            else None
        )
        self.depthwise = keras.layers.DepthwiseConv2D(
            kernel_size,
            strides=strides,
            padding="same",
            use_bias=False,
            depthwise_initializer=keras.initializers.get(initializer),
            name="dwconv",
        )
        self.bn = keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon, name="bn")
        self.se = (
            SqueezeExcitation(
                self.filters,
                max(1, int(input_filters * self.se_ratio)),
                activation=self.activation,
                kernel_initializer=initializer,
                name="se",
            )
            if 0 < self.se_ratio <= 1
            else None
        )
        self.project = ConvBNAct(output_filters, 1, activation=None, name="project", **common)
        self.stochastic_depth = (
            StochasticDepth(self.drop_rate, seed=seed, name="drop")
            if self.use_residual and self.drop_rate > 0
            else None
        )

    def build(self, input_shape):
        if input_shape[-1] != self.input_filters:
            raise ValueError(
                f"input_filters={self.input_filters!r} does not match the {input_shape[-1]} "
                "input channels; the input must have `input_filters` channels."
            )
        shape = input_shape
        if self.expand is not None:
            self.expand.build(shape)
            shape = self.expand.compute_output_shape(shape)
        self.depthwise.build(shape)
        shape = self.depthwise.compute_output_shape(shape)
        self.bn.build(shape)
        if self.se is not None:
            self.se.build(shape)
        self.project.build(shape)

    def call(self, inputs, training=None):
        x = inputs
        if self.expand is not None:
            x = self.expand(x, training=training)
        x = self.activation(self.bn(self.depthwise(x), training=training))
        if self.se is not None:
            x = self.se(x)
        x = self.project(x, training=training)
        if self.use_residual:
            if self.stochastic_depth is not None:
                x = self.stochastic_depth(x, training=training)
            x = x + inputs
        return x

    def compute_output_shape(self, input_shape):
        shape = self.depthwise.compute_output_shape((*input_shape[:-1], self.filters))
        return (*shape[:-1], self.output_filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "input_filters": self.input_filters,
                "output_filters": self.output_filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "expand_ratio": self.expand_ratio,
                "se_ratio": self.se_ratio,
                "activation": keras.activations.serialize(self.activation),
                "drop_rate": self.drop_rate,
                "id_skip": self.id_skip,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "seed": self.seed,
            }
        )
        return config
