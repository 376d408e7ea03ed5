"""Weight standardization (Qiao et al. 2019): a convolution whose kernel is normalized to zero
mean and unit variance per output channel each time it is used. Paired with group
normalization it replaces batch normalization in BiT ResNets (Kolesnikov et al. 2020), whose
ResNet-50 is the CNN half of ViT's hybrid and of TransUNet."""

import keras
from keras import ops


def _check_epsilon(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"epsilon={value!r} is not allowed; expected a number > 0.")
    return float(value)


def standardize_kernel(kernel, epsilon=1e-5):
    """``(kernel - mean) / sqrt(var + epsilon)`` over all axes but the last (output channels).

    Keras kernels are ``(kh, kw, in, out)``, so the statistics of one output channel are
    over ``(kh, kw, in)``: the same numbers as PyTorch's ``dim=[1, 2, 3]`` of ``(out, in, kh,
    kw)`` kernels. The variance is the biased (population) one, as in the reference code.
    """
    axes = tuple(range(len(kernel.shape) - 1))
    mean = ops.mean(kernel, axis=axes, keepdims=True)
    variance = ops.var(kernel, axis=axes, keepdims=True)
    return (kernel - mean) / ops.sqrt(variance + epsilon)


@keras.saving.register_keras_serializable(package="kapps")
class StandardizedConv2D(keras.layers.Conv2D):
    """A ``Conv2D`` whose kernel is standardized per output channel before it is applied.

    The stored kernel ``w`` is free; the convolution uses ``(w - mean(w)) / sqrt(var(w) +
    epsilon)``, the mean and variance taken per output channel over the kernel's height,
    width and input channels. This smooths the loss landscape so that small-batch training
    with group normalization matches batch normalization (Qiao et al. 2019), which BiT relies
    on for transfer. Everything else is ``keras.layers.Conv2D``; BiT's convolutions have no
    bias (the default here). On export the standardized kernel is a constant, so the TFLite
    graph is a plain convolution.

    Args:
        filters: output channels.
        kernel_size: an int or a pair.
        strides: an int or a pair.
        padding: ``"valid"`` or ``"same"``.
        use_bias: whether to add a bias (False in BiT).
        kernel_initializer: initializer of the free kernel.
        epsilon: added to the variance (1e-5 as TransUNet's ``StdConv2d``).
        **kwargs: the other ``keras.layers.Conv2D`` arguments (``dilation_rate``,
            ``groups``, regularizers, ...) and standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``.

    Example:
        >>> conv = StandardizedConv2D(64, 7, strides=2, padding="same")
        >>> tuple(conv(keras.ops.ones((1, 224, 224, 3))).shape)
        (1, 112, 112, 64)

    Paper: Qiao et al. 2019, "Micro-Batch Training with Batch-Channel Normalization and
    Weight Standardization"; Kolesnikov et al. 2020, "Big Transfer (BiT): General Visual
    Representation Learning", section 4.3.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        use_bias=False,
        kernel_initializer="he_normal",
        epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            **kwargs,
        )
        self.epsilon = _check_epsilon(epsilon)

    def convolution_op(self, inputs, kernel):
        # statistics in float32: under mixed precision a float16 variance of small kernel
        # values would lose the epsilon
        standardized = standardize_kernel(ops.cast(kernel, "float32"), self.epsilon)
        return super().convolution_op(inputs, ops.cast(standardized, kernel.dtype))

    def get_config(self):
        config = super().get_config()
        config.update({"epsilon": self.epsilon})
        return config
