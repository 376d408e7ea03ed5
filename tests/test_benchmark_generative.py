"""The generation-speed benchmark (Keras against TFLite samples/s) runs end to end on a tiny
VAE; its speed figures are not asserted (speed is measured by running it, never in a test)."""

import json
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_generative_benchmark_runs(tmp_path, restore_global_state):
    out = tmp_path / "speed.json"
    main = runpy.run_path(str(ROOT / "benchmarks" / "generative_speed.py"), run_name="benchmark")["main"]
    results = main(["--tiny", "--models", "vae", "--batch-sizes", "1,3", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved == results
    record = saved["models"]["vae"]
    assert record["source"].startswith("tiny") and record["tflite_bytes"] > 0
    assert set(record["batches"]) == {"1", "3"}
    for entry in record["batches"].values():
        assert entry["tflite_max_abs_diff"] <= 1e-4
        assert entry["keras_samples_per_s"] > 0 and entry["tflite_samples_per_s"] > 0
        assert len(entry["round_ratios"]) == saved["repeats"]


@pytest.mark.parametrize("argv, fragment", [
    (["--models", "gan"], "--models=gan is not allowed"),
    (["--batch-sizes", "0"], "--batch-sizes"),
])
def test_benchmark_rejects_bad_flags(argv, fragment, capsys):
    main = runpy.run_path(str(ROOT / "benchmarks" / "generative_speed.py"), run_name="benchmark")["main"]
    with pytest.raises(SystemExit):
        main(argv)
    assert fragment in capsys.readouterr().err
