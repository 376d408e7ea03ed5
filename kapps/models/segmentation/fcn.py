"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer, Darrell 2015) on the VGG16 backbone.

The classifier becomes fully convolutional: VGG16's fc1/fc2 are a 7x7 and a 1x1 convolution
(``fc6``, ``fc7``, Section 3.1), a 1x1 convolution scores every class at stride 32
(``score_fr``), and the coarse scores are upsampled back to the image (Section 3.3). FCN-16s
and FCN-8s add skips (Section 4.2): 1x1 class scores of pool4 (stride 16) and pool3 (stride 8),
summed with the x2-upsampled coarser scores. Layer names follow the reference Caffe models
(shelhamer/fcn.berkeleyvision.org, ``voc-fcn{32,16,8}s/net.py``) from ``fc6`` on; the VGG16
layers keep keras.applications' names (``block1_conv1`` ... ``block5_pool``).

Geometry, as in Caffe. ``conv1_1`` pads the image by ``pad`` = 100 pixels. Every later layer
shrinks nothing ('same' 3x3 convolutions; 2x2 max pooling rounds up, like Caffe's ceil mode),
except the 'valid' 7x7 ``fc6``. The transposed convolutions grow their inputs by a border
(``(n - 1) s + k``), so the final scores are larger than the image and are cropped back to it.
The crop offsets are not magic numbers: ``crop_offsets`` follows every layer's affine map from
its pixel grid to the image's (Caffe's ``coord_map``) and aligns the grids. For ``pad=100`` and
transposed convolutions it gives the reference prototxts' offsets: ``score_pool4c`` 5,
``score_pool3c`` 9, and the final ``score`` crop 19 (32s), 27 (16s), 31 (8s). Why ``pad`` is
100: it lets ``fc6`` (whose 7x7 window at pool5 spans 192 + 12 pixels) see images of any size,
even a few pixels, and leaves the upsampled scores a margin beyond the image on every side.
"""

import os
from fractions import Fraction

import keras
import numpy as np

from kapps._checks import check_choice, check_image_shape, check_int_sequence, check_positive_int, check_rate
from kapps.layers.upsampling import BilinearKernel, BilinearUpsampling2D, CropToMatch
from kapps.models.classification.common import check_activation, classifier_output, variant
from kapps.models.weights import _fits, load_into, read_reference

STRIDES = (32, 16, 8)
UPSAMPLING = ("deconvolution", "interpolation")
#: VGG16 (configuration D): 3x3 convolutions per stage.
VGG16_DEPTHS = (2, 2, 3, 3, 3)
DEFAULT_FILTERS = (64, 128, 256, 512, 512)
#: fc6 is VGG16's fc1 as a 7x7 convolution over pool5 (a 224x224 image gives 7x7 at pool5).
FC6_KERNEL = 7
#: keras.applications.VGG16 (and kapps ``vgg16``) layer -> FCN layer, in order.
BACKBONE_LAYERS = tuple(
    (f"block{s}_conv{i}", f"block{s}_conv{i}")
    for s, depth in enumerate(VGG16_DEPTHS, start=1)
    for i in range(1, depth + 1)
) + (("fc1", "fc6"), ("fc2", "fc7"))


class _Grid:
    """Where a feature map's pixels sit on the image: pixel ``y`` of the map is centred on
    image coordinate ``scale * y + shift`` (per axis; both axes are treated alike).

    Each layer composes an affine map (Caffe's ``coord_map``): a convolution or pooling with
    kernel ``k``, stride ``s`` and padding ``p`` puts output ``y`` on input ``s y + (k-1)/2 -
    p``; a transposed convolution inverts that (``(y - (k-1)/2) / s``); half-pixel bilinear
    resizing by ``f`` puts ``y`` on ``(y + 1/2) / f - 1/2``; a crop at ``c`` on ``y + c``.
    Fractions keep it exact.
    """

    def __init__(self, scale=Fraction(1), shift=Fraction(0)):
        self.scale, self.shift = Fraction(scale), Fraction(shift)

    def conv(self, kernel, stride=1, pad=0):
        return _Grid(self.scale * stride, self.shift + self.scale * (Fraction(kernel - 1, 2) - pad))

    def deconv(self, kernel, stride):
        return _Grid(self.scale / stride, self.shift - self.scale * Fraction(kernel - 1, 2) / stride)

    def resize(self, factor):
        half_pixels = Fraction(1, 2 * factor) - Fraction(1, 2)
        return _Grid(self.scale / factor, self.shift + self.scale * half_pixels)

    def crop(self, offset):
        return _Grid(self.scale, self.shift + self.scale * offset)

    def offset_to(self, other):
        """The crop offset of this map that aligns it with ``other`` (same scale): pixel
        ``offset + y`` here sits where pixel ``y`` of ``other`` does."""
        assert self.scale == other.scale, "crop between maps of different strides"
        return (other.shift - self.shift) / self.scale


def _stage_grids(pad):
    """Grids of pool3, pool4 and fc7 (= score_fr) for conv1_1 padding ``pad``."""
    grid = _Grid().conv(3, pad=pad)  # conv1_1, Caffe pad=pad
    pools = {}
    for stage, depth in enumerate(VGG16_DEPTHS, start=1):
        for _ in range(depth - (1 if stage == 1 else 0)):
            grid = grid.conv(3, pad=1)  # 'same' 3x3: the identity map
        grid = grid.conv(2, stride=2)  # 2x2 max pooling, stride 2
        pools[stage] = grid
    return pools[3], pools[4], pools[5].conv(FC6_KERNEL)  # fc6 'valid'; fc7, score_fr 1x1


def crop_offsets(stride=8, upsampling="deconvolution", pad=100):
    """The crop offsets of an FCN, derived from its layers' geometry.

    Args:
        stride: 32, 16 or 8 (FCN-32s, -16s, -8s).
        upsampling: ``"deconvolution"`` or ``"interpolation"`` (see ``fcn``).
        pad: padding of conv1_1.

    Returns:
        A dict: ``"score"`` (the final crop to the image) and, for 16s/8s, ``"score_pool4c"``
        and, for 8s, ``"score_pool3c"``. A negative value means ``pad`` is too small for the
        scores to cover the image's top-left corner.

    Example:
        >>> crop_offsets(8)
        {'score_pool4c': 5, 'score_pool3c': 9, 'score': 31}
    """
    check_choice("stride", stride, STRIDES)
    check_choice("upsampling", upsampling, UPSAMPLING)
    if isinstance(pad, bool) or not isinstance(pad, int):
        raise ValueError(f"pad={pad!r} is not allowed; expected an integer.")

    def up(grid, factor, kernel_size):
        if upsampling == "deconvolution":
            return grid.deconv(kernel_size, factor)
        return grid.resize(factor)

    pool3, pool4, score = _stage_grids(pad)
    offsets = {}
    skips = (("score_pool4c", pool4), ("score_pool3c", pool3))[: {32: 0, 16: 1, 8: 2}[stride]]
    for skip_name, skip in skips:
        score = up(score, 2, 4)  # upscore2 / upscore_pool4: x2, kernel 4
        offsets[skip_name] = skip.offset_to(score)
    factor = int(score.scale)  # what is left to reach the image: 32, 16 or 8
    score = up(score, factor, 2 * factor)
    offsets["score"] = score.offset_to(_Grid())
    for key, value in offsets.items():
        assert value.denominator == 1, f"{key} offset {value} is not a whole pixel"
    return {key: int(value) for key, value in offsets.items()}


def min_pad(stride=8, upsampling="deconvolution"):
    """The smallest conv1_1 padding whose scores still cover the whole image (every crop offset
    non-negative): 81, 73, 69 for FCN-32s/16s/8s with transposed convolutions, 97 with
    interpolation. (The upsampled scores then also reach past the bottom-right corner; see
    ``fcn``.)"""
    # The final offset grows by one per pixel of pad (the skip offsets do not change: both
    # maps they align move together); find the pad that makes it zero.
    return 100 - crop_offsets(stride, upsampling, 100)["score"]


def _check_pad(pad, stride, upsampling, input_shape):
    if isinstance(pad, bool) or not isinstance(pad, int):
        raise ValueError(f"pad={pad!r} is not allowed; expected an integer (the paper's is 100).")
    smallest = min_pad(stride, upsampling)
    if pad < smallest:
        raise ValueError(
            f"pad={pad!r} is not allowed for FCN-{stride}s with upsampling={upsampling!r}; "
            f"expected at least {smallest}: with less the upsampled scores do not cover the "
            "image's top-left corner (the paper uses 100)."
        )
    # fc6's 7x7 'valid' window needs a 7x7 pool5: the padded conv1_1 output (size + 2 pad - 2)
    # must span more than 6 * 32 pixels.
    smallest_size = 32 * (FC6_KERNEL - 1) + 1 - (2 * pad - 2)
    for size in input_shape[:2]:
        if size is not None and size < smallest_size:
            raise ValueError(
                f"input_shape={tuple(input_shape)!r} is not allowed with pad={pad}; height and "
                f"width must be at least {smallest_size} so that fc6's 7x7 window fits "
                f"(a larger pad, e.g. the paper's 100, accepts any size)."
            )


def fcn(
    stride=8,
    num_classes=21,
    input_shape=(500, 500, 3),
    upsampling="deconvolution",
    pad=100,
    filters=DEFAULT_FILTERS,
    fc_units=4096,
    dropout=0.5,
    score_initializer="zeros",
    classifier_activation="softmax",
    backbone_weights=None,
    weights=None,
    name=None,
):
    """Build an FCN-32s, FCN-16s or FCN-8s on VGG16 (Long, Shelhamer, Darrell 2015).

    The network returns per-pixel class scores at the input resolution, for inputs of any
    height and width. Inputs are preprocessed as for VGG16
    (``keras.applications.vgg16.preprocess_input``: BGR, ImageNet mean subtracted), so the
    zero padding is mean-coloured, as in Caffe.

    Upsampling (Section 3.3): with ``upsampling="deconvolution"`` (the paper) each x2 step of
    16s/8s (``upscore2``, ``upscore_pool4``) is a learned ``Conv2DTranspose`` (kernel 4, stride
    2, no bias, full class-to-class kernel) initialized to bilinear interpolation
    (``BilinearKernel``), and the last step (``upscore``, ``upscore16``, ``upscore8``: x32, x16,
    x8) is a fixed bilinear transposed convolution (``BilinearUpsampling2D``: no weights; Caffe's
    learning rate 0). ``"interpolation"`` replaces all of them with bilinear resizing (no
    parameters); its crop offsets differ (``crop_offsets``) because resizing centres pixels
    differently and clamps rather than tapers at the borders. (The paper learns the x2 steps,
    Section 4.2; the released Caffe nets freeze them too, ``lr_mult: 0``: set
    ``model.get_layer("upscore2").trainable = False`` for that.)

    The score layers (``score_fr``, ``score_pool4``, ``score_pool3``) start at zero, as in the
    paper (Section 4.3: random initialization gave "neither better performance nor faster
    convergence"; Section 4.2 for the skips); until the first update only they receive a
    gradient. The paper trains the three nets in stages (32s from VGG16, 16s from 32s, 8s from
    16s). ``weights=`` takes only a model of the same configuration; to start a finer net from
    a coarser one, copy the layers they share by name
    (``layer.set_weights(coarse.get_layer(layer.name).get_weights())``).

    Args:
        stride: output stride of the coarsest scores the net keeps: 32 (FCN-32s), 16 (FCN-16s,
            adds the pool4 skip) or 8 (FCN-8s, adds pool3).
        num_classes: number of classes (21 for PASCAL VOC: 20 and background).
        input_shape: ``(height, width, channels)``; height and width may be None.
        upsampling: ``"deconvolution"`` (default, the paper) or ``"interpolation"``.
        pad: zero padding of conv1_1 in pixels (Caffe's ``pad: 100``). It lets fc6's 7x7
            window fit images of any size and makes the upsampled scores overhang the image,
            so that cropping (not padding) aligns them; the crop offsets follow from it
            (``crop_offsets``). At least ``min_pad(stride, upsampling)`` (81/73/69, or 97 with
            interpolation) so the scores cover the image; below 97, height and width must also
            be at least ``195 - 2 * pad``. Smaller pads cost less computation.
        filters: channels of the five VGG stages.
        fc_units: channels of fc6 and fc7.
        dropout: dropout rate after fc6 and fc7.
        score_initializer: initializer of the 1x1 score layers (``"zeros"``, the paper's).
        classifier_activation: activation of the scores (``"softmax"``), or None for logits;
            training code usually wants logits and
            ``keras.losses.SparseCategoricalCrossentropy(from_logits=True)``.
        backbone_weights: None, or ImageNet VGG16 to start from (the paper's initialization):
            a ``keras.applications.VGG16`` model or kapps ``vgg16`` (with ``include_top=True``,
            dense or ``fully_convolutional``), or a ``.keras``/``.weights.h5`` file one saved.
            Its 13 convolutions are copied and its fc1/fc2 reshaped into fc6 (``(25088, 4096)``
            -> ``(7, 7, 512, 4096)``) and fc7 (``(4096, 4096)`` -> ``(1, 1, 4096, 4096)``); the
            filters and fc_units must be VGG16's. Its input size does not matter.
        weights: None, or a full FCN of this configuration to copy: a ``keras.Model``, or a
            ``.keras``/``.weights.h5`` file (``kapps.models.weights.load_into``). Not together
            with ``backbone_weights``.
        name: model name (default ``fcn32s``/``fcn16s``/``fcn8s``).

    Returns:
        A ``keras.Model`` from images ``(batch, H, W, channels)`` to scores
        ``(batch, H, W, num_classes)`` (float32).

    Raises:
        ValueError: for a bad argument (naming it and the value), or weights that do not fit.

    Example:
        >>> model = fcn(stride=8, num_classes=21, input_shape=(None, None, 3))
        >>> model.output_shape
        (None, None, None, 21)
    """
    check_choice("stride", stride, STRIDES)
    check_positive_int("num_classes", num_classes)
    input_shape = check_image_shape("input_shape", input_shape)
    check_choice("upsampling", upsampling, UPSAMPLING)
    _check_pad(pad, stride, upsampling, input_shape)
    filters = check_int_sequence("filters", filters, 5)
    check_positive_int("fc_units", fc_units)
    dropout = check_rate("dropout", dropout)
    try:
        score_init = keras.initializers.get(score_initializer)
    except (ValueError, TypeError):
        score_init = None
    if score_init is None:
        raise ValueError(
            f"score_initializer={score_initializer!r} is not allowed; expected a Keras "
            "initializer or its name, such as 'zeros' or 'glorot_uniform'."
        )
    check_activation("classifier_activation", classifier_activation)
    if backbone_weights is not None and weights is not None:
        raise ValueError(
            "backbone_weights and weights are not allowed together; weights= replaces every "
            "variable, so pass only one of them."
        )
    name = name or f"fcn{stride}s"
    offsets = crop_offsets(stride, upsampling, pad)

    def score_layer(layer_name):
        # a fresh initializer object per layer (a shared seeded one would repeat its values)
        initializer = keras.initializers.get(score_initializer)
        return keras.layers.Conv2D(num_classes, 1, kernel_initializer=initializer, name=layer_name)

    def upsample(layer_name, factor, learned):
        if upsampling == "interpolation":
            return BilinearUpsampling2D(factor, mode="interpolation", name=layer_name)
        if learned:
            # full (num_classes x num_classes) kernel, as Caffe's Deconvolution without groups
            return keras.layers.Conv2DTranspose(
                num_classes,
                2 * factor,
                strides=factor,
                use_bias=False,
                kernel_initializer=BilinearKernel(),
                name=layer_name,
            )
        return BilinearUpsampling2D(factor, name=layer_name)

    inputs = keras.Input(input_shape, name="image")
    # conv1_1 with Caffe's pad: zero padding, then a 'valid' 3x3 convolution.
    x = keras.layers.ZeroPadding2D(pad, name="block1_pad")(inputs)
    pools = {}
    for stage, (depth, width) in enumerate(zip(VGG16_DEPTHS, filters), start=1):
        for i in range(1, depth + 1):
            padding = "valid" if (stage, i) == (1, 1) else "same"
            x = keras.layers.Conv2D(
                width, 3, padding=padding, activation="relu", name=f"block{stage}_conv{i}"
            )(x)
        # 'same' 2x2/2 pooling keeps a last odd row: Caffe's ceil-mode pooling.
        x = keras.layers.MaxPooling2D(2, strides=2, padding="same", name=f"block{stage}_pool")(x)
        pools[stage] = x

    x = keras.layers.Conv2D(fc_units, FC6_KERNEL, activation="relu", name="fc6")(x)
    x = keras.layers.Dropout(dropout, name="drop6")(x)
    x = keras.layers.Conv2D(fc_units, 1, activation="relu", name="fc7")(x)
    x = keras.layers.Dropout(dropout, name="drop7")(x)
    x = score_layer("score_fr")(x)

    if stride <= 16:
        x = upsample("upscore2", 2, learned=True)(x)
        skip = score_layer("score_pool4")(pools[4])
        skip = CropToMatch(offsets["score_pool4c"], name="score_pool4c")(skip, x)
        x = keras.layers.Add(name="fuse_pool4")([x, skip])
    if stride == 8:
        x = upsample("upscore_pool4", 2, learned=True)(x)
        skip = score_layer("score_pool3")(pools[3])
        skip = CropToMatch(offsets["score_pool3c"], name="score_pool3c")(skip, x)
        x = keras.layers.Add(name="fuse_pool3")([x, skip])
    final = {32: "upscore", 16: "upscore16", 8: "upscore8"}[stride]
    x = upsample(final, stride, learned=False)(x)
    x = CropToMatch(offsets["score"], name="score")(x, inputs)
    outputs = classifier_output(x, classifier_activation)

    model = keras.Model(inputs, outputs, name=name)
    if backbone_weights is not None:
        copy_backbone(model, backbone_weights)
    return load_into(model, weights)


def _h5_layers(path):
    """The (kernel, bias) pairs of a ``.weights.h5`` file saved by a VGG model, in order.

    Keras 3 stores a functional model's variables under ``layers/<class>_<n>/vars/<i>``, named
    by layer class and creation order (``conv2d``, ``conv2d_1``, ..., ``dense``, ``dense_1``),
    not by layer name. A VGG16 file thus holds its 13 convolutions as conv2d..conv2d_12,
    and fc1/fc2 as dense/dense_1 (or conv2d_13/conv2d_14 when fully convolutional).
    """
    import h5py

    def index(key):
        _, _, number = key.partition("_")
        return int(number) if number.isdigit() else 0

    with h5py.File(path, "r") as f:
        if "layers" not in f:
            raise ValueError(f"backbone_weights={path!r} is not a Keras .weights.h5 file of a model.")
        layers = f["layers"]
        pairs = {}
        for kind in ("conv2d", "dense"):
            keys = [k for k in layers if k == kind or (k.startswith(kind + "_") and index(k))]
            pairs[kind] = [
                (f"{k}", [np.asarray(layers[k]["vars"][str(i)]) for i in range(len(layers[k]["vars"]))])
                for k in sorted(keys, key=index)
            ]
    convs, denses = pairs["conv2d"], pairs["dense"]
    return convs[:13] + (denses[:2] if denses else convs[13:15])


def copy_backbone(model, backbone_weights):
    """Copy ImageNet VGG16 weights into an FCN: the 13 convolutions, and fc1/fc2 as fc6/fc7.

    Args:
        model: an FCN built by ``fcn``.
        backbone_weights: a VGG16 ``keras.Model`` (keras.applications or kapps, with its top),
            or a ``.keras``/``.weights.h5`` file one saved.

    Returns:
        ``model``.

    Raises:
        ValueError: naming ``backbone_weights`` and the first layer that is missing or does not
            fit; nothing is assigned then.
    """
    if isinstance(backbone_weights, (str, os.PathLike)) and os.fspath(backbone_weights).endswith(
        ".weights.h5"
    ) and os.path.isfile(os.fspath(backbone_weights)):
        argument = f"backbone_weights={os.fspath(backbone_weights)!r}"
        sources = _h5_layers(os.fspath(backbone_weights))
    else:
        try:
            reference, argument = read_reference(backbone_weights)
        except ValueError as error:
            raise ValueError(str(error).replace("weights=", "backbone_weights=", 1)) from None
        argument = argument.replace("weights=", "backbone_weights=", 1)
        names = {layer.name for layer in reference.layers}
        sources = []
        for source_name, _ in BACKBONE_LAYERS:
            if source_name not in names:
                raise ValueError(
                    f"{argument} has no layer {source_name!r}; expected VGG16 with its top "
                    "(keras.applications.VGG16(include_top=True) or kapps.models.vgg16), whose "
                    "fc1 and fc2 become fc6 and fc7."
                )
            layer = reference.get_layer(source_name)
            sources.append((source_name, [keras.ops.convert_to_numpy(w) for w in layer.weights]))

    if len(sources) < len(BACKBONE_LAYERS):
        raise ValueError(
            f"{argument} holds {len(sources)} convolution/dense layers; expected VGG16 with its "
            f"top: 13 convolutions, fc1 and fc2 ({len(BACKBONE_LAYERS)} layers)."
        )
    assignments = []
    for (source_name, arrays), (_, target_name) in zip(sources, BACKBONE_LAYERS):
        target = model.get_layer(target_name).weights  # kernel, bias
        fits = len(arrays) == len(target) and all(_fits(t.shape, a.shape) for t, a in zip(target, arrays))
        if not fits:
            raise ValueError(
                f"{argument} does not fit model {model.name!r}: its layer {source_name!r} has "
                f"variables {[tuple(a.shape) for a in arrays]}, where {target_name!r} needs "
                f"{[tuple(t.shape) for t in target]}. Build the FCN with VGG16's filters and "
                "fc_units (the defaults), or pass a VGG16 of the same widths."
            )
        assignments.extend(zip(target, arrays))
    for variable, array in assignments:
        # fc1 (7 * 7 * 512, 4096) -> fc6 (7, 7, 512, 4096): channels-last flattening order
        variable.assign(np.reshape(array, tuple(variable.shape)))
    return model


def _doc(stride, skips):
    return (
        f"FCN-{stride}s of Long, Shelhamer, Darrell 2015 (VGG16, {skips}).\n\n"
        f"    ``fcn(stride={stride}, ...)`` with the same arguments; see ``fcn``.\n"
    )


fcn32s = variant(fcn, "fcn32s", _doc(32, "no skips: scores at stride 32 upsampled x32"), stride=32)
fcn16s = variant(fcn, "fcn16s", _doc(16, "the pool4 skip, scores upsampled x16"), stride=16)
fcn8s = variant(fcn, "fcn8s", _doc(8, "the pool4 and pool3 skips, scores upsampled x8"), stride=8)
