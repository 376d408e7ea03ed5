"""Segmentation, sequence and detection losses that Keras does not already provide, and the
U-Net paper's weight map.

What Keras has (3.15) and where it stops:

- ``keras.losses.SparseCategoricalCrossentropy(ignore_class=...)`` leaves ignored pixels out
  of the loss and out of the mean, but has no class weights (and ``fit(class_weight=...)``
  refuses targets of rank 3 and more).
- ``keras.losses.Dice`` is a soft Dice for *dense* targets of the prediction's shape, with no
  class weights, ignored label or logits.

Added here (``keras.losses.Loss`` subclasses, registered as ``kapps>...``):

- :class:`WeightedSparseCategoricalCrossentropy`: sparse labels, ``class_weights``,
  ``ignore_class`` (excluded from the mean), ``label_smoothing``, ``from_logits``, softmax or
  one sigmoid channel. With ``ignore_class=0, label_smoothing=0.1, from_logits=True`` it is
  the Transformer's token loss (padding left out, Vaswani et al. 2017, section 5.4).
- :class:`DiceLoss`: soft Dice for sparse labels against softmax/sigmoid scores or logits,
  with class weights and an ignored label.
- :func:`unet_weight_map`: the per-pixel weight map of Ronneberger et al. 2015, eq. 2,
  computed once per training mask in NumPy.
- :class:`YOLOv1Loss` and :class:`YOLOv2Loss`: the YOLO papers' sum-squared losses, with
  objects assigned to predictors inside the loss from padded ``(batch, boxes, 5)`` targets
  (see the section before them).

Per-pixel weights in training (checked on Keras 3.15): ``model.fit`` passes a
``sample_weight`` of shape ``(batch, height, width)`` through to the loss for a
``(batch, height, width, classes)`` output and ``(batch, height, width)`` labels, and every
pixel's loss is multiplied by its weight before the mean. So the U-Net weight map is used by
giving ``fit`` a dataset of ``(image, mask, weight_map)`` (or ``sample_weight=`` with arrays)
with :class:`WeightedSparseCategoricalCrossentropy` or Keras' own
``SparseCategoricalCrossentropy``::

    weights = np.stack([unet_weight_map(m, object_label=0) for m in masks])  # offline, once
    model.compile("adam", WeightedSparseCategoricalCrossentropy())
    model.fit(tf.data.Dataset.from_tensor_slices((images, masks, weights)).batch(4))

(Joint augmentation must then move the weight map with the mask; compute the weights after
any geometric augmentation, or augment without one.)
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

__all__ = [
    "DiceLoss", "WeightedSparseCategoricalCrossentropy", "YOLOv1Loss", "YOLOv2Loss", "unet_weight_map",
]

_MASKED_MEAN_REDUCTIONS = ("sum_over_batch_size", "mean")
_REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "none", None)


def _keras_mask(tensor):
    """The Keras mask a tensor carries (``None`` for none)."""
    try:
        from keras.src.backend import get_keras_mask
    except ImportError:  # older Keras 3
        return getattr(tensor, "_keras_mask", None)
    return get_keras_mask(tensor)


def _check_class_weights(class_weights):
    if class_weights is None:
        return None
    try:
        weights = [float(w) for w in class_weights]
    except (TypeError, ValueError):
        weights = None
    if not weights or any(not math.isfinite(w) or w < 0 for w in weights):
        raise ValueError(
            f"class_weights={class_weights!r} is not allowed; expected None or a non-empty list "
            "of finite, non-negative numbers, one per class."
        )
    return weights


def _check_ignore_class(ignore_class):
    if ignore_class is not None and (isinstance(ignore_class, bool) or not isinstance(ignore_class, int)):
        raise ValueError(f"ignore_class={ignore_class!r} is not allowed; expected None or an int label.")
    return ignore_class


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        shown = ", ".join(repr(r) for r in _REDUCTIONS)
        raise ValueError(
            f"reduction={reduction!r} is not allowed; expected one of {shown} "
            "('mean_with_sample_weight' would count ignored pixels in its denominator)."
        )
    return reduction


def _sparse_labels(y_true, y_pred):
    """Labels as int32 of the prediction's shape without the class axis."""
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, -1)  # (batch, h, w, 1) -> (batch, h, w)
    return ops.cast(y_true, "int32")


def _class_weight_vector(class_weights, num_classes, what):
    if class_weights is None:
        return None
    if len(class_weights) != num_classes:
        raise ValueError(
            f"class_weights has {len(class_weights)} entries but {what} has {num_classes} "
            "classes; give one weight per class."
        )
    return ops.convert_to_tensor(class_weights, "float32")


@keras.saving.register_keras_serializable(package="kapps")
class WeightedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Cross-entropy for integer masks with class weights and an ignored label.

    For each pixel ``i`` with label ``y_i != ignore_class``:
    ``loss_i = class_weights[y_i] * CE(y_i, p_i)``; the reduced loss (default
    ``"sum_over_batch_size"``) is ``sum_i loss_i * sample_weight_i / (number of non-ignored
    pixels)``: ignored pixels add nothing and are not counted, as in Keras'
    ``SparseCategoricalCrossentropy(ignore_class=...)``. Per-pixel ``sample_weight`` of shape
    ``(batch, height, width)`` (e.g. :func:`unet_weight_map`) multiplies each pixel's loss.
    Under ``tf.distribute`` the count is per replica, as in Keras' own losses.

    Predictions with ``C > 1`` channels are softmax scores (or logits); a single channel is a
    sigmoid score (or logit) for class 1, and binary cross-entropy is used (``class_weights``
    then has two entries, for labels 0 and 1).

    Label smoothing (Szegedy et al. 2016) trains against ``(1 - eps) * one_hot(y) + eps / C``:
    ``loss_i = (1 - eps) * CE(y_i, p_i) + eps * mean_c(-log p_ic)`` (with one sigmoid channel,
    against ``y (1 - eps) + eps / 2``). The same works for token sequences: labels
    ``(batch, length)``, scores ``(batch, length, vocab)``, padding as ``ignore_class``.

    Args:
        class_weights: one weight per class (e.g. inverse class frequencies), or ``None``.
        ignore_class: label whose pixels are left out (e.g. CamVid void = 11, or 255), or
            ``None``. It may lie outside ``[0, classes)``.
        from_logits: ``y_pred`` holds logits rather than probabilities.
        label_smoothing: ``eps`` in ``[0, 1)``; 0.1 in the Transformer paper.
        reduction: ``"sum_over_batch_size"`` (mean over labelled pixels), ``"mean"`` (the same),
            ``"sum"`` or ``"none"`` (per-pixel losses, 0 at ignored pixels).
        name: loss name.
        dtype: dtype of the loss computations.

    Call arguments:
        y_true: integer labels ``(batch, h, w)`` or ``(batch, h, w, 1)``.
        y_pred: scores ``(batch, h, w, classes)``.
        sample_weight: optional per-pixel ``(batch, h, w)`` or per-image ``(batch,)`` weights.

    Example:
        >>> loss = WeightedSparseCategoricalCrossentropy(class_weights=[1.0] * 11 + [0.0],
        ...                                              ignore_class=11)
        >>> model.compile("adam", loss=loss)
        >>> token_loss = WeightedSparseCategoricalCrossentropy(  # the Transformer's
        ...     ignore_class=0, label_smoothing=0.1, from_logits=True)

    Raises:
        ValueError: bad ``class_weights``, ``ignore_class``, ``label_smoothing`` or ``reduction``; at call time,
            ``class_weights`` of the wrong length.
    """

    def __init__(
        self,
        class_weights=None,
        ignore_class=None,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="weighted_sparse_categorical_crossentropy",
        dtype=None,
        label_smoothing=0.0,
    ):
        super().__init__(name=name, reduction=_check_reduction(reduction), dtype=dtype)
        self.class_weights = _check_class_weights(class_weights)
        self.ignore_class = _check_ignore_class(ignore_class)
        self.from_logits = bool(from_logits)
        if (
            isinstance(label_smoothing, bool)
            or not isinstance(label_smoothing, (int, float))
            or not 0 <= label_smoothing < 1
        ):
            raise ValueError(
                f"label_smoothing={label_smoothing!r} is not allowed; expected a number in "
                "[0, 1) (0.1 in the Transformer paper)."
            )
        self.label_smoothing = float(label_smoothing)

    def __call__(self, y_true, y_pred, sample_weight=None):
        # A prediction that carries a Keras mask (e.g. Seq2Seq logits masked at target
        # padding) is already divided by its count of unmasked entries in Keras' reduction;
        # dividing by the non-ignored count here as well would count the padding share twice.
        self._keras_masked = _keras_mask(y_pred) is not None
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred, self.dtype)
        labels = _sparse_labels(y_true, y_pred)
        num_classes = y_pred.shape[-1]
        valid = ops.ones_like(labels, dtype="bool")
        if self.ignore_class is not None:
            valid = ops.not_equal(labels, self.ignore_class)
        safe = ops.where(valid, labels, 0)  # any in-range label; these pixels get weight 0
        if num_classes == 1:
            weights = _class_weight_vector(self.class_weights, 2, "a one-channel (sigmoid) output")
            target = ops.cast(safe, y_pred.dtype)
            if self.label_smoothing:
                target = target * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
            losses = ops.binary_crossentropy(target, y_pred[..., 0], from_logits=self.from_logits)
        else:
            weights = _class_weight_vector(self.class_weights, num_classes, "y_pred")
            losses = ops.sparse_categorical_crossentropy(safe, y_pred, from_logits=self.from_logits)
            if self.label_smoothing:
                if self.from_logits:
                    log_probs = ops.log_softmax(y_pred, axis=-1)
                else:
                    log_probs = ops.log(ops.clip(y_pred, keras.config.epsilon(), 1.0))
                uniform = -ops.mean(log_probs, axis=-1)  # cross-entropy against eps / C
                losses = (1.0 - self.label_smoothing) * losses + self.label_smoothing * uniform
        if weights is not None:
            losses = losses * ops.cast(ops.take(weights, safe), losses.dtype)
        valid = ops.cast(valid, losses.dtype)
        losses = losses * valid
        if self.reduction in _MASKED_MEAN_REDUCTIONS and not getattr(self, "_keras_masked", False):
            # Keras divides the sum by the number of pixels; scale so that it divides by the
            # number of labelled pixels instead (what Keras' own ignore_class does via masks).
            total = ops.cast(ops.size(valid), losses.dtype)
            losses = losses * ops.divide_no_nan(total, ops.sum(valid))
        return losses

    def get_config(self):
        config = super().get_config()
        config.update(
            class_weights=self.class_weights,
            ignore_class=self.ignore_class,
            from_logits=self.from_logits,
            dtype=self._dtype_policy.name,
            label_smoothing=self.label_smoothing,
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class DiceLoss(keras.losses.Loss):
    """Soft Dice loss (Milletari et al. 2016, V-Net) for integer masks.

    Per image ``b`` and class ``c``, with ``p`` the predicted probabilities and ``t`` the
    one-hot labels over the non-ignored pixels:
    ``dice[b, c] = (2 sum(p * t) + smooth) / (sum(p) + sum(t) + smooth)``, and the loss of
    image ``b`` is ``1 - sum_c w_c dice[b, c] / sum_c w_c``. The reduction (default: mean over
    the batch) then applies; ``sample_weight`` is per image, ``(batch,)``.

    A single output channel is a sigmoid score (or logit) of class 1, and only that class is
    scored (the usual binary Dice); otherwise the scores are a softmax over ``C`` classes.

    Args:
        from_logits: ``y_pred`` holds logits (softmax, or sigmoid for one channel, is applied).
        class_weights: one weight per class (per output channel), or ``None`` for equal
            weights. The ignored class, when it is one of the channels, always gets weight 0.
        ignore_class: label whose pixels are left out of every sum, or ``None``.
        smooth: added to numerator and denominator; keeps the loss defined for classes absent
            from an image (then ``dice = 1`` when nothing is predicted).
        reduction: Keras reduction of the per-image losses (any of Keras' reductions).
        name: loss name.
        dtype: dtype of the loss computations.

    Call arguments:
        y_true: integer labels ``(batch, h, w)`` or ``(batch, h, w, 1)``.
        y_pred: scores ``(batch, h, w, classes)``.
        sample_weight: optional per-image weights ``(batch,)``.

    Example:
        >>> model.compile("adam", loss=DiceLoss(ignore_class=11))
        >>> # common combination: cross-entropy plus Dice
        >>> ce, dice = WeightedSparseCategoricalCrossentropy(), DiceLoss()
        >>> model.compile("adam", loss=lambda y, p: ce(y, p) + dice(y, p))

    Raises:
        ValueError: bad ``class_weights``, ``ignore_class`` or ``smooth`` (Keras checks
            ``reduction``); at
            call time, ``class_weights`` of the wrong length.
    """

    def __init__(
        self,
        from_logits=False,
        class_weights=None,
        ignore_class=None,
        smooth=1.0,
        reduction="sum_over_batch_size",
        name="dice_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(smooth, bool) or not isinstance(smooth, (int, float)) or smooth < 0:
            raise ValueError(f"smooth={smooth!r} is not allowed; expected a number >= 0.")
        self.from_logits = bool(from_logits)
        self.class_weights = _check_class_weights(class_weights)
        self.ignore_class = _check_ignore_class(ignore_class)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        y_pred = ops.convert_to_tensor(y_pred, self.dtype)
        labels = _sparse_labels(y_true, y_pred)
        num_classes = y_pred.shape[-1]
        if num_classes == 1:
            probs = ops.sigmoid(y_pred) if self.from_logits else y_pred
            target = ops.cast(ops.equal(labels, 1), probs.dtype)[..., None]  # (batch, h, w, 1)
        else:
            probs = ops.softmax(y_pred, axis=-1) if self.from_logits else y_pred
            # one_hot of a label outside [0, C) (e.g. 255) is all zeros.
            target = ops.one_hot(labels, num_classes, dtype=probs.dtype)
        if self.ignore_class is not None:
            valid = ops.cast(ops.not_equal(labels, self.ignore_class), probs.dtype)[..., None]
            probs, target = probs * valid, target * valid
        axes = tuple(range(1, len(y_pred.shape) - 1))  # the spatial axes
        intersection = ops.sum(probs * target, axis=axes)  # (batch, classes)
        denominator = ops.sum(probs, axis=axes) + ops.sum(target, axis=axes)
        dice = (2.0 * intersection + self.smooth) / (denominator + self.smooth)

        weights = _class_weight_vector(self.class_weights, num_classes, "y_pred")
        if weights is None:
            weights = ops.ones((num_classes,), "float32")
        if self.ignore_class is not None and num_classes > 1 and 0 <= self.ignore_class < num_classes:
            weights = weights * ops.cast(ops.not_equal(ops.arange(num_classes), self.ignore_class), "float32")
        weights = ops.cast(weights, dice.dtype)
        return 1.0 - ops.sum(dice * weights, axis=-1) / ops.maximum(ops.sum(weights), 1e-12)

    def get_config(self):
        config = super().get_config()
        config.update(
            from_logits=self.from_logits,
            class_weights=self.class_weights,
            ignore_class=self.ignore_class,
            smooth=self.smooth,
            dtype=self._dtype_policy.name,
        )
        return config


def unet_weight_map(mask, w0=10.0, sigma=5.0, class_balance=True, *, object_label=1):
    """The U-Net paper's per-pixel loss weights (Ronneberger et al. 2015, eq. 2).

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2))`` where ``d1`` and ``d2``
    are the distances to the border of the nearest and the second nearest object (cell), and
    ``w_c`` balances the class frequencies. The border term makes the network learn the thin
    background gaps between touching cells (the paper's Fig. 3d). Computed once per training
    mask, offline, and fed to training as ``sample_weight`` (see the module docstring).

    Details: objects are the 4-connected components of ``mask == object_label``
    (``scipy.ndimage.label``); distances are Euclidean (``distance_transform_edt``); the
    border term is added on the background (non-object) pixels, where the gaps are, as in
    Fig. 3d (inside a cell ``d1`` is 0); with fewer than two objects there is no border term.
    ``w_c(x) = N / (K * N_k)`` for a pixel of class ``k`` (``N`` pixels, ``K`` classes present,
    ``N_k`` pixels of class ``k``), so that ``w_c`` averages to 1 over the mask. Each
    object's distance map is computed in a window around it reaching as far as the border term
    exceeds ``1e-6 * w0``; beyond that the term is below that bound (so the result matches
    whole-image distance maps to within ``1e-6 * w0``).

    Args:
        mask: ``(height, width)`` integer class mask.
        w0: weight of the border term (10 in the paper).
        sigma: its width in pixels (5 in the paper, about 5 pixels).
        class_balance: include ``w_c``; ``False`` uses 1 for every pixel instead.
        object_label: the class whose connected components are the objects. With
            ``kapps.data.isbi2012`` masks (1 = membrane, 0 = cell) the cells are
            ``object_label=0``.

    Returns:
        A ``float32`` array of the mask's shape.

    Raises:
        ValueError: ``mask`` is not 2-D, or ``w0``/``sigma`` is not valid.

    Example:
        >>> weights = unet_weight_map(isbi_mask, object_label=0)   # (512, 512), max about 10
    """
    from scipy import ndimage

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask with shape {mask.shape} is not allowed; expected a 2-D (height, width) mask.")
    if isinstance(w0, bool) or not isinstance(w0, (int, float)) or w0 < 0:
        raise ValueError(f"w0={w0!r} is not allowed; expected a number >= 0.")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or sigma <= 0:
        raise ValueError(f"sigma={sigma!r} is not allowed; expected a number > 0.")

    if class_balance:
        classes, inverse, counts = np.unique(mask, return_inverse=True, return_counts=True)
        weights = (mask.size / (len(classes) * counts))[inverse.reshape(mask.shape)].astype(np.float64)
    else:
        weights = np.ones(mask.shape, np.float64)

    objects = mask == object_label
    labels, count = ndimage.label(objects)
    if count < 2 or w0 == 0:
        return weights.astype(np.float32)
    # Beyond `reach` pixels from both nearest objects, w0 * exp(-reach^2 / (2 sigma^2)) < 1e-6 w0.
    reach = int(math.ceil(sigma * math.sqrt(2.0 * math.log(1e6)))) + 1
    d1 = np.full(mask.shape, np.inf)
    d2 = np.full(mask.shape, np.inf)
    height, width = mask.shape
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        rows = slice(max(box[0].start - reach, 0), min(box[0].stop + reach, height))
        cols = slice(max(box[1].start - reach, 0), min(box[1].stop + reach, width))
        # Distance to object `index` (0 on it) within its window; exact there, as the whole
        # object lies inside the window.
        distance = ndimage.distance_transform_edt(labels[rows, cols] != index)
        near1, near2 = d1[rows, cols], d2[rows, cols]
        d2[rows, cols] = np.where(distance < near1, near1, np.minimum(near2, distance))
        d1[rows, cols] = np.minimum(near1, distance)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
    weights += np.where(objects, 0.0, border)
    return weights.astype(np.float32)


# --------------------------------------------------------------------------------------------
# YOLO detection losses (Redmon et al. 2016; Redmon & Farhadi 2017)
# --------------------------------------------------------------------------------------------
#
# Both take the padded targets of ``kapps.boxes``' conventions, ``y_true`` ``(batch, M, 5)`` =
# (x_min, y_min, x_max, y_max, class_id) in ``rel_xyxy`` with padding rows of -1, and the raw
# grid as ``y_pred``. Objects are assigned to predictors inside the loss, in the graph, from
# ``y_pred``'s dynamic grid size, so one loss serves every input size (multi-scale training).
# A row is an object when its class is >= 0 and its box has a positive width and height; other
# rows are ignored. Each loss returns one value per image (the sum of its terms), which Keras'
# default reduction averages over the batch: the losses are normalised by the batch size.


def _check_weight(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}={value!r} is not allowed; expected a finite number >= 0.")
    return float(value)


def _yolo_objects(y_true):
    """Split padded targets ``(batch, M, 5)``: a dict of ``corners`` ``(batch, M, 4)`` (zeros
    for non-objects), centre ``cx, cy`` and size ``w, h`` ``(batch, M)`` (0.5, 0.5, 1, 1 for
    non-objects, so no NaN reaches the sums), ``classes`` int32 (0 for non-objects) and
    ``valid`` float ``(batch, M)``."""
    y_true = ops.cast(y_true, "float32")
    x0, y0, x1, y1, label = (y_true[..., i] for i in range(5))
    valid = ops.logical_and(ops.logical_and(label >= 0, x1 > x0), y1 > y0)
    fill = lambda value, other: ops.where(valid, value, other)  # noqa: E731
    return {
        "corners": ops.where(valid[..., None], y_true[..., :4], 0.0),
        "cx": fill((x0 + x1) / 2, 0.5),
        "cy": fill((y0 + y1) / 2, 0.5),
        "w": fill(x1 - x0, 1.0),
        "h": fill(y1 - y0, 1.0),
        "classes": ops.cast(fill(label, 0.0), "int32"),
        "valid": ops.cast(valid, "float32"),
    }


def _yolo_assign(slot, valid, num_slots, keep):
    """One object per predictor slot: ``(batch, M)`` slot indices of the objects ->
    ``(batch, M, num_slots)`` 0/1 assignment. Where several objects fall on one slot, the one
    with the lowest row index in ``y_true`` (``keep="first"``) or the highest (``"last"``)
    takes it; the others are not assigned at all."""
    hits = ops.cast(ops.equal(slot[..., None], ops.arange(num_slots, dtype="int32")), "float32")
    hits = hits * valid[..., None]  # (batch, M, slots)
    if keep == "first":
        count = ops.cumsum(hits, axis=1)  # objects so far on each slot, in row order
    else:
        count = ops.flip(ops.cumsum(ops.flip(hits, axis=1), axis=1), axis=1)
    return hits * ops.cast(ops.equal(count, 1.0), "float32")


def _cell_index(centre, cells):
    """Column (or row) of the cell containing ``centre`` on a grid of ``cells`` (clipped to the
    grid for centres on or outside the image border), as float32."""
    cells = ops.cast(cells, "float32")
    return ops.clip(ops.floor(centre * cells), 0.0, cells - 1.0)


@keras.saving.register_keras_serializable(package="kapps")
class YOLOv1Loss(keras.losses.Loss):
    """YOLOv1's sum-squared loss (Redmon et al. 2016, equation 3).

    Assignment (section 2.2): the cell containing an object's centre is responsible for it;
    among the cell's B predictors, the one whose current box has the highest IoU with the
    object is responsible (when no predictor overlaps it, the one with the smallest root mean
    squared error of (x, y, w, h), as Darknet's detection layer does). When the centres of two
    objects fall in one cell, the cell keeps the first one in ``y_true``'s row order and the
    other is not trained (Darknet's data loader also keeps the first box of a cell). Per image,
    with ``1_ij`` the responsible predictors and ``1_i`` the cells holding an object:

    - coordinates: ``lambda_coord * sum 1_ij [(x - x*)^2 + (y - y*)^2 + (sqrt_w - sqrt(w*))^2
      + (sqrt_h - sqrt(h*))^2]``, with ``x*, y*`` the centre's offsets in its cell and
      ``w*, h*`` the size as fractions of the image (the network predicts square roots);
    - confidence: ``sum 1_ij (C - IoU)^2`` (target: the IoU of the predicted box with the
      object, not back-propagated; 1 with ``rescore=False``), and
      ``lambda_noobj * sum (1 - 1_ij) C^2`` over every other predictor;
    - classes: ``sum 1_i sum_c (p(c) - 1[c = class*])^2``.

    The per-image sum is averaged over the batch (Keras' reduction). The raw layout is that
    of ``kapps.layers.YOLOv1Decode``: per cell B boxes ``(x, y, sqrt_w, sqrt_h, C)``, then C
    class probabilities, all linear outputs.

    Args:
        grid_size: S (7).
        boxes_per_cell: B (2).
        num_classes: C (20).
        lambda_coord: weight of the coordinate errors (5).
        lambda_noobj: weight of the confidence of predictors without an object (0.5).
        rescore: confidence target IoU (the paper, and Darknet's ``rescore=1``) or 1.
        reduction: Keras reduction of the per-image losses.
        name: loss name.
        dtype: dtype of the loss computations.

    Call arguments:
        y_true: ``(batch, M, 5)`` padded targets, ``rel_xyxy`` and class id (-1 rows: padding).
        y_pred: ``(batch, S, S, 5 B + C)`` raw predictions.

    Example:
        >>> model = kapps.build("yolov1")
        >>> model.compile("adam", loss=YOLOv1Loss(grid_size=7, boxes_per_cell=2, num_classes=20))

    Raises:
        ValueError: for bad arguments; at call time, a ``y_pred`` whose last axis is not
            ``5 B + C``.
    """

    def __init__(
        self,
        grid_size=7,
        boxes_per_cell=2,
        num_classes=20,
        lambda_coord=5.0,
        lambda_noobj=0.5,
        rescore=True,
        reduction="sum_over_batch_size",
        name="yolov1_loss",
        dtype=None,
    ):
        from kapps._checks import check_positive_int

        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.grid_size = check_positive_int("grid_size", grid_size)
        self.boxes_per_cell = check_positive_int("boxes_per_cell", boxes_per_cell)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.lambda_coord = _check_weight("lambda_coord", lambda_coord)
        self.lambda_noobj = _check_weight("lambda_noobj", lambda_noobj)
        if not isinstance(rescore, bool):
            raise ValueError(f"rescore={rescore!r} is not allowed; expected True or False.")
        self.rescore = rescore

    def terms(self, y_true, y_pred):
        """The loss's terms per image: a dict of ``(batch,)`` tensors ``"coord"``,
        ``"object"`` (confidence of responsible predictors), ``"no_object"`` and ``"class"``
        (already weighted; ``call`` returns their sum)."""
        from kapps.boxes import elementwise_iou
        from kapps.layers.yolo import yolov1_boxes

        s, b, c = self.grid_size, self.boxes_per_cell, self.num_classes
        channels = b * 5 + c
        if y_pred.shape[-1] is not None and y_pred.shape[-1] != channels:
            raise ValueError(
                f"y_pred has shape {tuple(y_pred.shape)}; YOLOv1Loss(boxes_per_cell={b}, "
                f"num_classes={c}) expects (batch, {s}, {s}, {channels})."
            )
        y_pred = ops.cast(y_pred, "float32")
        t = _yolo_objects(y_true)
        col, row = _cell_index(t["cx"], s), _cell_index(t["cy"], s)
        assign = _yolo_assign(ops.cast(row * s + col, "int32"), t["valid"], s * s, "first")
        has_object = ops.sum(assign, axis=1)  # (batch, S * S)
        features = ops.concatenate(
            [
                ops.stack(
                    [t["cx"] * s - col, t["cy"] * s - row, ops.sqrt(t["w"]), ops.sqrt(t["h"])], axis=-1
                ),
                t["corners"],
                ops.one_hot(t["classes"], c),
            ],
            axis=-1,
        )  # (batch, M, 8 + C)
        target = ops.einsum("bmn,bmk->bnk", assign, features)  # (batch, S * S, 8 + C): per cell

        grid = ops.reshape(y_pred, (-1, s * s, channels))
        boxes = ops.reshape(grid[..., : b * 5], (-1, s * s, b, 5))  # (batch, S * S, B, 5)
        probs = grid[..., b * 5 :]  # (batch, S * S, C)
        corners = ops.reshape(
            yolov1_boxes(ops.reshape(ops.stop_gradient(boxes[..., :4]), (-1, s, s, b, 4))), (-1, s * s, b, 4)
        )
        iou = elementwise_iou(corners, target[:, :, None, 4:8])  # (batch, S * S, B)
        # Responsible predictor: highest IoU; with no overlap at all, smallest squared error
        # of (centre, size) in image fractions (Darknet's detection layer).
        centre_size = ops.concatenate(
            [(corners[..., :2] + corners[..., 2:]) / 2, corners[..., 2:] - corners[..., :2]], axis=-1
        )
        truth = target[:, :, None, 4:8]
        truth_centre_size = ops.concatenate(
            [(truth[..., :2] + truth[..., 2:]) / 2, truth[..., 2:] - truth[..., :2]], axis=-1
        )
        squared_error = ops.sum(ops.square(centre_size - truth_centre_size), axis=-1)
        best = ops.where(
            ops.max(iou, axis=-1) > 0, ops.argmax(iou, axis=-1), ops.argmin(squared_error, axis=-1)
        )
        responsible = ops.one_hot(best, b) * has_object[..., None]  # (batch, S * S, B)

        per_box = ops.sum(ops.square(boxes[..., :4] - target[:, :, None, :4]), axis=-1)
        coord = self.lambda_coord * ops.sum(responsible * per_box, axis=(1, 2))
        confidence = boxes[..., 4]
        confidence_target = ops.stop_gradient(iou) if self.rescore else 1.0
        obj = ops.sum(responsible * ops.square(confidence - confidence_target), axis=(1, 2))
        no_obj = self.lambda_noobj * ops.sum((1.0 - responsible) * ops.square(confidence), axis=(1, 2))
        class_error = ops.sum(ops.square(probs - target[..., 8:]), axis=-1)  # (batch, S * S)
        cls = ops.sum(has_object * class_error, axis=1)
        return {"coord": coord, "object": obj, "no_object": no_obj, "class": cls}

    def call(self, y_true, y_pred):
        terms = self.terms(y_true, y_pred)
        return terms["coord"] + terms["object"] + terms["no_object"] + terms["class"]

    def get_config(self):
        config = super().get_config()
        config.update(
            grid_size=self.grid_size,
            boxes_per_cell=self.boxes_per_cell,
            num_classes=self.num_classes,
            lambda_coord=self.lambda_coord,
            lambda_noobj=self.lambda_noobj,
            rescore=self.rescore,
            dtype=self._dtype_policy.name,
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class YOLOv2Loss(keras.losses.Loss):
    """YOLOv2's loss, as Darknet's region layer computes it (Redmon & Farhadi 2017).

    Assignment: each object goes to the cell of its centre on the prediction's ``H x W`` grid
    (read from ``y_pred``'s dynamic shape) and, in that cell, to the anchor whose shape (width
    and height, both centred) has the highest IoU with the object's (``bias_match=1``). When
    several objects land on one predictor, the last in ``y_true``'s row order takes it (Darknet
    overwrites earlier objects' targets); the others are not assigned. Per image, with ``1_a``
    the assigned predictors, ``sigma`` the logistic function and ``(tx, ty, tw, th, to)`` the
    raw outputs of a predictor with anchor ``(pw, ph)`` in cell ``(col, row)``:

    - coordinates: ``lambda_coord * sum 1_a (2 - w* h*) [(sigma(tx) - (x* W - col))^2 +
      (sigma(ty) - (y* H - row))^2 + (tw - log(w* / pw))^2 + (th - log(h* / ph))^2]``; the
      scale ``2 - w* h*`` (image fractions) weighs small boxes more;
    - objectness: ``lambda_obj * sum 1_a (sigma(to) - 1)^2`` (target: the predicted box's IoU
      with its object, not back-propagated, with ``rescore=True``, Darknet's ``rescore=1``),
      and ``lambda_noobj * sum (1 - 1_a) [best IoU < ignore_threshold] sigma(to)^2``: a
      predictor that is not assigned but whose box already overlaps some object by at least
      ``ignore_threshold`` (0.6, Darknet's ``thresh``) is not pushed towards 0;
    - classes: ``lambda_class * sum 1_a CE(softmax(class logits), class*)``, the softmax
      cross-entropy (Darknet's region layer with ``softmax=1`` back-propagates exactly its
      gradient).

    The per-image sum is averaged over the batch (Keras' reduction). Darknet's region layer
    back-propagates ``scale * (target - output)``, the gradient of ``scale / 2 * (target -
    output)^2``; here each term is ``scale * (target - output)^2`` (the usual form; it doubles
    the squared terms' gradients relative to the cross-entropy's). Darknet also pulls every
    predictor towards its anchor (``tx, ty -> 0.5``, ``tw, th -> 0`` with weight 0.01) during
    the first 12,800 images; that warm-up is not part of this loss.

    Args:
        anchors: ``A`` ``(width, height)`` pairs, fractions of the image (as the model's).
        num_classes: C.
        lambda_coord: ``coord_scale`` (1).
        lambda_obj: ``object_scale`` (5).
        lambda_noobj: ``noobject_scale`` (1).
        lambda_class: ``class_scale`` (1).
        ignore_threshold: best IoU with any object from which an unassigned predictor's
            objectness is left alone (0.6).
        rescore: objectness target IoU (True) or 1 (False).
        reduction: Keras reduction of the per-image losses.
        name: loss name.
        dtype: dtype of the loss computations.

    Call arguments:
        y_true: ``(batch, M, 5)`` padded targets, ``rel_xyxy`` and class id (-1 rows: padding).
        y_pred: ``(batch, H, W, A * (5 + C))`` raw predictions, any grid size.

    Example:
        >>> from kapps.models.detection import VOC_ANCHORS
        >>> model = kapps.build("yolov2", input_shape=(None, None, 3))
        >>> model.compile("adam", loss=YOLOv2Loss(VOC_ANCHORS, num_classes=20))

    Raises:
        ValueError: for bad arguments; at call time, a ``y_pred`` whose last axis is not
            ``A * (5 + C)``.
    """

    def __init__(
        self,
        anchors,
        num_classes=20,
        lambda_coord=1.0,
        lambda_obj=5.0,
        lambda_noobj=1.0,
        lambda_class=1.0,
        ignore_threshold=0.6,
        rescore=False,
        reduction="sum_over_batch_size",
        name="yolov2_loss",
        dtype=None,
    ):
        from kapps._checks import check_positive_int
        from kapps.layers.yolo import check_anchors

        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.anchors = check_anchors("anchors", anchors)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.lambda_coord = _check_weight("lambda_coord", lambda_coord)
        self.lambda_obj = _check_weight("lambda_obj", lambda_obj)
        self.lambda_noobj = _check_weight("lambda_noobj", lambda_noobj)
        self.lambda_class = _check_weight("lambda_class", lambda_class)
        if (
            isinstance(ignore_threshold, bool)
            or not isinstance(ignore_threshold, (int, float))
            or not 0 <= ignore_threshold <= 1
        ):
            raise ValueError(
                f"ignore_threshold={ignore_threshold!r} is not allowed; expected a number in [0, 1]."
            )
        self.ignore_threshold = float(ignore_threshold)
        if not isinstance(rescore, bool):
            raise ValueError(f"rescore={rescore!r} is not allowed; expected True or False.")
        self.rescore = rescore

    def terms(self, y_true, y_pred):
        """The loss's terms per image: a dict of ``(batch,)`` tensors ``"coord"``,
        ``"object"``, ``"no_object"`` and ``"class"`` (already weighted; ``call`` returns
        their sum)."""
        from kapps.boxes import elementwise_iou, pairwise_iou
        from kapps.layers.yolo import yolov2_boxes

        a, c = len(self.anchors), self.num_classes
        channels = a * (5 + c)
        if y_pred.shape[-1] is not None and y_pred.shape[-1] != channels:
            raise ValueError(
                f"y_pred has shape {tuple(y_pred.shape)}; YOLOv2Loss with {a} anchors and "
                f"num_classes={c} expects (batch, H, W, {channels})."
            )
        y_pred = ops.cast(y_pred, "float32")
        shape = ops.shape(y_pred)
        rows, cols = shape[1], shape[2]
        slots = rows * cols * a
        anchors = ops.convert_to_tensor(self.anchors, "float32")  # (A, 2)

        t = _yolo_objects(y_true)
        col, row = _cell_index(t["cx"], cols), _cell_index(t["cy"], rows)
        # IoU of the object's and each anchor's shapes, both centred: (batch, M, A)
        w, h = t["w"][..., None], t["h"][..., None]
        inter = ops.minimum(w, anchors[:, 0]) * ops.minimum(h, anchors[:, 1])
        shape_iou = inter / (w * h + anchors[:, 0] * anchors[:, 1] - inter)
        best_anchor = ops.argmax(shape_iou, axis=-1)  # (batch, M)
        slot = (ops.cast(row, "int32") * cols + ops.cast(col, "int32")) * a + ops.cast(best_anchor, "int32")
        assign = _yolo_assign(slot, t["valid"], slots, "last")  # (batch, M, H * W * A)
        assigned = ops.sum(assign, axis=1)  # (batch, H * W * A)
        prior = ops.take(anchors, best_anchor, axis=0)  # (batch, M, 2)
        features = ops.concatenate(
            [
                ops.stack(
                    [
                        t["cx"] * ops.cast(cols, "float32") - col,
                        t["cy"] * ops.cast(rows, "float32") - row,
                        ops.log(t["w"] / prior[..., 0]),
                        ops.log(t["h"] / prior[..., 1]),
                        2.0 - t["w"] * t["h"],
                    ],
                    axis=-1,
                ),
                t["corners"],
                ops.one_hot(t["classes"], c),
            ],
            axis=-1,
        )  # (batch, M, 9 + C)
        target = ops.einsum("bmn,bmk->bnk", assign, features)  # (batch, H * W * A, 9 + C)

        grid = ops.reshape(y_pred, (-1, rows, cols, a, 5 + c))
        raw = ops.stop_gradient(grid[..., :4])
        # exp(tw) of an untrained network may overflow; the clip only affects the IoUs.
        raw = ops.concatenate([raw[..., :2], ops.clip(raw[..., 2:], -20.0, 20.0)], axis=-1)
        corners = ops.reshape(yolov2_boxes(raw, self.anchors), (-1, slots, 4))
        flat = ops.reshape(grid, (-1, slots, 5 + c))  # (batch, H * W * A, 5 + C)

        best_iou = ops.max(pairwise_iou(corners, t["corners"]), axis=-1)  # (batch, slots)
        xy = ops.sigmoid(flat[..., :2])
        per_box = ops.sum(ops.square(xy - target[..., :2]), axis=-1) + ops.sum(
            ops.square(flat[..., 2:4] - target[..., 2:4]), axis=-1
        )
        coord = self.lambda_coord * ops.sum(assigned * target[..., 4] * per_box, axis=1)
        objectness = ops.sigmoid(flat[..., 4])
        if self.rescore:
            objectness_target = ops.stop_gradient(elementwise_iou(corners, target[..., 5:9]))
        else:
            objectness_target = 1.0
        obj = self.lambda_obj * ops.sum(assigned * ops.square(objectness - objectness_target), axis=1)
        free = (1.0 - assigned) * ops.cast(best_iou < self.ignore_threshold, "float32")
        no_obj = self.lambda_noobj * ops.sum(free * ops.square(objectness), axis=1)
        log_probs = ops.log_softmax(flat[..., 5:], axis=-1)
        cross_entropy = -ops.sum(target[..., 9:] * log_probs, axis=-1)
        cls = self.lambda_class * ops.sum(assigned * cross_entropy, axis=1)
        return {"coord": coord, "object": obj, "no_object": no_obj, "class": cls}

    def call(self, y_true, y_pred):
        terms = self.terms(y_true, y_pred)
        return terms["coord"] + terms["object"] + terms["no_object"] + terms["class"]

    def get_config(self):
        config = super().get_config()
        config.update(
            anchors=[list(pair) for pair in self.anchors],
            num_classes=self.num_classes,
            lambda_coord=self.lambda_coord,
            lambda_obj=self.lambda_obj,
            lambda_noobj=self.lambda_noobj,
            lambda_class=self.lambda_class,
            ignore_threshold=self.ignore_threshold,
            rescore=self.rescore,
            dtype=self._dtype_policy.name,
        )
        return config
