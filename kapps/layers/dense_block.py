"""DenseNet blocks: the dense layer, the dense block and the transition (Huang et al. 2017)."""

import keras
from keras import ops

from kapps._checks import check_positive_int

#: keras.applications' batch-normalization epsilon for DenseNet (so its weights give the
#: same outputs here).
DENSENET_EPSILON = 1.001e-5


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not allowed; expected True or False.")
    return value


@keras.saving.register_keras_serializable(package="kapps")
class DenseLayer(keras.layers.Layer):
    """One composite function ``H_l`` of a dense block, concatenated to its input.

    With ``bottleneck=True`` (DenseNet-B, Section 3): BN-ReLU-Conv1x1 with
    ``bottleneck_width * growth_rate`` filters, then BN-ReLU-Conv3x3 with ``growth_rate``
    filters; otherwise BN-ReLU-Conv3x3 alone. The ``growth_rate`` new feature maps are
    concatenated to the input, so every later layer sees all earlier ones. Convolutions have no
    bias (a batch normalization follows each). Sublayer names follow keras.applications
    (``0_bn``, ``1_conv``, ``1_bn``, ``2_conv``) and are created in its order, so its weights
    copy over variable by variable.

    Args:
        growth_rate: ``k``, the feature maps each layer adds.
        bottleneck: whether to put the 1x1 bottleneck convolution first.
        bottleneck_width: the bottleneck has ``bottleneck_width * growth_rate`` filters
            (paper: 4).
        momentum: batch-normalization momentum.
        epsilon: batch-normalization epsilon (keras.applications: 1.001e-5).
        kernel_initializer: initializer of the convolution kernels (paper: He et al. 2015).
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``.
        training: whether batch normalization uses batch statistics.

    Returns:
        ``(batch, height, width, channels + growth_rate)``.

    Example:
        >>> layer = DenseLayer(32)
        >>> layer(keras.ops.ones((1, 8, 8, 64))).shape
        (1, 8, 8, 96)

    Paper: Huang, Liu, van der Maaten, Weinberger 2017, "Densely Connected Convolutional
    Networks", Section 3.
    """

    def __init__(
        self,
        growth_rate,
        bottleneck=True,
        bottleneck_width=4,
        momentum=0.99,
        epsilon=DENSENET_EPSILON,
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.growth_rate = check_positive_int("growth_rate", growth_rate)
        self.bottleneck = _check_bool("bottleneck", bottleneck)
        self.bottleneck_width = check_positive_int("bottleneck_width", bottleneck_width)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        # Created in keras.applications' order so that variables line up one to one.
        if bottleneck:
            self.bn0 = keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon, name="0_bn")
            self.conv1 = keras.layers.Conv2D(
                bottleneck_width * growth_rate,
                1,
                use_bias=False,
                kernel_initializer=self.kernel_initializer,
                name="1_conv",
            )
        else:
            self.bn0 = self.conv1 = None
        self.bn1 = keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon, name="1_bn")
        self.conv2 = keras.layers.Conv2D(
            growth_rate,
            3,
            padding="same",
            use_bias=False,
            kernel_initializer=self.kernel_initializer,
            name="2_conv",
        )

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.bottleneck:
            self.bn0.build(shape)
            self.conv1.build(shape)
            shape = self.conv1.compute_output_shape(shape)
        self.bn1.build(shape)
        self.conv2.build(shape)

    def call(self, inputs, training=None):
        x = inputs
        if self.bottleneck:
            x = self.conv1(ops.relu(self.bn0(x, training=training)))
        x = self.conv2(ops.relu(self.bn1(x, training=training)))
        return ops.concatenate([inputs, x], axis=-1)

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1]
        return (*input_shape[:-1], None if channels is None else channels + self.growth_rate)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "growth_rate": self.growth_rate,
                "bottleneck": self.bottleneck,
                "bottleneck_width": self.bottleneck_width,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class DenseBlock(keras.layers.Layer):
    """A dense block: ``num_layers`` ``DenseLayer`` s, each fed the concatenation of the block's
    input and every earlier layer's output (Huang et al. 2017, Section 3, Eq. 2).

    The block's output has ``channels + num_layers * growth_rate`` channels. Its dense layers
    are named ``block1`` ... ``blockN``, so variable paths read like keras.applications' layer
    names (``conv2/block1/0_bn/gamma`` for ``conv2_block1_0_bn/gamma``).

    Args:
        num_layers: dense layers in the block.
        growth_rate: ``k``, the feature maps each dense layer adds.
        bottleneck: whether each dense layer starts with a 1x1 bottleneck (DenseNet-B).
        bottleneck_width: bottleneck filters as a multiple of ``growth_rate`` (paper: 4).
        momentum: batch-normalization momentum.
        epsilon: batch-normalization epsilon.
        kernel_initializer: initializer of the convolution kernels.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``.
        training: whether batch normalization uses batch statistics.

    Example:
        >>> block = DenseBlock(6, growth_rate=32)
        >>> block(keras.ops.ones((1, 8, 8, 64))).shape
        (1, 8, 8, 256)

    Paper: Huang, Liu, van der Maaten, Weinberger 2017, "Densely Connected Convolutional
    Networks", Section 3 and Table 1.
    """

    def __init__(
        self,
        num_layers,
        growth_rate,
        bottleneck=True,
        bottleneck_width=4,
        momentum=0.99,
        epsilon=DENSENET_EPSILON,
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.growth_rate = check_positive_int("growth_rate", growth_rate)
        self.bottleneck = _check_bool("bottleneck", bottleneck)
        self.bottleneck_width = check_positive_int("bottleneck_width", bottleneck_width)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.dense_layers = [
            DenseLayer(
                growth_rate,
                bottleneck=bottleneck,
                bottleneck_width=bottleneck_width,
                momentum=momentum,
                epsilon=epsilon,
                kernel_initializer=self.kernel_initializer,
                name=f"block{i}",
            )
            for i in range(1, num_layers + 1)
        ]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.dense_layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def call(self, inputs, training=None):
        x = inputs
        for layer in self.dense_layers:
            x = layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1]
        added = self.num_layers * self.growth_rate
        return (*input_shape[:-1], None if channels is None else channels + added)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_layers": self.num_layers,
                "growth_rate": self.growth_rate,
                "bottleneck": self.bottleneck,
                "bottleneck_width": self.bottleneck_width,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class TransitionBlock(keras.layers.Layer):
    """A DenseNet transition layer: BN-ReLU-Conv1x1 then 2x2 average pooling with stride 2.

    It halves the spatial size between dense blocks; with compression ``theta`` the builder
    passes ``filters = int(theta * channels)`` (DenseNet-C, Section 3: ``theta = 0.5``).
    Sublayers are named and ordered as in keras.applications (``bn``, ``conv``, ``pool``).

    Args:
        filters: output channels of the 1x1 convolution.
        momentum: batch-normalization momentum.
        epsilon: batch-normalization epsilon.
        kernel_initializer: initializer of the convolution kernel.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)`` with height and width at least 2.
        training: whether batch normalization uses batch statistics.

    Example:
        >>> transition = TransitionBlock(128)
        >>> transition(keras.ops.ones((1, 8, 8, 256))).shape
        (1, 4, 4, 128)

    Paper: Huang, Liu, van der Maaten, Weinberger 2017, "Densely Connected Convolutional
    Networks", Section 3 ("Pooling layers", "Compression").
    """

    def __init__(
        self, filters, momentum=0.99, epsilon=DENSENET_EPSILON, kernel_initializer="he_normal", **kwargs
    ):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bn = keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon, name="bn")
        self.conv = keras.layers.Conv2D(
            filters, 1, use_bias=False, kernel_initializer=self.kernel_initializer, name="conv"
        )
        self.pool = keras.layers.AveragePooling2D(2, strides=2, name="pool")

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.bn.build(shape)
        self.conv.build(shape)

    def call(self, inputs, training=None):
        x = self.conv(ops.relu(self.bn(inputs, training=training)))
        return self.pool(x)

    def compute_output_shape(self, input_shape):
        return self.pool.compute_output_shape(self.conv.compute_output_shape(tuple(input_shape)))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
