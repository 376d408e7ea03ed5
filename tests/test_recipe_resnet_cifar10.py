"""The ResNet CIFAR-10 recipe: its quick path on the local CIFAR-10 folder under
MirroredStrategy and clear errors for bad flags. (Resuming after an interruption is
``kapps.training.fit``'s, tested in tests/test_training.py and through the LeNet-5 recipe.)"""

import json
import subprocess
import sys

import keras
import pytest

import kapps
from recipes import resnet_cifar10

OUTPUTS = (
    "model.keras",
    "saved_model/saved_model.pb",
    "model.tflite",
    "model_int8.tflite",
    "metrics.json",
    "history.csv",
    "curves.png",
    "samples.png",
)


def test_quick_run_under_mirrored_strategy(data_dir, tmp_path, restore_global_state):
    out = tmp_path / "run"
    metrics = resnet_cifar10.main(
        ["--quick", "--strategy", "mirrored", "--batch-size", "32", "--epochs", "1",
         "--data", str(data_dir / "cifar10"), "--out", str(out)]
    )
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["model"] == "resnet20" and saved["replicas"] == 2 and saved["global_batch_size"] == 64
    quick = resnet_cifar10.QUICK
    assert saved["train_examples"] == quick["train"] and saved["test_examples"] == quick["test"]
    # 512 images in global batches of 64: 8 iterations, the rate drops after 4 and 6
    assert saved["iterations"] == 8 and saved["learning_rate_boundaries"] == [4, 6]
    reference = kapps.build("resnet20")
    assert (saved["params"], saved["trainable_params"]) == kapps.testing.count_params(reference)
    assert saved["weight_decayed_kernels"] == 20  # 19 convolutions and the classifier
    assert set(saved["test_accuracy"]) == {"keras", "tflite", "tflite_int8"}
    assert set(saved["test_accuracy_per_class"]) == set(kapps.data.CIFAR10_CLASSES)
    assert saved["tflite_max_abs_diff"]["tflite"] <= 1e-4
    assert saved["test_accuracy"]["tflite"] == pytest.approx(saved["test_accuracy"]["keras"], abs=1e-2)
    assert saved["paper_test_error_percent"] == 8.75
    model = keras.saving.load_model(out / "model.keras")
    assert model.name == "resnet20" and model.output_shape == (None, 10)


def run_cli(argv):
    return subprocess.run(
        [sys.executable, "-m", "recipes.resnet_cifar10", *argv],
        capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--data", "no/such/folder"], "--data='no/such/folder' has no train/ folder"),
        (["--model", "resnet21"], "invalid choice: 'resnet21'"),
        (["--epochs", "0"], "--epochs=0 is not allowed"),
        (["--momentum", "1"], "--momentum=1.0 is not allowed"),
        (["--weight-decay", "-1"], "--weight-decay=-1.0 is not allowed"),
    ],
)
def test_bad_flags_are_one_line_errors(argv, fragment, tmp_path):
    result = run_cli([*argv, "--out", str(tmp_path / "out")])
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and fragment in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
