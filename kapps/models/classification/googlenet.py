"""GoogLeNet (Szegedy et al. 2014, "Going Deeper with Convolutions"), Inception v1.

The canonical configuration follows Table 1 and Figure 3: a 7x7/2 convolution, 3x3/2 max
pooling, local response normalization, a 1x1 reduction and a 3x3 convolution of 192, local
response normalization, 3x3/2 max pooling, Inception modules 3a-3b, 4a-4e and 5a-5b with max
pooling between the groups, global average pooling, 40% dropout and a linear layer. Every
convolution is followed by ReLU. All convolutions and poolings use 'same' padding, which gives
the table's sizes (112, 56, 28, 14, 7) for a 224x224 input.

Options: the two auxiliary classifiers of Section 5 (``aux_logits=True``: the model returns
``[main, aux1, aux2]``; train with loss weights ``[1, 0.3, 0.3]`` and use only the first output
at inference) and a batch-normalized form (``batch_norm=True``: every convolution becomes
convolution + BatchNorm + ReLU via ``ConvBNAct``, and local response normalization is dropped).
"""

import keras

from kapps._checks import check_rate
from kapps.layers.conv import ConvBNAct
from kapps.layers.inception import Inception
from kapps.layers.normalization import LocalResponseNormalization
from kapps.models.classification.common import (
    check_activation,
    check_classifier_args,
    classifier_output,
    pooled_features,
)
from kapps.models.weights import load_into

#: Table 1: ``(name, (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj))``, with ``"pool"``
#: for the 3x3/2 max pooling between groups.
INCEPTION_TABLE = (
    ("3a", (64, 96, 128, 16, 32, 32)),
    ("3b", (128, 128, 192, 32, 96, 64)),
    "pool",
    ("4a", (192, 96, 208, 16, 48, 64)),
    ("4b", (160, 112, 224, 24, 64, 64)),
    ("4c", (128, 128, 256, 24, 64, 64)),
    ("4d", (112, 144, 288, 32, 64, 64)),
    ("4e", (256, 160, 320, 32, 128, 128)),
    "pool",
    ("5a", (256, 160, 320, 32, 128, 128)),
    ("5b", (384, 192, 384, 48, 128, 128)),
)
#: The auxiliary classifiers sit on the outputs of these modules (Section 5).
AUX_AFTER = ("4a", "4d")
#: Smallest input for the auxiliary heads: their 5x5/3 average pooling needs a 5x5 map after
#: four stride-2 stages, i.e. ceil(size / 16) >= 5.
AUX_MIN_SIZE = 65


def _lrn(name):
    # The paper gives no constants; these are the BVLC Caffe reference's (local_size 5,
    # alpha 1e-4, beta 0.75, k 1). Caffe divides alpha by local_size; kapps' LRN does not.
    return LocalResponseNormalization(depth=5, k=1.0, alpha=1e-4 / 5, beta=0.75, name=name)


def _check_table(table):
    def valid(entry):
        if entry == "pool":
            return True
        return (
            isinstance(entry, (list, tuple))
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], (list, tuple))
            and len(entry[1]) == 6
            and all(not isinstance(f, bool) and isinstance(f, int) and f >= 1 for f in entry[1])
        )

    if not isinstance(table, (list, tuple)) or not any(e != "pool" for e in table) or not all(map(valid, table)):
        raise ValueError(
            f"inception_table={table!r} is not allowed; expected a sequence of 'pool' and "
            "(name, (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)) entries with at "
            "least one module, like INCEPTION_TABLE."
        )
    names = [e[0] for e in table if e != "pool"]
    if len(set(names)) != len(names):
        raise ValueError(f"inception_table has repeated module names {names!r}; names must be unique.")
    return tuple(e if e == "pool" else (e[0], tuple(e[1])) for e in table)


def googlenet(
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    pooling=None,
    classifier_activation="softmax",
    weights=None,
    aux_logits=False,
    batch_norm=False,
    lrn=None,
    width_multiplier=1.0,
    dropout=0.4,
    aux_dropout=0.7,
    inception_table=INCEPTION_TABLE,
    name="googlenet",
):
    """Build GoogLeNet (Inception v1).

    Args:
        num_classes: number of classes of the top (and of the auxiliary heads).
        input_shape: ``(height, width, channels)``; at least 32x32 (65x65 with
            ``aux_logits=True``); height and width may be None without auxiliary heads.
        include_top: whether to end with global average pooling, dropout and the classifier.
        pooling: with ``include_top=False``: None (the 1024-channel map), ``"avg"`` or ``"max"``.
        classifier_activation: activation of the top and auxiliary heads (None for logits).
        weights: None, a ``.weights.h5``/``.keras`` path, or a ``keras.Model`` to copy from.
        aux_logits: add the two auxiliary classifiers of Section 5 after 4a and 4d (5x5/3
            average pooling, 1x1 convolution of 128, fully-connected 1024, 70% dropout, linear);
            the model then returns ``[main, aux1, aux2]``, to be trained with loss weights
            ``[1, 0.3, 0.3]``.
        batch_norm: batch normalization after every convolution (BN-Inception style).
        lrn: local response normalization after the first pooling and after the 3x3
            convolution (Figure 3); default: on without ``batch_norm``, off with it.
        width_multiplier: scales every filter count and the auxiliary fully-connected width
            (rounded, at least 1); 1.0 is the paper's network.
        dropout: dropout before the classifier (paper: 0.4).
        aux_dropout: dropout in the auxiliary heads (paper: 0.7).
        inception_table: the modules after the stem, as in ``INCEPTION_TABLE`` (Table 1): each
            entry ``(name, (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj))`` or
            ``"pool"`` for a 3x3/2 max pooling. Shorter tables build small test networks;
            ``aux_logits=True`` needs modules named ``"4a"`` and ``"4d"``.
        name: model name.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: for bad arguments or weights that do not fit.

    Example:
        >>> model = googlenet(num_classes=10, input_shape=(96, 96, 3), aux_logits=True)
        >>> model.compile(
        ...     "sgd", loss=["sparse_categorical_crossentropy"] * 3, loss_weights=[1.0, 0.3, 0.3]
        ... )
    """
    check_activation("classifier_activation", classifier_activation)
    for flag, value in (("aux_logits", aux_logits), ("batch_norm", batch_norm)):
        if not isinstance(value, bool):
            raise ValueError(f"{flag}={value!r} is not allowed; expected True or False.")
    if lrn is None:
        lrn = not batch_norm
    if not isinstance(lrn, bool):
        raise ValueError(f"lrn={lrn!r} is not allowed; expected None, True or False.")
    if isinstance(width_multiplier, bool) or not isinstance(width_multiplier, (int, float)) or width_multiplier <= 0:
        raise ValueError(
            f"width_multiplier={width_multiplier!r} is not allowed; expected a number > 0 (1.0 is "
            "the paper's widths)."
        )
    inception_table = _check_table(inception_table)
    if aux_logits:
        names = [entry[0] for entry in inception_table if entry != "pool"]
        if any(module not in names for module in AUX_AFTER):
            raise ValueError(
                f"aux_logits=True needs Inception modules named {AUX_AFTER!r} in inception_table, "
                f"which has {names!r}."
            )
    dropout = check_rate("dropout", dropout)
    aux_dropout = check_rate("aux_dropout", aux_dropout)
    if aux_logits and not include_top:
        raise ValueError(
            "aux_logits=True is not allowed with include_top=False: the auxiliary heads are "
            "classifiers; use include_top=True, or aux_logits=False for a feature extractor."
        )
    input_shape = check_classifier_args(
        num_classes,
        input_shape,
        include_top,
        pooling,
        min_size=AUX_MIN_SIZE if aux_logits else 32,
        allow_unknown_size=not aux_logits,
    )

    def width(filters):
        return max(1, int(round(filters * width_multiplier)))

    def conv(filters, size, name, strides=1):
        return ConvBNAct(width(filters), size, strides=strides, batch_norm=batch_norm, name=name)

    inputs = keras.Input(input_shape, name="image")
    x = conv(64, 7, "conv1_7x7", strides=2)(inputs)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    if lrn:
        x = _lrn("pool1_norm")(x)
    x = conv(64, 1, "conv2_3x3_reduce")(x)
    x = conv(192, 3, "conv2_3x3")(x)
    if lrn:
        x = _lrn("conv2_norm")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)

    aux_outputs = []
    stage = 3
    for entry in inception_table:
        if entry == "pool":
            x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{stage}")(x)
            stage += 1
            continue
        module, filters = entry
        x = Inception(*(width(f) for f in filters), batch_norm=batch_norm, name=f"inception_{module}")(x)
        if aux_logits and module in AUX_AFTER:
            aux_outputs.append(
                _auxiliary_head(
                    x, f"aux{len(aux_outputs) + 1}", num_classes, conv, width, aux_dropout,
                    classifier_activation,
                )
            )

    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(dropout, name="dropout")(x)
        x = keras.layers.Dense(num_classes, name="predictions")(x)
        outputs = classifier_output(x, classifier_activation)
        if aux_logits:
            outputs = [outputs, *aux_outputs]
    else:
        outputs = pooled_features(x, pooling)
    model = keras.Model(inputs, outputs, name=name)
    return load_into(model, weights)


def _auxiliary_head(x, prefix, num_classes, conv, width, rate, activation):
    """Section 5: 5x5/3 average pooling, 1x1 convolution of 128 with ReLU, fully-connected
    1024 with ReLU, 70% dropout, linear classifier."""
    x = keras.layers.AveragePooling2D(5, strides=3, name=f"{prefix}_pool")(x)
    x = conv(128, 1, f"{prefix}_conv")(x)
    x = keras.layers.Flatten(name=f"{prefix}_flatten")(x)
    x = keras.layers.Dense(width(1024), activation="relu", name=f"{prefix}_fc")(x)
    x = keras.layers.Dropout(rate, name=f"{prefix}_dropout")(x)
    x = keras.layers.Dense(num_classes, name=f"{prefix}_predictions")(x)
    return keras.layers.Activation(activation, dtype="float32", name=f"{prefix}_probabilities")(x)
