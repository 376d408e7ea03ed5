"""AlexNet (Krizhevsky, Sutskever & Hinton 2012).

Five convolutions and three fully-connected layers (Section 3.5, Figure 2): ReLU everywhere,
local response normalization after conv1 and conv2 (Section 3.3), overlapping 3x3/stride-2
max-pooling after conv1, conv2 and conv5 (Section 3.4), dropout 0.5 before fc6 and fc7
(Section 4.2).

The paper trained on two GPUs: conv2, conv4 and conv5 see only the half of the previous
layer's maps that lives on their own GPU. ``groups=2`` (the default) reproduces that with
grouped convolutions (60,965,224 parameters for 1000 classes); ``groups=1`` is the single
tower most libraries ship (62,378,344). Input 227x227, the size that makes the paper's
arithmetic work (the paper's text says 224, Figure 2 gives 55x55 after conv1).
"""

import keras

from kapps._checks import check_int_sequence, check_positive_int, check_rate
from kapps.layers import LocalResponseNormalization
from kapps.models.classification.common import (
    check_activation,
    check_classifier_args,
    classifier_output,
    pooled_features,
)
from kapps.models.weights import load_into

DEFAULT_FILTERS = (96, 256, 384, 384, 256)
# (kernel, stride, padding, split across the two towers?, LRN after?, max-pool after?)
_LAYERS = (
    (11, 4, "valid", False, True, True),
    (5, 1, "same", True, True, True),
    (3, 1, "same", False, False, False),
    (3, 1, "same", True, False, False),
    (3, 1, "same", True, False, True),
)


def alexnet(
    num_classes=1000,
    input_shape=(227, 227, 3),
    include_top=True,
    pooling=None,
    classifier_activation="softmax",
    weights=None,
    groups=2,
    local_response_norm=True,
    filters=DEFAULT_FILTERS,
    fc_units=4096,
    dropout=0.5,
    name="alexnet",
):
    """Build AlexNet.

    Args:
        num_classes: number of classes of the top.
        input_shape: ``(height, width, channels)``, at least 67x67 (the smallest input that
            survives conv1 and the three poolings); 227x227x3 in the paper.
        include_top: whether to end with fc6, fc7 and fc8.
        pooling: with ``include_top=False``: None, ``"avg"`` or ``"max"``.
        classifier_activation: activation of the top (None for logits).
        weights: None, a ``.weights.h5``/``.keras`` path, or a ``keras.Model`` to copy from.
        groups: 2 for the paper's two towers (conv2, conv4, conv5 grouped), 1 for a single
            tower; any number of towers that divides the channels of conv1..conv5.
        local_response_norm: apply LRN after conv1 and conv2 (paper: k=2, n=5, alpha=1e-4,
            beta=0.75).
        filters: channels of conv1..conv5.
        fc_units: width of fc6 and fc7.
        dropout: dropout rate before fc6 and fc7.
        name: model name.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: for bad arguments, including ``groups`` that does not divide the channels.

    Example:
        >>> model = alexnet(groups=1)
        >>> model.count_params()
        62378344
    """
    check_positive_int("groups", groups)
    filters = check_int_sequence("filters", filters, 5)
    for i, width in enumerate(filters):
        if width % groups:
            raise ValueError(
                f"groups={groups!r} does not divide filters[{i}]={width}; every convolution's "
                "channels must be a multiple of groups."
            )
    check_positive_int("fc_units", fc_units)
    check_rate("dropout", dropout)
    check_activation("classifier_activation", classifier_activation)
    input_shape = check_classifier_args(
        num_classes, input_shape, include_top, pooling, min_size=67, allow_unknown_size=not include_top
    )

    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, (width, (kernel, stride, padding, split, lrn, pool)) in enumerate(
        zip(filters, _LAYERS), start=1
    ):
        x = keras.layers.Conv2D(
            width,
            kernel,
            strides=stride,
            padding=padding,
            groups=groups if split else 1,
            activation="relu",
            name=f"conv{i}",
        )(x)
        if lrn and local_response_norm:
            x = LocalResponseNormalization(name=f"conv{i}_lrn")(x)
        if pool:
            x = keras.layers.MaxPooling2D(3, strides=2, name=f"conv{i}_pool")(x)

    if not include_top:
        outputs = pooled_features(x, pooling)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dropout(dropout, name="fc6_dropout")(x)
        x = keras.layers.Dense(fc_units, activation="relu", name="fc6")(x)
        x = keras.layers.Dropout(dropout, name="fc7_dropout")(x)
        x = keras.layers.Dense(fc_units, activation="relu", name="fc7")(x)
        x = keras.layers.Dense(num_classes, name="fc8")(x)
        outputs = classifier_output(x, classifier_activation)

    model = keras.Model(inputs, outputs, name=name)
    return load_into(model, weights)
