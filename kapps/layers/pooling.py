"""Pooling layers that Keras does not ship."""

import keras
from keras import ops

from kapps._checks import check_positive_int


@keras.saving.register_keras_serializable(package="kapps")
class TrainableSubsampling(keras.layers.Layer):
    """LeNet-5's subsampling layer (S2, S4): a pooled sum scaled and shifted per feature map.

    Each output unit adds the ``pool_size x pool_size`` inputs of its (non-overlapping)
    window, multiplies the sum by a trainable coefficient and adds a trainable bias; there is
    one coefficient and one bias per feature map, so the layer has ``2 * channels`` weights.
    The squashing function is applied by the next layer (or ``activation``).

    Args:
        pool_size: side of the square window, also the stride. Paper: 2.
        activation: optional activation applied to the result (name or callable).
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``.

    Returns:
        ``(batch, height // pool_size, width // pool_size, channels)``.

    Example:
        >>> TrainableSubsampling(2)(keras.ops.ones((1, 28, 28, 6))).shape
        (1, 14, 14, 6)

    Paper: LeCun et al. 1998, Section II-B (layer S2).
    """

    def __init__(self, pool_size=2, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = check_positive_int("pool_size", pool_size)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.coefficient = self.add_weight(
            name="coefficient", shape=(channels,), initializer="ones"
        )
        self.bias = self.add_weight(name="bias", shape=(channels,), initializer="zeros")

    def call(self, inputs):
        p = self.pool_size
        # average * window area = the sum over the window, as in the paper
        pooled = ops.average_pool(inputs, pool_size=p, strides=p, padding="valid") * float(p * p)
        outputs = pooled * ops.cast(self.coefficient, pooled.dtype) + ops.cast(self.bias, pooled.dtype)
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        p = self.pool_size
        return (b, None if h is None else h // p, None if w is None else w // p, c)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pool_size": self.pool_size,
                "activation": keras.activations.serialize(self.activation),
            }
        )
        return config
