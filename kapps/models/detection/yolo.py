"""YOLOv1 (Redmon et al. 2016) and YOLOv2 (Redmon & Farhadi 2017) detectors, their Darknet
backbones, and Darknet-19 as a classifier.

Each detector returns its raw grid (``decode=False``, for training with
``kapps.losses.YOLOv1Loss`` / ``YOLOv2Loss``) or, with ``decode=True``, final detections: the
raw grid goes through ``YOLOv1Decode`` / ``YOLOv2Decode`` (layer ``"decode"``) and
``NonMaxSuppression`` (layer ``"nms"``), so the model (and its TFLite file) returns the dict
``{"boxes", "scores", "classes", "num_detections"}`` of ``kapps.boxes``' conventions. Both
forms have the same weights in the same order (``detector.set_weights(raw.get_weights())``).

Architectures are tables (``YOLOV1_CONFIGS``, ``DARKNET19_LAYERS``, ``YOLOV2_CONFIGS``):

- ``yolov1``: the paper's Figure 3: 24 convolutions (leaky ReLU 0.1, biases, no batch
  normalization), 2 fully connected layers (4096, then S x S x (5B + C)), dropout 0.5 after
  the first; 448x448 input, 7x7x30 output for VOC: 271,703,550 parameters.
- ``yolov1_fast``: Fast YOLO, 9 convolutions (16 ... 1024 filters) and fully connected layers
  of 256, 4096 and S x S x (5B + C), as in Darknet's ``cfg/yolo-tiny.cfg`` of 2015
  (pjreddie/darknet at commit eaf033c, the configuration the paper's Fast YOLO was released
  with): 45,089,374 parameters.
- ``darknet19``: the paper's Table 6 classifier (19 convolutions, 5 max-pools, batch
  normalization and leaky ReLU 0.1; the last 1x1 convolution to the classes has a bias and
  no normalization, then global average pooling and softmax).
- ``yolov2``: Darknet-19's 18 feature convolutions, then as in Darknet's ``cfg/yolo-voc.cfg``:
  two 3x3x1024 convolutions, the passthrough from the 26x26x512 map through a 1x1x64
  convolution and ``Reorg`` to 13x13x256, concatenated, a 3x3x1024 convolution and a 1x1
  convolution (with bias) to A x (5 + C): 13x13x125 for VOC at 416, 50,676,061 parameters.
- ``yolov2_tiny``: Darknet's ``cfg/tiny-yolo-voc.cfg``: 9 convolutions, the sixth max-pool
  with stride 1 (so 416 gives 13x13).

``width_multiplier`` scales every hidden width (for tests and small data sets); the output
widths follow from the classes, boxes and anchors.
"""

import keras

from kapps import boxes as box_ops
from kapps._checks import check_choice, check_image_shape, check_positive_int, check_rate
from kapps.layers.conv import ConvBNAct
from kapps.layers.detection import NonMaxSuppression
from kapps.layers.yolo import Reorg, YOLOv1Decode, YOLOv2Decode, check_anchors
from kapps.models.classification.common import (
    check_activation,
    check_classifier_args,
    classifier_output,
    pooled_features,
    variant,
)
from kapps.models.weights import load_into

__all__ = [
    "DARKNET19_LAYERS",
    "TINY_VOC_ANCHORS",
    "VOC_ANCHORS",
    "YOLOV1_CONFIGS",
    "YOLOV2_CONFIGS",
    "darknet19",
    "yolov1",
    "yolov1_fast",
    "yolov2",
    "yolov2_tiny",
]

#: Darknet's ``yolo-voc.cfg`` anchors (13x13-grid units at 416) divided by 13: ``(width,
#: height)`` as fractions of the image (k-means on VOC boxes, Redmon & Farhadi 2017, section 2).
VOC_ANCHORS = tuple(
    (w / 13, h / 13)
    for w, h in ((1.3221, 1.73145), (3.19275, 4.00944), (5.05587, 8.09892), (9.47112, 4.84053), (11.2364, 10.0071))
)
#: Darknet's ``tiny-yolo-voc.cfg`` anchors divided by 13.
TINY_VOC_ANCHORS = tuple(
    (w / 13, h / 13) for w, h in ((1.08, 1.19), (3.42, 4.41), (6.63, 11.38), (9.42, 5.11), (16.62, 10.52))
)

# Layer tables: (filters, kernel, stride) convolutions and max-pools ("pool": 2x2 stride 2;
# "pool_s1": 2x2 stride 1, 'same', Darknet's padding on the bottom and right).
_POOL, _POOL_S1 = "pool", "pool_s1"

YOLOV1_CONFIGS = {
    # Redmon et al. 2016, Figure 3: 24 convolutions, then fully connected 4096 and the output.
    "yolov1": {
        "layers": (
            (64, 7, 2), _POOL,
            (192, 3, 1), _POOL,
            (128, 1, 1), (256, 3, 1), (256, 1, 1), (512, 3, 1), _POOL,
            *((256, 1, 1), (512, 3, 1)) * 4, (512, 1, 1), (1024, 3, 1), _POOL,
            *((512, 1, 1), (1024, 3, 1)) * 2, (1024, 3, 1), (1024, 3, 2),
            (1024, 3, 1), (1024, 3, 1),
        ),
        # hidden fully connected layers: (units, leaky ReLU?); dropout follows the last one
        "fc": ((4096, True),),
    },
    # Fast YOLO: Darknet's cfg/yolo-tiny.cfg (2015): 9 convolutions, FC 256 (linear), FC 4096.
    "fast": {
        "layers": (
            (16, 3, 1), _POOL, (32, 3, 1), _POOL, (64, 3, 1), _POOL, (128, 3, 1), _POOL,
            (256, 3, 1), _POOL, (512, 3, 1), _POOL, (1024, 3, 1), (1024, 3, 1), (1024, 3, 1),
        ),
        "fc": ((256, False), (4096, True)),
    },
}

#: Darknet-19's 18 feature convolutions (Redmon & Farhadi 2017, Table 6) with its 5 max-pools.
DARKNET19_LAYERS = (
    (32, 3, 1), _POOL,
    (64, 3, 1), _POOL,
    (128, 3, 1), (64, 1, 1), (128, 3, 1), _POOL,
    (256, 3, 1), (128, 1, 1), (256, 3, 1), _POOL,
    (512, 3, 1), (256, 1, 1), (512, 3, 1), (256, 1, 1), (512, 3, 1), _POOL,
    (1024, 3, 1), (512, 1, 1), (1024, 3, 1), (512, 1, 1), (1024, 3, 1),
)

YOLOV2_CONFIGS = {
    # cfg/yolo-voc.cfg: Darknet-19 features, 2 x 3x3x1024, passthrough (1x1x64 + reorg 2) from
    # the map before the last stride-2 pool, concatenation, 3x3x1024.
    "yolov2": {"layers": DARKNET19_LAYERS, "head": (1024, 1024), "passthrough": 64, "fuse": 1024},
    # cfg/tiny-yolo-voc.cfg: 6 convolutions with pools (the last of stride 1), 1024, 1024.
    "tiny": {
        "layers": (
            (16, 3, 1), _POOL, (32, 3, 1), _POOL, (64, 3, 1), _POOL, (128, 3, 1), _POOL,
            (256, 3, 1), _POOL, (512, 3, 1), _POOL_S1, (1024, 3, 1),
        ),
        "head": (1024,),
        "passthrough": None,
        "fuse": None,
    },
}


def _scaled(filters, width_multiplier):
    return max(1, int(round(filters * width_multiplier)))


def _check_width(width_multiplier):
    if (
        isinstance(width_multiplier, bool)
        or not isinstance(width_multiplier, (int, float))
        or not 0 < width_multiplier <= 4
    ):
        raise ValueError(
            f"width_multiplier={width_multiplier!r} is not allowed; expected a number in (0, 4] "
            "(1.0 is the paper's widths)."
        )
    return float(width_multiplier)


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not allowed; expected True or False.")
    return value


def _check_name(name):
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} is not allowed; expected a non-empty string.")
    return name


def _stride(layers):
    stride = 1
    for layer in layers:
        stride *= 2 if layer == _POOL else 1 if layer == _POOL_S1 else layer[2]
    return stride


def _check_sizes(input_shape, stride, allow_unknown, why):
    input_shape = check_image_shape(
        "input_shape",
        input_shape,
        allow_unknown_size=allow_unknown,
        note="" if allow_unknown else f"; {why}",
    )
    for size in input_shape[:2]:
        if size is not None and size % stride:
            lower = size // stride * stride
            raise ValueError(
                f"input_shape={input_shape!r} is not allowed: height and width must be "
                f"multiples of {stride} (the network's total stride), e.g. {lower or stride} "
                f"or {lower + stride}."
            )
    return input_shape


def _darknet_conv(x, filters, kernel, strides, batch_norm, name):
    """Darknet's convolutional block: convolution (+ batch normalization), leaky ReLU 0.1."""
    x = ConvBNAct(filters, kernel, strides=strides, activation=None, batch_norm=batch_norm, name=name)(x)
    return keras.layers.LeakyReLU(negative_slope=0.1, name=f"{name}_leaky")(x)


def _darknet_layers(x, layers, width_multiplier, batch_norm, prefix=""):
    """Run a layer table; return the output and the map entering the last stride-2 pool (the
    passthrough source of YOLOv2)."""
    conv = pool = 0
    before_last_pool = None
    for layer in layers:
        if layer in (_POOL, _POOL_S1):
            pool += 1
            if layer == _POOL:
                before_last_pool = x
                x = keras.layers.MaxPooling2D(2, strides=2, name=f"{prefix}pool{pool}")(x)
            else:
                x = keras.layers.MaxPooling2D(2, strides=1, padding="same", name=f"{prefix}pool{pool}")(x)
        else:
            conv += 1
            filters, kernel, strides = layer
            x = _darknet_conv(
                x, _scaled(filters, width_multiplier), kernel, strides, batch_norm, f"{prefix}conv{conv}"
            )
    return x, before_last_pool


def _check_detection_args(decode, max_detections, iou_threshold, score_threshold):
    _check_bool("decode", decode)
    box_ops._check_nms_args(max_detections, iou_threshold, score_threshold)


def yolov1(
    input_shape=(448, 448, 3),
    grid_size=7,
    boxes_per_cell=2,
    num_classes=20,
    decode=False,
    max_detections=100,
    iou_threshold=0.5,
    score_threshold=0.2,
    config="yolov1",
    batch_norm=False,
    width_multiplier=1.0,
    dropout=0.5,
    weights=None,
    name="yolov1",
):
    """Build YOLOv1 (defaults: the paper's network for Pascal VOC, 448x448 -> 7x7x30).

    The convolutions (table ``YOLOV1_CONFIGS[config]``) end in a map of
    ``input / 64`` per side, which is flattened into fully connected layers; the last one has
    ``S * S * (5 B + C)`` linear outputs, reshaped to the ``(S, S, 5 B + C)`` grid (per cell:
    ``B`` boxes ``(x, y, sqrt_w, sqrt_h, confidence)``, then ``C`` class probabilities; see
    ``kapps.layers.yolo``). Every other layer has a leaky ReLU of slope 0.1 (section 2.2).

    Args:
        input_shape: ``(height, width, channels)``, known multiples of 64 (448 in the paper).
        grid_size: S, the grid's cells per side (7).
        boxes_per_cell: B, box predictors per cell (2).
        num_classes: C (20 for Pascal VOC).
        decode: end in ``YOLOv1Decode`` and ``NonMaxSuppression``: the output is the dict of
            final detections rather than the raw grid.
        max_detections: detections per image kept by non-max suppression (with ``decode``).
        iou_threshold: non-max suppression's IoU threshold (0.5 in Darknet's YOLOv1).
        score_threshold: smallest class-specific score kept (0.2 in Darknet's YOLOv1 demo).
        config: ``"yolov1"`` (Figure 3, 24 convolutions) or ``"fast"`` (Fast YOLO, 9).
        batch_norm: batch normalization after every convolution, which then has no bias (as
            Darknet's later ``yolov1/yolo.cfg``); the paper has none.
        width_multiplier: scales every convolution's filters and the hidden fully connected
            widths (1.0: the paper's).
        dropout: dropout rate after the last hidden fully connected layer (0.5).
        weights: None, a ``.weights.h5`` / ``.keras`` path or a ``keras.Model`` of the same
            configuration to copy (``decode`` may differ: it adds no weights).
        name: model name.

    Returns:
        A ``keras.Model``: images ``(batch, height, width, 3)`` in [0, 1] to ``(batch, S, S,
        5 B + C)``, or with ``decode=True`` to the detections dict.

    Raises:
        ValueError: for bad arguments, naming the argument, the value and what is allowed.

    Example:
        >>> model = yolov1()
        >>> tuple(model.output.shape)
        (None, 7, 7, 30)
        >>> small = yolov1(input_shape=(64, 64, 3), grid_size=2, num_classes=3,
        ...                width_multiplier=1 / 32, decode=True)
    """
    check_choice("config", config, tuple(YOLOV1_CONFIGS))
    table = YOLOV1_CONFIGS[config]
    stride = _stride(table["layers"])
    input_shape = _check_sizes(
        input_shape, stride, allow_unknown=False, why="the fully connected layers need a known size"
    )
    check_positive_int("grid_size", grid_size)
    check_positive_int("boxes_per_cell", boxes_per_cell)
    check_positive_int("num_classes", num_classes)
    _check_detection_args(decode, max_detections, iou_threshold, score_threshold)
    _check_bool("batch_norm", batch_norm)
    width_multiplier = _check_width(width_multiplier)
    dropout = check_rate("dropout", dropout)
    _check_name(name)

    inputs = keras.Input(input_shape, name="image")
    x, _ = _darknet_layers(inputs, table["layers"], width_multiplier, batch_norm)
    x = keras.layers.Flatten(name="flatten")(x)
    for i, (units, leaky) in enumerate(table["fc"], start=1):
        x = keras.layers.Dense(_scaled(units, width_multiplier), name=f"fc{i}")(x)
        if leaky:
            x = keras.layers.LeakyReLU(negative_slope=0.1, name=f"fc{i}_leaky")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    channels = boxes_per_cell * 5 + num_classes
    x = keras.layers.Dense(grid_size * grid_size * channels, name="predictions")(x)
    # (batch, S * S * (5B + C)) -> (batch, S, S, 5B + C): cells in row-major order
    outputs = keras.layers.Reshape((grid_size, grid_size, channels), name="grid")(x)
    if decode:
        found = YOLOv1Decode(grid_size, boxes_per_cell, num_classes, name="decode")(outputs)
        outputs = NonMaxSuppression(max_detections, iou_threshold, score_threshold, name="nms")(found)
    model = keras.Model(inputs, outputs, name=name)
    return load_into(model, weights)


def darknet19(
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    pooling=None,
    classifier_activation="softmax",
    weights=None,
    width_multiplier=1.0,
    name="darknet19",
):
    """Build Darknet-19 (Redmon & Farhadi 2017, Table 6), YOLOv2's classification backbone.

    18 convolutions (3x3 and 1x1, each with batch normalization and leaky ReLU 0.1, no bias)
    and 5 max-pools, then the classifier: a 1x1 convolution to the classes (with bias, no
    normalization: the 19th convolution), global average pooling and softmax, as in
    Darknet's ``cfg/darknet19.cfg``.

    Args:
        num_classes: classes of the top (1000 for ImageNet).
        input_shape: ``(height, width, channels)``, at least 32x32; height and width may be
            None (the network is fully convolutional up to its global pooling).
        include_top: end with the classifier; without it the output is the 1024-channel map
            (``input / 32`` per side), or its pooling.
        pooling: with ``include_top=False``: None, ``"avg"`` or ``"max"``.
        classifier_activation: activation of the top (None for logits).
        weights: None, a ``.weights.h5`` / ``.keras`` path or a ``keras.Model`` to copy.
        width_multiplier: scales every convolution's filters (1.0: the paper's).
        name: model name.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: for bad arguments.

    Example:
        >>> model = darknet19(num_classes=10, input_shape=(64, 64, 3))
    """
    input_shape = check_classifier_args(
        num_classes, input_shape, include_top, pooling, min_size=32, allow_unknown_size=True
    )
    check_activation("classifier_activation", classifier_activation)
    width_multiplier = _check_width(width_multiplier)
    _check_name(name)

    inputs = keras.Input(input_shape, name="image")
    x, _ = _darknet_layers(inputs, DARKNET19_LAYERS, width_multiplier, batch_norm=True)
    if include_top:
        x = keras.layers.Conv2D(num_classes, 1, name="predictions")(x)
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        outputs = classifier_output(x, classifier_activation)
    else:
        outputs = pooled_features(x, pooling)
    model = keras.Model(inputs, outputs, name=name)
    return load_into(model, weights)


def yolov2(
    input_shape=(416, 416, 3),
    num_classes=20,
    anchors=VOC_ANCHORS,
    decode=False,
    max_detections=100,
    iou_threshold=0.45,
    score_threshold=0.24,
    config="yolov2",
    width_multiplier=1.0,
    weights=None,
    name="yolov2",
):
    """Build YOLOv2 (defaults: Darknet's ``yolo-voc.cfg``, 416x416 -> 13x13x125).

    Darknet-19 without its classifier, then (``YOLOV2_CONFIGS["yolov2"]``) two 3x3x1024
    convolutions; the passthrough takes the 26x26x512 map (before the last pool) through a
    1x1x64 convolution and ``Reorg`` (space-to-depth, stride 2) to 13x13x256, concatenated
    (Darknet's route order: passthrough first) with the 13x13x1024 map; a 3x3x1024 convolution
    and a 1x1 convolution with bias to ``A * (5 + C)`` (per anchor ``tx, ty, tw, th, to`` and
    ``C`` class logits; see ``kapps.layers.yolo``). All convolutions but the last have batch
    normalization and leaky ReLU 0.1.

    The network is fully convolutional: any input whose sides are multiples of 32 works, and
    ``input_shape=(None, None, 3)`` builds one model for multi-scale training (section 2,
    "Multi-Scale Training": 320 ... 608), whose grid is ``input / 32`` per side. The anchors are
    fractions of the image, so they hold at every size.

    Args:
        input_shape: ``(height, width, channels)``; height and width multiples of 32 or None.
        num_classes: C (20 for Pascal VOC).
        anchors: ``A`` ``(width, height)`` pairs, fractions of the image (``VOC_ANCHORS``;
            ``kapps.boxes.kmeans_anchors`` clusters them for a data set).
        decode: end in ``YOLOv2Decode`` and ``NonMaxSuppression``: the output is the dict of
            final detections rather than the raw grid.
        max_detections: detections per image kept by non-max suppression (with ``decode``).
        iou_threshold: non-max suppression's IoU threshold (0.45, Darknet's).
        score_threshold: smallest class score kept (0.24, Darknet's YOLOv2 ``-thresh``).
        config: ``"yolov2"`` or ``"tiny"`` (Tiny YOLO, ``tiny-yolo-voc.cfg``).
        width_multiplier: scales every hidden convolution's filters (1.0: the paper's).
        weights: None, a ``.weights.h5`` / ``.keras`` path or a ``keras.Model`` of the same
            configuration to copy (``decode`` and the input size may differ).
        name: model name.

    Returns:
        A ``keras.Model``: images ``(batch, height, width, 3)`` in [0, 1] to ``(batch,
        height / 32, width / 32, A * (5 + C))``, or with ``decode=True`` to the detections
        dict.

    Raises:
        ValueError: for bad arguments, naming the argument, the value and what is allowed.

    Example:
        >>> tuple(yolov2().output.shape)
        (None, 13, 13, 125)
        >>> multi_scale = yolov2(input_shape=(None, None, 3), num_classes=3,
        ...                      anchors=[(0.1, 0.1), (0.3, 0.4)])
    """
    check_choice("config", config, tuple(YOLOV2_CONFIGS))
    table = YOLOV2_CONFIGS[config]
    input_shape = _check_sizes(input_shape, 32, allow_unknown=True, why="")
    check_positive_int("num_classes", num_classes)
    anchors = check_anchors("anchors", anchors)
    _check_detection_args(decode, max_detections, iou_threshold, score_threshold)
    width_multiplier = _check_width(width_multiplier)
    _check_name(name)

    inputs = keras.Input(input_shape, name="image")
    x, fine = _darknet_layers(inputs, table["layers"], width_multiplier, batch_norm=True)
    for i, filters in enumerate(table["head"], start=1):
        x = _darknet_conv(x, _scaled(filters, width_multiplier), 3, 1, True, f"head_conv{i}")
    if table["passthrough"]:
        # 26x26x512 -> 26x26x64 -> 13x13x256 (section 2, "Fine-Grained Features")
        fine = _darknet_conv(fine, _scaled(table["passthrough"], width_multiplier), 1, 1, True, "passthrough_conv")
        fine = Reorg(2, name="passthrough_reorg")(fine)
        x = keras.layers.Concatenate(name="passthrough_concat")([fine, x])
        fuse_name = f"head_conv{len(table['head']) + 1}"
        x = _darknet_conv(x, _scaled(table["fuse"], width_multiplier), 3, 1, True, fuse_name)
    outputs = keras.layers.Conv2D(len(anchors) * (5 + num_classes), 1, name="predictions")(x)
    if decode:
        found = YOLOv2Decode(anchors, num_classes, name="decode")(outputs)
        outputs = NonMaxSuppression(max_detections, iou_threshold, score_threshold, name="nms")(found)
    model = keras.Model(inputs, outputs, name=name)
    return load_into(model, weights)


yolov1_fast = variant(
    yolov1,
    "yolov1_fast",
    """Fast YOLO (Redmon et al. 2016, section 2.3 and 4.1): ``yolov1(config="fast", ...)``.

    9 convolutions of 16, 32, 64, 128, 256, 512, 1024, 1024, 1024 filters (a 2x2 max-pool
    after each of the first six), fully connected layers of 256 (linear) and 4096 (leaky),
    dropout 0.5 and the S x S x (5B + C) output: Darknet's ``cfg/yolo-tiny.cfg`` as released
    with the paper (45,089,374 parameters for VOC). Same arguments as ``yolov1``.
    """,
    config="fast",
)

yolov2_tiny = variant(
    yolov2,
    "yolov2_tiny",
    """Tiny YOLOv2 (Darknet's ``cfg/tiny-yolo-voc.cfg``): ``yolov2(config="tiny", ...)``.

    Convolutions of 16, 32, 64, 128, 256, 512 filters, each followed by a 2x2 max-pool (the
    sixth of stride 1, so the grid stays at input / 32), then 1024 and 1024 filters and the 1x1
    output convolution: 9 convolutions. Default anchors ``TINY_VOC_ANCHORS``. Same arguments
    as ``yolov2``.
    """,
    defaults={"anchors": TINY_VOC_ANCHORS},
    config="tiny",
)
