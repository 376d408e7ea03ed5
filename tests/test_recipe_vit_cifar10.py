"""The ViT CIFAR-10 recipe: its quick path on the local CIFAR-10 folder (exports, the attention
rollout picture) and clear errors for bad flags."""

import json
import subprocess
import sys

import keras
import pytest

from recipes import vit_cifar10


def test_quick_run_writes_every_output(data_dir, tmp_path, restore_global_state):
    out = tmp_path / "run"
    metrics = vit_cifar10.main(
        ["--quick", "--epochs", "1", "--batch-size", "32", "--depth", "2",
         "--data", str(data_dir / "cifar10"), "--out", str(out)]
    )
    for name in ("model.keras", "saved_model/saved_model.pb", "model.tflite", "model_int8.tflite",
                 "metrics.json", "history.csv", "curves.png", "samples.png", "attention.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["config"] == {"patch_size": 4, "hidden_dim": 96, "depth": 2, "heads": 4, "mlp_dim": 192}
    assert saved["test_examples"] == vit_cifar10.QUICK["test"]
    assert saved["tflite_max_abs_diff"]["tflite"] <= 1e-4
    assert saved["test_accuracy"]["tflite"] == pytest.approx(saved["test_accuracy"]["keras"], abs=1e-2)
    model = keras.saving.load_model(out / "model.keras")
    assert model.output_shape == (None, 10) and model.count_params() == saved["params"]


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--patch-size", "5"], "--patch-size=5 is not allowed"),
        (["--hidden-dim", "90", "--heads", "4"], "--hidden-dim=90 is not allowed with --heads=4"),
        (["--label-smoothing", "1"], "--label-smoothing=1.0 is not allowed"),
        (["--data", "no/such/folder"], "--data='no/such/folder' has no train/ folder"),
    ],
)
def test_bad_flags_are_one_line_errors(argv, fragment, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "recipes.vit_cifar10", *argv, "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert fragment in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
