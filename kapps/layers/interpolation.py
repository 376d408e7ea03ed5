"""Bilinear upsampling by an integer factor, with PyTorch's corner-aligned convention.

Keras' ``UpSampling2D(interpolation="bilinear")`` and ``keras.ops.image.resize`` use
half-pixel centres (``align_corners=False``). Models ported from PyTorch code that uses
``nn.UpsamplingBilinear2d`` (TransUNet's decoder) need ``align_corners=True``: the corner
pixels of input and output coincide, output pixel ``i`` of ``m`` samples input position
``i * (n - 1) / (m - 1)``. Both conventions are computed here the same way, as two gathers
and a weighted sum per axis, which converts to builtin TFLite ops (GATHER, MUL, ADD) on any
backend. (FCN's fixed upsampling, a transposed convolution with a bilinear kernel that also
grows the map by a border, is ``kapps.layers.upsampling.BilinearUpsampling2D``.)
"""

import keras
import numpy as np
from keras import ops

from kapps._checks import check_positive_int


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not allowed; expected True or False.")
    return value


def _sample_positions(n, m, align_corners):
    """Lower index, upper index and upper weight of the ``m`` output samples of an axis of
    ``n`` input samples (numpy when ``n`` is a Python int, tensors otherwise)."""
    if isinstance(n, int):
        i = np.arange(m, dtype="float64")
        if align_corners:
            src = i * ((n - 1) / (m - 1)) if m > 1 else np.zeros_like(i)
        else:
            src = np.clip((i + 0.5) * (n / m) - 0.5, 0.0, n - 1)
        low = np.floor(src).astype("int32")
        high = np.minimum(low + 1, n - 1).astype("int32")
        return low, high, (src - low).astype("float32")
    i = ops.arange(m, dtype="float32")
    nf = ops.cast(n, "float32")
    mf = ops.cast(m, "float32")
    if align_corners:
        src = i * (nf - 1.0) / ops.maximum(mf - 1.0, 1.0)
    else:
        src = ops.clip((i + 0.5) * nf / mf - 0.5, 0.0, nf - 1.0)
    low = ops.cast(ops.floor(src), "int32")
    high = ops.minimum(low + 1, ops.cast(n, "int32") - 1)
    return low, high, src - ops.cast(low, "float32")


@keras.saving.register_keras_serializable(package="kapps")
class BilinearResize2D(keras.layers.Layer):
    """Upsample ``(batch, height, width, channels)`` by an integer factor, bilinearly.

    With ``align_corners=True`` (default) this is PyTorch's ``nn.UpsamplingBilinear2d`` /
    ``F.interpolate(..., mode="bilinear", align_corners=True)`` and TensorFlow 1's
    ``tf.compat.v1.image.resize_bilinear(..., align_corners=True)``: the four corner pixels
    keep their values and the rest are interpolated between them. With
    ``align_corners=False`` it equals ``keras.layers.UpSampling2D(interpolation="bilinear")``
    (half-pixel centres). No weights.

    Args:
        scale: integer upsampling factor of height and width.
        align_corners: the corner-aligned convention (True) or half-pixel centres (False).
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``, channels last.

    Example:
        >>> up = BilinearResize2D(2)
        >>> tuple(up(keras.ops.ones((1, 14, 14, 8))).shape)
        (1, 28, 28, 8)

    Paper: Chen et al. 2021, "TransUNet: Transformers Make Strong Encoders for Medical Image
    Segmentation", section 3.2 (the cascaded upsampler's "2x upsampling operator").
    """

    def __init__(self, scale=2, align_corners=True, **kwargs):
        super().__init__(**kwargs)
        self.scale = check_positive_int("scale", scale)
        self.align_corners = _check_bool("align_corners", align_corners)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "BilinearResize2D expects (batch, height, width, channels); received "
                f"shape {tuple(input_shape)}."
            )

    def _resize_axis(self, x, axis):
        n = x.shape[axis] if x.shape[axis] is not None else ops.shape(x)[axis]
        low, high, weight = _sample_positions(n, n * self.scale, self.align_corners)
        shape = [1, 1, 1, 1]
        shape[axis] = -1
        weight = ops.reshape(ops.cast(weight, x.dtype), shape)  # broadcasts along `axis`
        lower = ops.take(x, low, axis=axis)
        upper = ops.take(x, high, axis=axis)
        return lower + (upper - lower) * weight

    def call(self, inputs):
        if self.scale == 1:
            return inputs
        return self._resize_axis(self._resize_axis(inputs, 1), 2)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (
            b,
            None if h is None else h * self.scale,
            None if w is None else w * self.scale,
            c,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale, "align_corners": self.align_corners})
        return config
