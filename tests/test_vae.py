"""VAE: argument errors, the KL and reconstruction terms against NumPy, the
reparameterisation's statistics, the loss falling on a fixed batch, encode/decode, the saved
composite and the sampler's TFLite parity. The tiny model's full contract (gradients, TFLite of
the forward pass, a MirroredStrategy step) runs in tests/test_contract.py."""

import keras
import numpy as np
import pytest

from kapps import export, registry
from kapps.models.generative.vae import (
    VAE,
    GaussianSample,
    bernoulli_nll,
    kl_divergence,
    vae,
    vae_decoder,
    vae_encoder,
)

TINY = registry.tiny_overrides("vae")  # 8x8x1, latent 2


def _images(batch=8, seed=0):
    return np.random.default_rng(seed).random((batch, 8, 8, 1), dtype="float32")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            {"image_shape": (12, 12, 1), "filters": (4, 8, 8)},
            r"image_shape=\(12, 12, 1\).*divisible by 2\*\*3 = 8",
        ),
        ({"latent_dim": 0}, "latent_dim=0"),
        ({"hidden_dim": 2.5}, "hidden_dim=2.5"),
        ({"filters": []}, r"filters=\[\]"),
        ({"beta": -1.0}, "beta=-1.0"),
        ({"seed": "1"}, "seed='1'"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        vae(**{**TINY, **kwargs})


def test_mismatched_networks_and_compile_arguments_are_refused():
    encoder = vae_encoder(image_shape=(8, 8, 1), latent_dim=2, filters=(4,), hidden_dim=4)
    with pytest.raises(ValueError, match="latent codes of size 3 but the encoder makes 2"):
        VAE(encoder, vae_decoder(image_shape=(8, 8, 1), latent_dim=3, filters=(4,), hidden_dim=4))
    with pytest.raises(ValueError, match=r"makes images of shape \(16, 16, 1\)"):
        VAE(encoder, vae_decoder(image_shape=(16, 16, 1), latent_dim=2, filters=(4,), hidden_dim=4))
    decoder = vae_decoder(image_shape=(8, 8, 1), latent_dim=2, filters=(4,), hidden_dim=4)
    model = VAE(encoder, decoder)
    with pytest.raises(ValueError, match="metrics=.* is not allowed"):
        model.compile(metrics=["mae"])


def test_kl_and_reconstruction_terms_match_numpy():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(5, 3)).astype("float32")
    log_variance = rng.normal(size=(5, 3)).astype("float32")
    # KL(N(m, s^2) || N(0, 1)) = log(1 / s) + (s^2 + m^2) / 2 - 1/2 per dimension
    std = np.exp(0.5 * log_variance)
    expected = (np.log(1.0 / std) + (std**2 + mean**2) / 2 - 0.5).sum(axis=1)
    np.testing.assert_allclose(np.asarray(kl_divergence(mean, log_variance)), expected, rtol=1e-5)
    images = rng.random((2, 4, 4, 1), dtype="float32")
    logits = rng.normal(size=(2, 4, 4, 1)).astype("float32")
    p = 1 / (1 + np.exp(-logits.astype("float64")))
    nll = -(images * np.log(p) + (1 - images) * np.log(1 - p)).reshape(2, -1).sum(axis=1)
    np.testing.assert_allclose(np.asarray(bernoulli_nll(images, logits)), nll, rtol=1e-5)


def test_reparameterisation_statistics_and_inference_mean():
    layer = GaussianSample(seed=3)
    mean = np.tile(np.array([[1.0, -2.0]], "float32"), (20000, 1))
    log_variance = np.tile(np.array([[0.0, np.log(0.25)]], "float32"), (20000, 1))
    np.testing.assert_array_equal(np.asarray(layer(mean, log_variance, training=False)), mean)
    z = np.asarray(layer(mean, log_variance, training=True))
    np.testing.assert_allclose(z.mean(axis=0), [1.0, -2.0], atol=0.03)
    np.testing.assert_allclose(z.std(axis=0), [1.0, 0.5], rtol=0.03)
    assert not np.array_equal(z, np.asarray(layer(mean, log_variance, training=True)))


def test_metrics_are_consistent_with_the_encoder_and_beta():
    model = vae(**TINY, beta=2.0, seed=1)
    model.compile()
    images = _images()
    got = model.evaluate(images, np.zeros(8, "int32"), batch_size=8, verbose=0, return_dict=True)
    mean, log_variance = model.encode(images)
    kl = np.asarray(kl_divergence(mean, log_variance)).mean()
    # float32 sums in a different order: the KL of a fresh tiny model is about 3e-4, so a
    # relative tolerance alone is below float32 round-off
    np.testing.assert_allclose(got["kl"], kl, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got["loss"], got["reconstruction"] + 2.0 * got["kl"], rtol=1e-5)
    np.testing.assert_allclose(got["elbo"], -(got["reconstruction"] + got["kl"]), rtol=1e-5)


def _halves(batch=8):
    """Binary 8x8 images, the top four rows lit (even indices) or the top two (odd): most
    pixels are predictable, so the loss can fall fast from 64 ln 2 nats per image."""
    images = np.zeros((batch, 8, 8, 1), "float32")
    images[0::2, :4] = 1.0
    images[1::2, :2] = 1.0
    return images


@pytest.fixture(scope="module")
def trained():
    """A tiny VAE after 20 Adagrad steps on one fixed batch of 8 images, with each step's
    metrics."""
    model = vae(**TINY, seed=0)
    # Adagrad: fast to converge here and to trace (Adam's step takes seconds to trace)
    model.compile(keras.optimizers.Adagrad(0.1))
    images, labels = _halves(), np.zeros(8, "int32")
    history = []
    for _ in range(20):
        model.reset_metrics()  # each step's own values, not a running mean
        history.append(model.train_on_batch(images, labels, return_dict=True))
    return model, {key: [step[key] for step in history] for key in history[0]}


def test_loss_decreases_on_a_fixed_batch(trained):
    history = trained[1]
    assert set(history) == {"loss", "reconstruction", "kl", "elbo"}
    assert all(np.all(np.isfinite(v)) for v in history.values())
    # from about 64 ln 2 = 44 nats per image (p = 1/2 everywhere) to well below
    assert history["loss"][-1] < 0.75 * history["loss"][0]
    assert history["elbo"][-1] > history["elbo"][0]


def test_encode_decode_and_forward_agree(trained):
    model = trained[0]
    images = _images(seed=1)
    mean, log_variance = model.encode(images, batch_size=3)
    assert mean.shape == log_variance.shape == (8, 2)
    decoded = model.decode(mean, batch_size=3)
    outputs = model(images, training=False)
    np.testing.assert_allclose(decoded, np.asarray(outputs["reconstruction"]), atol=1e-6)
    np.testing.assert_allclose(mean, np.asarray(outputs["mean"]), atol=1e-6)
    assert decoded.min() >= 0.0 and decoded.max() <= 1.0


def test_trained_model_round_trips_through_keras_file(trained, tmp_path):
    model = trained[0]
    path = tmp_path / "vae.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, VAE) and loaded.beta == 1.0
    assert type(loaded.optimizer) is keras.optimizers.Adagrad
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.array(a), np.array(b))  # iterations and slots
    for ours, theirs in ((model.encoder, loaded.encoder), (model.decoder, loaded.decoder)):
        for a, b in zip(ours.weights, theirs.weights):
            np.testing.assert_array_equal(np.array(a), np.array(b))
    noise = model.noise(4, seed=2)
    np.testing.assert_array_equal(
        np.asarray(model.sampler()(noise)), np.asarray(loaded.sampler()(noise))
    )


def test_sampler_range_and_tflite_matches_keras(trained):
    model = trained[0]
    sampler = model.sampler()
    assert [t.name for t in sampler.inputs] == ["noise"]
    noise = model.noise(6, seed=5)
    images = model.sample(6, seed=5)
    assert images.shape == (6, 8, 8, 1) and images.min() >= 0.0 and images.max() <= 1.0
    np.testing.assert_allclose(images, model.decode(noise), atol=1e-6)
    assert export.tflite_parity(sampler, export.to_tflite(sampler), noise) <= 1e-4
