"""Activation layers that Keras does not ship."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kapps")
class ScaledTanh(keras.layers.Layer):
    """LeNet-5's squashing function ``f(a) = A * tanh(S * a)``.

    With the paper's ``A = 1.7159`` and ``S = 2/3``, ``f(1) = 1`` and ``f(-1) = -1``, and the
    second derivative is largest at +-1, which is why the output codes of LeNet-5 are +-1.

    Args:
        amplitude: ``A``, the asymptotes are ``+-A``.
        slope: ``S``, the slope at the origin is ``A * S``.
        **kwargs: standard layer arguments (``name``, ``dtype``, ...).

    Call arguments:
        inputs: a tensor of any shape.

    Returns:
        A tensor of the same shape.

    Example:
        >>> ScaledTanh()(np.array([1.0]))  # ~1.0

    Paper: LeCun et al. 1998, "Gradient-Based Learning Applied to Document Recognition",
    Appendix A.
    """

    def __init__(self, amplitude=1.7159, slope=2.0 / 3.0, **kwargs):
        super().__init__(**kwargs)
        self.amplitude = float(amplitude)
        self.slope = float(slope)

    def call(self, inputs):
        return self.amplitude * ops.tanh(self.slope * inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"amplitude": self.amplitude, "slope": self.slope})
        return config
