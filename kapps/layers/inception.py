"""The Inception module of GoogLeNet (Szegedy et al. 2014)."""

import keras
from keras import ops

from kapps._checks import check_positive_int
from kapps.layers.conv import ConvBNAct


@keras.saving.register_keras_serializable(package="kapps")
class Inception(keras.layers.Layer):
    """The Inception module with dimension reductions (Szegedy et al. 2014, Figure 2b).

    Four parallel branches over the same input, concatenated along channels in this order:
    a 1x1 convolution; a 1x1 reduction then a 3x3 convolution; a 1x1 reduction then a 5x5
    convolution; 3x3 max pooling (stride 1) then a 1x1 projection. Every convolution is
    followed by ReLU ("All the convolutions, including those inside the Inception modules, use
    rectified linear activation", Section 5). With ``batch_norm=True`` each convolution is a
    bias-free convolution + BatchNorm + ReLU (the BN-Inception form of Ioffe & Szegedy 2015).
    Output channels: ``filters_1x1 + filters_3x3 + filters_5x5 + pool_proj``.

    Args:
        filters_1x1: "#1x1" of Table 1.
        filters_3x3_reduce: "#3x3 reduce".
        filters_3x3: "#3x3".
        filters_5x5_reduce: "#5x5 reduce".
        filters_5x5: "#5x5".
        pool_proj: "pool proj".
        batch_norm: whether to normalize after every convolution.
        momentum: batch-normalization momentum.
        epsilon: batch-normalization epsilon.
        kernel_initializer: initializer of the convolution kernels.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``.
        training: whether batch normalization uses batch statistics.

    Example:
        >>> block = Inception(64, 96, 128, 16, 32, 32)  # inception (3a)
        >>> block(keras.ops.ones((1, 28, 28, 192))).shape
        (1, 28, 28, 256)

    Paper: Szegedy et al. 2014, "Going Deeper with Convolutions", Section 4 and Table 1.
    """

    def __init__(
        self,
        filters_1x1,
        filters_3x3_reduce,
        filters_3x3,
        filters_5x5_reduce,
        filters_5x5,
        pool_proj,
        batch_norm=False,
        momentum=0.99,
        epsilon=1e-3,
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters_1x1 = check_positive_int("filters_1x1", filters_1x1)
        self.filters_3x3_reduce = check_positive_int("filters_3x3_reduce", filters_3x3_reduce)
        self.filters_3x3 = check_positive_int("filters_3x3", filters_3x3)
        self.filters_5x5_reduce = check_positive_int("filters_5x5_reduce", filters_5x5_reduce)
        self.filters_5x5 = check_positive_int("filters_5x5", filters_5x5)
        self.pool_proj = check_positive_int("pool_proj", pool_proj)
        if not isinstance(batch_norm, bool):
            raise ValueError(f"batch_norm={batch_norm!r} is not allowed; expected True or False.")
        self.batch_norm = batch_norm
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

        def conv(filters, size, name):
            return ConvBNAct(
                filters,
                size,
                batch_norm=batch_norm,
                momentum=momentum,
                epsilon=epsilon,
                kernel_initializer=self.kernel_initializer,
                name=name,
            )

        self.branch1x1 = conv(filters_1x1, 1, "1x1")
        self.branch3x3_reduce = conv(filters_3x3_reduce, 1, "3x3_reduce")
        self.branch3x3 = conv(filters_3x3, 3, "3x3")
        self.branch5x5_reduce = conv(filters_5x5_reduce, 1, "5x5_reduce")
        self.branch5x5 = conv(filters_5x5, 5, "5x5")
        self.pool = keras.layers.MaxPooling2D(3, strides=1, padding="same", name="pool")
        self.branch_pool_proj = conv(pool_proj, 1, "pool_proj")

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.branch1x1.build(shape)
        self.branch3x3_reduce.build(shape)
        self.branch3x3.build(self.branch3x3_reduce.compute_output_shape(shape))
        self.branch5x5_reduce.build(shape)
        self.branch5x5.build(self.branch5x5_reduce.compute_output_shape(shape))
        self.branch_pool_proj.build(shape)

    def call(self, inputs, training=None):
        branches = [
            self.branch1x1(inputs, training=training),
            self.branch3x3(self.branch3x3_reduce(inputs, training=training), training=training),
            self.branch5x5(self.branch5x5_reduce(inputs, training=training), training=training),
            self.branch_pool_proj(self.pool(inputs), training=training),
        ]
        return ops.concatenate(branches, axis=-1)

    @property
    def output_channels(self):
        """Channels of the concatenated output."""
        return self.filters_1x1 + self.filters_3x3 + self.filters_5x5 + self.pool_proj

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.output_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters_1x1": self.filters_1x1,
                "filters_3x3_reduce": self.filters_3x3_reduce,
                "filters_3x3": self.filters_3x3,
                "filters_5x5_reduce": self.filters_5x5_reduce,
                "filters_5x5": self.filters_5x5,
                "pool_proj": self.pool_proj,
                "batch_norm": self.batch_norm,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
