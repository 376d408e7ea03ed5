"""Masks computed inside the graph: per-pixel class scores turned into a class map (so an
exported model hands a phone the mask itself, one byte per pixel, rather than a float per
class), and the real-token mask of padded token ids."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kapps")
class ArgmaxMask(keras.layers.Layer):
    """Per-pixel class scores to a ``uint8`` class map.

    Several channels: the index of the largest score (argmax over the last axis, the first
    index on ties, as ``numpy.argmax``). One channel (a sigmoid or logit map of one class):
    1 where the score exceeds ``threshold``, else 0. Both convert to TFLite builtin ops
    (``ARG_MAX`` / ``GREATER`` and ``CAST``), so the mask can be computed on the device.

    Args:
        threshold: the one-channel cut: 0.5 for probabilities (a sigmoid head), 0.0 for
            logits.
        **kwargs: standard layer arguments (``name``, ...).

    Call arguments:
        scores: ``(batch, height, width, classes)`` with at most 256 classes.

    Returns:
        ``(batch, height, width)`` ``uint8``.

    Example:
        >>> scores = keras.ops.convert_to_tensor([[[[0.1, 0.7, 0.2]]]])
        >>> ArgmaxMask()(scores)  # [[[1]]]

    Paper: the per-pixel argmax is how Long et al. 2015 (FCN) and Ronneberger et al. 2015
    (U-Net) read a segmentation from their score maps.
    """

    def __init__(self, threshold=0.5, **kwargs):
        super().__init__(**kwargs)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ValueError(f"threshold={threshold!r} is not allowed; expected a finite number.")
        self.threshold = float(threshold)

    def build(self, input_shape):
        classes = input_shape[-1]
        if classes is None or not 1 <= classes <= 256:
            raise ValueError(
                f"scores with {classes} classes (shape {tuple(input_shape)}) are not allowed; "
                "expected a known last axis of 1 to 256 classes (a uint8 mask holds 256 values)."
            )
        super().build(input_shape)

    def call(self, scores):
        if scores.shape[-1] == 1:
            return keras.ops.cast(scores[..., 0] > self.threshold, "uint8")
        if keras.backend.backend() == "tensorflow":
            # keras.ops.argmax on TensorFlow first maps -0.0 to the smallest negative float
            # (through signbit, a BitwiseAnd that TFLite has no builtin for); a class map does
            # not care which zero is larger, and plain tf.argmax converts to ARG_MAX.
            import tensorflow as tf

            return tf.cast(tf.argmax(scores, axis=-1, output_type="int32"), "uint8")
        return keras.ops.cast(keras.ops.argmax(scores, axis=-1), "uint8")

    def compute_output_spec(self, scores):
        return keras.KerasTensor(scores.shape[:-1], dtype="uint8")

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@keras.saving.register_keras_serializable(package="kapps")
class TokenMask(keras.layers.Layer):
    """``ids != pad_id``: a boolean ``(batch, length)`` mask of the real tokens.

    Args:
        pad_id: the padding token id (an int >= 0).
        **kwargs: standard layer arguments.

    Call arguments:
        ids: integer token ids of any shape.

    Returns:
        A boolean tensor of the same shape (NOT_EQUAL in TFLite).

    Example:
        >>> TokenMask(0)(keras.ops.convert_to_tensor([[5, 3, 0]]))  # [[True, True, False]]

    Paper: none; the padding convention of every batched sequence model.
    """

    def __init__(self, pad_id=0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(pad_id, bool) or not isinstance(pad_id, int) or pad_id < 0:
            raise ValueError(f"pad_id={pad_id!r} is not allowed; expected an int >= 0.")
        self.pad_id = pad_id

    def call(self, ids):
        return ops.not_equal(ids, ops.cast(self.pad_id, ids.dtype))

    def compute_output_spec(self, ids):
        return keras.KerasTensor(ids.shape, dtype="bool")

    def get_config(self):
        return {**super().get_config(), "pad_id": self.pad_id}
