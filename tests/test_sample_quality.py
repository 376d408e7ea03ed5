"""kapps.metrics.frechet_distance and SampleQuality (the classifier-feature FID and confident
share the generative recipes report) against independent NumPy computations."""

import keras
import numpy as np
import pytest

from kapps.metrics import SampleQuality, frechet_distance


def _reference_distance(a, b):
    """The Frechet distance with the symmetric form tr((A^1/2 B A^1/2)^1/2), by eigh."""
    def sqrt_psd(m):
        values, vectors = np.linalg.eigh(m)
        return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = sqrt_psd(cov_a)
    cross = np.trace(sqrt_psd(root_a @ cov_b @ root_a))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def test_frechet_distance_matches_the_symmetric_form_and_its_properties():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5))
    b = rng.normal(size=(300, 5)) * [1, 2, 0.5, 1, 3] + [1, 0, 0, -2, 0]
    assert frechet_distance(a, b) == pytest.approx(_reference_distance(a, b), rel=1e-6)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # a shift by v adds |v|^2 and nothing else
    shift = np.array([3.0, 0, 0, 4.0, 0])
    assert frechet_distance(a, a + shift) == pytest.approx(25.0, rel=1e-6)


@pytest.mark.parametrize(
    "a, b, match",
    [
        (np.zeros((5,)), np.zeros((5, 2)), "features_a"),
        (np.zeros((1, 2)), np.zeros((5, 2)), "at least two"),
        (np.zeros((5, 2)), np.zeros((5, 3)), "features_b has 3"),
    ],
)
def test_frechet_distance_rejects_bad_shapes(a, b, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(a, b)


def _classifier():
    inputs = keras.Input((6, 6, 1), name="image")
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(4, activation="tanh", name="features")(x)
    x = keras.layers.Dense(3, name="output")(x)
    return keras.Model(inputs, keras.layers.Softmax(name="probabilities")(x))


def test_sample_quality_scores_features_and_confidence_as_numpy_does():
    rng = np.random.default_rng(1)
    classifier = _classifier()
    real = rng.random((64, 6, 6, 1), dtype="float32")
    fake = np.clip(real[:48] + rng.normal(0, 0.3, size=(48, 6, 6, 1)), 0, 1).astype("float32")
    quality = SampleQuality(classifier, real, confidence=0.4)
    score = quality(fake)

    features = keras.Model(classifier.inputs, classifier.get_layer("features").output)
    expected_fid = frechet_distance(np.asarray(features(fake)), np.asarray(features(real)))
    probabilities = np.asarray(classifier(fake))
    assert score["fid"] == pytest.approx(expected_fid, rel=1e-5)
    assert score["confident_share"] == pytest.approx(np.mean(probabilities.max(1) > 0.4))
    assert score["class_counts"] == np.bincount(probabilities.argmax(1), minlength=3).tolist()
    assert score["examples"] == 48
    assert quality(real)["fid"] == pytest.approx(0.0, abs=1e-6)
    # a named feature layer gives the same features as the default (the input of "output")
    assert SampleQuality(classifier, real, feature_layer="features")(fake)["fid"] == pytest.approx(score["fid"])


def test_sample_quality_rejects_bad_arguments():
    classifier = _classifier()
    real = np.zeros((4, 6, 6, 1), dtype="float32")
    with pytest.raises(ValueError, match="feature_layer='f7'"):
        SampleQuality(classifier, real, feature_layer="f7")
    with pytest.raises(ValueError, match="confidence=1.5"):
        SampleQuality(classifier, real, confidence=1.5)
    quality = SampleQuality(classifier, real)
    with pytest.raises(ValueError, match=r"images of shape \(4, 5, 6, 1\)"):
        quality(np.zeros((4, 5, 6, 1)))
    unnamed = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="no layer named 'output'"):
        SampleQuality(unnamed, real)
