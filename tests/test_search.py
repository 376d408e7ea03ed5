"""Greedy and beam search (kapps.models.sequence.search) on a toy decoder whose step is a
fixed table, so the right answers can be computed by hand or by enumerating every output."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from kapps import export
from kapps.models.sequence import search

VOCAB, START, END, PAD = 6, 1, 2, 0


class ToyDecoder(tf.Module):
    """logits = table[previous token] + position row + a source-dependent bias."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.table = tf.Variable(rng.normal(size=(VOCAB, VOCAB)).astype("float32"))
        self.rows = tf.Variable(rng.normal(size=(16, VOCAB)).astype("float32"))
        self.source_map = tf.Variable(rng.normal(size=(VOCAB, VOCAB)).astype("float32"))

    def start(self, source_ids, max_length):
        one_hot = tf.one_hot(source_ids, VOCAB)  # (batch, source_len, vocab)
        bias = tf.reduce_mean(one_hot, axis=1) @ tf.convert_to_tensor(self.source_map)
        return (bias, tf.cast(source_ids, "float32"))

    def step(self, tokens, position, state):
        bias, source = state
        # read the variables, then gather (as Keras layers do; a ResourceGather inside the
        # loop does not freeze for TFLite)
        table, rows = tf.convert_to_tensor(self.table), tf.convert_to_tensor(self.rows)
        logits = tf.gather(table, tokens) + tf.gather(rows, position)[None] + bias
        attention = tf.nn.softmax(source * tf.cast(position + 1, "float32"), axis=-1)
        return logits, state, attention

    def log_probs(self, source, prefix):
        """numpy log-probabilities of the next token after ``prefix`` (start included)."""
        logits = self.step(
            tf.constant([prefix[-1]]), tf.constant(len(prefix) - 1),
            self.start(tf.constant([source]), 8),
        )[0]
        return tf.nn.log_softmax(logits).numpy()[0]


SOURCES = np.array([[3, 4, 5, 0], [5, 5, 3, 4], [4, 0, 0, 0]], "int32")


def _reference_greedy(decoder, source, max_length):
    prefix, out = [START], []
    while len(out) < max_length:
        token = int(np.argmax(decoder.log_probs(source, prefix)))
        out.append(token)
        prefix.append(token)
        if token == END:
            break
    return out + [PAD] * (max_length - len(out))


def test_greedy_matches_a_step_by_step_reference():
    decoder = ToyDecoder()
    ids = search.greedy_search(decoder, SOURCES, 6, start_id=START, end_id=END).numpy()
    assert ids.shape == (3, 6) and ids.dtype == np.int32
    for source, row in zip(SOURCES, ids):
        assert list(row) == _reference_greedy(decoder, list(source), 6)


def test_greedy_attention_is_written_per_step_and_zero_after_the_end():
    decoder = ToyDecoder()
    ids, weights = search.greedy_search(
        decoder, SOURCES, 6, start_id=START, end_id=END, return_attention=True
    )
    ids, weights = ids.numpy(), weights.numpy()
    assert weights.shape == (3, 6, 4)
    for row, w in zip(ids, weights):
        produced = list(row).index(END) + 1 if END in row else len(row)
        np.testing.assert_allclose(w[:produced].sum(-1), 1.0, rtol=1e-6)
        assert not w[produced:].any()


def _best_by_enumeration(decoder, source, max_length, alpha):
    """The ended output (tokens then END, at most max_length in all) with the best
    length-normalised log-probability, by scoring every one."""
    best, best_score = None, -np.inf
    for length in range(1, max_length + 1):
        for body in itertools.product([t for t in range(VOCAB) if t != END], repeat=length - 1):
            seq, prefix, score = [*body, END], [START], 0.0
            for token in seq:
                score += decoder.log_probs(source, prefix)[token]
                prefix.append(token)
            score /= search.length_penalty_factor(len(seq), alpha)
            if score > best_score:
                best, best_score = seq, score
    return best


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_a_wide_beam_finds_the_best_ended_output(alpha):
    decoder = ToyDecoder(seed=3)
    max_length = 3
    ids = search.beam_search(
        decoder, SOURCES[:2], max_length, start_id=START, end_id=END, beam_size=VOCAB ** 2,
        length_penalty=alpha,
    )
    for source, row in zip(SOURCES[:2], ids):
        best = _best_by_enumeration(decoder, list(source), max_length, alpha)
        assert list(row[: len(best)]) == best
        assert not row[len(best):].any()


def test_beam_attention_follows_the_chosen_hypothesis():
    decoder = ToyDecoder(seed=2)
    ids, weights = search.beam_search(
        decoder, SOURCES, 5, start_id=START, end_id=END, beam_size=3, return_attention=True
    )
    assert weights.shape == (3, 5, 4)
    for row, w in zip(ids, weights):
        steps = list(row).index(END) + 1 if END in row else len(row)
        np.testing.assert_allclose(w[:steps].sum(-1), 1.0, rtol=1e-5)


def test_tflite_translator_gives_the_greedy_ids(tmp_path):
    decoder = ToyDecoder(seed=4)
    flatbuffer = export.translator_to_tflite(
        decoder, tmp_path / "toy.tflite", source_length=4, max_length=6, start_id=START,
        end_id=END,
    )
    assert (tmp_path / "toy.tflite").read_bytes() == flatbuffer
    runner = export.load_tflite(flatbuffer)
    keras_ids = search.greedy_search(decoder, SOURCES, 6, start_id=START, end_id=END).numpy()
    for source, expected in zip(SOURCES, keras_ids):
        np.testing.assert_array_equal(runner(source[None])[0], expected)


def test_strip_special_cuts_at_the_end_token():
    assert search.strip_special([[5, 4, END, 3, 0], [4, 0, 0, 0, 0]], end_id=END) == [[5, 4], [4]]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_length": 0}, "max_length=0"),
        ({"start_id": -1}, "start_id=-1"),
        ({"beam_size": 0}, "beam_size=0"),
        ({"length_penalty": -0.5}, "length_penalty=-0.5"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, match):
    decoder = ToyDecoder()
    args = {"max_length": 4, "start_id": START, "end_id": END, **kwargs}
    max_length = args.pop("max_length")
    with pytest.raises(ValueError, match=match):
        search.beam_search(decoder, SOURCES, max_length, **args)


def test_not_a_sequence_model_is_refused():
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not a kapps sequence-to-sequence model"):
        search.decoder_for(model)
