"""Bounding-box utilities for detection: format conversion, IoU, non-max suppression and
YOLOv2's anchor clustering.

Box formats (Keras' names, ``keras.utils.bounding_boxes``), the last axis holds 4 numbers:

- ``"xyxy"``: (x_min, y_min, x_max, y_max) in pixels; ``"yxyx"`` the same with y first.
- ``"xywh"``: (x_min, y_min, width, height); ``"center_xywh"``: (x_center, y_center, width,
  height); ``"center_yxhw"``: (y_center, x_center, height, width).
- ``"rel_xyxy"``, ``"rel_yxyx"``, ``"rel_xywh"``, ``"rel_center_xywh"``: the same with
  coordinates as fractions of the image width and height (in [0, 1] inside the image).

kapps' canonical format is ``"rel_xyxy"``: it does not depend on the input resolution, so the
same boxes serve any image size. Training targets are ``[batch, max_boxes, 5]`` rows
(x_min, y_min, x_max, y_max, class_id) in ``rel_xyxy``, padded with rows of -1; such padding
rows (any box of zero or negative area) get IoU 0 with everything, never NaN.

What runs where:

- ``convert_format``, ``pairwise_iou`` and ``elementwise_iou`` are written with ``keras.ops``
  and run on every backend (and inside ``tf.data`` and the YOLO losses, differentiably).
- ``non_max_suppression`` and ``batched_non_max_suppression`` are TensorFlow ops (Keras has no
  NMS op): one single-class ``NonMaxSuppressionV4`` per image, which the TFLite converter maps
  to the builtin ``NON_MAX_SUPPRESSION_V4``, so exported detectors need no Flex ops.
- ``kmeans_anchors`` is numpy (it runs once, offline, over a dataset's boxes).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BOX_FORMATS",
    "batched_non_max_suppression",
    "convert_format",
    "elementwise_iou",
    "kmeans_anchors",
    "non_max_suppression",
    "pairwise_iou",
]

#: Box formats accepted by ``convert_format`` and the IoU functions.
BOX_FORMATS = (
    "xyxy",
    "yxyx",
    "xywh",
    "center_xywh",
    "center_yxhw",
    "rel_xyxy",
    "rel_yxyx",
    "rel_xywh",
    "rel_center_xywh",
)


def _check_format(name, value):
    if not isinstance(value, str) or value.lower() not in BOX_FORMATS:
        shown = ", ".join(repr(f) for f in BOX_FORMATS)
        raise ValueError(f"{name}={value!r} is not allowed; expected one of {shown}.")
    return value.lower()


# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------


def convert_format(boxes, source, target, *, height=None, width=None):
    """Convert boxes between formats (see the module docstring for the format names).

    A thin wrapper over ``keras.utils.bounding_boxes.convert_format``: conversions between two
    relative formats (or two absolute ones) need no image size, conversions between a relative
    and an absolute format need ``height`` and ``width`` (Keras asks for them even for
    relative-to-relative conversions, where they play no part; this wrapper does not).

    Args:
        boxes: array or tensor ``[..., 4]``.
        source: the format of ``boxes``.
        target: the format to return.
        height: image height in pixels, for a relative <-> absolute conversion.
        width: image width in pixels, for a relative <-> absolute conversion.

    Returns:
        A float32 tensor ``[..., 4]`` in ``target`` format.

    Raises:
        ValueError: for an unknown format, a last axis that is not 4, or a relative <->
            absolute conversion without ``height`` and ``width``.

    Example:
        >>> convert_format([[0.1, 0.2, 0.5, 0.6]], "rel_xyxy", "rel_center_xywh")
        # [[0.3, 0.4, 0.4, 0.4]]
    """
    import keras

    source = _check_format("source", source)
    target = _check_format("target", target)
    source_rel, target_rel = source.startswith("rel_"), target.startswith("rel_")
    if source_rel != target_rel:
        if height is None or width is None:
            raise ValueError(
                f"height={height!r} and width={width!r} are not allowed for a conversion from "
                f"{source!r} to {target!r}; a relative <-> absolute conversion needs the image "
                "height and width in pixels."
            )
    elif height is None or width is None:
        # Keras wants a size for rel_ -> rel_ too, but strips "rel_" from both and never uses
        # it; any size does.
        height, width = 1, 1
    shape = keras.ops.shape(boxes)
    if shape[-1] != 4:
        raise ValueError(f"boxes has shape {tuple(shape)}; expected a last axis of 4.")
    return keras.utils.bounding_boxes.convert_format(
        boxes, source=source, target=target, height=height, width=width
    )


def _to_corners(boxes, format):
    """``boxes`` as (x_min, y_min, x_max, y_max) in the same units (IoU is scale-free)."""
    from keras import ops

    format = _check_format("format", format)
    boxes = ops.convert_to_tensor(boxes)
    if not _is_float(boxes.dtype):
        boxes = ops.cast(boxes, "float32")
    if format in ("xyxy", "rel_xyxy"):
        return boxes
    return convert_format(boxes, format, "rel_xyxy" if format.startswith("rel_") else "xyxy")


def _is_float(dtype):
    import keras

    return "float" in keras.backend.standardize_dtype(dtype)


def _iou_from_corners(a, b):
    """IoU of corner boxes ``a`` and ``b`` (broadcast against each other), 0 where the union
    is empty (zero-area or padding boxes)."""
    from keras import ops

    ax0, ay0, ax1, ay1 = (a[..., i] for i in range(4))
    bx0, by0, bx1, by1 = (b[..., i] for i in range(4))
    # Negative widths (padding rows of -1 are fine, inverted boxes too) count as 0.
    area_a = ops.maximum(ax1 - ax0, 0.0) * ops.maximum(ay1 - ay0, 0.0)
    area_b = ops.maximum(bx1 - bx0, 0.0) * ops.maximum(by1 - by0, 0.0)
    inter_w = ops.maximum(ops.minimum(ax1, bx1) - ops.maximum(ax0, bx0), 0.0)
    inter_h = ops.maximum(ops.minimum(ay1, by1) - ops.maximum(ay0, by0), 0.0)
    intersection = inter_w * inter_h
    union = area_a + area_b - intersection
    positive = union > 0
    # The safe denominator keeps the gradient finite where the union is 0.
    return ops.where(positive, intersection / ops.where(positive, union, 1.0), 0.0)


def pairwise_iou(boxes1, boxes2, format="rel_xyxy"):
    """Intersection over union of every box in ``boxes1`` with every box in ``boxes2``.

    Leading (batch) axes broadcast against each other: ``[..., N, 4]`` and ``[..., M, 4]``
    give ``[..., N, M]``. Boxes with zero or negative area (padding rows of -1) have IoU 0
    with everything, never NaN, and the gradient stays finite. Differentiable, any backend.

    ``keras.utils.bounding_boxes.compute_iou`` is not used: it needs an image shape for the
    relative formats, takes only rank-2/3 boxes, lets inverted boxes have negative area and
    adds an epsilon to the union.

    Args:
        boxes1: ``[..., N, 4]`` boxes.
        boxes2: ``[..., M, 4]`` boxes in the same format.
        format: the box format of both (default ``"rel_xyxy"``).

    Returns:
        A float tensor ``[..., N, M]`` of IoUs in [0, 1].

    Raises:
        ValueError: for an unknown ``format`` or a last axis that is not 4.

    Example:
        >>> pairwise_iou([[0, 0, 0.5, 0.5]], [[0, 0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]])
        # [[1.0, 0.142857]]
    """
    from keras import ops

    a = _to_corners(boxes1, format)
    b = _to_corners(boxes2, format)
    for name, x in (("boxes1", a), ("boxes2", b)):
        if len(x.shape) < 2 or x.shape[-1] != 4:
            raise ValueError(f"{name} has shape {tuple(x.shape)}; expected [..., num_boxes, 4].")
    b = ops.cast(b, a.dtype)
    # (..., N, 1, 4) against (..., 1, M, 4)
    return _iou_from_corners(ops.expand_dims(a, -2), ops.expand_dims(b, -3))


def elementwise_iou(boxes1, boxes2, format="rel_xyxy"):
    """Intersection over union of corresponding boxes: ``[..., 4]`` and ``[..., 4]`` (shapes
    broadcast) give ``[...]``.

    The YOLO losses use it for the IoU of each predicted box with its assigned ground truth.
    Zero-area or padding boxes give 0, never NaN; differentiable, any backend.

    Args:
        boxes1: ``[..., 4]`` boxes.
        boxes2: ``[..., 4]`` boxes in the same format, broadcastable against ``boxes1``.
        format: the box format of both (default ``"rel_xyxy"``).

    Returns:
        A float tensor of the broadcast shape without the last axis.

    Raises:
        ValueError: for an unknown ``format`` or a last axis that is not 4.

    Example:
        >>> elementwise_iou([[0, 0, 0.5, 0.5]], [[0.25, 0.25, 0.75, 0.75]])  # [0.142857]
    """
    from keras import ops

    a = _to_corners(boxes1, format)
    b = _to_corners(boxes2, format)
    for name, x in (("boxes1", a), ("boxes2", b)):
        if len(x.shape) < 1 or x.shape[-1] != 4:
            raise ValueError(f"{name} has shape {tuple(x.shape)}; expected [..., 4].")
    return _iou_from_corners(a, ops.cast(b, a.dtype))


# --------------------------------------------------------------------------------------------
# Non-max suppression (TensorFlow)
# --------------------------------------------------------------------------------------------


def _check_nms_args(max_detections, iou_threshold, score_threshold):
    from kapps._checks import check_positive_int

    check_positive_int("max_detections", max_detections)
    if (
        isinstance(iou_threshold, bool)
        or not isinstance(iou_threshold, (int, float))
        or not 0 <= iou_threshold <= 1
    ):
        raise ValueError(
            f"iou_threshold={iou_threshold!r} is not allowed; expected a number in [0, 1]."
        )
    if (
        isinstance(score_threshold, bool)
        or not isinstance(score_threshold, (int, float))
        or not np.isfinite(score_threshold)
    ):
        raise ValueError(
            f"score_threshold={score_threshold!r} is not allowed; expected a finite number."
        )


def _nms_single(boxes, class_scores, max_detections, iou_threshold, score_threshold):
    """NMS for one image; ``boxes`` [N, 4] and ``class_scores`` [N, C] float32 tensors."""
    import tensorflow as tf

    scores = tf.reduce_max(class_scores, axis=-1)  # (N,) best class score of each box
    classes = tf.argmax(class_scores, axis=-1, output_type=tf.int32)  # (N,)
    # Class-offset trick: shift each box by class_id * (span + 1) along both axes, so boxes of
    # different classes never overlap and one single-class NMS does per-class NMS. With boxes in
    # [0, 1] the shift is class_id * 2 (span 1); the span is measured so unclipped or pixel
    # boxes are separated too.
    low = tf.minimum(tf.reduce_min(boxes), 0.0)
    span = tf.maximum(tf.reduce_max(boxes) - low, 1.0)
    offset = tf.cast(classes, boxes.dtype) * (span + 1.0)
    shifted = boxes - low + offset[:, None]
    # NonMaxSuppressionV4 padded to max_detections maps to the TFLite builtin
    # NON_MAX_SUPPRESSION_V4 and has an XLA kernel (V5 has none, so a jit-compiled predict
    # step would fail); CombinedNonMaxSuppression would need Flex ops.
    selected, count = tf.raw_ops.NonMaxSuppressionV4(
        boxes=shifted,
        scores=scores,
        max_output_size=tf.constant(max_detections, tf.int32),
        iou_threshold=tf.constant(iou_threshold, tf.float32),
        score_threshold=tf.constant(score_threshold, tf.float32),
        pad_to_max_output_size=True,
    )
    selected = selected[:max_detections]  # (K,) indices sorted by decreasing score
    count = tf.cast(tf.reshape(count, []), tf.int32)
    valid = tf.range(max_detections, dtype=tf.int32) < count  # (K,) rows past count are padding
    out_boxes = tf.where(valid[:, None], tf.gather(boxes, selected), 0.0)
    out_scores = tf.where(valid, tf.gather(scores, selected), 0.0)
    out_classes = tf.where(valid, tf.gather(classes, selected), 0)
    return out_boxes, out_scores, out_classes, count


def _as_float32(name, value, rank):
    import tensorflow as tf

    value = tf.convert_to_tensor(value)
    if value.shape.rank is not None and value.shape.rank != rank:
        raise ValueError(f"{name} has shape {value.shape}; expected rank {rank}.")
    return tf.cast(value, tf.float32)


def non_max_suppression(
    boxes, class_scores, *, max_detections=100, iou_threshold=0.45, score_threshold=0.25
):
    """Per-class greedy non-max suppression for one image (TensorFlow).

    Each box takes its best class (argmax of ``class_scores``) and that class's score. Boxes
    scoring above ``score_threshold`` are visited by decreasing score; a box is kept unless it
    overlaps an already kept box of the same class with IoU above ``iou_threshold``; at most
    ``max_detections`` are kept. Boxes of different classes never suppress each other.

    It runs as ONE single-class NMS op (``NonMaxSuppressionV4`` with padding, a TFLite builtin)
    on boxes shifted by ``class_id * (span + 1)``, the class-offset trick, so it exports to
    TFLite without Flex ops.

    Args:
        boxes: ``[N, 4]`` boxes, ``rel_xyxy`` (any corner format works: IoU does not care).
        class_scores: ``[N, C]`` scores (YOLO: confidence x class probability).
        max_detections: K, the number of output rows.
        iou_threshold: a box is suppressed when its IoU with a kept box of its class is above
            this (YOLO: 0.45).
        score_threshold: boxes scoring this or less are dropped.

    Returns:
        ``(boxes [K, 4] float32, scores [K] float32, classes [K] int32, count int32)``: kept
        detections by decreasing score; rows from ``count`` on are zeros.

    Raises:
        ValueError: for a bad argument (named, with the value received and what is allowed).

    Example:
        >>> boxes, scores, classes, count = non_max_suppression(b, s, max_detections=10)
        >>> boxes[:count]  # the kept boxes
    """
    _check_nms_args(max_detections, iou_threshold, score_threshold)
    boxes = _as_float32("boxes", boxes, 2)
    class_scores = _as_float32("class_scores", class_scores, 2)
    return _nms_single(boxes, class_scores, max_detections, float(iou_threshold), float(score_threshold))


def batched_non_max_suppression(
    boxes, class_scores, *, max_detections=100, iou_threshold=0.45, score_threshold=0.25
):
    """``non_max_suppression`` for each image of a batch (TensorFlow).

    With a static batch size of at most 16 (TFLite export at batch 1, say) the images are
    unrolled in the graph; otherwise it is a ``tf.map_fn`` (a ``WHILE`` loop in TFLite, which
    converts with builtin ops too). Both use one padded
    ``NonMaxSuppressionV4`` per image, a TFLite builtin.

    Args:
        boxes: ``[B, N, 4]`` boxes, ``rel_xyxy``.
        class_scores: ``[B, N, C]`` scores.
        max_detections: K, per image.
        iou_threshold: see ``non_max_suppression``.
        score_threshold: see ``non_max_suppression``.

    Returns:
        ``(boxes [B, K, 4] float32, scores [B, K] float32, classes [B, K] int32,
        num_detections [B] int32)``, each image's rows from its count on zero-padded.

    Raises:
        ValueError: for a bad argument.

    Example:
        >>> boxes, scores, classes, counts = batched_non_max_suppression(b, s, max_detections=10)
    """
    import tensorflow as tf

    _check_nms_args(max_detections, iou_threshold, score_threshold)
    boxes = _as_float32("boxes", boxes, 3)
    class_scores = _as_float32("class_scores", class_scores, 3)
    args = (max_detections, float(iou_threshold), float(score_threshold))
    batch = boxes.shape[0]
    if batch is not None and batch <= 16:
        # Unrolled: no While/TensorList ops in the graph (simplest for TFLite).
        results = [_nms_single(boxes[i], class_scores[i], *args) for i in range(batch)]
        return tuple(tf.stack(parts, axis=0) for parts in zip(*results))
    return tf.map_fn(
        lambda x: _nms_single(x[0], x[1], *args),
        (boxes, class_scores),
        fn_output_signature=(
            tf.TensorSpec([max_detections, 4], tf.float32),
            tf.TensorSpec([max_detections], tf.float32),
            tf.TensorSpec([max_detections], tf.int32),
            tf.TensorSpec([], tf.int32),
        ),
    )


# --------------------------------------------------------------------------------------------
# Anchor clustering (numpy)
# --------------------------------------------------------------------------------------------


def _wh_iou(sizes, centroids):
    """IoU [n, k] of (w, h) boxes with (w, h) centroids, both aligned at the same centre."""
    w = np.minimum(sizes[:, None, 0], centroids[None, :, 0])
    h = np.minimum(sizes[:, None, 1], centroids[None, :, 1])
    inter = w * h
    union = (sizes[:, 0] * sizes[:, 1])[:, None] + (centroids[:, 0] * centroids[:, 1])[None] - inter
    return inter / union


def _kmeans_once(sizes, k, rng, iterations):
    """One k-means run with the 1 - IoU distance from a k-means++ start; returns [k, 2]."""
    # k-means++ seeding with d = 1 - IoU: each next centroid is a box drawn with probability
    # proportional to d^2 to the nearest centroid so far.
    centroids = [sizes[rng.integers(len(sizes))]]
    for _ in range(1, k):
        d = 1.0 - _wh_iou(sizes, np.array(centroids)).max(axis=1)
        weights = d**2
        total = weights.sum()
        index = rng.choice(len(sizes), p=weights / total) if total > 0 else rng.integers(len(sizes))
        centroids.append(sizes[index])
    centroids = np.array(centroids)

    assignment = None
    for _ in range(iterations):
        iou = _wh_iou(sizes, centroids)
        new_assignment = iou.argmax(axis=1)
        if assignment is not None and np.array_equal(new_assignment, assignment):
            break
        assignment = new_assignment
        best = iou.max(axis=1)
        for j in range(k):
            members = assignment == j
            if members.any():
                centroids[j] = sizes[members].mean(axis=0)
            else:  # empty cluster: restart it at the worst-served box
                far = int(np.argmin(best))
                centroids[j] = sizes[far]
                best[far] = np.inf
    return centroids


def kmeans_anchors(box_sizes, k, *, seed=0, iterations=300, restarts=10):
    """YOLOv2's dimension clusters: k-means on box (width, height) pairs with d = 1 - IoU.

    Boxes are compared by shape only (aligned at a common centre), so the distance favours
    anchors that give high IoU whatever the box size, unlike Euclidean k-means, where large
    boxes make larger errors. Centroids start from k-means++ seeding (with the 1 - IoU
    distance) and are refined by Lloyd iterations: assign each box to the centroid of highest
    IoU, move each centroid to the mean (w, h) of its boxes, until the assignment stops
    changing or ``iterations`` run out. A cluster left empty takes the box farthest from its
    centroid. Lloyd's iterations only find a local optimum, so the clustering is run
    ``restarts`` times from different seedings and the run of highest mean IoU is kept.
    Deterministic for a given ``seed``.

    Args:
        box_sizes: ``[n, 2]`` positive (width, height) pairs, e.g. ground-truth box sizes as
            fractions of the image (then the anchors are too, as kapps' YOLOv2 expects).
        k: number of anchors (YOLOv2 uses 5), at most the number of distinct sizes.
        seed: seed of the k-means++ initialisation.
        iterations: largest number of Lloyd iterations per run.
        restarts: number of k-means++ seedings tried.

    Returns:
        ``(anchors, mean_iou)``: a float32 ``[k, 2]`` array of (width, height) sorted by
        increasing area, and the mean over boxes of the best IoU with an anchor (the paper's
        "Avg IOU", Table 1).

    Raises:
        ValueError: if ``box_sizes`` is not ``[n, 2]`` of finite positive numbers, or ``k``,
            ``seed``, ``iterations`` or ``restarts`` is not allowed.

    Example:
        >>> anchors, mean_iou = kmeans_anchors(train_wh, 5)  # the paper: 5 anchors, mean IoU 61.0% on VOC 2007

    Paper: Redmon & Farhadi 2017, "YOLO9000: Better, Faster, Stronger", section 2
    ("Dimension Clusters", Figure 2, Table 1).
    """
    from kapps._checks import check_positive_int

    check_positive_int("k", k)
    check_positive_int("iterations", iterations)
    check_positive_int("restarts", restarts)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} is not allowed; expected an integer >= 0.")
    try:
        sizes = np.asarray(box_sizes, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"box_sizes of type {type(box_sizes).__name__} is not allowed; expected an [n, 2] "
            "array of (width, height)."
        ) from None
    if sizes.ndim != 2 or sizes.shape[1] != 2 or sizes.shape[0] == 0:
        raise ValueError(
            f"box_sizes has shape {sizes.shape}; expected a non-empty [n, 2] array of (width, height)."
        )
    if not np.all(np.isfinite(sizes)) or not np.all(sizes > 0):
        raise ValueError(
            "box_sizes holds non-finite or non-positive values; widths and heights must be > 0 "
            "(drop padding rows first)."
        )
    distinct = len(np.unique(sizes, axis=0))
    if k > distinct:
        raise ValueError(
            f"k={k!r} is not allowed; box_sizes holds only {distinct} distinct (width, height) "
            f"pairs, so k must be at most {distinct}."
        )

    rng = np.random.default_rng(seed)
    best_iou, centroids = -1.0, None
    for _ in range(restarts):
        candidate = _kmeans_once(sizes, k, rng, iterations)
        candidate_iou = float(_wh_iou(sizes, candidate).max(axis=1).mean())
        if candidate_iou > best_iou:
            best_iou, centroids = candidate_iou, candidate
    mean_iou = best_iou
    order = np.argsort(centroids[:, 0] * centroids[:, 1], kind="stable")
    return centroids[order].astype(np.float32), mean_iou
