"""The BERT recipe: its quick path on the real corpora (vocabulary, masked-language-model
pre-training, both paraphrase fine-tunings, exports checked against Keras, pictures, samples,
metrics) and clear errors for bad flags."""

import json
import math
import subprocess
import sys

import keras
import pytest

from recipes import bert_mlm


@pytest.fixture(scope="module")
def corpora(data_dir):
    for path in ("tinyshakespeare/input.txt", "multi30k/train.en.gz", "fra-eng/fra.txt"):
        if not (data_dir / path).is_file():
            pytest.skip(f"{path} not found in {data_dir}")
    return data_dir


def test_quick_run_pretrains_finetunes_twice_and_exports(corpora, tmp_path, restore_global_state):
    out = tmp_path / "run"
    # one device: the same path, at about two thirds of the time of two mirrored replicas
    metrics = bert_mlm.main(["--quick", "--data-dir", str(corpora), "--out", str(out), "--strategy", "one_device"])
    for name in ("model.keras", "saved_model/saved_model.pb", "model.tflite", "vocab.txt", "metrics.json",
                 "history.csv", "curves.png", "finetune_curves.png", "samples.txt",
                 "pretrain/final.weights.h5", "pretrain/backbone.weights.h5",
                 "finetune_pretrained/final.weights.h5", "finetune_scratch/final.weights.h5"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics, default=str))
    assert saved["texts"] == bert_mlm.QUICK_TEXTS
    for split, positives in bert_mlm.QUICK_POSITIVES.items():  # one negative per positive
        assert 0 < saved["finetuning"]["pairs"][split] <= 2 * positives
        assert saved["finetuning"]["pairs"][split] % 2 == 0
    pretraining = saved["pretraining"]
    assert 0 <= pretraining["test_masked_accuracy"] <= 1
    # perplexity is exp(mean masked-token loss; the loss averages batch means, so not exactly):
    # an untrained model is near the vocabulary size
    assert pretraining["test_perplexity"] == pytest.approx(math.exp(pretraining["test_loss"]), rel=0.05)
    assert 1 < pretraining["test_perplexity"] < 2 * saved["vocabulary"]
    for init in ("pretrained", "scratch"):
        assert 0 <= saved["finetuning"][init]["test_accuracy"] <= 1 and saved["finetuning"][init]["epochs"] == 1
    assert 0 <= saved["finetuning"]["word_overlap_baseline"]["test_accuracy"] <= 1
    tflite = saved["tflite"]
    # an untrained classifier's two logits nearly tie, so accuracies may differ by a flip or two
    assert tflite["max_abs_diff_test"] < 1e-3 and 0 <= tflite["test_accuracy"] <= 1
    assert tflite["export_check"]["max_abs_diff"] <= tflite["export_check"]["tolerance"] == 1e-3
    classifier = keras.saving.load_model(out / "model.keras")
    assert classifier.count_params() == saved["params"]["classifier"]
    assert [t.name for t in classifier.inputs] == ["token_ids", "segment_ids", "padding_mask"]
    samples = (out / "samples.txt").read_text(encoding="utf-8")
    assert "->" in samples and "Paraphrase test pairs" in samples


@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([], "--data-dir is required"),
        (["--data-dir", "no/such/folder"], "--data-dir='no/such/folder' is not a folder"),
        (["--data-dir", "DATA", "--hidden-dim", "30", "--heads", "4"], "--hidden-dim=30 is not divisible by --heads=4"),
        (["--data-dir", "DATA", "--finetune-epochs", "0"], "--finetune-epochs=0 is not allowed"),
    ],
)
def test_bad_flags_are_one_line_errors(argv, fragment, tmp_path, data_dir):
    argv = [str(data_dir) if a == "DATA" else a for a in argv]
    result = subprocess.run(
        [sys.executable, "-m", "recipes.bert_mlm", *argv, "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert fragment in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
