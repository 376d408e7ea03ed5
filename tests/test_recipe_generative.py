"""The four MNIST generative recipes (DCGAN, VAE, RealNVP, DDPM): each quick path on real MNIST
digits trains, draws a grid per epoch, scores samples with a LeNet-5 (MNIST-FID and confident
share), exports a builtin-only TFLite generator checked on fixed noise; bad flags are one-line
errors before TensorFlow starts."""

import json
import math
import subprocess
import sys

import keras
import numpy as np
import pytest

import kapps
from kapps import export

COMMON_OUTPUTS = ("model.keras", "saved_model/saved_model.pb", "model.tflite", "metrics.json",
                  "history.csv", "curves.png", "samples.png", "samples/epoch_001.png")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """An untrained LeNet-5 saved as the recipes' --classifier: the scores are not meaningful,
    but every step of the scoring runs (the real one is the lenet5_mnist recipe's model)."""
    path = tmp_path_factory.mktemp("lenet") / "model.keras"
    kapps.build("lenet5", input_shape=(28, 28, 1)).save(path)
    return path


def _run(recipe, tfds_dir, out, classifier, *flags):
    module = __import__(f"recipes.{recipe}", fromlist=["main"])
    return module.main(["--quick", "--epochs", "1", "--tfds-data-dir", str(tfds_dir), "--no-download",
                        "--out", str(out), "--classifier", str(classifier), *flags])


@pytest.mark.parametrize(
    "recipe, flags, extra_outputs",
    [
        ("dcgan_mnist", ["--conditional", "--strategy", "mirrored"], ()),
        ("vae_mnist", ["--latent-dim", "2"], ("latent_map.png", "interpolation.png")),
        ("realnvp_mnist", [], ()),
        ("ddpm_mnist", ["--steps-sweep", "1,2", "--no-ancestral"], ("steps_sweep.png",)),
    ],
)
def test_quick_run_writes_every_output(recipe, flags, extra_outputs, tfds_dir, tmp_path, classifier,
                                       restore_global_state):
    out = tmp_path / "run"
    metrics = _run(recipe, tfds_dir, out, classifier, *flags)
    for name in (*COMMON_OUTPUTS, *extra_outputs):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics, default=str))
    quality = saved["quality"]
    assert quality["samples"] == 128 and sum(quality["class_counts"]) == 128
    assert math.isfinite(quality["mnist_fid"]) and quality["mnist_fid"] >= 0
    assert 0 <= quality["confident_share"] <= 1 and quality["real_data_fid"] >= 0
    assert saved["tflite_max_abs_diff"] <= 1e-4

    # the phone's generator: the TFLite file maps the same noise to the same digits as the
    # reloaded model's sampler
    model = keras.saving.load_model(out / "model.keras")
    assert model.count_params() == saved["params"]
    sampler = model.sampler(**saved["sampler_options"])
    noise = model.noise(3, seed=5)
    inputs = [noise, np.array([1, 4, 7], dtype="int32")] if model.num_classes else noise
    assert export.tflite_parity(sampler, str(out / "model.tflite"), inputs) <= 1e-4
    images = np.asarray(sampler(inputs))
    assert images.shape == (3, 28, 28, 1) and images.min() >= 0 and images.max() <= 1

    if recipe == "dcgan_mnist":
        assert saved["replicas"] == 2 and saved["conditional"] and model.num_classes == 10
    if recipe == "vae_mnist":
        assert saved["test_negative_elbo_nats"] > 0 and saved["latent_dim"] == 2
    if recipe == "realnvp_mnist":
        assert 0 < saved["test_bits_per_dim"] < 16
    if recipe == "ddpm_mnist":
        assert [row["steps"] for row in saved["steps_sweep"]] == [1, 2]
        assert all(math.isfinite(row["mnist_fid"]) for row in saved["steps_sweep"])


@pytest.mark.parametrize(
    "recipe, argv, fragment",
    [
        ("dcgan_mnist", ["--classifier", "missing.keras"], "--classifier=missing.keras does not exist"),
        ("dcgan_mnist", ["--latent-dim", "0"], "--latent-dim=0 is not allowed"),
        ("vae_mnist", ["--beta", "0", "--no-quality"], "--beta=0.0 is not allowed"),
        ("realnvp_mnist", ["--fid-samples", "1", "--no-quality"], "--fid-samples=1 is not allowed"),
        ("realnvp_mnist", ["--learning-rate", "-1", "--no-quality"], "--learning-rate=-1.0 is not allowed"),
        ("ddpm_mnist", ["--steps-sweep", "10,0", "--no-quality"], "expected comma-separated step counts"),
        ("ddpm_mnist", ["--export-steps", "2000", "--no-quality"], "--export-steps=2000 is not allowed"),
    ],
)
def test_bad_flags_are_one_line_errors(recipe, argv, fragment, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", f"recipes.{recipe}", *argv, "--out", str(tmp_path / "out")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert fragment in result.stderr and "Traceback" not in result.stderr
