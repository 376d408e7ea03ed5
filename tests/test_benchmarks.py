"""The benchmark scripts run end to end at toy sizes (their figures are not asserted: speed is
measured by running them, never in a test)."""

import json
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    return runpy.run_path(str(ROOT / "benchmarks" / f"{name}.py"), run_name="benchmark")


def test_classifiers_benchmark_runs(tmp_path, restore_global_state):
    out = tmp_path / "classifiers.json"
    results = load("classifiers_vs_keras_applications")["main"](
        ["--models", "vgg16", "--jit-compile", "both", "--image-size", "32", "--batch-size", "1",
         "--repeats", "1", "--steps", "1", "--warmup", "0", "--out", str(out)]
    )
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(results))
    assert list(saved["models"]) == ["vgg16"]
    record = saved["models"]["vgg16"]
    assert record["keras_application"] == "VGG16"
    # 138,357,544 at 224x224, less fc1's 48 x 512 x 4096 weights for the 7x7 map now 1x1.
    assert record["parameters"] == 37_694_248
    assert record["max_feature_difference"] <= 1e-4
    for label in ("kapps", "keras.applications"):
        assert record["effective_jit_compile"][label] == {"false": False, "true": True}
    assert set(record["modes"]) == {"inference", "training"}
    for mode in record["modes"].values():
        assert set(mode) == {"no_xla", "xla", "xla_gain"}
        for key in ("no_xla", "xla"):
            assert mode[key]["ratio"] > 0 and len(mode[key]["round_ratios"]) == 1
            assert mode[key]["kapps_examples_per_s"] > 0
            assert mode[key]["keras_applications_examples_per_s"] > 0
        assert set(mode["xla_gain"]) == {"kapps", "keras.applications"}
        assert all(gain["gain"] > 0 for gain in mode["xla_gain"].values())


def test_classifiers_benchmark_rejects_unknown_models():
    parse_args = load("classifiers_vs_keras_applications")["parse_args"]
    assert parse_args([]).models == ["resnet50", "densenet121", "efficientnet_b0"]
    with pytest.raises(SystemExit):
        parse_args(["--models", "resnet51"])


def test_pipeline_benchmark_runs(tfds_dir, tmp_path):
    out = tmp_path / "pipeline.json"
    results = load("lenet5_mnist_pipeline")["main"](
        ["--tfds-data-dir", str(tfds_dir), "--steps", "5", "--out", str(out)]
    )
    assert results["pipeline_cached_examples_per_s"] > 0 and results["train_step_examples_per_s"] > 0
    assert json.loads(out.read_text())["batch_size"] == 32


def test_segmentation_memory_benchmark_runs(tmp_path):
    out = tmp_path / "memory.json"
    results = load("segmentation_memory")["main"](
        ["--tiny", "--size", "64", "--batch", "2", "--steps", "1", "--out", str(out)]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert [row["model"] for row in results["models"]] == ["unet", "fcn8s"]
    for row in results["models"]:
        assert row["peak_training_mib"] > 0 and row["activations_mib"] > 0
        # grads + two Adam slots: three copies of the trainable weights
        assert row["optimizer_mib"] <= 3 * row["weights_mib"] + 0.1


def test_segmentation_memory_benchmark_rejects_bad_sizes():
    parse_args = load("segmentation_memory")["parse_args"]
    with pytest.raises(SystemExit):
        parse_args(["--size", "100"])
    with pytest.raises(SystemExit):
        parse_args(["--batch", "0"])
