"""Segmentation and detection metrics that Keras does not already provide.

What Keras has, checked on Keras 3.15 and used as is:

- ``keras.metrics.MeanIoU(num_classes, ignore_class=..., sparse_y_pred=False)`` and
  ``keras.metrics.IoU(num_classes, target_class_ids, ...)`` accumulate a confusion matrix
  (state in one variable, summed across replicas) and drop pixels whose label is
  ``ignore_class`` (or outside ``[0, num_classes)``). ``sparse_y_pred=False`` takes the argmax
  of score outputs. One catch: with ``num_classes`` counting the void class (CamVid:
  ``num_classes=12, ignore_class=11``) ``MeanIoU`` still averages the void class itself,
  whose IoU is 0 as soon as the model predicts void anywhere; use
  ``keras.metrics.IoU(12, target_class_ids=range(11), ignore_class=11, sparse_y_pred=False)``
  or :class:`SegmentationIoU`, which leave the ignored class out of the mean. With a model
  that predicts only the real classes (``num_classes=11, ignore_class=11``) ``MeanIoU`` is
  right. Its confusion matrix is ``int`` by default, so float ``sample_weight`` values are
  truncated (Keras warns); pass ``dtype="float32"`` for weighted use.

Added here, all ``keras.metrics.Metric`` subclasses whose state lives in variables that
``tf.distribute`` sums across replicas:

- :class:`PixelAccuracy`: fraction of labelled pixels whose argmax is right.
- :class:`SegmentationIoU`: mean IoU over the classes other than ``ignore_class``, with the
  per-class IoUs and the confusion matrix available (:meth:`SegmentationIoU.per_class_iou`).
- :class:`DiceCoefficient`: mean hard Dice (F1) over the classes, from the same confusion
  matrix.
- :func:`per_class_iou` and :func:`per_class_dice`: the same numbers from any confusion
  matrix (NumPy or tensors).

Predictions may be scores of shape ``(..., num_classes)`` (softmax, logits: the argmax is
taken) or, for binary segmentation, one sigmoid channel ``(..., 1)`` (thresholded), or
integer class ids when ``sparse_y_pred=True``. Labels are integer class ids of the
prediction's shape without the class axis (a trailing axis of 1 is accepted).

Detection (NumPy, after the model: matching sorts detections across a whole split, which a
per-batch ``keras.metrics.Metric`` cannot do):

- :func:`evaluate_detections`: Pascal VOC average precision per class and their mean (mAP)
  at an IoU threshold, all-point (VOC 2010+), 11-point (VOC 2007) or COCO's 101-point
  interpolation (:func:`average_precision`); checked against pycocotools in the tests.
- :class:`DetectionEvaluator`: the same, accumulated batch by batch from a ``decode=True``
  detector's padded outputs and the padded ``(batch, boxes, 5)`` training targets.

Generated images (NumPy, after the model):

- :func:`frechet_distance`: the Frechet distance between two Gaussians fitted to two sets of
  features (Heusel et al. 2017, eq. 6).
- :class:`SampleQuality`: a classifier-based score of generated images against real ones:
  the Frechet distance of the classifier's penultimate features (with a LeNet-5 trained on
  MNIST this is an *MNIST-specific* FID, not the Inception FID of Heusel et al.: numbers
  are comparable only with others computed with the same classifier), the share of images
  the classifier labels with confidence above a threshold, and the predicted class counts.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from keras import ops

__all__ = [
    "DetectionEvaluator", "DiceCoefficient", "PixelAccuracy", "SampleQuality", "SegmentationIoU",
    "average_precision", "evaluate_detections", "frechet_distance", "per_class_dice",
    "per_class_iou",
]


def _check_ignore_class(ignore_class):
    if ignore_class is not None and (isinstance(ignore_class, bool) or not isinstance(ignore_class, int)):
        raise ValueError(f"ignore_class={ignore_class!r} is not allowed; expected None or an int class id.")
    return ignore_class


def _check_threshold(threshold):
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ValueError(f"threshold={threshold!r} is not allowed; expected a number.")
    return float(threshold)


def _hard_labels(y_true, y_pred, sparse_y_pred, threshold, sample_weight):
    """Flatten labels, predicted class ids and per-pixel weights to ``(pixels,)`` tensors."""
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    if not sparse_y_pred:
        if y_pred.shape[-1] == 1:
            # One sigmoid channel: class 1 where the score passes the threshold.
            y_pred = ops.cast(y_pred[..., 0] > threshold, "int32")
        else:
            y_pred = ops.argmax(y_pred, axis=-1)
    if len(y_true.shape) == len(y_pred.shape) + 1 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]  # (batch, h, w, 1) labels -> (batch, h, w)
    if sample_weight is None:
        weights = ops.ones_like(y_true, dtype="float32")
    else:
        weights = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
        if len(weights.shape) == len(y_true.shape) + 1 and weights.shape[-1] == 1:
            weights = weights[..., 0]
        while 0 < len(weights.shape) < len(y_true.shape):
            weights = ops.expand_dims(weights, -1)  # per-image (batch,) -> (batch, 1, 1)
        weights = ops.broadcast_to(weights, ops.shape(y_true))
    return (
        ops.reshape(ops.cast(y_true, "int32"), (-1,)),
        ops.reshape(ops.cast(y_pred, "int32"), (-1,)),
        ops.reshape(weights, (-1,)),
    )


def _iou_from_confusion(confusion):
    true_positives = ops.diagonal(confusion)
    union = ops.sum(confusion, axis=0) + ops.sum(confusion, axis=1) - true_positives
    return true_positives, union


def per_class_iou(confusion, ignore_class=None):
    """Intersection over union of every class from a confusion matrix.

    ``iou[c] = cm[c, c] / (sum(cm[c, :]) + sum(cm[:, c]) - cm[c, c])`` with rows = true
    class, columns = predicted class. A class that appears neither in the labels nor in the
    predictions (union 0) gets NaN, as does ``ignore_class``.

    Args:
        confusion: ``(num_classes, num_classes)`` confusion matrix (NumPy array or tensor).
        ignore_class: a class id whose IoU is reported as NaN, or ``None``.

    Returns:
        A ``float32`` tensor ``(num_classes,)``; ``keras.ops.nanmean`` of it (or
        ``numpy.nanmean``) is the mean IoU over the classes present.

    Example:
        >>> per_class_iou(np.array([[3, 1], [0, 2]]))  # [3 / 4, 2 / 3]
    """
    confusion = ops.cast(ops.convert_to_tensor(confusion), "float32")
    true_positives, union = _iou_from_confusion(confusion)
    return _masked_ratio(true_positives, union, ignore_class, confusion.shape[0])


def per_class_dice(confusion, ignore_class=None):
    """Dice coefficient (F1) of every class from a confusion matrix.

    ``dice[c] = 2 cm[c, c] / (sum(cm[c, :]) + sum(cm[:, c]))``; NaN for a class absent from
    both labels and predictions, and for ``ignore_class``.

    Args:
        confusion: ``(num_classes, num_classes)`` confusion matrix, rows = true class.
        ignore_class: a class id whose Dice is reported as NaN, or ``None``.

    Returns:
        A ``float32`` tensor ``(num_classes,)``.

    Example:
        >>> per_class_dice(np.array([[3, 1], [0, 2]]))  # [6 / 7, 4 / 5]
    """
    confusion = ops.cast(ops.convert_to_tensor(confusion), "float32")
    true_positives = ops.diagonal(confusion)
    total = ops.sum(confusion, axis=0) + ops.sum(confusion, axis=1)
    return _masked_ratio(2.0 * true_positives, total, ignore_class, confusion.shape[0])


def _masked_ratio(numerator, denominator, ignore_class, num_classes):
    valid = denominator > 0
    if ignore_class is not None and 0 <= ignore_class < num_classes:
        valid = ops.logical_and(valid, ops.not_equal(ops.arange(num_classes), ignore_class))
    ratio = numerator / ops.where(valid, denominator, 1.0)
    return ops.where(valid, ratio, float("nan"))


def _nanmean(values):
    valid = ops.logical_not(ops.isnan(values))
    count = ops.sum(ops.cast(valid, "float32"))
    return ops.sum(ops.where(valid, values, 0.0)) / ops.maximum(count, 1.0)


@keras.saving.register_keras_serializable(package="kapps")
class PixelAccuracy(keras.metrics.Metric):
    """Fraction of labelled pixels whose predicted class is the true class.

    Pixels labelled ``ignore_class`` count neither as right nor as wrong. Two variables
    (weighted count of right pixels, weighted count of pixels) are summed across replicas.

    Args:
        ignore_class: label of pixels to leave out (e.g. void), or ``None``.
        sparse_y_pred: predictions are class ids rather than scores.
        threshold: for one-channel (sigmoid) predictions, the score above which a pixel is
            class 1.
        name: metric name.
        dtype: dtype of the result.

    Call arguments (``update_state``):
        y_true: integer labels ``(batch, h, w)`` or ``(batch, h, w, 1)``.
        y_pred: scores ``(batch, h, w, classes)`` (or ``(batch, h, w, 1)`` sigmoid), or class
            ids ``(batch, h, w)`` with ``sparse_y_pred=True``.
        sample_weight: optional weights per pixel ``(batch, h, w)`` or per image ``(batch,)``.

    Example:
        >>> m = PixelAccuracy(ignore_class=11)
        >>> m.update_state([[0, 1, 11]], [[[0.9, 0.1], [0.8, 0.2], [0.5, 0.5]]])
        >>> float(m.result())  # 1 of the 2 labelled pixels is right
        0.5
    """

    def __init__(
        self, ignore_class=None, sparse_y_pred=False, threshold=0.5, name="pixel_accuracy", dtype=None
    ):
        super().__init__(name=name, dtype=dtype)
        self.ignore_class = _check_ignore_class(ignore_class)
        self.sparse_y_pred = bool(sparse_y_pred)
        self.threshold = _check_threshold(threshold)
        self._direction = "up"
        self.correct = self.add_variable((), initializer="zeros", dtype="float32", name="correct")
        self.total = self.add_variable((), initializer="zeros", dtype="float32", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels, predicted, weights = _hard_labels(
            y_true, y_pred, self.sparse_y_pred, self.threshold, sample_weight
        )
        if self.ignore_class is not None:
            weights = ops.where(ops.equal(labels, self.ignore_class), 0.0, weights)
        right = ops.cast(ops.equal(labels, predicted), "float32")
        self.correct.assign_add(ops.sum(right * weights))
        self.total.assign_add(ops.sum(weights))

    def result(self):
        return ops.cast(ops.divide_no_nan(self.correct, self.total), self.dtype)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        config = super().get_config()
        config.update(
            ignore_class=self.ignore_class, sparse_y_pred=self.sparse_y_pred, threshold=self.threshold
        )
        return config


class _ConfusionMatrixMetric(keras.metrics.Metric):
    """A float ``(num_classes, num_classes)`` confusion matrix (rows = true class) in one
    variable, so per-class numbers merge exactly across batches and replicas."""

    def __init__(
        self, num_classes, ignore_class=None, sparse_y_pred=False, threshold=0.5, name=None, dtype=None
    ):
        super().__init__(name=name, dtype=dtype)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                f"num_classes={num_classes!r} is not allowed; expected an int >= 2 "
                "(2 for a one-channel sigmoid output)."
            )
        self.num_classes = num_classes
        self.ignore_class = _check_ignore_class(ignore_class)
        self.sparse_y_pred = bool(sparse_y_pred)
        self.threshold = _check_threshold(threshold)
        self._direction = "up"
        self.confusion = self.add_variable(
            (num_classes, num_classes), initializer="zeros", dtype="float32", name="confusion_matrix"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels, predicted, weights = _hard_labels(
            y_true, y_pred, self.sparse_y_pred, self.threshold, sample_weight
        )
        # Labels outside [0, num_classes) (e.g. 255 borders) and ignore_class are left out.
        valid = ops.logical_and(ops.greater_equal(labels, 0), ops.less(labels, self.num_classes))
        valid = ops.logical_and(valid, ops.logical_and(predicted >= 0, predicted < self.num_classes))
        if self.ignore_class is not None:
            valid = ops.logical_and(valid, ops.not_equal(labels, self.ignore_class))
        weights = ops.where(valid, weights, 0.0)
        index = ops.where(valid, labels * self.num_classes + predicted, 0)
        counts = ops.segment_sum(weights, index, num_segments=self.num_classes**2)
        self.confusion.assign_add(ops.reshape(counts, (self.num_classes, self.num_classes)))

    def confusion_matrix(self):
        """The accumulated confusion matrix, ``(num_classes, num_classes)``, rows = true class."""
        return ops.convert_to_tensor(self.confusion)

    def reset_state(self):
        self.confusion.assign(ops.zeros((self.num_classes, self.num_classes), "float32"))

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            ignore_class=self.ignore_class,
            sparse_y_pred=self.sparse_y_pred,
            threshold=self.threshold,
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class SegmentationIoU(_ConfusionMatrixMetric):
    """Mean intersection over union over the classes other than ``ignore_class``.

    Accumulates a float confusion matrix (so fractional per-pixel weights count exactly) and
    reports the mean of :func:`per_class_iou` over the classes that occur in the labels or the
    predictions, leaving ``ignore_class`` out of both the pixels and the mean. Unlike
    ``keras.metrics.MeanIoU(num_classes, ignore_class=c)``, a void class counted in
    ``num_classes`` does not drag the mean down when the model predicts it.

    Args:
        num_classes: classes of the prediction (2 for one sigmoid channel); may include the
            ignored class.
        ignore_class: label of pixels (and class) to leave out, or ``None``.
        sparse_y_pred: predictions are class ids rather than scores.
        threshold: for one-channel (sigmoid) predictions, the score above which a pixel is
            class 1.
        name: metric name.
        dtype: dtype of the result.

    Call arguments (``update_state``):
        y_true: integer labels ``(batch, h, w)`` or ``(batch, h, w, 1)``.
        y_pred: scores ``(batch, h, w, num_classes)`` (or ``(..., 1)`` sigmoid), or class ids
            with ``sparse_y_pred=True``.
        sample_weight: optional weights per pixel ``(batch, h, w)`` or per image ``(batch,)``.

    Methods:
        per_class_iou(): IoU of every class, NaN for absent and ignored classes.
        confusion_matrix(): the accumulated matrix.

    Example:
        >>> miou = SegmentationIoU(12, ignore_class=11)   # CamVid: 11 classes + void
        >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=[miou])
        >>> dict(zip(CAMVID_CLASSES, miou.per_class_iou().numpy()))
    """

    def __init__(
        self, num_classes, ignore_class=None, sparse_y_pred=False, threshold=0.5, name="mean_iou", dtype=None
    ):
        super().__init__(num_classes, ignore_class, sparse_y_pred, threshold, name=name, dtype=dtype)

    def per_class_iou(self):
        """IoU of every class, ``(num_classes,)``; NaN for absent classes and ``ignore_class``."""
        return per_class_iou(self.confusion, self.ignore_class)

    def result(self):
        return ops.cast(_nanmean(self.per_class_iou()), self.dtype)


@keras.saving.register_keras_serializable(package="kapps")
class DiceCoefficient(_ConfusionMatrixMetric):
    """Mean hard Dice coefficient (F1 score) over the classes other than ``ignore_class``.

    ``dice[c] = 2 |pred_c & true_c| / (|pred_c| + |true_c|)`` from the argmax (or
    thresholded) predictions, accumulated over all pixels seen (not averaged per batch), then
    averaged over the classes present in labels or predictions. For binary segmentation with
    only the foreground score of interest, read ``per_class_dice()[1]``, or set
    ``class_id=1``.

    Args:
        num_classes: classes of the prediction (2 for one sigmoid channel).
        ignore_class: label of pixels (and class) to leave out, or ``None``.
        class_id: report only this class's Dice instead of the mean, or ``None``.
        sparse_y_pred: predictions are class ids rather than scores.
        threshold: for one-channel (sigmoid) predictions, the score above which a pixel is
            class 1.
        name: metric name.
        dtype: dtype of the result.

    Call arguments (``update_state``): as :class:`SegmentationIoU`.

    Example:
        >>> dice = DiceCoefficient(2, class_id=1)   # ISBI membranes, one sigmoid channel
        >>> dice.update_state([[0, 1, 1]], [[[0.2], [0.9], [0.3]]])
        >>> float(dice.result())   # 2 * 1 / (1 + 2)
        0.6666667
    """

    def __init__(
        self,
        num_classes,
        ignore_class=None,
        class_id=None,
        sparse_y_pred=False,
        threshold=0.5,
        name="dice",
        dtype=None,
    ):
        super().__init__(num_classes, ignore_class, sparse_y_pred, threshold, name=name, dtype=dtype)
        if class_id is not None and (
            isinstance(class_id, bool) or not isinstance(class_id, int) or not 0 <= class_id < num_classes
            or class_id == ignore_class
        ):
            raise ValueError(
                f"class_id={class_id!r} is not allowed; expected None or an int in [0, {num_classes}) "
                "other than ignore_class."
            )
        self.class_id = class_id

    def per_class_dice(self):
        """Dice of every class, ``(num_classes,)``; NaN for absent classes and ``ignore_class``."""
        return per_class_dice(self.confusion, self.ignore_class)

    def result(self):
        dice = self.per_class_dice()
        if self.class_id is not None:
            # An absent class (no label, no prediction) is a perfect 1 rather than NaN.
            value = dice[self.class_id]
            return ops.cast(ops.where(ops.isnan(value), 1.0, value), self.dtype)
        return ops.cast(_nanmean(dice), self.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(class_id=self.class_id)
        return config


# ------------------------------------------------------------------------------------------
# Object detection: mean average precision (Pascal VOC style), in NumPy.
#
# These run after the model, on decoded (post-NMS) detections gathered over a whole split:
# Pascal VOC matching is sequential over all detections of a class sorted by score across
# images, so it is not a per-batch sum that a ``keras.metrics.Metric`` variable could hold.
# Use :class:`DetectionEvaluator` in a loop over ``model.predict`` batches instead.

AP_INTERPOLATIONS = ("all", "11point", "101point")

# The 101 recall thresholds of pycocotools' COCOeval (Params.recThrs), built the same way so the
# comparisons at each threshold are bit-identical to it.
_COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)


def average_precision(recall, precision, interpolation="all"):
    """Area under a precision-recall curve, interpolated as Pascal VOC or COCO do.

    The curve is the one obtained by walking the detections of a class in order of decreasing
    score: ``recall[i]`` and ``precision[i]`` after the first ``i + 1`` detections (so
    ``recall`` never decreases). Every rule first replaces precision by its monotone envelope,
    ``p_interp(r) = max(precision[j] for recall[j] >= r)``, then:

    - ``"all"`` (Pascal VOC 2010 and later, the default): the exact area under the envelope,
      ``sum((r[i+1] - r[i]) * p_interp(r[i+1]))`` over the points where recall changes, with
      the curve extended to recall 0 and to recall 1 at precision 0.
    - ``"11point"`` (Pascal VOC 2007): the mean of ``p_interp(r)`` at ``r = 0, 0.1, ..., 1``
      (0 where the recall never reaches ``r``).
    - ``"101point"`` (COCO, as pycocotools' ``COCOeval.accumulate`` computes it): the mean over
      the 101 thresholds ``r = 0, 0.01, ..., 1`` of the envelope at the first point whose recall
      is ``>= r`` (``np.searchsorted(..., side="left")``), 0 where the recall never reaches
      ``r``.

    Args:
        recall: 1-D array of non-decreasing recalls in ``[0, 1]``.
        precision: 1-D array of precisions in ``[0, 1]``, the same length as ``recall``.
        interpolation: ``"all"``, ``"11point"`` or ``"101point"``.

    Returns:
        The average precision, a Python float in ``[0, 1]``; 0.0 for an empty curve (no
        detections).

    Raises:
        ValueError: if the arrays are not 1-D of the same length, hold values outside
            ``[0, 1]`` (or NaN), if ``recall`` decreases, or if ``interpolation`` is unknown.

    Example:
        >>> # Detections TP, FP, TP, FP, FP against 3 ground-truth boxes.
        >>> average_precision([1/3, 1/3, 2/3, 2/3, 2/3], [1, 1/2, 2/3, 1/2, 2/5])  # 1/3 + 2/9
        0.5555555555555556
    """
    _check_interpolation(interpolation)
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    if recall.ndim != 1 or precision.ndim != 1 or recall.shape != precision.shape:
        raise ValueError(
            f"recall and precision must be 1-D arrays of the same length; received shapes "
            f"{recall.shape} and {precision.shape}."
        )
    for name, values in (("recall", recall), ("precision", precision)):
        if not np.all((values >= 0) & (values <= 1)):  # also refuses NaN
            raise ValueError(f"{name} must hold numbers in [0, 1]; received {values!r}.")
    if np.any(np.diff(recall) < 0):
        raise ValueError(
            "recall must not decrease (the points of a curve in order of decreasing score); "
            f"received {recall!r}."
        )
    if recall.size == 0:
        return 0.0
    # Monotone envelope: the best precision at this recall or any higher one.
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    if interpolation == "all":
        points = np.concatenate([[0.0], recall, [1.0]])
        values = np.concatenate([[0.0], envelope, [0.0]])
        # Where recall steps up from points[i] to points[i + 1], the envelope there is
        # values[i + 1] (it cannot rise to the right, so [0.0] at the end is harmless).
        steps = np.flatnonzero(points[1:] != points[:-1])
        return float(np.sum((points[steps + 1] - points[steps]) * values[steps + 1]))
    if interpolation == "11point":
        thresholds = np.arange(11) / 10.0  # exactly 0.3 etc., unlike 0.1 * 3
    else:
        thresholds = _COCO_RECALL_THRESHOLDS
    first = np.searchsorted(recall, thresholds, side="left")  # first point with recall >= r
    reached = first < recall.size
    sampled = np.where(reached, envelope[np.minimum(first, recall.size - 1)], 0.0)
    return float(np.mean(sampled))


def _check_interpolation(interpolation):
    if not isinstance(interpolation, str) or interpolation not in AP_INTERPOLATIONS:
        shown = ", ".join(repr(a) for a in AP_INTERPOLATIONS)
        raise ValueError(f"interpolation={interpolation!r} is not allowed; expected one of {shown}.")
    return interpolation


def _check_detection_options(num_classes, class_names, iou_threshold, interpolation):
    """Validate the options shared by :func:`evaluate_detections` and the evaluator; return
    the class names (default: the class ids) and the threshold as a float."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} is not allowed; expected a positive integer.")
    num_classes = int(num_classes)
    if class_names is None:
        names = list(range(num_classes))
    else:
        if isinstance(class_names, str) or not hasattr(class_names, "__len__"):
            raise ValueError(
                f"class_names={class_names!r} is not allowed; expected None or a sequence of "
                f"{num_classes} names."
            )
        names = list(class_names)
        if len(names) != num_classes or len(set(names)) != num_classes:
            raise ValueError(
                f"class_names={class_names!r} is not allowed; expected {num_classes} distinct names "
                f"(one per class, num_classes={num_classes})."
            )
    if (
        isinstance(iou_threshold, bool)
        or not isinstance(iou_threshold, (int, float, np.floating))
        or not 0 < iou_threshold <= 1
    ):
        raise ValueError(f"iou_threshold={iou_threshold!r} is not allowed; expected a number in (0, 1].")
    _check_interpolation(interpolation)
    return num_classes, names, float(iou_threshold)


def _class_ids(name, values, num_classes):
    """Integer class ids from ints or integer-valued floats (``y_true`` stores them as float)."""
    values = np.asarray(values)
    if values.size and not np.issubdtype(values.dtype, np.integer):
        if not np.issubdtype(values.dtype, np.floating) or not np.all(values == np.round(values)):
            raise ValueError(f"{name} must hold integer class ids; received {values!r}.")
    ids = values.astype(np.int64)
    bad = (ids < 0) | (ids >= num_classes)
    if np.any(bad):
        raise ValueError(
            f"{name} holds class ids {sorted(set(ids[bad].tolist()))} outside [0, {num_classes}) "
            f"(num_classes={num_classes})."
        )
    return ids


def _boxes(name, values):
    boxes = np.asarray(values, dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape [n, 4] (x_min, y_min, x_max, y_max); received {boxes.shape}.")
    if not np.all(np.isfinite(boxes)):
        raise ValueError(f"{name} holds non-finite coordinates.")
    return boxes


def _vector(name, values, length, dtype):
    array = np.asarray(values, dtype=dtype)
    if array.size == 0:
        array = array.reshape(0)
    if array.shape != (length,):
        raise ValueError(f"{name} must have shape [{length}] (one per box); received {array.shape}.")
    return array


def _parse_image(i, detection, truth, num_classes):
    """Check one image's detection and ground-truth dicts; return NumPy arrays."""
    for name, value, keys in (
        (f"detections[{i}]", detection, ("boxes", "scores", "classes")),
        (f"ground_truths[{i}]", truth, ("boxes", "classes")),
    ):
        if not isinstance(value, dict) or any(k not in value for k in keys):
            raise ValueError(f"{name} must be a dict with keys {keys}; received {type(value).__name__}"
                             + (f" with keys {sorted(value)}" if isinstance(value, dict) else "") + ".")
    det_boxes = _boxes(f"detections[{i}]['boxes']", detection["boxes"])
    n = len(det_boxes)
    scores = _vector(f"detections[{i}]['scores']", detection["scores"], n, np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"detections[{i}]['scores'] holds non-finite scores.")
    det_classes = _class_ids(
        f"detections[{i}]['classes']", _vector(f"detections[{i}]['classes']", detection["classes"], n, None), num_classes
    )
    gt_boxes = _boxes(f"ground_truths[{i}]['boxes']", truth["boxes"])
    m = len(gt_boxes)
    gt_classes = _class_ids(
        f"ground_truths[{i}]['classes']", _vector(f"ground_truths[{i}]['classes']", truth["classes"], m, None), num_classes
    )
    difficult = truth.get("difficult")
    if difficult is None:
        difficult = np.zeros(m, bool)
    else:
        difficult = _vector(f"ground_truths[{i}]['difficult']", difficult, m, bool)
    return det_boxes, scores, det_classes, gt_boxes, gt_classes, difficult


def _pairwise_iou(a, b):
    """IoU of every box in ``a`` [n, 4] with every box in ``b`` [m, 4], xyxy, as [n, m].

    Continuous coordinates: area = (x_max - x_min) * (y_max - y_min), without the "+1 pixel"
    of the Pascal VOC devkit's integer pixel boxes (pycocotools has no +1 either)."""
    a, b = a[:, None, :], b[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    intersection = width * height
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1.0), 0.0)


def evaluate_detections(
    detections, ground_truths, *, num_classes, class_names=None, iou_threshold=0.5, interpolation="all"
):
    """Average precision per class and mAP, with Pascal VOC matching.

    For each class, the detections of that class from all images are sorted by decreasing
    score (ties keep image order, then the order within the image). Each is compared with the
    ground-truth boxes of its class in its image and assigned to the one with the highest IoU:

    - if that IoU is ``>= iou_threshold`` and the box is marked difficult, the detection is
      ignored (neither true nor false positive), as in the VOC devkit;
    - if the IoU is ``>= iou_threshold`` and the box is not yet taken by a higher-scoring
      detection, it is a true positive and takes the box;
    - otherwise (IoU too low, no box, or the best box already taken: a duplicate) it is a
      false positive. Unlike COCO, a detection whose best box is taken does not fall back to
      its second-best box.

    Recall is over the non-difficult boxes of the class. IoU uses continuous coordinates,
    ``area = (x_max - x_min) * (y_max - y_min)``, without the devkit's "+1 pixel" convention
    for integer pixel boxes, so it is the same for relative and absolute boxes. A detection
    counts at IoU ``>= iou_threshold`` (as pycocotools); the VOC devkit's test is ``>``, which
    differs only at exact equality.

    Args:
        detections: one dict per image with ``"boxes"`` ``[n, 4]`` (x_min, y_min, x_max,
            y_max), ``"scores"`` ``[n]`` and ``"classes"`` ``[n]`` (ints in
            ``[0, num_classes)``). Any xyxy format works (relative ``rel_xyxy`` or pixels) as
            long as detections and ground truths use the same one.
        ground_truths: one dict per image, in the same order, with ``"boxes"`` ``[m, 4]``,
            ``"classes"`` ``[m]`` and optionally ``"difficult"`` (bool ``[m]``).
        num_classes: number of classes.
        class_names: names used as keys of the per-class results (default: the class ids).
        iou_threshold: the IoU a detection needs with a ground-truth box to match it (0.5 for
            Pascal VOC's mAP@0.5).
        interpolation: how precision-recall curves become AP, see :func:`average_precision`
            (``"all"``: VOC 2010+, ``"11point"``: VOC 2007, ``"101point"``: COCO).

    Returns:
        A dict with:

        - ``"mAP"``: the mean AP over the classes that have at least one non-difficult
          ground-truth box (NaN if none has).
        - ``"ap"``: ``{class_name: AP}``; NaN for a class without ground truth (it has no
          recall to speak of; it is left out of the mean, as in the VOC devkit and COCO),
          0.0 for a class with ground truth but no detections.
        - ``"num_ground_truth"``: ``{class_name: non-difficult boxes}``.
        - ``"num_detections"``: ``{class_name: detections}`` (all of them, including those
          ignored because they matched a difficult box).
        - ``"precision"``, ``"recall"``: ``{class_name: 1-D array}``, the curve after each
          detection in score order (detections matching difficult boxes left out); recall is
          NaN for a class without ground truth.

    Raises:
        ValueError: if the lists differ in length, a dict lacks a key, arrays have the wrong
            shapes or non-finite values, a class id is outside ``[0, num_classes)``, or an
            option is invalid.

    Example:
        >>> result = evaluate_detections(
        ...     [{"boxes": [[0.1, 0.1, 0.5, 0.5]], "scores": [0.9], "classes": [0]}],
        ...     [{"boxes": [[0.1, 0.1, 0.5, 0.6]], "classes": [0]}],
        ...     num_classes=2, class_names=["cell", "platelet"])
        >>> result["mAP"], result["ap"]
        (1.0, {'cell': 1.0, 'platelet': nan})
    """
    num_classes, names, iou_threshold = _check_detection_options(
        num_classes, class_names, iou_threshold, interpolation
    )
    for name, value in (("detections", detections), ("ground_truths", ground_truths)):
        if isinstance(value, dict) or not isinstance(value, (list, tuple)):
            raise ValueError(
                f"{name} must be a list with one dict per image; received {type(value).__name__} "
                "(for batched padded arrays use DetectionEvaluator.update)."
            )
    if len(detections) != len(ground_truths):
        raise ValueError(
            f"detections and ground_truths must have one entry per image each; received "
            f"{len(detections)} and {len(ground_truths)}."
        )
    images = [_parse_image(i, d, g, num_classes) for i, (d, g) in enumerate(zip(detections, ground_truths))]

    result = {"mAP": float("nan")}
    result.update({key: {} for key in ("ap", "num_ground_truth", "num_detections", "precision", "recall")})
    for c, name in enumerate(names):
        # Every detection of class c over all images: (score, image, row in that image's IoU matrix).
        scores, image_ids, rows, ious, difficult = [], [], [], [], []
        num_positive = 0
        for i, (det_boxes, det_scores, det_classes, gt_boxes, gt_classes, gt_difficult) in enumerate(images):
            det_mask, gt_mask = det_classes == c, gt_classes == c
            scores.append(det_scores[det_mask])
            image_ids.append(np.full(int(det_mask.sum()), i))
            rows.append(np.arange(int(det_mask.sum())))
            ious.append(_pairwise_iou(det_boxes[det_mask], gt_boxes[gt_mask]))  # (dets, gts) of class c
            difficult.append(gt_difficult[gt_mask])
            num_positive += int(np.count_nonzero(~gt_difficult[gt_mask]))
        scores, image_ids, rows = np.concatenate(scores), np.concatenate(image_ids), np.concatenate(rows)
        order = np.argsort(-scores, kind="mergesort")  # stable: ties keep image, then row order
        taken = [np.zeros(len(d), bool) for d in difficult]
        is_tp = []
        for k in order:
            i, row = image_ids[k], rows[k]
            if ious[i].shape[1] == 0:
                is_tp.append(False)  # no ground truth of this class in the image
                continue
            best = int(np.argmax(ious[i][row]))  # first of equal IoUs
            if ious[i][row, best] >= iou_threshold:
                if difficult[i][best]:
                    continue  # ignored: neither true nor false positive
                if not taken[i][best]:
                    taken[i][best] = True
                    is_tp.append(True)
                    continue
            is_tp.append(False)
        is_tp = np.asarray(is_tp, bool)
        true_positives = np.cumsum(is_tp).astype(np.float64)
        false_positives = np.cumsum(~is_tp).astype(np.float64)
        precision = true_positives / np.maximum(true_positives + false_positives, 1.0)
        if num_positive:
            recall = true_positives / num_positive
            ap = average_precision(recall, precision, interpolation)
        else:
            recall = np.full(len(is_tp), np.nan)
            ap = float("nan")
        result["ap"][name] = ap
        result["num_ground_truth"][name] = num_positive
        result["num_detections"][name] = len(scores)
        result["precision"][name] = precision
        result["recall"][name] = recall
    present = [result["ap"][name] for name in names if result["num_ground_truth"][name] > 0]
    if present:
        result["mAP"] = float(np.mean(present))
    return result


def _to_numpy(value):
    """NumPy arrays, lists and CPU tensors of any backend (they implement ``__array__``)."""
    return np.asarray(value)


class DetectionEvaluator:
    """Collects detections and ground truth batch by batch; computes mAP at the end.

    Pascal VOC matching sorts all detections of a class over the whole split by score, so the
    evaluator keeps every image's (few hundred at most) boxes in NumPy and
    :meth:`result` runs :func:`evaluate_detections` on them. It is not a
    ``keras.metrics.Metric``: it runs outside the model, on decoded detections.

    Args:
        num_classes: number of classes.
        class_names: names used as keys of the per-class results (default: the class ids).
        iou_threshold: the IoU a detection needs to match a ground-truth box.
        interpolation: ``"all"`` (VOC 2010+), ``"11point"`` (VOC 2007) or ``"101point"``
            (COCO), see :func:`average_precision`.

    Call arguments (``update``):
        detections: the ``decode=True`` model output for a batch, a dict with ``"boxes"``
            ``[B, K, 4]``, ``"scores"`` ``[B, K]``, ``"classes"`` ``[B, K]`` and
            ``"num_detections"`` ``[B]`` (rows beyond it are padding; without it every row
            counts). NumPy arrays or tensors. A list of per-image dicts (as for
            :func:`evaluate_detections`) is accepted too.
        ground_truths: ``y_true`` of the batch, ``[B, M, 5]`` rows (x_min, y_min, x_max,
            y_max, class_id), padding rows with class_id -1; or a list of per-image dicts with
            ``"boxes"``, ``"classes"`` and optional ``"difficult"``.
        difficult: optional, with array ``ground_truths``: one bool array per image (a list,
            or a ``[B, M]`` array), either over the image's real boxes in order or over all
            ``M`` rows including padding.

    Example:
        >>> evaluator = DetectionEvaluator(3, class_names=["RBC", "WBC", "Platelets"])
        >>> for images, y_true in test_ds:
        ...     evaluator.update(detector.predict_on_batch(images), y_true)
        >>> result = evaluator.result()
        >>> result["mAP"], result["ap"]["WBC"]
    """

    def __init__(self, num_classes, class_names=None, iou_threshold=0.5, interpolation="all"):
        _check_detection_options(num_classes, class_names, iou_threshold, interpolation)
        self.num_classes = int(num_classes)
        self.class_names = None if class_names is None else list(class_names)
        self.iou_threshold = float(iou_threshold)
        self.interpolation = interpolation
        self.reset()

    @property
    def num_images(self):
        """Images seen since the last :meth:`reset`."""
        return len(self._ground_truths)

    def reset(self):
        """Forget every image seen."""
        self._detections = []
        self._ground_truths = []

    def update(self, detections, ground_truths, difficult=None):
        """Add a batch of images; see the class docstring for the formats.

        Raises:
            ValueError: if the formats, shapes or batch sizes do not match, or a class id is
                outside ``[0, num_classes)``.
        """
        new_detections = self._split_detections(detections)
        new_truths = self._split_ground_truths(ground_truths, difficult)
        if len(new_detections) != len(new_truths):
            raise ValueError(
                f"detections and ground_truths hold {len(new_detections)} and {len(new_truths)} "
                "images; expected the same batch."
            )
        # Check now, so that a bad batch fails at its update rather than in result().
        for i, (d, g) in enumerate(zip(new_detections, new_truths)):
            _parse_image(self.num_images + i, d, g, self.num_classes)
        self._detections.extend(new_detections)
        self._ground_truths.extend(new_truths)

    def result(self):
        """:func:`evaluate_detections` over every image seen since the last :meth:`reset`."""
        return evaluate_detections(
            self._detections,
            self._ground_truths,
            num_classes=self.num_classes,
            class_names=self.class_names,
            iou_threshold=self.iou_threshold,
            interpolation=self.interpolation,
        )

    @staticmethod
    def _split_detections(detections):
        if isinstance(detections, (list, tuple)):
            return [{k: _to_numpy(v) for k, v in d.items()} if isinstance(d, dict) else d for d in detections]
        if not isinstance(detections, dict) or any(k not in detections for k in ("boxes", "scores", "classes")):
            raise ValueError(
                "detections must be a dict with 'boxes' [B, K, 4], 'scores' [B, K], 'classes' [B, K] "
                f"and 'num_detections' [B], or a list of per-image dicts; received {type(detections).__name__}"
                + (f" with keys {sorted(detections)}" if isinstance(detections, dict) else "") + "."
            )
        boxes = _to_numpy(detections["boxes"])
        scores = _to_numpy(detections["scores"])
        classes = _to_numpy(detections["classes"])
        if boxes.ndim != 3 or boxes.shape[-1] != 4 or scores.shape != boxes.shape[:2] or classes.shape != boxes.shape[:2]:
            raise ValueError(
                "detections must hold 'boxes' [B, K, 4], 'scores' [B, K] and 'classes' [B, K]; received "
                f"shapes {boxes.shape}, {scores.shape} and {classes.shape}."
            )
        batch, capacity = boxes.shape[:2]
        if detections.get("num_detections") is None:
            counts = np.full(batch, capacity)
        else:
            counts = _to_numpy(detections["num_detections"]).reshape(-1)
            if counts.shape != (batch,) or np.any(counts < 0) or np.any(counts > capacity):
                raise ValueError(
                    f"detections['num_detections'] must hold {batch} counts in [0, {capacity}]; "
                    f"received {counts!r}."
                )
        return [
            {"boxes": boxes[b, :n], "scores": scores[b, :n], "classes": classes[b, :n]}
            for b, n in enumerate(counts.astype(int))
        ]

    @staticmethod
    def _split_ground_truths(ground_truths, difficult):
        if isinstance(ground_truths, (list, tuple)) and (not ground_truths or isinstance(ground_truths[0], dict)):
            if difficult is not None:
                raise ValueError(
                    "difficult is for batched y_true arrays; with per-image dicts put a 'difficult' "
                    "entry in each dict."
                )
            return [{k: _to_numpy(v) for k, v in g.items()} if isinstance(g, dict) else g for g in ground_truths]
        y_true = _to_numpy(ground_truths)
        if y_true.ndim != 3 or y_true.shape[-1] != 5:
            raise ValueError(
                "ground_truths must be y_true [B, M, 5] (x_min, y_min, x_max, y_max, class_id; padding "
                f"rows -1) or a list of per-image dicts; received shape {y_true.shape}."
            )
        if difficult is not None and len(difficult) != len(y_true):
            raise ValueError(
                f"difficult must hold one entry per image ({len(y_true)}); received {len(difficult)}."
            )
        images = []
        for b, rows in enumerate(y_true):
            real = rows[:, 4] != -1
            image = {"boxes": rows[real, :4], "classes": rows[real, 4]}
            if difficult is not None:
                flags = np.asarray(_to_numpy(difficult[b]), bool).reshape(-1)
                if flags.shape[0] == rows.shape[0]:
                    flags = flags[real]
                elif flags.shape[0] != int(real.sum()):
                    raise ValueError(
                        f"difficult[{b}] has {flags.shape[0]} flags; expected one per real box "
                        f"({int(real.sum())}) or per row ({rows.shape[0]})."
                    )
                image["difficult"] = flags
            images.append(image)
        return images


def _feature_matrix(name, values):
    values = np.asarray(values, dtype="float64")
    if values.ndim != 2 or values.shape[0] < 2:
        raise ValueError(
            f"{name} of shape {values.shape} is not allowed; expected (examples, features) with "
            "at least two examples."
        )
    return values


def frechet_distance(features_a, features_b):
    """Frechet distance between Gaussians fitted to two feature sets (Heusel et al. 2017).

    ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` with the sample means and
    covariances of the rows. The matrix square root is ``scipy.linalg.sqrtm``; its tiny
    imaginary part (round-off) is dropped, and a singular product is regularised with
    ``1e-6`` on the diagonals, as the reference implementation does.

    Args:
        features_a: ``(examples, features)`` array.
        features_b: ``(examples, features)`` array with the same number of features.

    Returns:
        The distance, a non-negative float (0 for identical statistics).

    Raises:
        ValueError: not 2-D arrays of at least two rows, or different feature counts.
    """
    from scipy import linalg

    a = _feature_matrix("features_a", features_a)
    b = _feature_matrix("features_b", features_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"features_b has {b.shape[1]} features per example; expected {a.shape[1]}, as "
            "features_a has."
        )
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        # a rank-deficient product (fewer examples than features) warns; the result is
        # checked below instead
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(covmean).all():
            offset = np.eye(a.shape[1]) * 1e-6
            covmean = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    covmean = np.real(covmean)
    diff = mu_a - mu_b
    distance = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean)
    return float(max(distance, 0.0))


class SampleQuality:
    """Score generated images with a trained classifier: a classifier-feature Frechet
    distance against real images, the share of confidently classified images, and the class
    counts.

    With kapps' LeNet-5 trained on MNIST (``recipes/lenet5_mnist.py``), the features are its
    84 F6 activations and the distance is an **MNIST-specific FID**. It is not the Inception
    FID of Heusel et al. 2017 and not comparable with published FIDs: only with other numbers
    from the same classifier. Blurry or malformed digits move the F6 features away from the
    real ones; missing digit classes (mode collapse) change their mean and covariance.

    Args:
        classifier: a ``keras.Model`` from images to class probabilities (softmax).
        reference_images: the real images, ``(examples, height, width, channels)`` in
            ``[0, 1]`` (e.g. the 10,000 MNIST test digits).
        feature_layer: name of the layer whose output are the features; default: the input of
            the layer named ``"output"`` (kapps' classifiers name their last Dense so; in
            LeNet-5 that is F6's activation).
        confidence: the probability above which an image counts as confidently classified.
        batch_size: images per classifier call.

    Example:
        >>> quality = SampleQuality(lenet, test_images)           # doctest: +SKIP
        >>> quality(model.sample(10_000))                          # doctest: +SKIP
        {'fid': 3.1, 'confident_share': 0.91, 'class_counts': [...], 'examples': 10000}

    Raises:
        ValueError: ``feature_layer`` is not a layer of ``classifier``; bad ``confidence``.
    """

    def __init__(self, classifier, reference_images, *, feature_layer=None, confidence=0.9,
                 batch_size=500):
        from kapps._checks import check_positive_int

        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
            raise ValueError(f"confidence={confidence!r} is not allowed; expected a number in (0, 1).")
        check_positive_int("batch_size", batch_size)
        names = [layer.name for layer in classifier.layers]
        if feature_layer is None:
            if "output" not in names:
                raise ValueError(
                    f"classifier {classifier.name!r} has no layer named 'output'; pass "
                    f"feature_layer= one of {names}."
                )
            features = classifier.get_layer("output").input
        elif feature_layer in names:
            features = classifier.get_layer(feature_layer).output
        else:
            raise ValueError(
                f"feature_layer={feature_layer!r} is not a layer of {classifier.name!r}; expected "
                f"one of {names}."
            )
        self.classifier = classifier
        self.confidence = float(confidence)
        self.batch_size = batch_size
        inputs = classifier.inputs[0] if len(classifier.inputs) == 1 else classifier.inputs
        self._model = keras.Model(inputs, [features, classifier.outputs[0]])
        self.reference_features, _ = self.features(reference_images)

    def features(self, images):
        """``(features, probabilities)`` of ``images`` as numpy arrays."""
        images = np.asarray(images, dtype="float32")
        expected = tuple(self.classifier.inputs[0].shape[1:])
        if images.ndim != 4 or any(e is not None and e != s for e, s in zip(expected, images.shape[1:])):
            raise ValueError(
                f"images of shape {images.shape} are not allowed; expected (examples, "
                f"{', '.join(str(e) for e in expected)}) in [0, 1]."
            )
        features, probabilities = [], []
        for start in range(0, len(images), self.batch_size):
            f, p = self._model(images[start:start + self.batch_size], training=False)
            features.append(np.asarray(f).reshape(len(f), -1))
            probabilities.append(np.asarray(p))
        return np.concatenate(features), np.concatenate(probabilities)

    def __call__(self, images):
        """Score ``images`` (``(examples, height, width, channels)`` in ``[0, 1]``).

        Returns:
            ``{"fid", "confident_share", "class_counts", "examples"}``: the Frechet distance
            to the reference features, the share of images whose top probability exceeds
            ``confidence``, how many images the classifier puts in each class, and the count.
        """
        features, probabilities = self.features(images)
        top = probabilities.max(axis=1)
        counts = np.bincount(probabilities.argmax(axis=1), minlength=probabilities.shape[1])
        return {
            "fid": frechet_distance(features, self.reference_features),
            "confident_share": float((top > self.confidence).mean()),
            "class_counts": counts.tolist(),
            "examples": int(len(images)),
        }
