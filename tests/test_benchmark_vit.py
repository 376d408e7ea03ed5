"""The ViT benchmark (kapps vit_b16 against keras-hub's ViTBackbone) runs end to end at a toy
size; its figures are not asserted (speed is measured by running it, never in a test)."""

import json
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOY = ["--image-size", "32", "--patch-size", "8", "--hidden-dim", "32", "--depth", "2",
       "--num-heads", "2", "--mlp-dim", "64"]


def load():
    return runpy.run_path(str(ROOT / "benchmarks" / "vit_b16_vs_keras_hub.py"), run_name="benchmark")


def test_vit_benchmark_runs(tmp_path, restore_global_state):
    pytest.importorskip("keras_hub")
    out = tmp_path / "vit.json"
    results = load()["main"](
        TOY + ["--jit-compile", "both", "--batch-size", "2", "--repeats", "1", "--steps", "1",
               "--warmup", "0", "--out", str(out)]
    )
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(results))
    record = saved["vit"]
    # patch 8x8x3x32 + bias, class token, 17 positions, 2 blocks, final LayerNorm
    assert record["parameters"] == 23_904
    assert record["output_shape"] == [None, 17, 32]
    assert record["max_output_difference"] <= 1e-4
    for label in ("kapps", "keras-hub"):
        assert record["effective_jit_compile"][label] == {"false": False, "true": True}
        assert record["inference_graph_ops"][label]
    assert set(record["modes"]) == {"inference", "training"}
    for mode in record["modes"].values():
        assert set(mode) == {"no_xla", "xla", "xla_gain"}
        for key in ("no_xla", "xla"):
            assert mode[key]["ratio"] > 0 and len(mode[key]["round_ratios"]) == 1
            assert mode[key]["median_round_ratio"] == mode[key]["round_ratios"][0]
            assert mode[key]["kapps_examples_per_s"] > 0 and mode[key]["keras_hub_examples_per_s"] > 0


def test_vit_benchmark_rejects_bad_flags():
    parse_args = load()["parse_args"]
    args = parse_args([])
    assert (args.patch_size, args.hidden_dim, args.depth, args.num_heads, args.mlp_dim) == (
        16, 768, 12, 12, 3072)
    assert args.batch_size == 4 and args.image_size == 224
    for flags in (["--image-size", "100"], ["--num-heads", "5"], ["--repeats", "0"]):
        with pytest.raises(SystemExit):
            parse_args(flags)
