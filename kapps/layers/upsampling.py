"""Upsampling for dense prediction: the bilinear kernel initializer of learned transposed
convolutions, a fixed bilinear upsampling layer, and the crop that aligns score maps (FCN)."""

import keras
import numpy as np
from keras import ops

from kapps._checks import check_choice, check_positive_int

#: How ``BilinearUpsampling2D`` upsamples (the same words as the FCN builders' ``upsampling``).
MODES = ("deconvolution", "interpolation")


def bilinear_filter(size):
    """The ``size x size`` bilinear interpolation kernel of Long et al.'s Caffe ``surgery.py``.

    A transposed convolution with this kernel and stride ``(size + 1) // 2`` is bilinear
    interpolation by that factor: along each axis the weight of tap ``k`` is
    ``1 - |k - centre| / factor``, with the centre halfway along the kernel. For an even size
    ``2f`` the taps at distance ``d`` and ``f - d`` from an output pixel sum to one, so every
    output pixel away from the border is a convex combination of its two nearest inputs.

    Args:
        size: kernel side (``2 * factor`` for upsampling by ``factor``).

    Returns:
        A float64 numpy array of shape ``(size, size)``.

    Example:
        >>> bilinear_filter(4)[0]  # (1/16) * [1, 3, 3, 1]
        array([0.0625, 0.1875, 0.1875, 0.0625])
    """
    size = check_positive_int("size", size)
    return np.outer(_bilinear_taps(size), _bilinear_taps(size))


def _bilinear_taps(size):
    """One axis of ``bilinear_filter``: ``size`` weights."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    return 1.0 - np.abs(np.arange(size) - centre) / factor


@keras.saving.register_keras_serializable(package="kapps")
class BilinearKernel(keras.initializers.Initializer):
    """Initialize a (transposed) convolution kernel to per-channel bilinear interpolation.

    The kernel ``(kernel_h, kernel_w, channels, channels)`` gets ``bilinear_filter`` on its
    channel diagonal and zeros elsewhere, so channel ``c`` of the output is channel ``c`` of the
    input, bilinearly upsampled; the off-diagonal weights start at zero and may be learned. This
    is Caffe FCN's ``surgery.interp`` for the ``upscore`` layers (FCN Section 3.3: "we initialize
    the 2x upsampling to bilinear interpolation, but allow the parameters to be learned").
    The kernel is symmetric, so it means the same in a Keras ``Conv2DTranspose`` (layout
    ``(h, w, out, in)``) as in a ``Conv2D`` (``(h, w, in, out)``).

    Example:
        >>> up = keras.layers.Conv2DTranspose(
        ...     21, 4, strides=2, use_bias=False, kernel_initializer=BilinearKernel())

    Paper: Long, Shelhamer, Darrell 2015, "Fully Convolutional Networks for Semantic
    Segmentation", Section 3.3.
    """

    def __call__(self, shape, dtype=None):
        shape = tuple(shape)
        if len(shape) != 4 or shape[2] != shape[3]:
            raise ValueError(
                f"BilinearKernel expects a kernel shape (height, width, channels, channels) with "
                f"as many output as input channels; received shape={shape!r}."
            )
        rows, cols = _bilinear_taps(shape[0]), _bilinear_taps(shape[1])
        kernel = np.zeros(shape, dtype="float64")
        channels = np.arange(shape[2])
        kernel[:, :, channels, channels] = np.outer(rows, cols)[:, :, None]
        return ops.convert_to_tensor(kernel, dtype=dtype or keras.config.floatx())

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="kapps")
class BilinearUpsampling2D(keras.layers.Layer):
    """Fixed (not learned) bilinear upsampling of every channel by an integer ``factor``.

    Two ways, which place the samples differently:

    - ``"deconvolution"`` (Caffe FCN's final ``upscore`` layers, learning rate 0): each channel
      is convolved-transposed with the ``2f x 2f`` ``bilinear_filter`` at stride ``f``, no
      padding; ``(h, w)`` becomes ``((h + 1) f, (w + 1) f)``. Input pixel ``i`` lands on output
      coordinate ``i f + f - 1/2``, and the outermost ``f`` output pixels on each side taper
      towards zero (fewer than two inputs reach them). The channels are folded into the batch
      axis and share one ``(2f, 2f, 1, 1)`` kernel: the same numbers as Caffe's diagonal
      ``(2f, 2f, C, C)`` kernel, without its ``C x`` work and ``(2f)^2 C^2`` frozen weights,
      and with builtin TFLite ops only (TRANSPOSE, RESHAPE, TRANSPOSE_CONV).
    - ``"interpolation"``: ``keras.ops.image.resize`` (half-pixel centres, TFLite
      RESIZE_BILINEAR); ``(h, w)`` becomes ``(h f, w f)``, input pixel ``i`` lands on
      ``i f + (f - 1)/2`` and the borders are clamped, not tapered.

    Away from the borders the two agree up to a shift of ``f / 2`` output pixels
    (``deconvolution[o] == interpolation[o - f/2]`` for even ``f``). Near the borders they
    differ, which is why the FCN builders compute separate crop offsets for each mode and use
    ``"deconvolution"`` for the paper's configuration.

    The layer has no weights; the kernel is a constant rebuilt from ``factor``.

    Args:
        factor: positive integer upsampling factor (height and width).
        mode: ``"deconvolution"`` (default) or ``"interpolation"``, as above.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``; height, width and batch may be unknown.

    Example:
        >>> up = BilinearUpsampling2D(32)
        >>> tuple(up(keras.ops.ones((1, 16, 16, 21))).shape)
        (1, 544, 544, 21)

    Paper: Long, Shelhamer, Darrell 2015, "Fully Convolutional Networks for Semantic
    Segmentation", Section 3.3 (upsampling is backwards strided convolution).
    """

    def __init__(self, factor, mode="deconvolution", **kwargs):
        super().__init__(**kwargs)
        self.factor = check_positive_int("factor", factor)
        self.mode = check_choice("mode", mode, MODES)
        # (2f, 2f, 1, 1): one output and one input channel; every channel shares it
        self._kernel = bilinear_filter(2 * self.factor)[:, :, None, None]

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"BilinearUpsampling2D expects (batch, height, width, channels) with known "
                f"channels; received shape {tuple(input_shape)}."
            )

    def call(self, inputs):
        f = self.factor
        batch, height, width, channels = ops.shape(inputs)
        if self.mode == "interpolation":
            return ops.image.resize(
                inputs, (height * f, width * f), interpolation="bilinear", data_format="channels_last"
            )
        kernel = ops.convert_to_tensor(self._kernel, dtype=inputs.dtype)
        x = ops.transpose(inputs, (0, 3, 1, 2))  # (batch, channels, h, w)
        x = ops.reshape(x, (-1, height, width, 1))  # (batch * channels, h, w, 1)
        x = ops.conv_transpose(x, kernel, strides=f, padding="valid", data_format="channels_last")
        # (batch * channels, (h + 1) f, (w + 1) f, 1) -> (batch, channels, (h + 1) f, (w + 1) f)
        x = ops.reshape(x, (batch, channels, (height + 1) * f, (width + 1) * f))
        return ops.transpose(x, (0, 2, 3, 1))  # (batch, (h + 1) f, (w + 1) f, channels)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        extra = 1 if self.mode == "deconvolution" else 0

        def size(n):
            return None if n is None else (n + extra) * self.factor

        return (batch, size(height), size(width), channels)

    def get_config(self):
        config = super().get_config()
        config.update({"factor": self.factor, "mode": self.mode})
        return config


def _check_offset(value):
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(pair, (list, tuple))
        or len(pair) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in pair)
    ):
        raise ValueError(
            f"offset={value!r} is not allowed; expected a non-negative integer or a pair "
            "(top, left) of non-negative integers."
        )
    return tuple(pair)


@keras.saving.register_keras_serializable(package="kapps")
class CropToMatch(keras.layers.Layer):
    """Crop a feature map to the height and width of a reference, starting at ``offset``.

    Caffe's ``Crop`` layer as FCN uses it: the skip scores (``score_pool4c``) are cropped to
    the upsampled coarse scores they are added to, and the final upsampled scores to the input
    image (``score``). The offset aligns the two maps' pixel grids; it comes from the layers'
    strides, kernels and paddings (Caffe's ``coord_map``; see ``kapps.models.segmentation.fcn``).
    Sizes may be unknown until run time; the slice is then computed from the tensors' shapes
    (TFLite SLICE).

    Args:
        offset: rows and columns skipped at the top and left: an int or a pair
            ``(top, left)``.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: the map to crop, ``(batch, height, width, channels)``.
        reference: any tensor ``(batch, ref_height, ref_width, ...)``; only its height and
            width are used. ``inputs`` must extend at least ``offset + ref_size`` on each axis.

    Example:
        >>> crop = CropToMatch(19)
        >>> tuple(crop(keras.ops.ones((1, 544, 544, 21)), keras.ops.ones((1, 500, 500, 3))).shape)
        (1, 500, 500, 21)

    Paper: Long, Shelhamer, Darrell 2015, "Fully Convolutional Networks for Semantic
    Segmentation", Section 4.2 and the reference ``voc-fcn*/net.py`` (``crop``).
    """

    def __init__(self, offset=0, **kwargs):
        super().__init__(**kwargs)
        self.offset = _check_offset(offset)

    def build(self, inputs_shape, reference_shape):
        if len(inputs_shape) != 4 or len(reference_shape) < 3:
            raise ValueError(
                f"CropToMatch expects inputs (batch, height, width, channels) and a reference "
                f"(batch, height, width, ...); received shapes {tuple(inputs_shape)} and "
                f"{tuple(reference_shape)}."
            )
        for axis, size, ref, offset in zip(
            ("height", "width"), inputs_shape[1:3], reference_shape[1:3], self.offset
        ):
            if size is not None and ref is not None and size < offset + ref:
                raise ValueError(
                    f"CropToMatch {self.name!r}: inputs {axis} {size} is too small to crop "
                    f"{ref} rows/columns at offset {offset} (needs at least {offset + ref})."
                )

    def call(self, inputs, reference):
        shape, ref = ops.shape(inputs), ops.shape(reference)
        top, left = self.offset
        return ops.slice(inputs, (0, top, left, 0), (shape[0], ref[1], ref[2], shape[3]))

    def compute_output_shape(self, inputs_shape, reference_shape):
        return (inputs_shape[0], reference_shape[1], reference_shape[2], inputs_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update({"offset": self.offset})
        return config
