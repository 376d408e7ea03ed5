"""Recurrent cells written from their equations: the simple (Elman) RNN, the LSTM and the GRU.

A *cell* computes one time step: from the input ``x_t`` and the previous state it returns the
output and the new state. ``keras.layers.RNN(cell)`` runs it over a sequence (with masking,
``go_backwards``, ``return_sequences`` / ``return_state``) and ``keras.layers.Bidirectional``
runs two copies in opposite directions, exactly as with Keras' own cells.

- ``SimpleRNNCell``: ``h_t = tanh(x_t W + h_{t-1} U + b)`` (Elman 1990).
- ``LSTMCell``: input, forget and output gates guard a cell state ``c_t``, which is changed
  only by addition, so gradients can travel far back in time (Hochreiter & Schmidhuber 1997;
  the forget gate is Gers et al. 2000's).
- ``GRUCell``: an update gate ``z_t`` mixes the old state with a candidate computed through a
  reset gate ``r_t``; no separate cell state (Cho et al. 2014).

The weights have Keras' layout (names, shapes and gate order), so weights move both ways with
``cell.set_weights(keras_cell.get_weights())``:

=========  ======================  ======================  =================================
cell       kernel                  recurrent_kernel        bias
=========  ======================  ======================  =================================
SimpleRNN  ``(input, units)``      ``(units, units)``      ``(units,)``
LSTM       ``(input, 4 units)``    ``(units, 4 units)``    ``(4 units,)``, gates i, f, c, o
GRU        ``(input, 3 units)``    ``(units, 3 units)``    ``(3 units,)`` or, with
                                                           ``reset_after``, ``(2, 3 units)``
                                                           (input and recurrent biases);
                                                           gates z, r, h
=========  ======================  ======================  =================================

Dropout follows Gal & Ghahramani 2016 and Keras: one mask per sequence on the inputs
(``dropout``) and one on the previous state (``recurrent_dropout``), reused at every step and
drawn only when ``training`` is true. The masks are created and cleared by
``keras.layers.RNN``, which does so for cells derived from Keras' ``DropoutRNNCell`` mixin
(``keras.src.layers.rnn.dropout_rnn_cell``, the only way to opt in; it is not in the public
``keras`` namespace).

``RNN`` is ``keras.layers.RNN`` with a time loop that converts to TFLite builtin ops with a
dynamic batch: Keras' loop (TensorFlow backend) collects the steps in a ``TensorArray``, whose
``TensorListReserve`` needs a static element shape, so a model with a ``None`` batch axis
fails to convert without Flex ops. ``RNN`` writes step ``t`` into a fixed-shape
``(batch, time, units)`` buffer with a ``where`` instead (a ``WHILE`` of builtins).
"""

import keras
from keras import ops
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

from kapps._checks import check_positive_int, check_rate
from kapps.layers.mbconv import _check_seed


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} is not allowed; expected True or False.")
    return value


def _get_activation(name, value):
    if value is None:
        raise ValueError(
            f"{name}=None is not allowed; expected the name of a Keras activation ('tanh', "
            "'sigmoid', ...) or a callable."
        )
    try:
        return keras.activations.get(value)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"{name}={value!r} is not allowed; expected the name of a Keras activation "
            "('tanh', 'sigmoid', ...) or a callable."
        ) from error


def _get_initializer(name, value):
    try:
        initializer = keras.initializers.get(value)
    except (ValueError, TypeError) as error:
        initializer = None
        cause = error
    else:
        cause = None
    if initializer is None:
        raise ValueError(
            f"{name}={value!r} is not allowed; expected the name of a Keras initializer "
            "('glorot_uniform', 'orthogonal', 'zeros', ...), an initializer or its config."
        ) from cause
    return initializer


class _RecurrentCell(DropoutRNNCell, keras.layers.Layer):
    """What the three cells share: argument checks, dropout masks, initial state, config."""

    #: gates stacked in the kernel (1, 4 or 3)
    _gates = 1

    def __init__(
        self,
        units,
        activation,
        use_bias,
        kernel_initializer,
        recurrent_initializer,
        bias_initializer,
        dropout,
        recurrent_dropout,
        seed,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_positive_int("units", units)
        self.activation = _get_activation("activation", activation)
        self.use_bias = _check_bool("use_bias", use_bias)
        self.kernel_initializer = _get_initializer("kernel_initializer", kernel_initializer)
        self.recurrent_initializer = _get_initializer(
            "recurrent_initializer", recurrent_initializer
        )
        self.bias_initializer = _get_initializer("bias_initializer", bias_initializer)
        self.dropout = check_rate("dropout", dropout)
        self.recurrent_dropout = check_rate("recurrent_dropout", recurrent_dropout)
        self.seed = _check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.state_size = units
        self.output_size = units

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"inputs of shape {tuple(input_shape)} are not allowed; the last axis (the "
                "features of one step) must be known."
            )
        width = self.units * self._gates
        self.kernel = self.add_weight(
            shape=(input_dim, width), name="kernel", initializer=self.kernel_initializer
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, width),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                shape=self._bias_shape(), name="bias", initializer=self._bias_init()
            )
        else:
            self.bias = None
        super().build(input_shape)

    def _bias_shape(self):
        return (self.units * self._gates,)

    def _bias_init(self):
        return self.bias_initializer

    def _masked(self, inputs, h_tm1, training):
        """Inputs and previous state with this sequence's dropout masks applied (training)."""
        if training and self.dropout > 0.0:
            inputs = inputs * self.get_dropout_mask(inputs)
        if training and self.recurrent_dropout > 0.0:
            h_tm1 = h_tm1 * self.get_recurrent_dropout_mask(h_tm1)
        return inputs, h_tm1

    def get_initial_state(self, batch_size=None):
        """Zeros of shape ``(batch_size, units)`` for every state."""
        sizes = self.state_size if isinstance(self.state_size, (list, tuple)) else [self.state_size]
        return [ops.zeros((batch_size, size), dtype=self.compute_dtype) for size in sizes]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(
                    self.recurrent_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "dropout": self.dropout,
                "recurrent_dropout": self.recurrent_dropout,
                "seed": self.seed,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class SimpleRNNCell(_RecurrentCell):
    """One step of the simple (Elman) RNN: ``h_t = activation(x_t W + b + h_{t-1} U)``.

    The output is the new state. Through a long sequence the gradient is multiplied by ``U``
    (and the activation's slope) once per step, so it vanishes or explodes: the problem the
    LSTM and the GRU were designed to fix.

    Args:
        units: size of the state (and the output).
        activation: the nonlinearity (``"tanh"``).
        use_bias: whether the cell has the bias ``b``.
        kernel_initializer: initializer of ``W`` (``"glorot_uniform"``, as Keras).
        recurrent_initializer: initializer of ``U`` (``"orthogonal"``, as Keras).
        bias_initializer: initializer of ``b`` (``"zeros"``).
        dropout: rate of the dropout mask on the inputs, one mask per sequence, in ``[0, 1)``.
        recurrent_dropout: rate of the mask on the previous state, in ``[0, 1)``.
        seed: optional integer seed of the dropout masks.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, input_dim)``, one time step.
        states: the previous state ``(batch, units)`` (or a list holding it).
        training: dropout only when True.

    Returns:
        ``(output, new_states)``: ``(batch, units)`` twice (the state as a list when
        ``states`` was one).

    Example:
        >>> layer = keras.layers.RNN(SimpleRNNCell(16), return_sequences=True)
        >>> tuple(layer(keras.ops.ones((2, 5, 3))).shape)
        (2, 5, 16)

    Paper: Elman 1990, "Finding Structure in Time".
    """

    def __init__(
        self,
        units,
        activation="tanh",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            units, activation, use_bias, kernel_initializer, recurrent_initializer,
            bias_initializer, dropout, recurrent_dropout, seed, **kwargs,
        )

    def call(self, inputs, states, training=False):
        nested = isinstance(states, (list, tuple))
        h_tm1 = states[0] if nested else states
        inputs, h_masked = self._masked(inputs, h_tm1, training)
        h = ops.matmul(inputs, self.kernel)
        if self.use_bias:
            h = h + self.bias
        h = self.activation(h + ops.matmul(h_masked, self.recurrent_kernel))
        return h, ([h] if nested else h)


@keras.saving.register_keras_serializable(package="kapps")
class LSTMCell(_RecurrentCell):
    """One step of the long short-term memory: gates decide what the cell state forgets,
    what it stores and what it shows.

    With ``[a_i, a_f, a_c, a_o] = x_t W + h_{t-1} U + b`` (the four gates' pre-activations,
    in Keras' order i, f, c, o) and ``sigma`` the ``recurrent_activation``::

        i_t = sigma(a_i)        input gate: how much of the candidate to store
        f_t = sigma(a_f)        forget gate: how much of the old cell state to keep
        o_t = sigma(a_o)        output gate: how much of the cell state to show
        c_t = f_t * c_{t-1} + i_t * activation(a_c)
        h_t = o_t * activation(c_t)

    The cell state changes only through ``*`` and ``+``, so while the forget gate stays
    near 1 the gradient reaches far back (the "constant error carousel").
    ``unit_forget_bias=True`` starts the forget gate's bias at 1 (Jozefowicz et al. 2015),
    so a new network remembers by default.

    Args:
        units: size of the hidden state ``h`` and the cell state ``c``.
        activation: the candidate's and the cell output's nonlinearity (``"tanh"``).
        recurrent_activation: the gates' nonlinearity (``"sigmoid"``).
        use_bias: whether the gates have biases.
        kernel_initializer: initializer of ``W`` (input_dim, 4 units).
        recurrent_initializer: initializer of ``U`` (units, 4 units).
        bias_initializer: initializer of ``b`` (4 units,).
        unit_forget_bias: add 1 to the forget gate's initial bias (its initializer then
            applies to the other gates only, as in Keras).
        dropout: rate of the per-sequence dropout mask on the inputs, in ``[0, 1)``.
        recurrent_dropout: rate of the per-sequence mask on ``h_{t-1}``, in ``[0, 1)``.
        seed: optional integer seed of the dropout masks.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, input_dim)``, one time step.
        states: ``[h_{t-1}, c_{t-1}]``, each ``(batch, units)``.
        training: dropout only when True.

    Returns:
        ``(h_t, [h_t, c_t])``.

    Example:
        >>> layer = keras.layers.RNN(LSTMCell(16), return_state=True)
        >>> output, h, c = layer(keras.ops.ones((2, 5, 3)))

    Paper: Hochreiter & Schmidhuber 1997, "Long Short-Term Memory"; the forget gate is from
    Gers, Schmidhuber & Cummins 2000, "Learning to Forget".
    """

    _gates = 4

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            units, activation, use_bias, kernel_initializer, recurrent_initializer,
            bias_initializer, dropout, recurrent_dropout, seed, **kwargs,
        )
        self.recurrent_activation = _get_activation("recurrent_activation", recurrent_activation)
        self.unit_forget_bias = _check_bool("unit_forget_bias", unit_forget_bias)
        self.state_size = [units, units]

    def _bias_init(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        units, initializer = self.units, self.bias_initializer

        def bias_initializer(shape, dtype=None):
            # gates i, f, c, o: the forget gate's slice starts at 1
            return ops.concatenate(
                [
                    initializer((units,), dtype=dtype),
                    ops.ones((units,), dtype=dtype),
                    initializer((2 * units,), dtype=dtype),
                ]
            )

        return bias_initializer

    def call(self, inputs, states, training=False):
        h_tm1, c_tm1 = states[0], states[1]
        inputs, h_masked = self._masked(inputs, h_tm1, training)
        # (batch, 4 units): the four gates' pre-activations side by side
        a = ops.matmul(inputs, self.kernel) + ops.matmul(h_masked, self.recurrent_kernel)
        if self.use_bias:
            a = a + self.bias
        a_i, a_f, a_c, a_o = ops.split(a, 4, axis=-1)
        i = self.recurrent_activation(a_i)
        f = self.recurrent_activation(a_f)
        o = self.recurrent_activation(a_o)
        c = f * c_tm1 + i * self.activation(a_c)
        h = o * self.activation(c)
        return h, [h, c]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "recurrent_activation": keras.activations.serialize(self.recurrent_activation),
                "unit_forget_bias": self.unit_forget_bias,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class GRUCell(_RecurrentCell):
    """One step of the gated recurrent unit: an update gate interpolates between the old
    state and a candidate computed through a reset gate.

    With ``sigma`` the ``recurrent_activation`` and gates in Keras' order z, r, h::

        z_t = sigma(x_t W_z + h_{t-1} U_z + b_z)      update gate
        r_t = sigma(x_t W_r + h_{t-1} U_r + b_r)      reset gate
        reset_after=False (Cho et al. 2014):
            h~_t = activation(x_t W_h + b_h + (r_t * h_{t-1}) U_h)
        reset_after=True (the default, as Keras and cuDNN):
            h~_t = activation(x_t W_h + b_h + r_t * (h_{t-1} U_h + b'_h))
        h_t = z_t * h_{t-1} + (1 - z_t) * h~_t

    ``reset_after=True`` applies the reset gate after the recurrent matrix product, so all
    three recurrent products are one matrix multiplication; it has a second, recurrent bias
    ``b'`` (the bias is ``(2, 3 units)``: input biases, then recurrent biases). Cho et al.
    write the last line with ``z`` and ``1 - z`` swapped; that only relabels the gate.

    Args:
        units: size of the state (and the output).
        activation: the candidate's nonlinearity (``"tanh"``).
        recurrent_activation: the gates' nonlinearity (``"sigmoid"``).
        use_bias: whether the gates have biases.
        kernel_initializer: initializer of ``W`` (input_dim, 3 units).
        recurrent_initializer: initializer of ``U`` (units, 3 units).
        bias_initializer: initializer of the bias.
        dropout: rate of the per-sequence dropout mask on the inputs, in ``[0, 1)``.
        recurrent_dropout: rate of the per-sequence mask on ``h_{t-1}``, in ``[0, 1)``.
        reset_after: apply the reset gate after the recurrent product (Keras' default) or
            before it (the paper's form).
        seed: optional integer seed of the dropout masks.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, input_dim)``, one time step.
        states: the previous state ``(batch, units)`` (or a list holding it).
        training: dropout only when True.

    Returns:
        ``(h_t, new_states)`` (the state as a list when ``states`` was one).

    Example:
        >>> encoder = keras.layers.Bidirectional(
        ...     keras.layers.RNN(GRUCell(32, reset_after=False), return_sequences=True))
        >>> tuple(encoder(keras.ops.ones((2, 7, 8))).shape)
        (2, 7, 64)

    Paper: Cho et al. 2014, "Learning Phrase Representations using RNN Encoder-Decoder for
    Statistical Machine Translation".
    """

    _gates = 3

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        dropout=0.0,
        recurrent_dropout=0.0,
        reset_after=True,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            units, activation, use_bias, kernel_initializer, recurrent_initializer,
            bias_initializer, dropout, recurrent_dropout, seed, **kwargs,
        )
        self.recurrent_activation = _get_activation("recurrent_activation", recurrent_activation)
        self.reset_after = _check_bool("reset_after", reset_after)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def call(self, inputs, states, training=False):
        nested = isinstance(states, (list, tuple))
        h_tm1 = states[0] if nested else states
        inputs, h_masked = self._masked(inputs, h_tm1, training)
        units = self.units
        x = ops.matmul(inputs, self.kernel)  # (batch, 3 units): z, r, h
        if self.use_bias:
            input_bias = self.bias[0] if self.reset_after else self.bias
            x = x + input_bias
        x_z, x_r, x_h = ops.split(x, 3, axis=-1)
        if self.reset_after:
            # all three recurrent products at once; the reset gate scales the h part after
            inner = ops.matmul(h_masked, self.recurrent_kernel)
            if self.use_bias:
                inner = inner + self.bias[1]
            u_z, u_r, u_h = ops.split(inner, 3, axis=-1)
        else:
            inner = ops.matmul(h_masked, self.recurrent_kernel[:, : 2 * units])
            u_z, u_r = ops.split(inner, 2, axis=-1)
        z = self.recurrent_activation(x_z + u_z)
        r = self.recurrent_activation(x_r + u_r)
        if self.reset_after:
            recurrent_h = r * u_h
        else:
            recurrent_h = ops.matmul(r * h_masked, self.recurrent_kernel[:, 2 * units :])
        candidate = self.activation(x_h + recurrent_h)
        h = z * h_tm1 + (1.0 - z) * candidate
        return h, ([h] if nested else h)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "recurrent_activation": keras.activations.serialize(self.recurrent_activation),
                "reset_after": self.reset_after,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class RNN(keras.layers.RNN):
    """``keras.layers.RNN`` whose time loop converts to TFLite builtins with a dynamic batch.

    Everything but the loop is Keras' (arguments, masking, ``go_backwards``,
    ``return_sequences``, ``return_state``, dropout masks, ``Bidirectional`` wrapping), and the
    loop has the same semantics: a masked step keeps the previous states and repeats the
    previous output (or outputs zeros with ``zero_output_for_mask``). On the TensorFlow
    backend the loop is one ``keras.ops.while_loop`` that writes step ``t``'s output into a
    ``(batch, time, output_size)`` buffer with ``where`` (the ``TensorArray`` of Keras' loop
    becomes a ``TensorListReserve`` that TFLite cannot lower without a static batch). The
    buffer update costs ``O(time)`` per step, small next to the cell's matrix products for
    sentence-length sequences. On other backends, and with ``unroll=True``, Keras' own loop
    runs.

    Args:
        cell: an RNN cell (``kapps.layers.GRUCell``, ``LSTMCell``, ``SimpleRNNCell`` or any
            Keras cell).
        return_sequences, return_state, go_backwards, stateful, unroll,
            zero_output_for_mask: as ``keras.layers.RNN``.
        **kwargs: standard layer arguments.

    Call arguments:
        sequences: ``(batch, time, features)``.
        initial_state: optional list of initial states.
        mask: optional ``(batch, time)`` boolean mask of the real steps.
        training: dropout only when True.

    Returns:
        As ``keras.layers.RNN``.

    Example:
        >>> encoder = keras.layers.Bidirectional(RNN(GRUCell(32), return_sequences=True))
        >>> tuple(encoder(keras.ops.ones((2, 7, 8))).shape)
        (2, 7, 64)

    Paper: the loop is backpropagation through time (Werbos 1990, "Backpropagation Through
    Time: What It Does and How to Do It").
    """

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # keras.layers.RNN.from_config pops "cell" from the dict it is given; work on a copy
        return super().from_config(dict(config), custom_objects=custom_objects)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if keras.backend.backend() != "tensorflow" or self.unroll:
            return super().inner_loop(sequences, initial_state, mask, training=training)
        cell_kwargs = {}
        if isinstance(self.cell, keras.layers.Layer) and self.cell._call_has_training_arg:
            cell_kwargs["training"] = training
        states = (
            list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        )
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        if self.go_backwards:
            sequences = ops.flip(sequences, axis=1)
            if mask is not None:
                mask = ops.flip(mask, axis=1)
        if mask is not None:
            mask = ops.cast(mask, "bool")
        batch, length = ops.shape(sequences)[0], ops.shape(sequences)[1]
        output_size = getattr(self.cell, "output_size", None) or self.state_size[0]
        dtype = self.cell.compute_dtype
        zero_output = ops.zeros((batch, output_size), dtype=dtype)
        collect = self.return_sequences
        positions = ops.arange(length, dtype="int32")
        buffer = ops.zeros((batch, length if collect else 1, output_size), dtype=dtype)

        def cond(t, output, buffer, *states):
            return t < length

        def body(t, output, buffer, *states):
            step_input = ops.take(sequences, t, axis=1)  # (batch, features)
            new_output, new_states = self.cell(step_input, list(states), **cell_kwargs)
            if not isinstance(new_states, (list, tuple)):
                new_states = [new_states]
            new_states = list(new_states)
            if mask is not None:
                step_mask = ops.expand_dims(ops.take(mask, t, axis=1), -1)  # (batch, 1)
                fallback = zero_output if self.zero_output_for_mask else output
                new_output = ops.where(step_mask, new_output, fallback)
                new_states = [ops.where(step_mask, n, s) for n, s in zip(new_states, states)]
            if collect:
                at_t = ops.reshape(ops.equal(positions, t), (1, -1, 1))  # (1, time, 1)
                buffer = ops.where(at_t, ops.expand_dims(new_output, 1), buffer)
            return (t + 1, ops.cast(new_output, dtype), buffer, *new_states)

        result = ops.while_loop(
            cond, body, (ops.convert_to_tensor(0, "int32"), zero_output, buffer, *states)
        )
        last_output, buffer, states = result[1], result[2], list(result[3:])
        outputs = buffer if collect else ops.expand_dims(last_output, 1)
        return last_output, outputs, states
