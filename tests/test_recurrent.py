"""kapps.layers.recurrent: SimpleRNN, LSTM and GRU cells written from their equations agree
with Keras' own layers given the same weights, with masking, states and Bidirectional."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kapps.layers.recurrent import RNN, GRUCell, LSTMCell, SimpleRNNCell

TOLERANCE = 1e-5

# (name, our cell factory, Keras layer factory); the Keras layers use the same defaults
CASES = {
    "simple_rnn": (
        lambda **kw: SimpleRNNCell(6, **kw), lambda **kw: keras.layers.SimpleRNN(6, **kw)
    ),
    "lstm": (lambda **kw: LSTMCell(6, **kw), lambda **kw: keras.layers.LSTM(6, **kw)),
    "gru": (lambda **kw: GRUCell(6, **kw), lambda **kw: keras.layers.GRU(6, **kw)),
    "gru_reset_before": (
        lambda **kw: GRUCell(6, reset_after=False, **kw),
        lambda **kw: keras.layers.GRU(6, reset_after=False, **kw),
    ),
}


def _padded_batch(seed=0, batch=3, length=7, features=4):
    """Random sequences of lengths 7, 4 and 2, zero-padded at the end, and their mask."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, length, features)).astype("float32")
    lengths = np.array([length, 4, 2])[:batch]
    mask = np.arange(length)[None, :] < lengths[:, None]
    return x * mask[:, :, None], mask


def _random_bias(layer, seed=1):
    # Keras starts biases at 0 (or 1 for the LSTM forget gate): random biases test the layout
    rng = np.random.default_rng(seed)
    layer.set_weights([
        w if w.ndim == 2 and w.shape[0] != 2 else rng.standard_normal(w.shape).astype("float32")
        for w in layer.get_weights()
    ])


LOOPS = {"keras_rnn": keras.layers.RNN, "kapps_rnn": RNN}


@pytest.mark.parametrize("loop", sorted(LOOPS))
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_keras_with_masking_and_states(case, loop):
    ours_cell, keras_layer = CASES[case]
    x, mask = _padded_batch()
    reference = keras_layer(return_sequences=True, return_state=True)
    ours = LOOPS[loop](ours_cell(), return_sequences=True, return_state=True)
    reference(x)
    ours(x)
    _random_bias(reference)
    ours.set_weights(reference.get_weights())
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in reference.get_weights()]
    for kwargs in ({"mask": mask}, {}):
        expected = reference(x, **kwargs)
        got = ours(x, **kwargs)
        assert len(expected) == len(got)
        for e, g in zip(expected, got):
            assert np.max(np.abs(np.asarray(e) - np.asarray(g))) <= TOLERANCE
    # keras.layers.Masking finds the padded (all-zero) steps in a model, as the mask did
    inputs = keras.Input((None, 4))
    masked = keras.layers.Masking(0.0)(inputs)
    model_ours = keras.Model(inputs, LOOPS[loop](ours.cell, return_sequences=False)(masked))
    model_ref = keras.Model(inputs, keras_layer()(masked))
    model_ref.layers[-1].set_weights(reference.get_weights())
    diff = np.abs(np.asarray(model_ours(x)) - np.asarray(model_ref(x)))
    assert diff.max() <= TOLERANCE
    # the last output of a padded sequence is the output at its last real step
    np.testing.assert_allclose(
        np.asarray(model_ours(x))[2], np.asarray(got[0])[2, 1], atol=TOLERANCE
    )


@pytest.mark.parametrize("loop", sorted(LOOPS))
@pytest.mark.parametrize("case", ["lstm", "gru", "gru_reset_before"])
def test_bidirectional_matches_keras(case, loop):
    ours_cell, keras_layer = CASES[case]
    x, mask = _padded_batch(seed=3)
    reference = keras.layers.Bidirectional(keras_layer(return_sequences=True, return_state=True))
    ours = keras.layers.Bidirectional(LOOPS[loop](ours_cell(), return_sequences=True,
                                                  return_state=True))
    reference(x)
    ours(x)
    _random_bias(reference, seed=2)
    ours.set_weights(reference.get_weights())
    for e, g in zip(reference(x, mask=mask), ours(x, mask=mask)):
        assert np.abs(np.asarray(e) - np.asarray(g)).max() <= TOLERANCE


def test_weight_layout_is_keras():
    for cell, shapes in (
        (SimpleRNNCell(5), [(3, 5), (5, 5), (5,)]),
        (LSTMCell(5), [(3, 20), (5, 20), (20,)]),
        (GRUCell(5), [(3, 15), (5, 15), (2, 15)]),
        (GRUCell(5, reset_after=False), [(3, 15), (5, 15), (15,)]),
        (GRUCell(5, use_bias=False), [(3, 15), (5, 15)]),
    ):
        cell.build((None, 3))
        assert [tuple(w.shape) for w in cell.weights] == shapes
        assert [w.name for w in cell.weights][:2] == ["kernel", "recurrent_kernel"]
    lstm = LSTMCell(4)
    lstm.build((None, 2))
    np.testing.assert_array_equal(np.asarray(lstm.bias), [0] * 4 + [1] * 4 + [0] * 8)


@pytest.mark.parametrize("cell_class", [SimpleRNNCell, LSTMCell, GRUCell])
def test_config_round_trip(cell_class):
    import inspect

    cell = cell_class(7, dropout=0.25, recurrent_dropout=0.5, seed=3, name="cell")
    config = cell.get_config()
    for arg in inspect.signature(cell_class.__init__).parameters:
        if arg not in ("self", "kwargs"):
            assert arg in config, arg
    clone = cell_class.from_config(config)
    assert clone.get_config() == config
    rnn = keras.layers.RNN(cell)
    again = keras.layers.deserialize(keras.layers.serialize(rnn))
    assert type(again.cell) is cell_class and again.cell.get_config() == config


def test_keras_file_round_trip(tmp_path):
    inputs = keras.Input((None, 4))
    x = keras.layers.Masking(0.0)(inputs)
    x = keras.layers.Bidirectional(
        RNN(GRUCell(5, reset_after=False), return_sequences=True)
    )(x)
    x = keras.layers.RNN(LSTMCell(5), return_sequences=True)(x)
    x = keras.layers.RNN(SimpleRNNCell(3))(x)
    model = keras.Model(inputs, x)
    path = os.path.join(tmp_path, "rnn.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x, _ = _padded_batch(seed=5)
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(loaded(x)))


@pytest.mark.parametrize("loop", sorted(LOOPS))
@pytest.mark.parametrize("cell_class", [SimpleRNNCell, LSTMCell, GRUCell])
def test_gradients_reach_every_weight(cell_class, loop):
    rnn = LOOPS[loop](cell_class(4), return_sequences=True)
    x, mask = _padded_batch(seed=7)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(rnn(x, mask=mask) ** 2)
    grads = tape.gradient(loss, rnn.trainable_weights)
    assert len(grads) == 3
    for g in grads:
        assert g is not None and np.all(np.isfinite(g)) and np.any(np.asarray(g) != 0)


@pytest.mark.parametrize("loop", sorted(LOOPS))
@pytest.mark.parametrize("cell_class", [SimpleRNNCell, LSTMCell, GRUCell])
def test_dropout_only_in_training(cell_class, loop):
    rnn = LOOPS[loop](cell_class(8, dropout=0.5, recurrent_dropout=0.5, seed=1),
                      return_sequences=True)
    plain = LOOPS[loop](cell_class(8), return_sequences=True)
    x = np.random.default_rng(0).standard_normal((4, 5, 6)).astype("float32")
    plain(x)
    rnn(x)
    plain.set_weights(rnn.get_weights())
    np.testing.assert_allclose(np.asarray(rnn(x)), np.asarray(plain(x)), atol=1e-6)
    np.testing.assert_allclose(np.asarray(rnn(x, training=False)), np.asarray(plain(x)), atol=1e-6)
    first = np.asarray(rnn(x, training=True))
    second = np.asarray(rnn(x, training=True))
    assert np.abs(first - np.asarray(plain(x))).max() > 1e-3
    assert np.abs(first - second).max() > 1e-3  # a new mask for every batch


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: GRUCell(0), "units"),
        (lambda: LSTMCell(2.5), "units"),
        (lambda: SimpleRNNCell(4, activation="nope"), "activation"),
        (lambda: GRUCell(4, recurrent_activation=None), "recurrent_activation"),
        (lambda: LSTMCell(4, dropout=1.0), "dropout"),
        (lambda: GRUCell(4, recurrent_dropout=-0.1), "recurrent_dropout"),
        (lambda: GRUCell(4, reset_after="yes"), "reset_after"),
        (lambda: LSTMCell(4, unit_forget_bias=1), "unit_forget_bias"),
        (lambda: SimpleRNNCell(4, use_bias=None), "use_bias"),
        (lambda: LSTMCell(4, kernel_initializer="nope"), "kernel_initializer"),
        (lambda: GRUCell(4, seed=-1), "seed"),
    ],
)
def test_bad_arguments(make, argument):
    with pytest.raises(ValueError, match=f"^{argument}="):
        make()


def test_rnn_converts_to_tflite_with_a_dynamic_batch():
    from kapps import export

    inputs = keras.Input((None, 4))
    x = keras.layers.Masking(0.0)(inputs)
    x = keras.layers.Bidirectional(RNN(GRUCell(5), return_sequences=True))(x)
    x = RNN(LSTMCell(3), go_backwards=True)(x)
    model = keras.Model(inputs, x)
    flatbuffer = export.to_tflite(model)
    x, _ = _padded_batch(seed=9)
    assert export.tflite_parity(model, flatbuffer, x) <= 1e-5
