"""The two translation recipes (Seq2Seq with attention, the Transformer): their quick paths on
real Tatoeba pairs (vocabulary, training, BLEU, the TFLite translator checked against Keras,
pictures, --translate), Multi30k by flag, and clear errors for bad flags."""

import argparse
import importlib
import json
import subprocess
import sys

import keras
import pytest

from recipes import _translation

RECIPES = ["seq2seq_fra_eng", "transformer_fra_eng"]


@pytest.fixture(scope="module")
def fra_txt(data_dir):
    path = data_dir / "fra-eng" / "fra.txt"
    if not path.is_file():
        pytest.skip(f"Tatoeba English-French pairs not found at {path}")
    return path


@pytest.mark.parametrize("name", RECIPES)
def test_quick_run_writes_every_output_and_translates(name, fra_txt, tmp_path, restore_global_state):
    recipe = importlib.import_module(f"recipes.{name}")
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


@pytest.mark.parametrize("name", RECIPES)
@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--data", "no/such/fra.txt"], "--data='no/such/fra.txt' is not a file"),
        ([], "one of --data FILE (fra.txt) or --multi30k FOLDER is required"),
        (["--epochs", "0", "--data", "DATA"], "--epochs=0 is not allowed"),
    ],
)
def test_bad_flags_are_one_line_errors(name, argv, fragment, tmp_path, fra_txt):
    argv = [str(fra_txt) if a == "DATA" else a for a in argv]
    result = subprocess.run(
        [sys.executable, "-m", f"recipes.{name}", *argv, "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert fragment in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", RECIPES)
def test_translate_without_an_export_says_so(name, tmp_path):
    recipe = importlib.import_module(f"recipes.{name}")
    with pytest.raises(SystemExit, match="no translator.tflite"):
        recipe.main(["--translate", "Hello!", "--out", str(tmp_path / "empty")])


def test_multi30k_by_flag(data_dir):
    folder = data_dir / "multi30k"
    if not folder.is_dir():
        pytest.skip(f"Multi30k not found at {folder}")
    args = argparse.Namespace(multi30k=str(folder), data=None, reverse=False, quick=False)
    train, val, test, name = _translation.load_pairs(args)
    assert (len(train), len(val), len(test)) == (29_000, 1_014, 1_000)
    assert name == "Multi30k (test_2016_flickr), English to French"
    args.reverse, args.quick = True, True
    train, val, test, name = _translation.load_pairs(args)
    assert (len(train), len(val), len(test)) == (256, 32, 24) and name.endswith("French to English")
