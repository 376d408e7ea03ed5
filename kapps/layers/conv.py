"""Convolution blocks."""

import keras
import numpy as np
from keras import ops

from kapps._checks import check_choice, check_positive_int


@keras.saving.register_keras_serializable(package="kapps")
class ConvBNAct(keras.layers.Layer):
    """Convolution, then batch normalization, then an activation: the block most CNNs repeat.

    With ``batch_norm=True`` the convolution has no bias (the normalization's offset takes its
    place, Ioffe & Szegedy 2015, Section 3.2); with ``batch_norm=False`` the block is a plain
    biased convolution followed by the activation.

    Args:
        filters: output channels.
        kernel_size: side of the square kernel.
        strides: stride of the convolution.
        padding: ``"same"`` or ``"valid"``.
        groups: split the input and output channels into this many independent groups
            (AlexNet's two towers); both channel counts must be divisible by it.
        dilation_rate: dilation of the kernel.
        activation: activation after normalization (name, callable, or None).
        batch_norm: whether to normalize.
        momentum: batch-normalization momentum.
        epsilon: batch-normalization epsilon.
        kernel_initializer: initializer of the kernel.
        kernel_regularizer: optional regularizer of the kernel.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``.
        training: whether batch normalization uses batch statistics.

    Example:
        >>> block = ConvBNAct(64, 3, strides=2)
        >>> block(keras.ops.ones((1, 32, 32, 3))).shape
        (1, 16, 16, 64)

    Paper: Ioffe & Szegedy 2015, "Batch Normalization".
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="same",
        groups=1,
        dilation_rate=1,
        activation="relu",
        batch_norm=True,
        momentum=0.99,
        epsilon=1e-3,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.strides = check_positive_int("strides", strides)
        self.padding = check_choice("padding", padding, ("same", "valid"))
        self.groups = check_positive_int("groups", groups)
        if filters % groups:
            raise ValueError(
                f"groups={groups!r} does not divide filters={filters!r}; "
                "filters must be a multiple of groups."
            )
        self.dilation_rate = check_positive_int("dilation_rate", dilation_rate)
        self.activation = keras.activations.get(activation)
        self.batch_norm = bool(batch_norm)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.conv = keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            groups=groups,
            dilation_rate=dilation_rate,
            use_bias=not batch_norm,
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
            name="conv",
        )
        self.bn = (
            keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon, name="bn")
            if batch_norm
            else None
        )

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels % self.groups:
            raise ValueError(
                f"groups={self.groups!r} does not divide the {channels} input channels; "
                "the input channels must be a multiple of groups."
            )
        self.conv.build(input_shape)
        if self.bn is not None:
            self.bn.build(self.conv.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        x = self.conv(inputs)
        if self.bn is not None:
            x = self.bn(x, training=training)
        return self.activation(x)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "groups": self.groups,
                "dilation_rate": self.dilation_rate,
                "activation": keras.activations.serialize(self.activation),
                "batch_norm": self.batch_norm,
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
class PartialConv2D(keras.layers.Layer):
    """A convolution in which each output map sees only some input maps (LeNet-5's C3).

    Output map ``o`` is computed from the input maps listed in ``connection_table[o]``.
    Only the connected kernels are weights, so C3 of LeNet-5 has the paper's 1,516
    parameters rather than the 2,416 of a full convolution. The full kernel is assembled at
    call time by gathering the stored kernels into place, with zeros where there is no
    connection; converters fold that gather into a constant.

    Args:
        connection_table: a sequence with one entry per output map, each a sequence of
            input-map indices (0-based). Its length is the number of filters.
        kernel_size: side of the square kernel.
        padding: ``"valid"`` (the paper) or ``"same"``.
        activation: activation applied to the output.
        kernel_initializer: initializer of the stored kernels, shape
            ``(kernel_size, kernel_size, connections)``.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``, with more channels than any index in
            the table.

    Example:
        >>> layer = PartialConv2D([[0, 1], [1, 2]], kernel_size=5)
        >>> layer(keras.ops.ones((1, 14, 14, 3))).shape
        (1, 10, 10, 2)

    Paper: LeCun et al. 1998, Section II-B and Table I.
    """

    def __init__(
        self,
        connection_table,
        kernel_size=5,
        padding="valid",
        activation=None,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if (
            not isinstance(connection_table, (list, tuple))
            or not connection_table
            or any(
                not isinstance(row, (list, tuple))
                or not row
                or len(set(row)) != len(row)
                or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in row)
                for row in connection_table
            )
        ):
            raise ValueError(
                f"connection_table={connection_table!r} is not allowed; expected a non-empty "
                "sequence of non-empty sequences of distinct input-map indices >= 0."
            )
        self.connection_table = tuple(tuple(int(i) for i in row) for row in connection_table)
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        self.padding = check_choice("padding", padding, ("same", "valid"))
        self.activation = keras.activations.get(activation)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.filters = len(self.connection_table)
        self.connections = sum(len(row) for row in self.connection_table)

    def build(self, input_shape):
        channels = input_shape[-1]
        needed = 1 + max(max(row) for row in self.connection_table)
        if channels is None or channels < needed:
            raise ValueError(
                f"connection_table refers to input map {needed - 1}, but the input has "
                f"{channels} channels; the input needs at least {needed}."
            )
        k = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel", shape=(k, k, self.connections), initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
        # index[i * filters + o] = position of kernel (i -> o) in the stored kernels, or
        # `connections` (a zero column) where input i does not feed output o.
        index = np.full((channels, self.filters), self.connections, dtype="int32")
        position = 0
        for o, row in enumerate(self.connection_table):
            for i in row:
                index[i, o] = position
                position += 1
        self._gather_index = index.reshape(-1)
        self._channels = channels

    def full_kernel(self):
        """The dense ``(k, k, in_channels, filters)`` kernel with zeros where unconnected."""
        k = self.kernel_size
        stored = ops.reshape(self.kernel, (k * k, self.connections))
        stored = ops.concatenate([stored, ops.zeros((k * k, 1), dtype=stored.dtype)], axis=1)
        full = ops.take(stored, self._gather_index, axis=1)  # (k*k, in * filters)
        return ops.reshape(full, (k, k, self._channels, self.filters))

    def call(self, inputs):
        kernel = ops.cast(self.full_kernel(), inputs.dtype)
        outputs = ops.conv(inputs, kernel, strides=1, padding=self.padding)
        return self.activation(outputs + ops.cast(self.bias, inputs.dtype))

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        if self.padding == "valid":
            h = None if h is None else h - self.kernel_size + 1
            w = None if w is None else w - self.kernel_size + 1
        return (b, h, w, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "connection_table": [list(row) for row in self.connection_table],
                "kernel_size": self.kernel_size,
                "padding": self.padding,
                "activation": keras.activations.serialize(self.activation),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
