"""DenseNet (Huang et al. 2017): DenseNet-121/169/201 for ImageNet and DenseNet-BC for CIFAR.

Every layer of a dense block receives the concatenation of all earlier feature maps of the
block (Section 3); transitions (BN-ReLU-Conv1x1, 2x2 average pooling) halve the size between
blocks and, with compression 0.5, the channels. The ImageNet networks reproduce
keras.applications (Table 1's block depths, growth rate 32, the 7x7/2 stem, BN epsilon
1.001e-5, its layer names and variable order), so ``weights=keras.applications.DenseNet121(...)``,
its ``.keras`` file or its ``.weights.h5`` file (read into a keras.applications twin, since the
dense blocks are kapps layers) copies over and gives the same outputs.
"""

import keras

from kapps._checks import check_choice, check_positive_int
from kapps.layers.conv import ConvBNAct
from kapps.layers.dense_block import DENSENET_EPSILON, DenseBlock, TransitionBlock
from kapps.models.classification.common import (
    check_activation,
    check_classifier_args,
    classifier_output,
    keras_twin,
    pooled_features,
    variant,
)
from kapps.models.weights import load_into

#: Dense layers per block of the ImageNet networks (Table 1), by depth.
IMAGENET_BLOCKS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32)}
STEMS = ("imagenet", "cifar")


def _check_blocks(blocks):
    if (
        not isinstance(blocks, (list, tuple))
        or not blocks
        or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in blocks)
    ):
        raise ValueError(
            f"blocks={blocks!r} is not allowed; expected a non-empty sequence of positive "
            "integers (dense layers per block)."
        )
    return tuple(blocks)


def _check_compression(compression):
    if isinstance(compression, bool) or not isinstance(compression, (int, float)) or not 0 < compression <= 1:
        raise ValueError(
            f"compression={compression!r} is not allowed; expected a number in (0, 1] "
            "(the paper's theta; 0.5 for DenseNet-BC)."
        )
    return float(compression)


def densenet(
    blocks=IMAGENET_BLOCKS[121],
    growth_rate=32,
    stem="imagenet",
    stem_filters=None,
    bottleneck=True,
    bottleneck_width=4,
    compression=0.5,
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    pooling=None,
    classifier_activation="softmax",
    weights=None,
    name=None,
):
    """Build a DenseNet.

    Args:
        blocks: dense layers in each dense block; a transition follows every block but the last.
        growth_rate: ``k``, the feature maps each dense layer adds (ImageNet: 32, CIFAR: 12).
        stem: ``"imagenet"`` (7x7/2 convolution with BN-ReLU, then 3x3/2 max pooling: input
            size / 4) or ``"cifar"`` (one 3x3 convolution at full size, Section 4).
        stem_filters: channels of the stem convolution; default ``2 * growth_rate``.
        bottleneck: 1x1 bottleneck convolutions in the dense layers (DenseNet-B).
        bottleneck_width: bottleneck filters as a multiple of ``growth_rate`` (paper: 4).
        compression: ``theta``; a transition keeps ``int(theta * channels)`` channels.
        num_classes: number of classes of the top.
        input_shape: ``(height, width, channels)``; height and width may be None.
        include_top: whether to end with global average pooling and the classifier.
        pooling: with ``include_top=False``: None (the last feature map), ``"avg"`` or ``"max"``.
        classifier_activation: activation of the top (None for logits).
        weights: None, a ``.weights.h5``/``.keras`` path, or a ``keras.Model`` (e.g.
            ``keras.applications.DenseNet121``) to copy from. For the ImageNet networks with
            the same ``include_top`` and classes, keras.applications' model, its ``.keras``
            file and its ``.weights.h5`` file fit.
        name: model name; default ``densenet{L}`` (ImageNet stem) or ``densenet_bc_{L}`` /
            ``densenet_{L}`` (CIFAR stem), ``L`` counting convolutional and dense layers.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: for bad arguments, or weights that do not fit (naming the first layer).

    Example:
        >>> model = densenet(blocks=(6, 12, 24, 16), num_classes=10, input_shape=(64, 64, 3))
    """
    blocks = _check_blocks(blocks)
    check_positive_int("growth_rate", growth_rate)
    check_choice("stem", stem, STEMS)
    if stem_filters is None:
        stem_filters = 2 * growth_rate
    check_positive_int("stem_filters", stem_filters)
    if not isinstance(bottleneck, bool):
        raise ValueError(f"bottleneck={bottleneck!r} is not allowed; expected True or False.")
    check_positive_int("bottleneck_width", bottleneck_width)
    compression = _check_compression(compression)
    check_activation("classifier_activation", classifier_activation)
    downsampling = 2 ** (len(blocks) - 1) * (4 if stem == "imagenet" else 1)
    input_shape = check_classifier_args(
        num_classes, input_shape, include_top, pooling, min_size=downsampling, allow_unknown_size=True
    )
    if name is None:
        depth = 2 + (2 if bottleneck else 1) * sum(blocks) + len(blocks) - 1
        if stem == "imagenet":
            name = f"densenet{depth}"
        else:
            name = f"densenet_bc_{depth}" if bottleneck and compression < 1 else f"densenet_{depth}"

    inputs = keras.Input(input_shape, name="image")
    if stem == "imagenet":
        # Explicit padding as in keras.applications, so even sizes pad symmetrically.
        x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
        x = ConvBNAct(stem_filters, 7, strides=2, padding="valid", epsilon=DENSENET_EPSILON, name="conv1")(x)
        x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    else:
        # The first dense layer starts with BN, so the stem is a bare convolution.
        x = keras.layers.Conv2D(
            stem_filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name="conv1"
        )(inputs)
    channels = stem_filters
    for index, num_layers in enumerate(blocks):
        x = DenseBlock(
            num_layers,
            growth_rate,
            bottleneck=bottleneck,
            bottleneck_width=bottleneck_width,
            epsilon=DENSENET_EPSILON,
            name=f"conv{index + 2}",
        )(x)
        channels += num_layers * growth_rate
        if index < len(blocks) - 1:
            channels = int(channels * compression)
            if channels < 1:
                raise ValueError(
                    f"compression={compression!r} leaves no channels after dense block {index + 1}; "
                    "use a larger compression or growth_rate."
                )
            x = TransitionBlock(channels, epsilon=DENSENET_EPSILON, name=f"pool{index + 2}")(x)
    x = keras.layers.BatchNormalization(epsilon=DENSENET_EPSILON, name="bn")(x)
    x = keras.layers.Activation("relu", name="relu")(x)

    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(num_classes, name="predictions")(x)
        outputs = classifier_output(x, classifier_activation)
    else:
        outputs = pooled_features(x, pooling)
    model = keras.Model(inputs, outputs, name=name)

    twin = None
    depth = {v: k for k, v in IMAGENET_BLOCKS.items()}.get(blocks)
    if depth and (growth_rate, stem, stem_filters, bottleneck, bottleneck_width, compression) == (
        32, "imagenet", 64, True, 4, 0.5
    ):
        twin = keras_twin(f"DenseNet{depth}", include_top, input_shape, num_classes)
    return load_into(model, weights, twin=twin)


def _imagenet_doc(depth):
    blocks = IMAGENET_BLOCKS[depth]
    return (
        f"DenseNet-{depth} of Huang et al. 2017 (Table 1: blocks {blocks}, k=32), as\n"
        f"    keras.applications.DenseNet{depth} builds it, whose weights copy over.\n\n"
        f"    ``densenet(blocks={blocks}, stem='imagenet', ...)``; see ``densenet``. ``blocks``\n"
        "    and ``growth_rate`` exist to build small test versions.\n"
    )


densenet121 = variant(
    densenet, "densenet121", _imagenet_doc(121), {"blocks": IMAGENET_BLOCKS[121]}, stem="imagenet"
)
densenet169 = variant(
    densenet, "densenet169", _imagenet_doc(169), {"blocks": IMAGENET_BLOCKS[169]}, stem="imagenet"
)
densenet201 = variant(
    densenet, "densenet201", _imagenet_doc(201), {"blocks": IMAGENET_BLOCKS[201]}, stem="imagenet"
)


def densenet_bc_100(
    num_classes=10,
    input_shape=(32, 32, 3),
    include_top=True,
    pooling=None,
    classifier_activation="softmax",
    weights=None,
    depth=100,
    growth_rate=12,
    name="densenet_bc_100",
):
    """DenseNet-BC (L=100, k=12) for CIFAR (Huang et al. 2017, Section 4 and Table 2).

    Three dense blocks of ``(depth - 4) / 6`` bottleneck layers (16 for L=100) on 32x32, 16x16
    and 8x8 maps, a 3x3 stem of ``2k`` filters, transitions with compression 0.5, then BN-ReLU,
    global average pooling and the classifier.

    Args:
        num_classes, input_shape, include_top, pooling, classifier_activation, weights, name:
            as ``densenet``.
        depth: ``L``; ``depth - 4`` must be a positive multiple of 6.
        growth_rate: ``k``.

    Returns:
        A ``keras.Model``.

    Example:
        >>> model = densenet_bc_100(num_classes=100)
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(
            f"depth={depth!r} is not allowed; expected L with L - 4 a positive multiple of 6 "
            "(three blocks of (L - 4) / 6 bottleneck layers), e.g. 100, 190 or 250."
        )
    return densenet(
        blocks=((depth - 4) // 6,) * 3,
        growth_rate=growth_rate,
        stem="cifar",
        num_classes=num_classes,
        input_shape=input_shape,
        include_top=include_top,
        pooling=pooling,
        classifier_activation=classifier_activation,
        weights=weights,
        name=name,
    )
