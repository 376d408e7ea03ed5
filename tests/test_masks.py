"""ArgmaxMask and mask_model: a class map inside the graph, equal in Keras and TFLite."""

import keras
import numpy as np
import pytest

from kapps import export
from kapps.layers.masks import ArgmaxMask
from kapps.models.segmentation.common import mask_model


def _scores_model(classes, activation):
    inputs = keras.Input((12, 10, 3))
    outputs = keras.layers.Conv2D(classes, 3, padding="same", activation=activation)(inputs)
    return keras.Model(inputs, outputs)


def test_argmax_mask_matches_numpy():
    scores = np.random.default_rng(0).random((2, 5, 7, 4)).astype("float32")
    mask = keras.ops.convert_to_numpy(ArgmaxMask()(scores))
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, scores.argmax(-1))


def test_argmax_mask_one_channel_thresholds():
    scores = np.array([[[[0.2], [0.7]], [[0.5], [0.51]]]], dtype="float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ArgmaxMask()(scores)), [[[0, 1], [0, 1]]])
    logits = np.array([[[[-1.0], [0.3]]]], dtype="float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ArgmaxMask(threshold=0.0)(logits)), [[[0, 1]]])


@pytest.mark.parametrize("threshold", [float("nan"), "0.5", True])
def test_argmax_mask_rejects_bad_threshold(threshold):
    with pytest.raises(ValueError, match="threshold="):
        ArgmaxMask(threshold=threshold)


def test_argmax_mask_rejects_too_many_classes():
    with pytest.raises(ValueError, match="257 classes"):
        ArgmaxMask()(keras.Input((4, 4, 257)))


@pytest.mark.parametrize("classes,activation", [(5, "softmax"), (1, "sigmoid")])
def test_mask_model_tflite_equals_keras(classes, activation):
    model = mask_model(_scores_model(classes, activation))
    assert model.output.dtype == "uint8" and tuple(model.output.shape) == (None, 12, 10)
    images = np.random.default_rng(1).random((3, 12, 10, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(images))
    got = np.asarray(export.load_tflite(export.to_tflite(model))(images))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


def test_mask_model_round_trips(tmp_path):
    model = mask_model(_scores_model(3, "softmax"), name="masks")
    path = str(tmp_path / "masks.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    images = np.random.default_rng(2).random((1, 12, 10, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(images)), keras.ops.convert_to_numpy(model(images)))
    assert loaded.get_layer("mask").get_config()["threshold"] == 0.5


def test_mask_model_rejects_other_outputs():
    inputs = keras.Input((8,))
    with pytest.raises(ValueError, match=r"expected one output \(batch, height, width, classes\)"):
        mask_model(keras.Model(inputs, keras.layers.Dense(3)(inputs)))
