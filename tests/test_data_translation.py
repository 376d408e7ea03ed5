"""Sentence pairs, the fixed held-out split, SentencePiece vocabularies and translation
batches (kapps.data.translation), on the real Tatoeba and Multi30k files."""

import gzip

import numpy as np
import pytest

from kapps.data import DatasetCorruptError, DatasetNotFoundError
from kapps.data import translation as T


@pytest.fixture(scope="module")
def fra_txt(data_dir):
    path = data_dir / "fra-eng" / "fra.txt"
    if not path.is_file():
        pytest.skip(f"Tatoeba English-French pairs not found at {path}")
    return path


@pytest.fixture(scope="module")
def multi30k_dir(data_dir):
    path = data_dir / "multi30k"
    if not path.is_dir():
        pytest.skip(f"Multi30k not found at {path}")
    return path


@pytest.fixture(scope="module")
def tokenizer(fra_txt):
    train = T.fra_eng(fra_txt, "train")[::20]
    return T.sentencepiece_tokenizer(T.train_sentencepiece([s for p in train for s in p], 500))


def test_fra_eng_split_is_fixed_disjoint_and_complete(fra_txt):
    splits = {s: T.fra_eng(fra_txt, s) for s in ("train", "val", "test", "all")}
    assert len(splits["all"]) == 76_037
    assert sum(len(splits[s]) for s in ("train", "val", "test")) == 76_037
    english = {s: {p[0] for p in splits[s]} for s in ("train", "val", "test")}
    assert not english["train"] & english["test"] and not english["train"] & english["val"]
    assert 0.04 < len(splits["test"]) / 76_037 < 0.06
    # the rule is a hash of the text, not of the file order
    assert T.split_of("I left.") == "test" and T.fra_eng(fra_txt, "test")[:3] == splits["test"][:3]
    reverse = T.fra_eng(fra_txt, "test", reverse=True)
    assert reverse[0] == splits["test"][0][::-1]


def test_group_references_collects_every_translation(fra_txt):
    sources, references = T.group_references(T.fra_eng(fra_txt, "test"))
    assert len(sources) == len(set(sources)) and len(sources) == len(references)
    assert max(len(r) for r in references) > 1
    assert T.group_references([("a", "x"), ("b", "y"), ("a", "z")]) == (["a", "b"], [["x", "z"], ["y"]])


def test_multi30k_splits(multi30k_dir):
    train = T.multi30k(multi30k_dir, "train")
    assert len(train) == 29_000 and all(a and b for a, b in train[:100])
    assert len(T.multi30k(multi30k_dir, "val")) == 1_014
    test = T.multi30k(multi30k_dir, "test")
    assert test == T.multi30k(multi30k_dir, "test_2016_flickr")
    french_first = T.multi30k(multi30k_dir, "val", source="fr", target="en")
    assert french_first[0] == T.multi30k(multi30k_dir, "val")[0][::-1]


def test_missing_and_damaged_files_say_what_to_do(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="manythings.org"):
        T.read_pairs(tmp_path / "fra.txt")
    (tmp_path / "bad.txt").write_text("only one column\n", encoding="utf-8")
    with pytest.raises(DatasetCorruptError, match="line 1"):
        T.read_pairs(tmp_path / "bad.txt")
    with pytest.raises(DatasetNotFoundError, match="multi30k"):
        T.multi30k(tmp_path, "val")
    with gzip.open(tmp_path / "val.en.gz", "wt") as f:
        f.write("a\nb\n")
    with gzip.open(tmp_path / "val.fr.gz", "wt") as f:
        f.write("x\n")
    with pytest.raises(DatasetCorruptError, match="line-aligned"):
        T.multi30k(tmp_path, "val")
    with pytest.raises(ValueError, match="split='dev'"):
        T.fra_eng(tmp_path / "fra.txt", "dev")


def test_sentencepiece_round_trip_is_exact(tokenizer, tmp_path):
    assert tokenizer.vocabulary_size() == 500
    assert [tokenizer.id_to_token(i) for i in range(4)] == list(T.SPECIAL_TOKENS)
    sentences = ["J'ai gagné !", "How are you, Tom?"]
    ids = T.encode(tokenizer, sentences, 24)
    assert ids.shape == (2, 24) and ids.dtype == np.int32 and (ids[:, -1] == T.PAD_ID).all()
    assert T.decode(tokenizer, ids) == sentences
    ended = np.concatenate([ids[:, :5], np.full((2, 1), T.END_ID), ids[:, :3]], axis=1)
    assert T.decode(tokenizer, ended) == T.decode(tokenizer, ids[:, :5])


def test_translation_batches_shift_the_target_and_weight_real_tokens(fra_txt, tokenizer):
    pairs = T.fra_eng(fra_txt, "val")[:300]
    ds = T.translation_dataset(pairs, tokenizer, 16, max_length=12)
    seen = 0
    for inputs, target, weights in ds:
        source, decoder_in = inputs["source_ids"].numpy(), inputs["target_ids"].numpy()
        target, weights = target.numpy(), weights.numpy()
        assert source.shape[1] <= 12 and decoder_in.shape == target.shape
        assert (decoder_in[:, 0] == T.START_ID).all()
        shifted = decoder_in[:, 1:] != 0  # decoder input = START + target without its END
        np.testing.assert_array_equal(decoder_in[:, 1:][shifted], target[:, :-1][shifted])
        assert ((decoder_in != 0).sum(1) == (target != 0).sum(1)).all()
        assert ((target == T.END_ID).sum(1) == 1).all()
        np.testing.assert_array_equal(weights, (target != 0).astype("float32"))
        seen += len(source)
    assert seen == 300


def test_bad_arguments_name_themselves(tokenizer):
    with pytest.raises(ValueError, match="vocabulary_size=4"):
        T.train_sentencepiece(["a b c"], 4)
    with pytest.raises(ValueError, match="batch_size=0"):
        T.translation_dataset([("a", "b")], tokenizer, 0)
    with pytest.raises(ValueError, match="pairs=\\[\\]"):
        T.translation_dataset([], tokenizer, 4)
