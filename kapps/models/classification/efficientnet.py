"""EfficientNet B0-B7 (Tan & Le 2019): one base network scaled by the compound-scaling rule.

The base network B0 is the table ``BASE_STAGES`` (the paper's Table 1: seven stages of MBConv
blocks with squeeze-and-excitation ratio 0.25, between a 3x3 stem and a 1x1 head). B1-B7 are
*generated* from it: every channel count is multiplied by the width coefficient and rounded to
a multiple of 8 (never down by more than 10%), every stage's repeats by the depth coefficient
and rounded up (Section 3.3, equation 3), and the input resolution and top dropout grow with
them. ``VARIANTS`` holds only the four numbers per variant that the reference implementation
uses (width, depth, resolution, dropout).

Parameter counts and weights match keras.applications: the default ``include_preprocessing=True``
starts the network with the same ``Rescaling(1/255)`` and ``Normalization`` layers (7 values:
mean 3, variance 3, count 1, all non-trainable), so ``efficientnet_b0()`` has keras.applications'
5,330,571 parameters and ``weights=keras.applications.EfficientNetB0(...)`` copies over
variable by variable (its ``.keras`` file too; its ``.weights.h5`` file is read into a
keras.applications twin, as kapps' blocks are layers of their own, and copied from it). With
``include_preprocessing=False`` the model takes already-normalized images and has 7 fewer
parameters (B0: 5,330,564).
"""

import functools
import math

import keras
import numpy as np

from kapps._checks import check_positive_int, check_rate
from kapps.layers.conv import ConvBNAct
from kapps.layers.mbconv import CONV_KERNEL_INITIALIZER, MBConvBlock, resolve_activation, swish
from kapps.models.classification.common import (
    check_activation,
    check_classifier_args,
    classifier_output,
    keras_twin,
    pooled_features,
    variant,
)
from kapps.models.weights import copy_weights, load_into, read_reference

#: The B0 network of the paper's Table 1, one row per stage:
#: (expand_ratio, kernel_size, strides, input_filters, output_filters, repeats).
BASE_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
STEM_FILTERS = 32
TOP_FILTERS = 1280
SE_RATIO = 0.25

#: Compound scaling of each variant: (width coefficient, depth coefficient, resolution,
#: top dropout), as in the authors' reference implementation (Section 3.3 derives
#: width = 1.1^phi, depth = 1.2^phi, resolution = 1.15^phi; the released values round them).
VARIANTS = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}

#: keras.applications' ImageNet input statistics. With ``weights="imagenet"`` its Normalization
#: holds the standard deviations as *variances* (tensorflow/tensorflow#49930), so it adds a
#: ``Rescaling`` by ``1 / sqrt(stddev)`` per channel after it.
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)
IMAGENET_INPUT_SCALE = [1.0 / math.sqrt(s) for s in IMAGENET_STDDEV_RGB]

#: What to tell a user whose weights do not fit.
_HINT = "Build the same variant with the same include_top, num_classes and include_preprocessing."

DENSE_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"},
}


def round_filters(filters, width_coefficient, divisor=8):
    """``filters * width_coefficient`` rounded to the nearest multiple of ``divisor`` (at least
    ``divisor``), rounded up instead when rounding would lose more than 10%."""
    scaled = filters * width_coefficient
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats, depth_coefficient):
    """``repeats * depth_coefficient`` rounded up."""
    return int(math.ceil(depth_coefficient * repeats))


def scaled_stages(width_coefficient, depth_coefficient, divisor=8):
    """The stage table of a scaled network: ``BASE_STAGES`` with filters and repeats scaled."""
    return tuple(
        (
            expand,
            kernel,
            strides,
            round_filters(filters_in, width_coefficient, divisor),
            round_filters(filters_out, width_coefficient, divisor),
            round_repeats(repeats, depth_coefficient),
        )
        for expand, kernel, strides, filters_in, filters_out, repeats in BASE_STAGES
    )


def _check_coefficient(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 10:
        raise ValueError(f"{name}={value!r} is not allowed; expected a number in (0, 10].")
    return float(value)


def _block_name(stage, index):
    # keras.applications' names: block1a, block2b, ...; past 26 repeats, a number.
    return f"block{stage}{chr(ord('a') + index)}" if index < 26 else f"block{stage}_{index + 1}"


def _reference_input_scale(reference):
    """The per-channel ``Rescaling`` that keras.applications inserts after its Normalization
    when built with ``weights="imagenet"`` (its stored variance is the standard deviation, and
    this layer divides by the square root once more), or None."""
    for layer in reference.layers:
        if isinstance(layer, keras.layers.Rescaling) and isinstance(layer.scale, (list, tuple)):
            return [float(s) for s in layer.scale]
    return None


def _has_imagenet_statistics(model):
    """Whether ``model``'s Normalization holds keras.applications' ImageNet statistics (means,
    and standard deviations stored as variances): weights of a model built with
    ``weights="imagenet"``, which divides by ``IMAGENET_INPUT_SCALE`` once more."""
    mean, variance = (
        keras.ops.convert_to_numpy(v) for v in model.get_layer("normalization").weights[:2]
    )
    return bool(
        np.allclose(mean, IMAGENET_MEAN_RGB, atol=1e-6)
        and np.allclose(variance, IMAGENET_STDDEV_RGB, atol=1e-6)
    )


def efficientnet(
    width_coefficient=1.0,
    depth_coefficient=1.0,
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    pooling=None,
    classifier_activation="softmax",
    weights=None,
    include_preprocessing=True,
    dropout=0.2,
    drop_connect_rate=0.2,
    depth_divisor=8,
    activation="swish",
    seed=None,
    name="efficientnet",
):
    """Build an EfficientNet scaled by ``width_coefficient`` and ``depth_coefficient``.

    Args:
        width_coefficient: channel multiplier (B0: 1.0); channels are rounded to multiples of
            ``depth_divisor``.
        depth_coefficient: repeats multiplier (B0: 1.0); repeats are rounded up.
        num_classes: number of classes of the top.
        input_shape: ``(height, width, channels)``, at least 32x32; height and width may be
            None (the head pools globally), but then FLOPs cannot be counted.
        include_top: whether to end with global pooling, dropout and the classifier.
        pooling: with ``include_top=False``: None (the last feature map), ``"avg"`` or ``"max"``.
        classifier_activation: activation of the top (None for logits).
        weights: None, a ``.weights.h5``/``.keras`` path, or a ``keras.Model``, e.g.
            ``keras.applications.EfficientNetB0(...)`` of the same variant, ``include_top``
            and classes, or a file it saved (needs ``include_preprocessing=True``). A
            reference built with ImageNet weights carries an extra per-channel ``Rescaling``
            after its Normalization; that layer is reproduced (for a ``.weights.h5`` file,
            which cannot hold it, when the file holds keras.applications' ImageNet
            statistics), so predictions agree.
        include_preprocessing: start with keras.applications' ``Rescaling(1/255)`` and
            ``Normalization`` (7 non-trainable values), so inputs are pixels in [0, 255] and
            counts and weights line up with keras.applications. The Normalization is the
            identity until set by weight transfer, ``adapt`` or loading. With False, inputs
            are used as given.
        dropout: dropout rate before the classifier.
        drop_connect_rate: stochastic-depth rate of the last block; block ``b`` of ``n`` uses
            ``drop_connect_rate * b / n`` (Section 5.2; Huang et al. 2016's linear rule).
        depth_divisor: channel counts are multiples of this.
        activation: activation of the body (``"swish"``, i.e. SiLU, computed as
            ``x * sigmoid(x)`` by ``kapps.layers.mbconv.swish``: the same values as Keras'
            ``silu`` without TensorFlow's custom gradient, which slows SavedModel/TFLite export).
        seed: optional integer seed of the stochastic-depth layers (block ``b`` uses
            ``seed + b``).
        name: model name.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: for bad arguments, or weights that do not fit (naming the first variable
            that differs).

    Example:
        >>> model = efficientnet(0.25, 0.25, num_classes=10, input_shape=(32, 32, 3))
    """
    width_coefficient = _check_coefficient("width_coefficient", width_coefficient)
    depth_coefficient = _check_coefficient("depth_coefficient", depth_coefficient)
    check_rate("dropout", dropout)
    check_rate("drop_connect_rate", drop_connect_rate)
    check_positive_int("depth_divisor", depth_divisor)
    check_activation("classifier_activation", classifier_activation)
    check_activation("activation", activation)
    if activation is None:
        raise ValueError("activation=None is not allowed; expected an activation such as 'swish'.")
    activation = resolve_activation(activation)
    if not isinstance(include_preprocessing, bool):
        raise ValueError(
            f"include_preprocessing={include_preprocessing!r} is not allowed; expected True or False."
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed={seed!r} is not allowed; expected None or an integer >= 0.")
    input_shape = check_classifier_args(
        num_classes, input_shape, include_top, pooling, min_size=32, allow_unknown_size=True
    )
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} is not allowed; expected a non-empty string.")
    # Read the reference first: one built with ImageNet weights adds a layer to the network.
    reference, argument = read_reference(weights)
    input_scale = (
        _reference_input_scale(reference)
        if reference is not None and include_preprocessing
        else None
    )
    stages = scaled_stages(width_coefficient, depth_coefficient, depth_divisor)
    total_blocks = sum(stage[-1] for stage in stages)

    def build(input_scale):
        inputs = keras.Input(input_shape, name="image")
        x = inputs
        if include_preprocessing:
            x = keras.layers.Rescaling(1.0 / 255.0, name="rescaling")(x)
            x = keras.layers.Normalization(axis=-1, name="normalization")(x)
            if input_scale is not None:
                x = keras.layers.Rescaling(input_scale, name="imagenet_stddev_rescaling")(x)
        x = ConvBNAct(
            round_filters(STEM_FILTERS, width_coefficient, depth_divisor),
            3,
            strides=2,
            activation=activation,
            kernel_initializer=CONV_KERNEL_INITIALIZER,
            name="stem",
        )(x)
        b = 0
        for stage, (expand, kernel, strides, filters_in, filters_out, repeats) in enumerate(stages, 1):
            for j in range(repeats):
                x = MBConvBlock(
                    filters_in if j == 0 else filters_out,
                    filters_out,
                    kernel_size=kernel,
                    strides=strides if j == 0 else 1,
                    expand_ratio=expand,
                    se_ratio=SE_RATIO,
                    activation=activation,
                    drop_rate=drop_connect_rate * b / total_blocks,
                    seed=None if seed is None else seed + b,
                    name=_block_name(stage, j),
                )(x)
                b += 1
        x = ConvBNAct(
            round_filters(TOP_FILTERS, width_coefficient, depth_divisor),
            1,
            activation=activation,
            kernel_initializer=CONV_KERNEL_INITIALIZER,
            name="top",
        )(x)

        if include_top:
            x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
            if dropout > 0:
                x = keras.layers.Dropout(dropout, name="top_dropout")(x)
            x = keras.layers.Dense(
                num_classes, kernel_initializer=DENSE_KERNEL_INITIALIZER, name="predictions"
            )(x)
            outputs = classifier_output(x, classifier_activation)
        else:
            outputs = pooled_features(x, pooling)
        return keras.Model(inputs, outputs, name=name)

    model = build(input_scale)
    copy = functools.partial(copy_weights, hint=_HINT)
    if reference is not None:
        copy(model, reference, argument=argument)
    else:
        variant_key = next(
            (k for k, v in VARIANTS.items() if v[:2] == (width_coefficient, depth_coefficient)), None
        )
        twin = None
        if variant_key and include_preprocessing and depth_divisor == 8 and activation is swish:
            size = VARIANTS[variant_key][2]
            application = f"EfficientNet{variant_key.upper()}"
            twin = keras_twin(application, include_top, input_shape, num_classes, size)
        load_into(model, weights, twin=twin, copy=copy)
        if include_preprocessing and weights is not None and _has_imagenet_statistics(model):
            # A .weights.h5 file cannot say that its model had keras.applications' ImageNet
            # Rescaling after the Normalization, but the ImageNet statistics it holds can.
            loaded, model = model, build(IMAGENET_INPUT_SCALE)
            copy(model, loaded, argument=argument)
            del loaded
    if include_preprocessing and weights is not None:
        # Normalization computes from a snapshot of its variables; refresh it after assignment.
        model.get_layer("normalization").finalize_state()
    return model


def _doc(key):
    width, depth, resolution, top_dropout = VARIANTS[key]
    return (
        f"EfficientNet-{key.upper()} of Tan & Le 2019: width {width}, depth {depth}, "
        f"{resolution}x{resolution} input, dropout {top_dropout}.\n\n"
        f"    ``efficientnet(width_coefficient={width}, depth_coefficient={depth}, ...)`` with the\n"
        "    same arguments; see ``efficientnet``. Counts and weights line up with\n"
        f"    ``keras.applications.EfficientNet{key.upper()}`` (``include_preprocessing=True``).\n"
    )


def _variant(key):
    width, depth, resolution, top_dropout = VARIANTS[key]
    defaults = {
        "width_coefficient": width,
        "depth_coefficient": depth,
        "input_shape": (resolution, resolution, 3),
        "dropout": top_dropout,
    }
    return variant(efficientnet, f"efficientnet_{key}", _doc(key), defaults)


efficientnet_b0 = _variant("b0")
efficientnet_b1 = _variant("b1")
efficientnet_b2 = _variant("b2")
efficientnet_b3 = _variant("b3")
efficientnet_b4 = _variant("b4")
efficientnet_b5 = _variant("b5")
efficientnet_b6 = _variant("b6")
efficientnet_b7 = _variant("b7")
