"""The residual unit of BiT ResNets (Kolesnikov et al. 2020) as the ViT hybrid and TransUNet use
it: a bottleneck of weight-standardized convolutions, each followed by group normalization."""

import keras
from keras import ops

from kapps._checks import check_positive_int
from kapps.layers.standardized_conv import StandardizedConv2D

#: TransUNet's GroupNorm epsilons: 1e-6 in the units, PyTorch's default 1e-5 on the projection.
GROUP_NORM_EPSILON = 1e-6
PROJECTION_EPSILON = 1e-5


def _check_epsilon(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name}={value!r} is not allowed; expected a number > 0.")
    return float(value)


def _check_divides(groups, channels, what):
    if channels % groups:
        raise ValueError(
            f"groups={groups!r} does not divide the {channels} {what}; group normalization "
            "needs a channel count that is a multiple of groups."
        )


@keras.saving.register_keras_serializable(package="kapps")
class BiTBottleneck(keras.layers.Layer):
    """Bottleneck unit of weight-standardized convolutions and group normalization.

    ``y = relu(GN(conv1x1(x)))``, ``y = relu(GN(conv3x3/stride(y)))``, ``y = GN(conv1x1(y))``,
    ``out = relu(shortcut(x) + y)``, with ``shortcut = GN(conv1x1/stride(x))`` (a projection)
    or the identity. Every convolution is a biasless ``StandardizedConv2D``. This is the unit
    of the ResNet-50 in ViT's hybrid model as ``Beckschen/TransUNet``
    (``vit_seg_modeling_resnet_skip.py``) implements it: its class is called
    ``PreActBottleneck`` but it normalizes after each convolution and adds before the last
    ReLU, like ResNet v1 (and puts the stride on the 3x3 convolution, as ResNet v1.5). The
    3x3 convolution pads one pixel on each side explicitly (PyTorch's ``padding=1``), which
    differs from Keras' ``"same"`` at stride 2 on even sizes. The projection's group norm has
    one group per channel and epsilon 1e-5 (``nn.GroupNorm(cout, cout)``), the others
    ``groups`` groups and epsilon 1e-6.

    Args:
        filters: output channels (4 x the bottleneck width in ResNet-50).
        bottleneck_filters: channels of the 1x1 and 3x3 convolutions inside; default
            ``filters // 4``.
        strides: stride of the 3x3 convolution and of the projection.
        projection: whether the shortcut is a projection; required when the input channels
            differ from ``filters`` or ``strides > 1``.
        groups: groups of the units' group normalizations (32 in BiT).
        epsilon: their epsilon.
        projection_groups: groups of the projection's group normalization (None: one per
            channel, as the reference code).
        projection_epsilon: its epsilon.
        standardization_epsilon: epsilon of the weight standardization.
        kernel_initializer: initializer of the convolutions' kernels.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``.

    Example:
        >>> unit = BiTBottleneck(256, bottleneck_filters=64, projection=True)
        >>> tuple(unit(keras.ops.ones((1, 55, 55, 64))).shape)
        (1, 55, 55, 256)

    Paper: Kolesnikov et al. 2020, "Big Transfer (BiT)", section 4.3; He et al. 2016, "Deep
    Residual Learning for Image Recognition" (the bottleneck); Wu & He 2018, "Group
    Normalization".
    """

    def __init__(
        self,
        filters,
        bottleneck_filters=None,
        strides=1,
        projection=False,
        groups=32,
        epsilon=GROUP_NORM_EPSILON,
        projection_groups=None,
        projection_epsilon=PROJECTION_EPSILON,
        standardization_epsilon=1e-5,
        kernel_initializer="he_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        if bottleneck_filters is None:
            bottleneck_filters = max(filters // 4, 1)
        self.bottleneck_filters = check_positive_int("bottleneck_filters", bottleneck_filters)
        self.strides = check_positive_int("strides", strides)
        if not isinstance(projection, bool):
            raise ValueError(f"projection={projection!r} is not allowed; expected True or False.")
        self.projection = projection
        self.groups = check_positive_int("groups", groups)
        _check_divides(groups, self.bottleneck_filters, "bottleneck_filters")
        _check_divides(groups, filters, "filters")
        self.epsilon = _check_epsilon("epsilon", epsilon)
        if projection_groups is not None:
            check_positive_int("projection_groups", projection_groups)
            _check_divides(projection_groups, filters, "filters")
        self.projection_groups = projection_groups
        self.projection_epsilon = _check_epsilon("projection_epsilon", projection_epsilon)
        self.standardization_epsilon = _check_epsilon(
            "standardization_epsilon", standardization_epsilon
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        if strides > 1 and not projection:
            raise ValueError(
                f"projection=False is not allowed with strides={strides!r}: the shortcut must "
                "be downsampled too; use projection=True."
            )

        mid = self.bottleneck_filters
        self.conv1 = self._conv(mid, 1, 1, "conv1")
        self.gn1 = self._norm(groups, epsilon, "gn1")
        self.pad2 = keras.layers.ZeroPadding2D(1, dtype=self.dtype_policy, name="pad2")
        self.conv2 = self._conv(mid, 3, strides, "conv2")
        self.gn2 = self._norm(groups, epsilon, "gn2")
        self.conv3 = self._conv(filters, 1, 1, "conv3")
        self.gn3 = self._norm(groups, epsilon, "gn3")
        if projection:
            self.conv_proj = self._conv(filters, 1, strides, "conv_proj")
            self.gn_proj = self._norm(projection_groups or filters, projection_epsilon, "gn_proj")

    def _conv(self, filters, kernel_size, strides, name):
        return StandardizedConv2D(
            filters,
            kernel_size,
            strides=strides,
            padding="valid",
            kernel_initializer=keras.initializers.get(
                keras.initializers.serialize(self.kernel_initializer)
            ),
            epsilon=self.standardization_epsilon,
            dtype=self.dtype_policy,
            name=name,
        )

    def _norm(self, groups, epsilon, name):
        return keras.layers.GroupNormalization(
            groups=groups, epsilon=epsilon, dtype=self.dtype_policy, name=name
        )

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "BiTBottleneck expects (batch, height, width, channels) with known channels; "
                f"received shape {tuple(input_shape)}."
            )
        input_shape = tuple(input_shape)
        if not self.projection and input_shape[-1] != self.filters:
            raise ValueError(
                f"projection=False is not allowed with {input_shape[-1]} input channels and "
                f"filters={self.filters}: an identity shortcut needs equal channels; use "
                "projection=True."
            )
        self.conv1.build(input_shape)
        shape = self.conv1.compute_output_shape(input_shape)
        self.gn1.build(shape)
        shape = self.pad2.compute_output_shape(shape)
        self.conv2.build(shape)
        shape = self.conv2.compute_output_shape(shape)
        self.gn2.build(shape)
        self.conv3.build(shape)
        shape = self.conv3.compute_output_shape(shape)
        self.gn3.build(shape)
        if self.projection:
            self.conv_proj.build(input_shape)
            self.gn_proj.build(self.conv_proj.compute_output_shape(input_shape))

    def call(self, inputs):
        shortcut = inputs
        if self.projection:
            shortcut = self.gn_proj(self.conv_proj(inputs))
        y = ops.relu(self.gn1(self.conv1(inputs)))
        y = ops.relu(self.gn2(self.conv2(self.pad2(y))))
        y = self.gn3(self.conv3(y))
        return ops.relu(shortcut + y)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        s = self.strides
        h = None if h is None else (h - 1) // s + 1  # 1 pixel of padding, 3x3 kernel
        w = None if w is None else (w - 1) // s + 1
        return (b, h, w, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "bottleneck_filters": self.bottleneck_filters,
                "strides": self.strides,
                "projection": self.projection,
                "groups": self.groups,
                "epsilon": self.epsilon,
                "projection_groups": self.projection_groups,
                "projection_epsilon": self.projection_epsilon,
                "standardization_epsilon": self.standardization_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
