"""The benchmark scripts run end to end at toy sizes (their figures are not asserted: speed is
measured by running them, never in a test)."""

import json
import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    return runpy.run_path(str(ROOT / "benchmarks" / f"{name}.py"), run_name="benchmark")


def test_vgg16_benchmark_runs(tmp_path, restore_global_state):
    out = tmp_path / "vgg16.json"
    results = load("vgg16_vs_keras_applications")["main"](
        ["--image-size", "32", "--batch-size", "1", "--repeats", "1", "--steps", "1",
         "--warmup", "0", "--out", str(out)]
    )
    saved = json.loads(out.read_text())
    assert set(saved["modes"]) == {"inference", "training"}
    for mode in saved["modes"].values():
        assert mode["ratio"] > 0
    assert saved == json.loads(json.dumps(results))


def test_pipeline_benchmark_runs(tfds_dir, tmp_path):
    out = tmp_path / "pipeline.json"
    results = load("lenet5_mnist_pipeline")["main"](
        ["--tfds-data-dir", str(tfds_dir), "--steps", "5", "--out", str(out)]
    )
    assert results["pipeline_cached_examples_per_s"] > 0 and results["train_step_examples_per_s"] > 0
    assert json.loads(out.read_text())["batch_size"] == 32
