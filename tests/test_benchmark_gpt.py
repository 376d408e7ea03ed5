"""The GPT benchmark (kapps GPT generation, cached and uncached, and training against
keras-hub's GPT2CausalLM) runs end to end at toy sizes, and kapps' model holding keras-hub's
weights computes the same logits and greedy tokens; its speed figures are not asserted (speed
is measured by running it, never in a test)."""

import json
import runpy
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def load():
    return runpy.run_path(str(ROOT / "benchmarks" / "gpt_vs_keras_hub.py"), run_name="benchmark")


def test_gpt_benchmark_runs(tmp_path, restore_global_state):
    pytest.importorskip("keras_hub")
    out = tmp_path / "gpt.json"
    # XLA off: its compilations would double the test's time; --tiny alone times both
    results = load()["main"](["--tiny", "--jit-compile", "off", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(results))
    assert set(saved["environment"]) >= {"python", "tensorflow", "keras", "keras_hub", "cpus"}
    config = saved["config"]
    assert (config["vocab_size"], config["num_layers"], config["hidden_dim"],
            config["max_length"], config["prompt_length"], config["batch_sizes"]) == (
        40, 1, 16, 10, 4, [2])

    generation = saved["generation"]
    # tokens 40 x 16 + positions 10 x 16 + block (attention 4 x (16 x 16 + 16), MLP
    # 16 x 32 + 32 + 32 x 16 + 16, 2 LayerNorms 2 x 32) + final LayerNorm 32; logits tied
    assert generation["parameters"] == 640 + 160 + 2_224 + 32
    assert generation["new_tokens"] == 6
    assert generation["max_logit_difference"] <= 1e-5
    assert generation["effective_jit_compile"] == {"no_xla": False}
    labels = {"kapps cached, no_xla", "kapps uncached, no_xla", "keras-hub, no_xla"}
    # same weights, greedy: every way of generating gives the same tokens
    assert generation["token_agreement"] == {"batch2": {label: 1.0 for label in labels}}
    assert set(generation["tokens_per_s"]["batch2"]) == labels
    comparisons = generation["comparisons"]["batch2"]
    assert set(comparisons) == {"kapps cached, no_xla / keras-hub, no_xla",
                                "kapps cached, no_xla / kapps uncached, no_xla"}
    for entry in comparisons.values():
        assert entry["first_per_s"] > 0 and entry["second_per_s"] > 0
        assert entry["ratio"] == pytest.approx(entry["first_per_s"] / entry["second_per_s"])
        assert len(entry["round_ratios"]) == 1
        assert entry["median_round_ratio"] == entry["round_ratios"][0]

    training = saved["training"]
    assert training["parameters"] == 640 + 8 * 16 + 2_224 + 32  # 8 positions
    assert training["tokens_per_step"] == 2 * 8
    assert training["effective_jit_compile"] == {
        "kapps": {"no_xla": False}, "keras-hub": {"no_xla": False}}
    (entry,) = training["comparisons"].values()
    assert entry["first_per_s"] > 0 and entry["second_per_s"] > 0
    assert len(entry["kapps_step_s"]) == len(entry["keras_hub_step_s"]) == 1
    for losses in training["losses"].values():
        # random targets over 40 tokens: cross-entropy near ln 40
        assert all(np.isfinite(loss) and 2 < loss < 6 for loss in losses.values())

    md = out.with_suffix(".md").read_text()
    assert "## Generation (greedy)" in md and "## Training" in md
    assert "| kapps cached, no_xla / keras-hub, no_xla |" in md


def test_gpt_benchmark_flags():
    parse_args = load()["parse_args"]
    args = parse_args([])
    assert (args.vocab_size, args.num_layers, args.hidden_dim, args.num_heads, args.mlp_dim,
            args.max_length, args.prompt_length, args.batch_sizes) == (
        1000, 4, 256, 4, 1024, 128, 16, (1, 8))
    assert (args.train_vocab_size, args.train_hidden_dim, args.train_num_heads,
            args.train_mlp_dim) == (50257, 768, 12, 3072)  # gpt2_small's blocks
    assert args.out.endswith("gpt_vs_keras_hub.json") and args.jit_compile == "both"
    tiny = parse_args(["--tiny", "--rounds", "3", "--batch-sizes", "1,4"])
    assert (tiny.hidden_dim, tiny.rounds, tiny.batch_sizes) == (16, 3, (1, 4))
    for flags in (["--num-heads", "3"], ["--train-num-heads", "5"], ["--rounds", "0"],
                  ["--prompt-length", "128"], ["--batch-sizes", "1,x"], ["--batch-sizes", "0"],
                  ["--train-seq-len", "2048"], ["--dropout", "1"]):
        with pytest.raises(SystemExit):
            parse_args(flags)
