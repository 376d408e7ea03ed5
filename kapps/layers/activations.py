"""Activations that Keras does not ship: LeNet-5's scaled tanh and GPT-2's tanh GELU as a
serializable function."""

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


@keras.saving.register_keras_serializable(package="kapps")
def gelu_tanh(x):
    """GELU with the tanh approximation, ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    GPT-2 (and BERT's original code) use this form rather than the exact ``x Phi(x)``; it is
    ``keras.activations.gelu(x, approximate=True)`` under a name that serializes (the string
    ``"gelu"`` means the exact form). TFLite runs it as one builtin ``GELU``
    (``approximate=True``).

    Paper: Hendrycks & Gimpel 2016, "Gaussian Error Linear Units (GELUs)", section 2.
    """
    return keras.activations.gelu(x, approximate=True)


def get_activation(activation):
    """``activation`` as a callable: ``"gelu_tanh"`` (GPT-2's and BERT's reference code's
    approximation, above), any name ``keras.activations.get`` knows (``"gelu"`` is the exact
    form), or a callable.

    Raises:
        ValueError: naming the value received and what is allowed.
    """
    if isinstance(activation, str) and activation == "gelu_tanh":
        return gelu_tanh
    message = (
        f"activation={activation!r} is not allowed; expected 'gelu_tanh' (the tanh "
        "approximation of GPT-2 and BERT's reference code), a Keras activation name such as "
        "'gelu' (exact) or 'relu', or a callable."
    )
    if activation is None:
        raise ValueError(message)
    try:
        return keras.activations.get(activation)
    except (ValueError, TypeError) as error:
        raise ValueError(message) from error
