"""YOLO layers: the passthrough ``Reorg`` (space-to-depth) of YOLOv2 and the decode layers that
turn YOLOv1 / YOLOv2 raw grids into boxes and class scores, plus the decode math they share
with the YOLO losses (``kapps.losses.YOLOv1Loss``, ``kapps.losses.YOLOv2Loss``).

Raw layouts (the box conventions of ``kapps.boxes``):

- YOLOv1: ``(batch, S, S, B * 5 + C)``; per cell the ``B`` boxes ``(x, y, sqrt_w, sqrt_h,
  confidence)`` first, then ``C`` class probabilities. ``x, y`` are the centre's offsets inside
  the cell (0..1), ``sqrt_w, sqrt_h`` the square roots of the width and height as fractions of
  the image: the network predicts square roots (Redmon et al. 2016, section 2.2; Darknet's
  detection layer with ``sqrt=1`` squares them when decoding). All outputs are linear.
- YOLOv2: ``(batch, H / 32, W / 32, A * (5 + C))``; per anchor ``(tx, ty, tw, th, to)`` and
  ``C`` class logits: ``bx = (sigmoid(tx) + cx) / W``, ``bw = anchor_w * exp(tw)``,
  objectness ``sigmoid(to)``, class probabilities ``softmax`` (Redmon & Farhadi 2017,
  section 2, "Direct location prediction"). Anchors are ``(width, height)`` fractions of the
  image, so one set serves every input size.

Decoded boxes are ``rel_xyxy`` clipped to [0, 1]; class scores are confidence (objectness)
times class probability. Every function here is ``keras.ops`` math (any backend) and reads the
grid size from the input's dynamic shape, so multi-scale inputs work.
"""

import math

import keras
from keras import ops

from kapps._checks import check_positive_int


def check_anchors(name, anchors):
    """Raise unless ``anchors`` is a non-empty sequence of ``(width, height)`` pairs of
    positive finite numbers; return them as a tuple of float pairs."""
    try:
        pairs = tuple((float(w), float(h)) for w, h in anchors)
        bad = any(
            isinstance(v, bool) or not math.isfinite(v) or v <= 0
            for pair in anchors
            for v in pair
        )
    except (TypeError, ValueError):
        pairs, bad = (), True
    if not pairs or bad:
        raise ValueError(
            f"{name}={anchors!r} is not allowed; expected a non-empty sequence of "
            "(width, height) pairs of positive numbers (fractions of the image size)."
        )
    return pairs


def space_to_depth(x, stride=2):
    """Space-to-depth with ``keras.ops``: ``(batch, h, w, c)`` -> ``(batch, h / s, w / s,
    s * s * c)``, output channel ``(dy * s + dx) * c + k`` for input ``(s * i + dy, s * j + dx,
    k)``: the ordering of ``tf.nn.space_to_depth``.

    Works with unknown (dynamic) heights and widths; they must be multiples of ``stride``.
    Only 4-D reshapes and transposes, so it converts to TFLite builtin ops.
    """
    shape = ops.shape(x)
    height, width, channels = shape[1], shape[2], x.shape[-1]
    s = stride
    # (batch * h / s, s, w / s, s * c): rows split into (block row, dy); (dx, c) contiguous
    x = ops.reshape(x, (-1, s, width // s, s * channels))
    x = ops.transpose(x, (0, 2, 1, 3))  # (batch * h / s, w / s, dy, s * c)
    return ops.reshape(x, (-1, height // s, width // s, s * s * channels))


def _grid(height, width, dtype="float32"):
    """Cell column ``(1, 1, w, 1)`` and row ``(1, h, 1, 1)`` indices from (possibly dynamic)
    sizes; they broadcast against ``(batch, h, w, predictors)``."""
    cols = ops.cast(ops.arange(width), dtype)
    rows = ops.cast(ops.arange(height), dtype)
    return ops.reshape(cols, (1, 1, -1, 1)), ops.reshape(rows, (1, -1, 1, 1))


def _center_to_corners(cx, cy, w, h):
    return ops.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def yolov1_boxes(raw_boxes):
    """Boxes of YOLOv1 predictions, ``rel_xyxy`` (not clipped).

    Args:
        raw_boxes: ``(batch, S, S, B, 4)``: ``(x, y, sqrt_w, sqrt_h)`` per predictor.

    Returns:
        ``(batch, S, S, B, 4)`` corners: centre ``((col + x) / S, (row + y) / S)``, size
        ``(sqrt_w ** 2, sqrt_h ** 2)``.
    """
    shape = ops.shape(raw_boxes)
    rows, cols = shape[1], shape[2]
    cx, cy = _grid(rows, cols, raw_boxes.dtype)
    x = (raw_boxes[..., 0] + cx) / ops.cast(cols, raw_boxes.dtype)
    y = (raw_boxes[..., 1] + cy) / ops.cast(rows, raw_boxes.dtype)
    return _center_to_corners(x, y, ops.square(raw_boxes[..., 2]), ops.square(raw_boxes[..., 3]))


def yolov2_boxes(raw_boxes, anchors):
    """Boxes of YOLOv2 predictions, ``rel_xyxy`` (not clipped).

    Args:
        raw_boxes: ``(batch, H, W, A, 4)``: ``(tx, ty, tw, th)`` per anchor.
        anchors: ``A`` ``(width, height)`` pairs, fractions of the image.

    Returns:
        ``(batch, H, W, A, 4)`` corners: centre ``((sigmoid(tx) + col) / W, (sigmoid(ty) +
        row) / H)``, size ``(anchor_w * exp(tw), anchor_h * exp(th))``.
    """
    shape = ops.shape(raw_boxes)
    rows, cols = shape[1], shape[2]
    dtype = raw_boxes.dtype
    cx, cy = _grid(rows, cols, dtype)
    anchors = ops.convert_to_tensor(anchors, dtype)  # (A, 2)
    x = (ops.sigmoid(raw_boxes[..., 0]) + cx) / ops.cast(cols, dtype)
    y = (ops.sigmoid(raw_boxes[..., 1]) + cy) / ops.cast(rows, dtype)
    w = anchors[:, 0] * ops.exp(raw_boxes[..., 2])
    h = anchors[:, 1] * ops.exp(raw_boxes[..., 3])
    return _center_to_corners(x, y, w, h)


@keras.saving.register_keras_serializable(package="kapps")
class Reorg(keras.layers.Layer):
    """YOLOv2's passthrough "reorg": space-to-depth by ``stride``.

    ``(batch, h, w, c)`` -> ``(batch, h / stride, w / stride, stride * stride * c)``: each
    ``stride x stride`` block of pixels becomes one pixel with the block's values stacked in
    the channels, so a finer map can be concatenated with a coarser one (26x26x64 ->
    13x13x256 in YOLOv2). The channel ordering is the standard one of
    ``tf.nn.space_to_depth`` (block row, block column, channel). Darknet's ``reorg`` layer
    orders the channels differently (its routine mixes channel and position indices); the
    next convolution sees the same values in another channel order, so the architecture and
    its parameter count are the same, but Darknet weight files would need that convolution's
    input channels permuted.

    Args:
        stride: block size (2 in YOLOv2).
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, height, width, channels)``; height and width multiples of
            ``stride`` (or unknown).

    Example:
        >>> Reorg(2)(keras.ops.ones((1, 26, 26, 64))).shape
        (1, 13, 13, 256)

    Paper: Redmon & Farhadi 2017, "YOLO9000: Better, Faster, Stronger", section 2
    ("Fine-Grained Features", the passthrough layer).
    """

    def __init__(self, stride=2, **kwargs):
        super().__init__(**kwargs)
        self.stride = check_positive_int("stride", stride)

    def build(self, input_shape):
        for size in input_shape[1:3]:
            if size is not None and size % self.stride:
                raise ValueError(
                    f"Reorg(stride={self.stride}) needs a height and width divisible by "
                    f"{self.stride}; received input shape {tuple(input_shape)}."
                )
        super().build(input_shape)

    def call(self, inputs):
        return space_to_depth(inputs, self.stride)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        s = self.stride
        return (b, None if h is None else h // s, None if w is None else w // s, c * s * s)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


class _DecodeBase(keras.layers.Layer):
    """Shared output shapes of the decode layers: ``(boxes, class_scores)``."""

    def _boxes_per_position(self):
        raise NotImplementedError

    def _channels(self):
        raise NotImplementedError

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] != self._channels():
            raise ValueError(
                f"{type(self).__name__} expects a (batch, rows, cols, {self._channels()}) grid "
                f"for its configuration; received shape {tuple(input_shape)}."
            )
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        n = None if h is None or w is None else h * w * self._boxes_per_position()
        return (b, n, 4), (b, n, self.num_classes)

    def compute_output_spec(self, inputs):
        boxes, scores = self.compute_output_shape(inputs.shape)
        return keras.KerasTensor(boxes, "float32"), keras.KerasTensor(scores, "float32")


@keras.saving.register_keras_serializable(package="kapps")
class YOLOv1Decode(_DecodeBase):
    """YOLOv1's raw grid to boxes and class scores (before non-max suppression).

    Per cell and predictor: centre ``((col + x) / S, (row + y) / S)``, width and height
    ``sqrt_w ** 2`` and ``sqrt_h ** 2`` (the network predicts square roots), and the
    class-specific score ``confidence * P(class | object)`` (the paper's equation 2 at test
    time). The network's outputs are linear, so confidence and class probabilities are clipped
    to [0, 1] before the product (an untrained network's negative values would otherwise make
    positive scores); boxes are clipped to the image.

    Args:
        grid_size: S, cells per side (7).
        boxes_per_cell: B, predictors per cell (2).
        num_classes: C (20 for Pascal VOC).
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, S, S, B * 5 + C)`` raw predictions.

    Returns:
        ``(boxes, class_scores)``: ``(batch, S * S * B, 4)`` ``rel_xyxy`` in [0, 1] and
        ``(batch, S * S * B, C)``, ordered by row, column, predictor.

    Example:
        >>> boxes, scores = YOLOv1Decode(7, 2, 20)(keras.ops.zeros((1, 7, 7, 30)))
        >>> boxes.shape, scores.shape
        ((1, 98, 4), (1, 98, 20))

    Paper: Redmon, Divvala, Girshick, Farhadi 2016, "You Only Look Once: Unified, Real-Time
    Object Detection", section 2.
    """

    def __init__(self, grid_size=7, boxes_per_cell=2, num_classes=20, **kwargs):
        super().__init__(**kwargs)
        self.grid_size = check_positive_int("grid_size", grid_size)
        self.boxes_per_cell = check_positive_int("boxes_per_cell", boxes_per_cell)
        self.num_classes = check_positive_int("num_classes", num_classes)

    def _boxes_per_position(self):
        return self.boxes_per_cell

    def _channels(self):
        return self.boxes_per_cell * 5 + self.num_classes

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        shape = ops.shape(x)
        rows, cols, b = shape[1], shape[2], self.boxes_per_cell
        boxes = ops.reshape(x[..., : b * 5], (-1, rows, cols, b, 5))  # (batch, S, S, B, 5)
        corners = ops.clip(yolov1_boxes(boxes[..., :4]), 0.0, 1.0)
        confidence = ops.clip(boxes[..., 4:5], 0.0, 1.0)  # (batch, S, S, B, 1)
        probs = ops.clip(x[..., None, b * 5 :], 0.0, 1.0)  # (batch, S, S, 1, C)
        scores = confidence * probs  # (batch, S, S, B, C)
        return (
            ops.reshape(corners, (-1, rows * cols * b, 4)),
            ops.reshape(scores, (-1, rows * cols * b, self.num_classes)),
        )

    def get_config(self):
        return {
            **super().get_config(),
            "grid_size": self.grid_size,
            "boxes_per_cell": self.boxes_per_cell,
            "num_classes": self.num_classes,
        }


@keras.saving.register_keras_serializable(package="kapps")
class YOLOv2Decode(_DecodeBase):
    """YOLOv2's raw grid to boxes and class scores (before non-max suppression).

    Per cell ``(row, col)`` of an ``H x W`` grid and anchor ``(pw, ph)``: centre
    ``((sigmoid(tx) + col) / W, (sigmoid(ty) + row) / H)``, size ``(pw exp(tw), ph exp(th))``
    (section 2, "Direct location prediction", with the anchors as fractions of the image), and
    class scores ``sigmoid(to) * softmax(class logits)`` (Darknet's region layer with
    ``softmax=1``). Boxes are clipped to the image. The grid size comes from the input's
    dynamic shape, so one layer decodes every input size of a multi-scale model.

    Args:
        anchors: ``A`` ``(width, height)`` pairs, fractions of the image (``VOC_ANCHORS``).
        num_classes: C.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, H, W, A * (5 + C))`` raw predictions.

    Returns:
        ``(boxes, class_scores)``: ``(batch, H * W * A, 4)`` ``rel_xyxy`` in [0, 1] and
        ``(batch, H * W * A, C)``, ordered by row, column, anchor.

    Example:
        >>> layer = YOLOv2Decode([(0.1, 0.1), (0.4, 0.3)], num_classes=3)
        >>> boxes, scores = layer(keras.ops.zeros((1, 13, 13, 16)))
        >>> boxes.shape, scores.shape
        ((1, 338, 4), (1, 338, 3))

    Paper: Redmon & Farhadi 2017, "YOLO9000: Better, Faster, Stronger", section 2.
    """

    def __init__(self, anchors, num_classes=20, **kwargs):
        super().__init__(**kwargs)
        self.anchors = check_anchors("anchors", anchors)
        self.num_classes = check_positive_int("num_classes", num_classes)

    def _boxes_per_position(self):
        return len(self.anchors)

    def _channels(self):
        return len(self.anchors) * (5 + self.num_classes)

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        shape = ops.shape(x)
        rows, cols, a = shape[1], shape[2], len(self.anchors)
        x = ops.reshape(x, (-1, rows, cols, a, 5 + self.num_classes))  # (batch, H, W, A, 5 + C)
        corners = ops.clip(yolov2_boxes(x[..., :4], self.anchors), 0.0, 1.0)
        scores = ops.sigmoid(x[..., 4:5]) * ops.softmax(x[..., 5:], axis=-1)
        return (
            ops.reshape(corners, (-1, rows * cols * a, 4)),
            ops.reshape(scores, (-1, rows * cols * a, self.num_classes)),
        )

    def get_config(self):
        return {
            **super().get_config(),
            "anchors": [list(pair) for pair in self.anchors],
            "num_classes": self.num_classes,
        }
