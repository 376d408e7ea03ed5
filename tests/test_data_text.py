"""English text for BERT (kapps.data.text) on the real shared corpora: held-out splits that do
not leak, the Tatoeba paraphrase pairs, the WordPiece vocabulary, masked-language-model batches
and sentence-pair batches."""

import random
import re
from collections import defaultdict

import numpy as np
import pytest

from kapps.data import DatasetNotFoundError
from kapps.data import text as T
from kapps.data.translation import read_pairs


@pytest.fixture(scope="module")
def corpora(data_dir):
    for path in ("tinyshakespeare/input.txt", "multi30k/train.en.gz", "fra-eng/fra.txt"):
        if not (data_dir / path).is_file():
            pytest.skip(f"{path} not found in {data_dir}")
    return data_dir


@pytest.fixture(scope="module")
def fra_txt(corpora):
    return corpora / "fra-eng" / "fra.txt"


@pytest.fixture(scope="module")
def test_pairs(fra_txt):
    return T.paraphrase_pairs(fra_txt, "test")


@pytest.fixture(scope="module")
def tokenizer(corpora, tmp_path_factory):
    texts = random.Random(0).sample(T.english_corpus(corpora, "val"), 400)
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocabulary = T.wordpiece_vocabulary(texts, 400, path)
    assert T.wordpiece_tokenizer(path).get_vocabulary() == vocabulary  # the file round-trips
    return T.wordpiece_tokenizer(vocabulary)


def _token_lists(tokenizer, texts):
    ids = tokenizer(list(texts))
    return [list(map(int, row)) for row in (ids.to_list() if hasattr(ids, "to_list") else ids)]


def test_shakespeare_passages_are_contiguous_splits_without_speakers(corpora):
    path = corpora / "tinyshakespeare" / "input.txt"
    splits = {s: T.shakespeare_passages(path, s) for s in T.TEXT_SPLITS}
    everything = splits["train"] + splits["val"] + splits["test"]
    assert len(splits["test"]) / len(everything) == pytest.approx(0.05, abs=0.002)
    assert everything[0] == "Before we proceed any further, hear me speak."  # "First Citizen:" dropped
    assert not any(p.endswith(":") and len(p.split()) <= 3 for p in everything)
    assert max(len(p.split()) for p in everything) <= 48
    assert splits["test"][-1].endswith("Whiles thou art waking.")  # the file's last line
    longest_line = max(len(line.split()) for line in path.read_text(encoding="utf-8").splitlines())
    shorter = T.shakespeare_passages(path, "val", max_words=12)
    # cut at line ends: a passage exceeds max_words only when one line does
    assert len(shorter) > len(splits["val"]) and 12 < max(len(p.split()) for p in shorter) <= longest_line


def test_fra_eng_groups_never_cross_splits(fra_txt):
    english = {s: T.fra_eng_english(fra_txt, s) for s in T.TEXT_SPLITS}
    pairs = read_pairs(fra_txt)
    assert sum(len(v) for v in english.values()) == len({e for e, _ in pairs})
    split_of = {sentence: s for s, sentences in english.items() for sentence in sentences}
    by_french = defaultdict(set)
    for e, f in pairs:
        by_french[f].add(split_of[e])
    assert all(len(splits) == 1 for splits in by_french.values())  # every French group in one split
    assert 0.07 < len(english["test"]) / len(split_of) < 0.13


def test_english_corpus_joins_the_three_corpora(corpora, fra_txt):
    train = T.english_corpus(corpora, "train")
    test = T.english_corpus(corpora, "test")
    only = T.english_corpus(corpora, "test", corpora=["multi30k"])
    assert len(only) == 1_000 and set(only) <= set(test)
    assert len(test) == len(only) + len(T.english_corpus(corpora, "test", corpora=["shakespeare", "fra_eng"]))
    # no training text equals a held-out one, even across corpora or up to punctuation
    def key(t):
        return " ".join(t.lower().replace(".", " ").replace("?", " ").replace("!", " ").split())
    held_out = {key(t) for t in test + T.english_corpus(corpora, "val")}
    assert len(train) > 70_000 and not any(key(t) in held_out for t in train)
    shakespeare = T.english_corpus(corpora, "train", corpora=["shakespeare"])
    # a Tatoeba held-out sentence that Shakespeare says too: out when both corpora are read
    assert "I hope so." in shakespeare and "I hope so." not in train
    fewer = T.english_corpus(corpora, "train", corpora=["shakespeare"], exclude=["speak, SPEAK"])
    assert set(shakespeare) - set(fewer) == {"Speak, speak."}


def test_missing_files_and_bad_arguments_say_what_to_do(tmp_path, corpora):
    with pytest.raises(DatasetNotFoundError, match="char-rnn"):
        T.english_corpus(tmp_path, "train", corpora=["shakespeare"])
    with pytest.raises(DatasetNotFoundError, match="multi30k"):
        T.english_corpus(tmp_path, "train", corpora=["multi30k"])
    with pytest.raises(DatasetNotFoundError, match="manythings.org"):
        T.english_corpus(tmp_path, "train", corpora=["fra_eng"])
    with pytest.raises(ValueError, match="split='dev'"):
        T.english_corpus(corpora, "dev")
    with pytest.raises(ValueError, match="corpora='wiki'"):
        T.english_corpus(corpora, "train", corpora=["wiki"])
    with pytest.raises(ValueError, match="vocabulary_size=5"):
        T.wordpiece_vocabulary(["a b"], 5)
    with pytest.raises(ValueError, match="special tokens"):
        T.wordpiece_tokenizer(["a", "b", "c", "d", "e"])
    with pytest.raises(DatasetNotFoundError, match="vocab.txt"):
        T.wordpiece_tokenizer(tmp_path / "vocab.txt")


def test_paraphrases_share_a_translation_and_negatives_are_hard(fra_txt, test_pairs):
    pairs = read_pairs(fra_txt)
    french_of = defaultdict(set)
    for e, f in pairs:
        french_of[e].add(f)
    labels = [y for *_, y in test_pairs]
    assert len(test_pairs) > 800 and sum(labels) == len(labels) / 2
    for a, b, y in test_pairs:
        assert bool(french_of[a] & french_of[b]) == bool(y), (a, b, y)
        # positives that differ only in case or punctuation are dropped as trivial
        assert y == 0 or re.findall("[a-z0-9']+", a.lower()) != re.findall("[a-z0-9']+", b.lower())
    sentences = {s for a, b, _ in test_pairs for s in (a, b)}
    train = T.paraphrase_pairs(fra_txt, "train", limit=200)
    assert not sentences & {s for a, b, _ in train for s in (a, b)}
    assert not sentences & set(T.fra_eng_english(fra_txt, "train"))
    easy = T.paraphrase_pairs(fra_txt, "test", candidates=1)
    overlap = {name: np.mean([T.word_overlap(a, b) for a, b, y in p if y == 0]) for name, p in (("hard", test_pairs), ("easy", easy))}
    assert overlap["hard"] > overlap["easy"] + 0.1
    assert T.paraphrase_pairs(fra_txt, "test") == test_pairs  # fixed for a seed


def test_datasets_tokenize_in_one_batch_traced_once(corpora, tokenizer):
    texts = T.english_corpus(corpora, "val", corpora=["multi30k"])[:50]
    # the same ids as the tokenizer gives text by text
    assert T._tokenize_all(tokenizer, texts).to_list() == _token_lists(tokenizer, texts)
    T.masked_lm_dataset(texts, tokenizer, 8)
    T.sentence_pair_dataset([(texts[0], texts[1], 1)], tokenizer, 8)
    assert T._BATCH_TOKENIZERS[tokenizer].experimental_get_tracing_count() == 1


def test_masked_lm_batches_follow_the_bert_recipe(corpora, tokenizer):
    texts = T.english_corpus(corpora, "test", corpora=["multi30k"])[:160]
    originals = {tuple([T.CLS_ID, *ids[:30], T.SEP_ID]) for ids in _token_lists(tokenizer, texts)}
    ds = T.masked_lm_dataset(texts, tokenizer, 32, max_length=32, mask_selection_length=8)
    selected = eligible = masked = seen = 0
    for inputs, mask_ids, weights in ds:
        ids, positions = inputs["token_ids"].numpy(), inputs["mask_positions"].numpy()
        mask_ids, weights = mask_ids.numpy(), weights.numpy()
        assert ids.shape[1] <= 32 and positions.shape == mask_ids.shape == weights.shape == (len(ids), 8)
        lengths = inputs["padding_mask"].numpy().sum(1)
        # 1 on the real tokens (even one randomly replaced by [PAD]), then 0 on the padding
        np.testing.assert_array_equal(inputs["padding_mask"].numpy(), np.arange(ids.shape[1]) < lengths[:, None])
        assert all((ids[i, n:] == T.PAD_ID).all() and ids[i, n - 1] == T.SEP_ID for i, n in enumerate(lengths))
        assert not inputs["segment_ids"].numpy().any() and (ids[:, 0] == T.CLS_ID).all()
        for row, length in enumerate(lengths):
            real = weights[row] > 0
            assert (mask_ids[row][~real] == 0).all()
            assert not np.isin(mask_ids[row][real], [T.PAD_ID, T.CLS_ID, T.SEP_ID, T.MASK_ID]).any()
            restored = ids[row, :length].copy()
            restored[positions[row][real]] = mask_ids[row][real]
            assert tuple(restored) in originals  # mask_ids are the tokens that were replaced
            masked += int((ids[row, positions[row][real]] == T.MASK_ID).sum())
            selected += int(real.sum())
            eligible += length - 2
        seen += len(ids)
    assert seen == 160
    assert 0.11 < selected / eligible < 0.19 and 0.7 < masked / selected < 0.9
    again = [w.numpy().sum() for _, _, w in ds]
    assert again == [w.numpy().sum() for _, _, w in ds]  # evaluation masks are static
    dynamic = T.masked_lm_dataset(texts[:64], tokenizer, 64, shuffle=True, seed=1, repeat=True, bucket_boundaries=())
    first, second = [x["mask_positions"].numpy() for x, _, _ in dynamic.take(2)]
    assert not np.array_equal(first, second)  # drawn anew every epoch


def test_sentence_pair_batches_mark_segments(tokenizer, test_pairs):
    pairs = test_pairs[:40]
    ds = T.sentence_pair_dataset(pairs, tokenizer, 16, max_length=24)
    tokens = {s: ids for s, ids in zip([s for a, b, _ in pairs for s in (a, b)], _token_lists(tokenizer, [s for a, b, _ in pairs for s in (a, b)]))}
    rows = 0
    for inputs, labels in ds:
        ids, segments, mask = (inputs[k].numpy() for k in ("token_ids", "segment_ids", "padding_mask"))
        assert ids.shape[1] == mask.sum(1).max() <= 24  # padded to the longest pair of the batch
        for i in range(len(ids)):
            a, b, y = pairs[rows + i]
            length = mask[i].sum()
            seps = np.flatnonzero(ids[i] == T.SEP_ID)
            assert ids[i, 0] == T.CLS_ID and len(seps) == 2 and seps[1] == length - 1
            assert (segments[i, : seps[0] + 1] == 0).all() and (segments[i, seps[0] + 1 : length] == 1).all()
            if length < 24:  # not cut: the two sentences as the tokenizer gives them
                assert ids[i, 1 : seps[0]].tolist() == tokens[a]
                assert ids[i, seps[0] + 1 : seps[1]].tolist() == tokens[b]
            assert labels[i] == y
        rows += len(ids)
    assert rows == 40
    with pytest.raises(ValueError, match="pairs=\\[\\]"):
        T.sentence_pair_dataset([], tokenizer, 4)
    with pytest.raises(ValueError, match="mask_rate=1.5"):
        T.masked_lm_dataset(["a"], tokenizer, 4, mask_rate=1.5)
