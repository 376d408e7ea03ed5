"""Segmentation metrics that Keras does not already provide.

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
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["DiceCoefficient", "PixelAccuracy", "SegmentationIoU", "per_class_dice", "per_class_iou"]


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
