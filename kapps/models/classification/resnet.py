"""ResNet (He et al. 2016): the ImageNet networks of Table 1 and the CIFAR networks of Sec. 4.2.

The ImageNet builders of depth 50, 101 and 152 reproduce keras.applications' ResNet50/101/152
exactly: the same stem (3-pixel zero padding, 7x7/2 convolution, 1-pixel zero padding, 3x3/2
max-pooling), biased convolutions, batch-normalization epsilon 1.001e-5, the stride in the first
1x1 convolution of a bottleneck ("v1"), a projection shortcut at the first block of every stage,
and the same layer names (``conv1_conv``, ``conv2_block1`` ... ``avg_pool``, ``predictions``).
Each residual block is one ``BasicBlock``/``BottleneckBlock`` layer whose sublayers map onto
keras.applications' ``<block>_0_conv`` ... ``<block>_3_bn``, so
``weights=keras.applications.ResNet50(...)``, its ``.keras`` file or its ``.weights.h5`` file
copies over layer by layer. ResNet-18/34 (basic blocks; keras.applications has no twin) follow
the same conventions and project only where the shape changes.

The CIFAR builders follow Sec. 4.2: a 3x3 convolution with 16 filters, three stages of ``n``
basic blocks with 16, 32 and 64 filters (the second and third start with stride 2), option A
(parameter-free, zero-padded) shortcuts, global average pooling and a 10-way classifier:
``6n + 2`` layers.
"""

import keras
import numpy as np

from kapps._checks import check_choice, check_int_sequence
from kapps.layers.residual import SHORTCUTS, BasicBlock, BottleneckBlock
from kapps.models.classification.common import (
    check_activation,
    check_classifier_args,
    classifier_output,
    keras_twin,
    pooled_features,
    variant,
)
from kapps.models.weights import load_into

# Depth -> (block, blocks per stage) of the paper's Table 1.
IMAGENET_STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_FILTERS = (64, 128, 256, 512)
# Depth 6n + 2 -> n basic blocks per stage (Sec. 4.2).
CIFAR_DEPTHS = (20, 32, 44, 56, 110)
CIFAR_FILTERS = (16, 32, 64)
BN_EPSILON = 1.001e-5  # keras.applications' value; its weights were trained with it

# Sublayer of a kapps block -> suffix of the keras.applications layer holding the same weights.
_KERAS_SUFFIX = {
    "shortcut_conv": "0_conv",
    "shortcut_bn": "0_bn",
    "conv1": "1_conv",
    "bn1": "1_bn",
    "conv2": "2_conv",
    "bn2": "2_bn",
    "conv3": "3_conv",
    "bn3": "3_bn",
}


def _block(kind, filters, strides, shortcut, use_bias, epsilon, stride_in, name):
    if kind == "basic":
        return BasicBlock(
            filters, strides, shortcut=shortcut, use_bias=use_bias, epsilon=epsilon, name=name
        )
    return BottleneckBlock(
        filters,
        strides,
        stride_in=stride_in,
        shortcut=shortcut,
        use_bias=use_bias,
        epsilon=epsilon,
        name=name,
    )


def _stages(x, kind, blocks, filters, first_shortcut, use_bias, epsilon, stride_in, first_stage):
    """Stack the residual stages; stage ``i`` is named ``conv{first_stage + i}``."""
    for i, (count, width) in enumerate(zip(blocks, filters)):
        stage = first_stage + i
        for b in range(1, count + 1):
            strides = 2 if (b == 1 and i > 0) else 1
            out = width * (4 if kind == "bottleneck" else 1)
            # A projection (or zero-padded) shortcut wherever the shape changes; the ImageNet
            # networks also project at the first block of the first stage (64 -> 256 channels
            # for bottlenecks), as keras.applications does.
            changes = strides != 1 or x.shape[-1] != out
            project = b == 1 and (changes or kind == "bottleneck")
            shortcut = first_shortcut if project else "identity"
            name = f"conv{stage}_block{b}"
            x = _block(kind, width, strides, shortcut, use_bias, epsilon, stride_in, name)(x)
    return x


def _top(x, include_top, pooling, num_classes, classifier_activation):
    if not include_top:
        return pooled_features(x, pooling)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(num_classes, name="predictions")(x)
    return classifier_output(x, classifier_activation)


def resnet(
    depth=50,
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    pooling=None,
    classifier_activation="softmax",
    weights=None,
    filters=IMAGENET_FILTERS,
    stride_in="1x1",
    use_bias=True,
    blocks=None,
    name=None,
):
    """Build an ImageNet ResNet (He et al. 2016, Table 1).

    Args:
        depth: 18 or 34 (basic blocks), 50, 101 or 152 (bottleneck blocks).
        num_classes: number of classes of the top.
        input_shape: ``(height, width, channels)``; at least 32x32 (five halvings). Height and
            width may be None with ``include_top=False``.
        include_top: whether to end with global average pooling and the classifier.
        pooling: with ``include_top=False``: None (the last feature map), ``"avg"`` or ``"max"``.
        classifier_activation: activation of the top (None for logits).
        weights: None, a ``.weights.h5``/``.keras`` path, or a ``keras.Model`` to copy from: a
            kapps ResNet or, for depths 50/101/152 with the default ``filters``, ``stride_in``
            and ``use_bias``, the keras.applications model (or a file it saved). A reference
            with a top also fits ``include_top=False`` (its classifier is left out).
        filters: channels of the four stages (bottleneck outputs are 4x these).
        stride_in: where a bottleneck's stride sits: ``"1x1"`` (v1, the default, as the paper's
            released models and keras.applications) or ``"3x3"`` (v1.5).
        use_bias: whether convolutions have biases (True, as keras.applications, so its
            weights fit; batch normalization makes them redundant).
        blocks: blocks in each of the four stages; None takes the depth's row of Table 1
            (e.g. ``(3, 4, 6, 3)`` for 50). Smaller values make quick test networks.
        name: model name (default ``resnet{depth}``).

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: for an unknown depth, bad sizes, or weights that do not fit (naming the
            first layer that does not).

    Example:
        >>> model = resnet(depth=50, num_classes=10, input_shape=(64, 64, 3))
    """
    check_choice("depth", depth, tuple(IMAGENET_STAGES))
    filters = check_int_sequence("filters", filters, 4)
    kind, table_blocks = IMAGENET_STAGES[depth]
    blocks = table_blocks if blocks is None else check_int_sequence("blocks", blocks, 4)
    check_choice("stride_in", stride_in, ("1x1", "3x3"))
    if not isinstance(use_bias, bool):
        raise ValueError(f"use_bias={use_bias!r} is not allowed; expected True or False.")
    check_activation("classifier_activation", classifier_activation)
    input_shape = check_classifier_args(
        num_classes, input_shape, include_top, pooling, min_size=32, allow_unknown_size=not include_top
    )
    name = name or f"resnet{depth}"

    inputs = keras.Input(input_shape, name="image")
    # Stem (Table 1, conv1 and the max-pooling of conv2_x), padded explicitly as
    # keras.applications does: "same" padding of a stride-2 layer would pad asymmetrically.
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = keras.layers.Conv2D(filters[0], 7, strides=2, use_bias=use_bias, name="conv1_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    x = _stages(x, kind, blocks, filters, "projection", use_bias, BN_EPSILON, stride_in, first_stage=2)
    outputs = _top(x, include_top, pooling, num_classes, classifier_activation)
    model = keras.Model(inputs, outputs, name=name)

    twin = None
    if kind == "bottleneck" and (filters, stride_in, use_bias, blocks) == (
        IMAGENET_FILTERS, "1x1", True, table_blocks
    ):
        twin = keras_twin(f"ResNet{depth}", include_top, input_shape, num_classes)
    return load_into(model, weights, twin=twin, copy=copy_resnet_weights)


def resnet_cifar(
    depth=20,
    num_classes=10,
    input_shape=(32, 32, 3),
    include_top=True,
    pooling=None,
    classifier_activation="softmax",
    weights=None,
    filters=CIFAR_FILTERS,
    shortcut="zero_pad",
    blocks=None,
    name=None,
):
    """Build a CIFAR ResNet of depth ``6n + 2`` (He et al. 2016, Sec. 4.2).

    Args:
        depth: 20, 32, 44, 56 or 110.
        num_classes: number of classes of the top.
        input_shape: ``(height, width, channels)``; at least 8x8 (two halvings leave 2x2).
            Height and width may be None with ``include_top=False``.
        include_top: whether to end with global average pooling and the classifier.
        pooling: with ``include_top=False``: None, ``"avg"`` or ``"max"``.
        classifier_activation: activation of the top (None for logits).
        weights: None, a ``.weights.h5``/``.keras`` path, or a kapps ``keras.Model`` to copy from.
        filters: channels of the stem and first stage, the second and the third stage.
        shortcut: at the two blocks that change shape: ``"zero_pad"`` (option A of the paper,
            no parameters, the default) or ``"projection"`` (option B).
        blocks: blocks in each of the three stages; None takes ``n = (depth - 2) / 6`` each.
            Smaller values make quick test networks.
        name: model name (default ``resnet{depth}``).

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: for an unknown depth, bad sizes, or weights that do not fit.

    Example:
        >>> model = resnet_cifar(depth=56)
    """
    check_choice("depth", depth, CIFAR_DEPTHS)
    filters = check_int_sequence("filters", filters, 3)
    check_choice("shortcut", shortcut, tuple(s for s in SHORTCUTS if s != "identity"))
    if shortcut == "zero_pad" and list(filters) != sorted(filters):
        raise ValueError(
            f"filters={filters!r} is not allowed with shortcut='zero_pad': zero padding can only "
            "add channels, so filters must not decrease."
        )
    check_activation("classifier_activation", classifier_activation)
    input_shape = check_classifier_args(
        num_classes, input_shape, include_top, pooling, min_size=8, allow_unknown_size=not include_top
    )
    n = (depth - 2) // 6
    blocks = (n, n, n) if blocks is None else check_int_sequence("blocks", blocks, 3)
    name = name or f"resnet{depth}"

    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(
        filters[0], 3, padding="same", use_bias=False, kernel_initializer="he_normal", name="conv1_conv"
    )(inputs)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    x = _stages(x, "basic", blocks, filters, shortcut, False, BN_EPSILON, "1x1", first_stage=2)
    outputs = _top(x, include_top, pooling, num_classes, classifier_activation)
    model = keras.Model(inputs, outputs, name=name)
    return load_into(model, weights, copy=copy_resnet_weights)


# ----------------------------------------------------------------------------- weights


def _named_variables(model):
    """``{layer name: variables}`` in keras.applications' naming: a kapps block ``conv2_block1``
    contributes ``conv2_block1_0_conv`` ... ``conv2_block1_3_bn``; other layers their own name."""
    named = {}
    for layer in model.layers:
        if isinstance(layer, (BasicBlock, BottleneckBlock)):
            for attribute, suffix in _KERAS_SUFFIX.items():
                sub = getattr(layer, attribute, None)
                if sub is not None and sub.weights:
                    named[f"{layer.name}_{suffix}"] = sub.weights
        elif layer.weights:
            named[layer.name] = layer.weights
    return named


def copy_resnet_weights(model, reference, argument="weights"):
    """Copy ``reference``'s weights into ``model`` layer by layer, matching names.

    ``reference`` is a kapps ResNet or a keras.applications ResNet (whose per-convolution layers
    ``conv2_block1_1_conv`` map onto the sublayers of kapps' ``conv2_block1``). A reference with
    a classifier also fits a model without one (its ``predictions`` layer is left out).

    Returns:
        ``model``.

    Raises:
        ValueError: naming ``argument`` and the first layer of ``model`` missing from
            ``reference`` or of another shape, or the first layer of ``reference`` that
            ``model`` has no place for; nothing is assigned then.
    """
    target = _named_variables(model)
    source = _named_variables(reference)
    where = f"{argument} does not fit model {model.name!r}"
    pairs = []
    for layer_name, variables in target.items():
        if layer_name not in source:
            raise ValueError(
                f"{where}: the reference has no layer {layer_name!r} (it is not the same "
                "architecture)."
            )
        values = source[layer_name]
        if len(values) != len(variables):
            raise ValueError(
                f"{where}: layer {layer_name!r} has {len(values)} variables in the reference but "
                f"{len(variables)} in the model."
            )
        for t, s in zip(variables, values):
            if tuple(t.shape) != tuple(s.shape):
                raise ValueError(
                    f"{where}: layer {layer_name!r} variable {s.path!r} has shape "
                    f"{tuple(s.shape)} but {t.path!r} needs {tuple(t.shape)}."
                )
            pairs.append((t, s))
    for layer_name in source:
        if layer_name not in target and layer_name != "predictions":
            raise ValueError(
                f"{where}: the reference's layer {layer_name!r} has no counterpart in the model "
                "(it is not the same architecture)."
            )
    for t, s in pairs:
        t.assign(np.asarray(keras.ops.convert_to_numpy(s)))
    return model


# ----------------------------------------------------------------------------- variants


def _imagenet_doc(depth):
    kind, blocks = IMAGENET_STAGES[depth]
    return (
        f"ResNet-{depth} for ImageNet (He et al. 2016, Table 1): {kind} blocks, {blocks} per "
        "stage.\n\n"
        f"    ``resnet(depth={depth}, ...)`` with the same arguments; see ``resnet``.\n"
    )


def _cifar_doc(depth):
    return (
        f"ResNet-{depth} for CIFAR-10 (He et al. 2016, Sec. 4.2): three stages of "
        f"{(depth - 2) // 6} basic blocks, option A shortcuts.\n\n"
        f"    ``resnet_cifar(depth={depth}, ...)`` with the same arguments; see ``resnet_cifar``.\n"
    )


resnet18 = variant(resnet, "resnet18", _imagenet_doc(18), depth=18)
resnet34 = variant(resnet, "resnet34", _imagenet_doc(34), depth=34)
resnet50 = variant(resnet, "resnet50", _imagenet_doc(50), depth=50)
resnet101 = variant(resnet, "resnet101", _imagenet_doc(101), depth=101)
resnet152 = variant(resnet, "resnet152", _imagenet_doc(152), depth=152)
resnet20 = variant(resnet_cifar, "resnet20", _cifar_doc(20), depth=20)
resnet32 = variant(resnet_cifar, "resnet32", _cifar_doc(32), depth=32)
resnet44 = variant(resnet_cifar, "resnet44", _cifar_doc(44), depth=44)
resnet56 = variant(resnet_cifar, "resnet56", _cifar_doc(56), depth=56)
resnet110 = variant(resnet_cifar, "resnet110", _cifar_doc(110), depth=110)
