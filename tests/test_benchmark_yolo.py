"""The detection benchmark (YOLOv2 detector latency in Keras and TFLite, decoding + NMS
against keras-hub's NonMaxSuppression, training throughput) runs end to end at toy sizes; its
speed figures are not asserted (speed is measured by running it, never in a test)."""

import json
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_detection_benchmark_runs(tmp_path, restore_global_state):
    pytest.importorskip("keras_hub")
    out = tmp_path / "yolo.json"
    results = runpy.run_path(str(ROOT / "benchmarks" / "yolo_detection.py"), run_name="benchmark")["main"](
        ["--tiny", "--out", str(out)]
    )
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(results))
    record = saved["detection"]
    assert record["image_size"] == 64 and record["tflite_bytes"] > 0
    # random weights: every box scores about the same, so NMS keeps many; the phone's copy agrees
    assert record["tflite_same_detections"] and record["detections"] > 0
    for key in ("latency", "postprocess"):
        assert len(record[key]["round_ratios"]) == saved["repeats"]
    assert record["postprocess"]["kapps_detections"] > 0 and record["postprocess"]["keras_hub_detections"] > 0
    assert isinstance(record["postprocess"]["keras_hub_tflite_builtin"], bool)
    assert record["training"]["images_per_s"] > 0
