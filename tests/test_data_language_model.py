"""Plain text for language models: tiny Shakespeare from the prepared TFDS data, characters
as keras-hub code points, and next-token windows."""

import numpy as np
import pytest

from kapps.data import DatasetNotFoundError
from kapps.data import language_model as lm


def test_tiny_shakespeare_splits_and_character_round_trip(tfds_dir):
    validation = lm.tiny_shakespeare("validation", tfds_dir, download=False)
    assert len(validation) == 55_770 and validation.startswith("?\n\nGREMIO:")
    ids = lm.encode(validation)
    assert ids.dtype == np.int32 and ids.shape == (55_770,) and ids.max() < lm.CHAR_VOCAB_SIZE
    assert lm.decode(ids) == validation
    assert len(set(validation)) <= 65


def test_missing_data_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path)):
        lm.tiny_shakespeare("train", tmp_path, download=False)
    with pytest.raises(ValueError, match="split='dev'"):
        lm.tiny_shakespeare("dev", tmp_path, download=False)


def test_random_windows_are_shifted_pairs_from_the_text():
    ids = np.arange(1000, dtype="int32")
    inputs, targets = next(iter(lm.random_windows(ids, 16, 8, seed=1)))
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    assert inputs.shape == targets.shape == (8, 16)
    np.testing.assert_array_equal(targets, inputs + 1)  # the next token, everywhere
    np.testing.assert_array_equal(np.diff(inputs, axis=1), 1)  # contiguous windows
    again, _ = next(iter(lm.random_windows(ids, 16, 8, seed=1)))
    np.testing.assert_array_equal(np.asarray(again), inputs)  # the seed fixes the offsets
    assert len(set(inputs[:, 0].tolist())) > 4


def test_tiled_windows_score_every_token_once():
    ids = np.arange(103, dtype="int32")
    batches = list(lm.tiled_windows(ids, 10, 4))
    inputs = np.concatenate([np.asarray(x) for x, _ in batches])
    targets = np.concatenate([np.asarray(y) for _, y in batches])
    assert inputs.shape == (10, 10)  # 102 predictable tokens -> 10 whole windows
    np.testing.assert_array_equal(targets.ravel(), np.arange(1, 101))


def test_windows_reject_short_text_and_bad_sizes():
    with pytest.raises(ValueError, match="length=10 is not allowed for 5 tokens"):
        lm.random_windows(np.arange(5), 10, 2)
    with pytest.raises(ValueError, match="batch_size=0"):
        lm.tiled_windows(np.arange(50), 10, 0)
    with pytest.raises(ValueError, match="1-D int ids"):
        lm.tiled_windows(np.zeros((4, 4)), 2, 1)
