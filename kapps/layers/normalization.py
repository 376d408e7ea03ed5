"""Normalization layers that Keras does not ship."""

import keras
from keras import ops

from kapps._checks import check_positive_int


@keras.saving.register_keras_serializable(package="kapps")
class LocalResponseNormalization(keras.layers.Layer):
    """AlexNet's local response normalization across channels.

    ``b[..., c] = a[..., c] / (k + alpha * sum(a[..., j]**2 for j in window(c)))**beta``,
    where the window holds ``depth`` adjacent channels centred on ``c`` (clipped at the edges).
    Note that ``alpha`` multiplies the plain sum as in the paper (Caffe divides it by ``depth``).
    This equals ``tf.nn.local_response_normalization(x, depth_radius=(depth - 1) // 2, bias=k,
    alpha=alpha, beta=beta)``.

    Args:
        depth: ``n``, the number of adjacent channels summed (odd). Paper: 5.
        k: the bias added to the sum. Paper: 2.
        alpha: the scale of the sum. Paper: 1e-4.
        beta: the exponent. Paper: 0.75.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: a channels-last tensor ``(batch, ..., channels)``.

    Example:
        >>> x = keras.random.normal((2, 27, 27, 96))
        >>> LocalResponseNormalization()(x).shape
        (2, 27, 27, 96)

    Paper: Krizhevsky, Sutskever, Hinton 2012, Section 3.3.
    """

    def __init__(self, depth=5, k=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        check_positive_int("depth", depth)
        if depth % 2 != 1:
            raise ValueError(f"depth={depth!r} must be an odd number of channels (e.g. 5).")
        self.depth = int(depth)
        self.k = float(k)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def call(self, inputs):
        radius = (self.depth - 1) // 2
        squared = ops.square(inputs)
        rank = len(inputs.shape)
        channels = inputs.shape[-1]
        # Zero-pad the channel axis so every channel has a full window, then add the
        # `depth` shifted copies: a static loop of slices that converts to builtin TFLite ops.
        padded = ops.pad(squared, [[0, 0]] * (rank - 1) + [[radius, radius]])
        window_sum = padded[..., 0:channels]
        for shift in range(1, self.depth):
            window_sum = window_sum + padded[..., shift : shift + channels]
        return inputs * ops.power(self.k + self.alpha * window_sum, -self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"depth": self.depth, "k": self.k, "alpha": self.alpha, "beta": self.beta})
        return config
