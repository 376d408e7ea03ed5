"""The YOLOv2 BCCD recipe: its quick path on real BCCD images (k-means anchors, multi-scale
training, mAP of the Keras and TFLite detectors, every export, the picture), and clear errors
for bad flags."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from recipes import yolov2_bccd


def test_quick_run_writes_every_output(data_dir, tmp_path, restore_global_state):
    out = tmp_path / "run"
    metrics = yolov2_bccd.main(["--quick", "--data", str(data_dir / "bccd"), "--out", str(out), "--batch-size", "2"])
    for name in ("model.keras", "saved_model/saved_model.pb", "model.tflite", "model_int8.tflite",
                 "detector.keras", "detector.tflite", "anchors.json", "metrics.json", "history.csv",
                 "curves.png", "detections.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["classes"] == ["Platelets", "RBC", "WBC"]
    assert saved["images"] == {split: yolov2_bccd.QUICK[split] for split in ("train", "val", "test")}
    anchors = np.array(saved["anchors"])
    assert anchors.shape == (5, 2) and np.all(np.diff(anchors.prod(1)) >= 0) and 0 < saved["anchor_mean_iou"] <= 1
    for key in ("keras", "tflite"):
        score = saved["scores"][key]
        assert 0 <= score["mAP@0.5"] <= 1 and set(score["ap"]) == set(saved["classes"])
    # the on-device detector finds what the Keras detector finds
    agreement = saved["tflite_agreement"]
    assert agreement["same_count"] == agreement["same_classes"] == agreement["images"] == yolov2_bccd.QUICK["test"]
    assert agreement["max_box_diff"] <= 1e-3 and agreement["max_score_diff"] <= 1e-3
    detector = keras.saving.load_model(out / "detector.keras")
    assert set(detector.output) == {"boxes", "scores", "classes", "num_detections"}


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--data", "no/such/folder"], "--data='no/such/folder' has no Annotations/ folder"),
        (["--image-size", "100"], "--image-size=100 is not allowed; expected multiples of 32"),
        (["--iou-threshold", "1.5"], "--iou-threshold=1.5 is not allowed; expected a number in [0, 1]"),
    ],
)
def test_bad_flags_are_one_line_errors(argv, fragment, tmp_path, data_dir):
    if "--data" not in argv:
        argv = [*argv, "--data", str(data_dir / "bccd")]
    result = subprocess.run(
        [sys.executable, "-m", "recipes.yolov2_bccd", *argv, "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert fragment in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
