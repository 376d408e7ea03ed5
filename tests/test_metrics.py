"""kapps.metrics against NumPy on small hand-made arrays, against Keras' IoU metrics, and under
MirroredStrategy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kapps import metrics

# Two 3x4 label maps over classes 0..2 plus void = 3, and scores for 4 channels (class 3 can
# be predicted, as a model trained with a void channel would).
Y_TRUE = np.array(
    [
        [[0, 0, 1, 1], [0, 2, 2, 1], [3, 3, 2, 0]],
        [[1, 1, 1, 0], [2, 2, 3, 0], [0, 1, 2, 2]],
    ]
)
Y_CLASS = np.array(
    [
        [[0, 1, 1, 1], [0, 2, 0, 1], [3, 0, 2, 3]],
        [[1, 2, 1, 0], [2, 2, 3, 0], [0, 1, 1, 2]],
    ]
)


def _scores(classes, num_classes=4, seed=0):
    """Random softmax scores whose argmax is `classes`."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(*classes.shape, num_classes)).astype(np.float32)
    logits += 5.0 * np.eye(num_classes, dtype=np.float32)[classes]
    return tf.nn.softmax(logits).numpy()


Y_PRED = _scores(Y_CLASS)


def _np_iou(y_true, y_class, classes, ignore=None, weights=None):
    weights = np.ones(y_true.shape) if weights is None else np.broadcast_to(weights, y_true.shape)
    valid = np.ones(y_true.shape, bool) if ignore is None else y_true != ignore
    ious = []
    for c in classes:
        t, p = (y_true == c) & valid, (y_class == c) & valid
        union = weights[t | p].sum()
        ious.append(weights[t & p].sum() / union if union else np.nan)
    return np.array(ious)


def _np_dice(y_true, y_class, classes, ignore=None):
    valid = np.ones(y_true.shape, bool) if ignore is None else y_true != ignore
    out = []
    for c in classes:
        t, p = (y_true == c) & valid, (y_class == c) & valid
        out.append(2 * (t & p).sum() / (t.sum() + p.sum()) if t.sum() + p.sum() else np.nan)
    return np.array(out)


# ----------------------------------------------------------------------- PixelAccuracy


def test_pixel_accuracy_against_numpy():
    m = metrics.PixelAccuracy()
    m.update_state(Y_TRUE, Y_PRED)
    assert float(m.result()) == pytest.approx((Y_TRUE == Y_CLASS).mean())

    void = metrics.PixelAccuracy(ignore_class=3)
    void.update_state(Y_TRUE, Y_PRED)
    valid = Y_TRUE != 3
    assert float(void.result()) == pytest.approx((Y_TRUE == Y_CLASS)[valid].mean())

    weights = np.arange(Y_TRUE.size, dtype=np.float32).reshape(Y_TRUE.shape) / Y_TRUE.size
    weighted = metrics.PixelAccuracy(ignore_class=3)
    weighted.update_state(Y_TRUE[..., None], Y_PRED, sample_weight=weights)  # (b, h, w, 1) labels
    expected = (weights * (Y_TRUE == Y_CLASS) * valid).sum() / (weights * valid).sum()
    assert float(weighted.result()) == pytest.approx(expected)

    per_image = metrics.PixelAccuracy(sparse_y_pred=True)
    per_image.update_state(Y_TRUE, Y_CLASS, sample_weight=[1.0, 0.0])  # second image ignored
    assert float(per_image.result()) == pytest.approx((Y_TRUE[0] == Y_CLASS[0]).mean())


def test_pixel_accuracy_sigmoid_accumulates_and_resets():
    labels = np.array([[0, 1, 1, 0, 1]])
    scores = np.array([[0.1, 0.9, 0.4, 0.7, 0.6]], np.float32)[..., None]
    m = metrics.PixelAccuracy()
    m.update_state(labels, scores)  # predicted 0 1 0 1 1: 3 of 5
    m.update_state(labels, 1 - scores)  # predicted 1 0 1 0 0: 2 of 5
    assert float(m.result()) == pytest.approx(5 / 10)
    m.reset_state()
    assert float(m.result()) == 0.0
    high = metrics.PixelAccuracy(threshold=0.65)
    high.update_state(labels, scores)  # predicted 0 1 0 1 0: 2 of 5
    assert float(high.result()) == pytest.approx(2 / 5)


# ------------------------------------------------------------------------- IoU and Dice


def test_segmentation_iou_against_numpy_and_keras():
    m = metrics.SegmentationIoU(4, ignore_class=3)
    m.update_state(Y_TRUE, Y_PRED)
    expected = _np_iou(Y_TRUE, Y_CLASS, range(4), ignore=3)[:3]
    np.testing.assert_allclose(m.per_class_iou().numpy()[:3], expected, rtol=1e-6)
    assert np.isnan(m.per_class_iou().numpy()[3])
    assert float(m.result()) == pytest.approx(expected.mean())

    # Keras' IoU over the real classes agrees ...
    keras_iou = keras.metrics.IoU(4, target_class_ids=[0, 1, 2], ignore_class=3, sparse_y_pred=False)
    keras_iou.update_state(Y_TRUE, Y_PRED)
    assert float(keras_iou.result()) == pytest.approx(float(m.result()), rel=1e-6)
    # ... while Keras' MeanIoU counts the ignored class itself (IoU 0 here, as class 3 is
    # predicted on labelled pixels): the catch the module docstring warns about.
    keras_mean = keras.metrics.MeanIoU(4, ignore_class=3, sparse_y_pred=False)
    keras_mean.update_state(Y_TRUE, Y_PRED)
    assert float(keras_mean.result()) == pytest.approx(expected.sum() / 4, rel=1e-6)

    # Without an ignored class, MeanIoU and SegmentationIoU are the same number.
    plain = metrics.SegmentationIoU(4)
    plain.update_state(Y_TRUE, Y_PRED)
    keras_plain = keras.metrics.MeanIoU(4, sparse_y_pred=False)
    keras_plain.update_state(Y_TRUE, Y_PRED)
    assert float(plain.result()) == pytest.approx(float(keras_plain.result()), rel=1e-6)
    assert float(plain.result()) == pytest.approx(np.nanmean(_np_iou(Y_TRUE, Y_CLASS, range(4))))


def test_segmentation_iou_ignore_class_outside_the_outputs_and_weights():
    # A model with 3 outputs and void = 3 in the labels (CamVid: 11 outputs, void 11).
    labels3 = np.where(Y_CLASS == 3, 0, Y_CLASS)
    scores3 = _scores(labels3, num_classes=3, seed=1)
    m = metrics.SegmentationIoU(3, ignore_class=3)
    m.update_state(Y_TRUE, scores3)
    expected = _np_iou(Y_TRUE, labels3, range(3), ignore=3)
    assert float(m.result()) == pytest.approx(expected.mean())
    keras_mean = keras.metrics.MeanIoU(3, ignore_class=3, sparse_y_pred=False)
    keras_mean.update_state(Y_TRUE, scores3)
    assert float(keras_mean.result()) == pytest.approx(expected.mean(), rel=1e-6)

    weights = np.linspace(0.1, 1.0, Y_TRUE.size).reshape(Y_TRUE.shape)
    weighted = metrics.SegmentationIoU(3, ignore_class=3)
    weighted.update_state(Y_TRUE, scores3, sample_weight=weights)
    expected = _np_iou(Y_TRUE, labels3, range(3), ignore=3, weights=weights)
    np.testing.assert_allclose(weighted.per_class_iou().numpy(), expected, rtol=1e-5)


def test_iou_accumulates_over_batches_and_classes_absent_are_left_out():
    split = metrics.SegmentationIoU(5, sparse_y_pred=True)
    for i in range(2):
        split.update_state(Y_TRUE[i : i + 1], Y_CLASS[i : i + 1])
    ious = split.per_class_iou().numpy()
    assert np.isnan(ious[4])  # class 4 never occurs: not part of the mean
    np.testing.assert_allclose(ious[:4], _np_iou(Y_TRUE, Y_CLASS, range(4)), rtol=1e-6)
    assert float(split.result()) == pytest.approx(np.nanmean(ious))
    np.testing.assert_array_equal(
        split.confusion_matrix().numpy(),
        np.histogram2d(Y_TRUE.ravel(), Y_CLASS.ravel(), bins=5, range=[[0, 5], [0, 5]])[0],
    )
    split.reset_state()
    assert float(np.sum(split.confusion_matrix().numpy())) == 0.0


def test_dice_coefficient_against_numpy():
    m = metrics.DiceCoefficient(4, ignore_class=3)
    m.update_state(Y_TRUE, Y_PRED)
    expected = _np_dice(Y_TRUE, Y_CLASS, range(3), ignore=3)
    np.testing.assert_allclose(m.per_class_dice().numpy()[:3], expected, rtol=1e-6)
    assert float(m.result()) == pytest.approx(expected.mean())

    binary = metrics.DiceCoefficient(2, class_id=1)
    binary.update_state([[0, 1, 1]], np.array([[[0.2], [0.9], [0.3]]], np.float32))
    assert float(binary.result()) == pytest.approx(2 / 3)


def test_per_class_helpers_on_a_confusion_matrix():
    confusion = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    np.testing.assert_allclose(metrics.per_class_iou(confusion).numpy()[:2], [3 / 4, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(metrics.per_class_dice(confusion).numpy()[:2], [6 / 7, 4 / 5], rtol=1e-6)
    assert np.isnan(metrics.per_class_iou(confusion).numpy()[2])
    assert np.isnan(metrics.per_class_iou(confusion, ignore_class=1).numpy()[1])


def test_metric_configs_round_trip():
    for metric in (
        metrics.PixelAccuracy(ignore_class=255, threshold=0.3, name="acc"),
        metrics.SegmentationIoU(12, ignore_class=11, sparse_y_pred=True),
        metrics.DiceCoefficient(2, class_id=1, threshold=0.4),
    ):
        config = metric.get_config()
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
        assert type(restored) is type(metric) and restored.get_config() == config
    assert metrics.DiceCoefficient(2, class_id=1).get_config()["class_id"] == 1


def test_metric_argument_errors():
    with pytest.raises(ValueError, match="num_classes=1"):
        metrics.SegmentationIoU(1)
    with pytest.raises(ValueError, match="ignore_class='void'"):
        metrics.PixelAccuracy(ignore_class="void")
    with pytest.raises(ValueError, match="class_id=2"):
        metrics.DiceCoefficient(2, class_id=2)
    with pytest.raises(ValueError, match="threshold=None"):
        metrics.PixelAccuracy(threshold=None)


def test_metrics_merge_across_replicas(cpu_strategy):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(8, 6, 6, 2)).astype(np.float32)
    labels = rng.integers(0, 4, size=(8, 6, 6))
    with cpu_strategy.scope():
        inputs = keras.Input((6, 6, 2))
        model = keras.Model(inputs, keras.layers.Conv2D(4, 1, activation="softmax")(inputs))
        model.compile(
            loss="sparse_categorical_crossentropy",
            metrics=[
                metrics.PixelAccuracy(ignore_class=3),
                metrics.SegmentationIoU(4, ignore_class=3),
                metrics.DiceCoefficient(4, ignore_class=3),
            ],
        )
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)  # 2 replicas x 2
    results = model.evaluate(dataset, return_dict=True, verbose=0)
    predicted = model.predict(images, verbose=0).argmax(-1)
    valid = labels != 3
    assert results["pixel_accuracy"] == pytest.approx((predicted == labels)[valid].mean(), rel=1e-5)
    expected_iou = np.nanmean(_np_iou(labels, predicted, range(3), ignore=3))
    assert results["mean_iou"] == pytest.approx(expected_iou, rel=1e-5)
    expected_dice = np.nanmean(_np_dice(labels, predicted, range(3), ignore=3))
    assert results["dice"] == pytest.approx(expected_dice, rel=1e-5)
