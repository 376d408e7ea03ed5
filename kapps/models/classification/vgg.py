"""VGG (Simonyan & Zisserman 2014): configurations A, B, D and E as one table-driven builder.

VGG is stacks of 3x3 convolutions (stride 1, 'same') separated by 2x2 max-pooling, then three
fully-connected layers with dropout 0.5 after the first two (Section 2.1 and Table 1). The
builders here reproduce keras.applications' layer names (``block1_conv1`` ... ``fc1``, ``fc2``,
``predictions``), so weights copy over from a ``keras.applications.VGG16`` model object.
"""

import keras

from kapps._checks import check_choice, check_int_sequence, check_positive_int, check_rate
from kapps.layers import ConvBNAct
from kapps.models.classification.common import (
    check_activation,
    check_classifier_args,
    classifier_output,
    pooled_features,
    variant,
)
from kapps.models.weights import load_into

# Convolutions per stage for each configuration of the paper's Table 1.
CONFIGS = {"A": (1, 1, 2, 2, 2), "B": (2, 2, 2, 2, 2), "D": (2, 2, 3, 3, 3), "E": (2, 2, 4, 4, 4)}
DEFAULT_FILTERS = (64, 128, 256, 512, 512)


def vgg(
    config="D",
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    pooling=None,
    classifier_activation="softmax",
    weights=None,
    fully_convolutional=False,
    batch_norm=False,
    filters=DEFAULT_FILTERS,
    fc_units=4096,
    dropout=0.5,
    name=None,
):
    """Build a VGG network.

    Args:
        config: the paper's configuration letter: ``"A"`` (11 layers), ``"B"`` (13), ``"D"``
            (16) or ``"E"`` (19).
        num_classes: number of classes of the top.
        input_shape: ``(height, width, channels)``; at least 32x32 (five 2x2 poolings), or at
            least 224x224 with ``fully_convolutional=True``, where height and width may be None.
        include_top: whether to end with the three fully-connected layers.
        pooling: with ``include_top=False``: None (the last feature map), ``"avg"`` or ``"max"``.
        classifier_activation: activation of the top (None for logits).
        weights: None, a ``.weights.h5``/``.keras`` path, or a ``keras.Model`` to copy from
            (a dense top copies into a fully-convolutional one). Configurations D and E with
            the default widths take keras.applications' VGG16/VGG19 model, its ``.keras`` file
            and (unless ``fully_convolutional``: pass the model there) its ``.weights.h5`` file.
        fully_convolutional: turn fc1/fc2/predictions into 7x7, 1x1 and 1x1 convolutions with
            the same parameters (Section 3.2, "dense evaluation"), so the network takes any
            input of at least 224x224 and returns a ``(batch, h, w, num_classes)`` score map.
        batch_norm: add batch normalization after every convolution (the common "VGG-BN"
            variant; not in the paper, which predates it).
        filters: channels of the five stages.
        fc_units: width of fc1 and fc2.
        dropout: dropout rate after fc1 and fc2.
        name: model name (default ``vgg11``/``vgg13``/``vgg16``/``vgg19``).

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: for an unknown config, bad sizes, or weights that do not fit.

    Example:
        >>> model = vgg(config="D", num_classes=10, input_shape=(32, 32, 3))
    """
    check_choice("config", config, tuple(CONFIGS))
    filters = check_int_sequence("filters", filters, 5)
    check_positive_int("fc_units", fc_units)
    check_rate("dropout", dropout)
    check_activation("classifier_activation", classifier_activation)
    if not isinstance(fully_convolutional, bool):
        raise ValueError(
            f"fully_convolutional={fully_convolutional!r} is not allowed; expected True or False."
        )
    if fully_convolutional and not include_top:
        raise ValueError(
            "fully_convolutional=True is not allowed with include_top=False: it changes only the "
            "top; use include_top=False alone for a convolutional feature extractor."
        )
    input_shape = check_classifier_args(
        num_classes,
        input_shape,
        include_top,
        pooling,
        min_size=224 if fully_convolutional else 32,
        allow_unknown_size=fully_convolutional or not include_top,
    )
    depths = CONFIGS[config]
    name = name or f"vgg{sum(depths) + 3}"

    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for stage, (convs, width) in enumerate(zip(depths, filters), start=1):
        for i in range(1, convs + 1):
            layer_name = f"block{stage}_conv{i}"
            if batch_norm:
                x = ConvBNAct(width, 3, name=layer_name)(x)
            else:
                x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=layer_name)(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{stage}_pool")(x)

    if not include_top:
        outputs = pooled_features(x, pooling)
    elif fully_convolutional:
        # fc1 as a 7x7 'valid' convolution over the 7x7 map of a 224x224 input.
        x = keras.layers.Conv2D(fc_units, 7, activation="relu", name="fc1")(x)
        x = keras.layers.Dropout(dropout, name="fc1_dropout")(x)
        x = keras.layers.Conv2D(fc_units, 1, activation="relu", name="fc2")(x)
        x = keras.layers.Dropout(dropout, name="fc2_dropout")(x)
        x = keras.layers.Conv2D(num_classes, 1, name="predictions")(x)
        outputs = classifier_output(x, classifier_activation)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(fc_units, activation="relu", name="fc1")(x)
        x = keras.layers.Dropout(dropout, name="fc1_dropout")(x)
        x = keras.layers.Dense(fc_units, activation="relu", name="fc2")(x)
        x = keras.layers.Dropout(dropout, name="fc2_dropout")(x)
        x = keras.layers.Dense(num_classes, name="predictions")(x)
        outputs = classifier_output(x, classifier_activation)

    model = keras.Model(inputs, outputs, name=name)
    return load_into(model, weights)


def _doc(config, depth):
    return (
        f"VGG-{depth}, configuration {config} of Simonyan & Zisserman 2014 (Table 1).\n\n"
        f"    ``vgg(config={config!r}, ...)`` with the same arguments; see ``vgg``.\n"
    )


vgg11 = variant(vgg, "vgg11", _doc("A", 11), config="A")
vgg13 = variant(vgg, "vgg13", _doc("B", 13), config="B")
vgg16 = variant(vgg, "vgg16", _doc("D", 16), config="D")
vgg19 = variant(vgg, "vgg19", _doc("E", 19), config="E")
