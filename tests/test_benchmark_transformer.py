"""The Transformer encoder benchmark (kapps TransformerEncoderBlock against keras-hub's
TransformerEncoder) runs end to end at toy sizes, and the two layers compute the same
function once kapps' copy holds keras-hub's weights; its speed figures are not asserted
(speed is measured by running it, never in a test)."""

import json
import runpy
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def load():
    return runpy.run_path(
        str(ROOT / "benchmarks" / "transformer_encoder_vs_keras_hub.py"), run_name="benchmark"
    )


def test_transformer_benchmark_runs(tmp_path, restore_global_state):
    pytest.importorskip("keras_hub")
    out = tmp_path / "encoder.json"
    results = load()["main"](["--tiny", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(results))
    assert set(saved["environment"]) >= {"python", "tensorflow", "keras", "keras_hub", "cpus"}
    config = saved["config"]
    assert (config["batch_size"], config["seq_len"], config["hidden_dim"], config["num_heads"],
            config["mlp_dim"]) == (2, 8, 16, 2, 32)
    record = saved["encoder"]
    # attention 4 x (16 x 16 + 16), MLP (16 x 32 + 32) + (32 x 16 + 16), LayerNorms 2 x 32
    assert record["parameters"] == 2_224
    assert 0 < record["padding_fraction"] < 0.5
    assert record["max_output_difference"] <= 1e-5
    for label in ("kapps", "keras-hub"):
        assert record["effective_jit_compile"][label] == {"false": False, "true": True}
        assert record["inference_graph_ops"][label]
        assert record["xla_inference_hlo_ops"][label]
    assert isinstance(record["inference_graph_op_difference"], dict)
    assert set(record["modes"]) == {"inference", "training"}
    for mode in record["modes"].values():
        assert set(mode) == {"no_xla", "xla", "xla_gain"}
        for key in ("no_xla", "xla"):
            entry = mode[key]
            assert entry["kapps_tokens_per_s"] > 0 and entry["keras_hub_tokens_per_s"] > 0
            assert entry["ratio"] > 0 and len(entry["round_ratios"]) == 1
            assert entry["median_round_ratio"] == entry["round_ratios"][0]
        assert all(gain["gain"] > 0 for gain in mode["xla_gain"].values())
    for losses in record["last_training_loss"].values():
        assert all(np.isfinite(loss) for loss in losses.values())


def test_transformer_layers_agree_with_copied_weights(restore_global_state):
    """Built the benchmark's way, with padding, in inference mode: the same outputs."""
    pytest.importorskip("keras_hub")
    module = load()
    args = module["parse_args"](["--tiny", "--seq-len", "6", "--batch-size", "3"])
    models, params = module["build_pair"](args)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 6, 16)).astype("float32")
    flags = module["token_flags"](3, 6)
    assert flags.sum(axis=1).tolist() == [3, 4, 6]  # lengths seq_len // 2 .. seq_len
    ours, theirs = (np.asarray(models[label]([x, flags], training=False))
                    for label in ("kapps", "keras-hub"))
    assert ours.shape == (3, 6, 16)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_transformer_benchmark_flags():
    parse_args = load()["parse_args"]
    args = parse_args([])
    assert (args.batch_size, args.seq_len, args.hidden_dim, args.num_heads, args.mlp_dim) == (
        32, 64, 512, 8, 2048)
    assert args.out.endswith("transformer_encoder.json") and args.dropout == 0.1
    tiny = parse_args(["--tiny", "--rounds", "3"])
    assert (tiny.hidden_dim, tiny.rounds) == (16, 3)  # explicit flags win over --tiny
    for flags in (["--num-heads", "5"], ["--rounds", "0"], ["--seq-len", "1"],
                  ["--dropout", "1"], ["--epsilon", "0"]):
        with pytest.raises(SystemExit):
            parse_args(flags)
