"""The FCN-8s CamVid recipe: its quick path on real CamVid images (void ignored, exports with
the mask model, pictures), the class balancing, and clear errors for bad flags."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from recipes import fcn8s_camvid


def test_quick_run_writes_every_output(data_dir, tmp_path, restore_global_state):
    out = tmp_path / "run"
    metrics = fcn8s_camvid.main(
        ["--quick", "--data", str(data_dir / "camvid"), "--out", str(out), "--tflite-mask",
         "--batch-size", "2"]
    )
    for name in ("model.keras", "saved_model/saved_model.pb", "model.tflite", "model_int8.tflite",
                 "model_mask.tflite", "metrics.json", "history.csv", "curves.png", "samples.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["eval_images"] == fcn8s_camvid.QUICK["test"]
    assert saved["tflite_max_abs_diff"]["tflite"] <= 1e-4
    assert saved["tflite_mask_agreement"] >= 0.999  # argmax ties aside, the same masks
    assert saved["mean_iou"]["tflite"] == pytest.approx(saved["mean_iou"]["keras"], abs=1e-3)
    assert len(saved["class_weights"]) == 11
    model = keras.saving.load_model(out / "model.keras")
    assert model.output_shape == (None, 180, 240, 11) and model.count_params() == saved["params"]


def test_median_frequency_weights():
    # class 0 everywhere in image 0 and half of image 1; class 1 the other half; 2 (void) ignored
    masks = np.zeros((2, 2, 4), "int32")
    masks[1, :, 2:] = 1
    masks[1, 0, 3] = 2
    weights = fcn8s_camvid.median_frequency_weights(masks, 2, ignore_class=2)
    freq = np.array([12 / 15, 3 / 7])  # pixels of the class over labelled pixels of its images
    np.testing.assert_allclose(weights, np.median(freq) / freq)
    assert weights[1] > weights[0]  # the rarer class weighs more


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--data", "no/such/folder"], "--data='no/such/folder' has no train/images/ folder"),
        (["--filters", "8", "8", "8", "8", "0"], "--filters=8 8 8 8 0 is not allowed"),
        (["--backbone-weights", "imagenet", "--filters", "8", "8", "8", "8", "8"], "--backbone-weights needs VGG16's widths"),
        (["--backbone-weights", "no/such/file.h5"], "neither 'imagenet' nor an existing file"),
    ],
)
def test_bad_flags_are_one_line_errors(argv, fragment, tmp_path, data_dir):
    if "--data" not in argv:
        argv = [*argv, "--data", str(data_dir / "camvid")]
    result = subprocess.run(
        [sys.executable, "-m", "recipes.fcn8s_camvid", *argv, "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert fragment in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
