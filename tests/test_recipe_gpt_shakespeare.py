"""The character GPT recipe: its quick path on the real tiny Shakespeare text (training,
evaluation, samples, exports, the TFLite generator against Keras greedy generation,
--generate) and clear errors for bad flags."""

import json
import subprocess
import sys

import keras
import pytest

from recipes import gpt_shakespeare


def test_quick_run_writes_every_output_and_generates(tfds_dir, tmp_path, restore_global_state):
    out = tmp_path / "run"
    metrics = gpt_shakespeare.main(["--quick", "--data-dir", str(tfds_dir), "--out", str(out)])
    for name in ("model.keras", "saved_model/saved_model.pb", "model.tflite", "generator.tflite",
                 "metrics.json", "history.csv", "curves.png", "samples.txt"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics, default=str))
    assert saved["characters"] == {"train": 20_000, "validation": 2_000, "test": 2_000}
    generator = saved["tflite_generator"]
    assert generator["checked"] == 5 and generator["identical_to_keras_greedy"] == 5
    # an untrained model is near uniform over 128 code points: ln 128 = 4.85 nats
    assert 0 < saved["validation"]["loss_nats_per_char"] < 5.5
    assert saved["exports"]["tflite"]["max_abs_diff"] <= 1e-4
    samples = (out / "samples.txt").read_text()
    assert samples.count("--- prompt") == 5 and "ROMEO:" in samples
    model = keras.saving.load_model(out / "model.keras")
    assert model.count_params() == saved["params"]
    text = gpt_shakespeare.main(["--generate", "ROMEO:", "--length", "40", "--out", str(out)])["text"]
    assert text.startswith("ROMEO:") and len(text) == 46


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--epochs", "0"], "--epochs=0 is not allowed"),
        (["--hidden-dim", "30", "--heads", "4"], "--hidden-dim=30 is not divisible by --heads=4"),
        (["--dropout", "1"], "--dropout=1.0 is not allowed"),
        (["--temperature", "0"], "--temperature=0.0 is not allowed"),
    ],
)
def test_bad_flags_are_one_line_errors(argv, fragment, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "recipes.gpt_shakespeare", *argv, "--out", str(tmp_path / "out")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert fragment in result.stderr and "Traceback" not in result.stderr


def test_generate_without_a_trained_model_is_a_clear_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "recipes.gpt_shakespeare", "--generate", "A", "--out", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert result.returncode == 2 and "no model.keras in --out" in result.stderr
