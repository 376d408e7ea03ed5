"""The seq2seq translation recipe: its quick path on real Tatoeba pairs (vocabulary, training,
BLEU, the TFLite translator checked against Keras, pictures, --translate) and clear errors for
bad flags."""

import json
import subprocess
import sys

import keras
import pytest

from recipes import seq2seq_fra_eng as recipe


@pytest.fixture(scope="module")
def fra_txt(data_dir):
    path = data_dir / "fra-eng" / "fra.txt"
    if not path.is_file():
        pytest.skip(f"Tatoeba English-French pairs not found at {path}")
    return path


def test_quick_run_writes_every_output_and_translates(fra_txt, tmp_path, restore_global_state):
    out = tmp_path / "run"
    metrics = recipe.main(["--quick", "--data", str(fra_txt), "--out", str(out)])
    for name in ("model.keras", "saved_model/saved_model.pb", "translator.tflite",
                 "sentencepiece.model", "metrics.json", "history.csv", "curves.png",
                 "attention.png", "samples.txt"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics, default=str))
    assert saved["pairs"] == {"train": 256, "val": 32, "test": 24}
    checked = saved["tflite_translator"]["checked"]
    assert checked == 8 and saved["tflite_translator"]["identical_to_keras_greedy"] == checked
    assert 0 <= saved["bleu"]["greedy"] <= 100
    model = keras.saving.load_model(out / "model.keras")
    assert model.count_params() == saved["params"]
    again = recipe.main(["--translate", "Hello!", "I am here.", "--out", str(out)])
    assert len(again["translations"]) == 2 and all(isinstance(t, str) for t in again["translations"])


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--data", "no/such/fra.txt"], "--data='no/such/fra.txt' is not a file"),
        ([], "one of --data FILE (fra.txt) or --multi30k FOLDER is required"),
        (["--vocab-size", "4", "--data", "DATA"], "--vocab-size=4 is not allowed"),
        (["--epochs", "0", "--data", "DATA"], "--epochs=0 is not allowed"),
    ],
)
def test_bad_flags_are_one_line_errors(argv, fragment, tmp_path, fra_txt):
    argv = [str(fra_txt) if a == "DATA" else a for a in argv]
    result = subprocess.run(
        [sys.executable, "-m", "recipes.seq2seq_fra_eng", *argv, "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert fragment in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_translate_without_an_export_says_so(tmp_path):
    with pytest.raises(SystemExit, match="no translator.tflite"):
        recipe.main(["--translate", "Hello!", "--out", str(tmp_path / "empty")])
