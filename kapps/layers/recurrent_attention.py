"""Attention for recurrent encoder-decoders: Bahdanau's additive and Luong's multiplicative
scores, and a recurrent decoder that attends to the source at every target step.

A recurrent encoder turns a source sentence into one vector per word (its *annotations*
``h_j``). Instead of squeezing the sentence into one fixed vector (Sutskever et al. 2014),
the decoder looks back at all annotations at every step: it scores each against its own state
``s`` (the *query*), turns the scores into weights with a softmax over source positions and
reads their weighted average, the *context* ``c = sum_j a_j h_j`` (Bahdanau et al. 2015).

- ``BahdanauAttention``: ``e_j = v^T tanh(W s + U h_j)`` (additive, section 3.1 and appendix
  A.1.2 of Bahdanau et al.); the query is the decoder's *previous* state.
- ``LuongAttention``: ``e_j = s^T h_j`` ("dot") or ``s^T W h_j`` ("general") (Luong et al.
  2015, section 3.1); the query is the decoder's *current* state.

``U h_j`` (or ``W h_j``) does not depend on the decoder, so ``project_keys(values)`` computes
it once per sentence and ``call(query, keys, values, source_mask)`` reuses it at every step.
Padded source positions (``source_mask`` False) get weight exactly 0.

``AttentionDecoder`` is the recurrent decoder with teacher forcing: it runs a recurrent cell
over the target embeddings inside one ``keras.ops.while_loop`` (a TFLite ``WHILE``, builtin),
attending to the encoder's outputs at every step, and ``step`` runs one step for decoding.
"""

import keras
from keras import ops

from kapps._checks import check_choice, check_positive_int
from kapps.layers.attention import _MASKED_LOGIT
from kapps.layers.recurrent import GRUCell, LSTMCell, _get_initializer

#: cells the decoder can use: name -> class
DECODER_CELLS = {"gru": GRUCell, "lstm": LSTMCell}
#: attention kinds of AttentionDecoder
DECODER_ATTENTIONS = ("bahdanau", "luong")
#: Luong score functions
LUONG_SCORES = ("dot", "general")


def _masked_softmax(logits, source_mask):
    """Softmax over the last axis in float32; masked positions get weight exactly 0."""
    logits = ops.cast(logits, "float32")
    if source_mask is not None:
        source_mask = ops.cast(source_mask, "bool")
        logits = ops.where(source_mask, logits, _MASKED_LOGIT)
    if logits.shape[-1] == 1:
        weights = ops.ones_like(logits)  # one source position takes all the weight
    else:
        weights = ops.softmax(logits, axis=-1)
    if source_mask is not None:
        weights = ops.where(source_mask, weights, 0.0)  # an all-padding row: all zeros
    return weights


def _context(weights, values):
    """``sum_j weights_j values_j``: (batch, source) x (batch, source, dim) -> (batch, dim)."""
    weights = ops.cast(weights, values.dtype)
    # (batch, 1, source) x (batch, source, dim) -> (batch, 1, dim)
    return ops.squeeze(ops.matmul(ops.expand_dims(weights, 1), values), axis=1)


class _SourceAttention(keras.layers.Layer):
    """What both scores share: the call protocol and the shape checks."""

    def _check_built(self):
        if not self.built:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} is not built; call it once or call "
                "build(query_shape, keys_shape, values_shape) before project_keys."
            )

    def call(self, query, keys, values, source_mask=None):
        # (batch, source, k) . (batch, 1, k) summed over k -> (batch, source)
        logits = self._scores(query, keys)
        weights = _masked_softmax(logits, source_mask)
        return _context(weights, values), weights

    def compute_output_spec(self, query, keys, values, source_mask=None):
        batch, source, dim = values.shape
        return (
            keras.KerasTensor((query.shape[0], dim), dtype=self.compute_dtype),
            keras.KerasTensor((query.shape[0], source), dtype="float32"),
        )


@keras.saving.register_keras_serializable(package="kapps")
class BahdanauAttention(_SourceAttention):
    """Additive attention: ``e_j = v^T tanh(W_q s + W_k h_j)``, ``a = softmax(e)`` over the
    source positions, context ``c = sum_j a_j h_j``.

    The query ``s`` (the decoder's previous state ``s_{i-1}`` in the paper) and each
    annotation ``h_j`` are projected to ``units`` features, added, squashed and scored by the
    vector ``v``: a one-hidden-layer network that judges how well ``h_j`` fits ``s``, trained
    with the rest of the model. As in the paper's equations there are no biases (a bias would
    be one more term inside the tanh).

    Args:
        units: width of the hidden layer of the score (1000 in the paper, ``n'``).
        kernel_initializer: initializer of ``W_q``, ``W_k`` and ``v`` (the paper drew
            ``W_q``, ``W_k`` from N(0, 0.001^2) and started ``v`` at 0; a zero ``v`` gives
            ``W_q`` and ``W_k`` no gradient at the first step, so Glorot is the default).
        **kwargs: standard layer arguments.

    Call arguments:
        query: ``(batch, query_dim)``.
        keys: ``(batch, source_len, units)``, the output of ``project_keys(values)``.
        values: ``(batch, source_len, value_dim)``, the annotations.
        source_mask: optional ``(batch, source_len)``, True (nonzero) for real tokens.

    Returns:
        ``(context, weights)``: ``(batch, value_dim)`` and float32 ``(batch, source_len)``
        weights that sum to 1 over the real positions (0 on padding).

    Example:
        >>> attention = BahdanauAttention(16)
        >>> values = keras.ops.ones((2, 7, 32))  # encoder outputs
        >>> attention.build((None, 8), (None, None, 16), (None, None, 32))
        >>> keys = attention.project_keys(values)  # once per sentence
        >>> context, weights = attention(keras.ops.ones((2, 8)), keys, values)
        >>> tuple(context.shape), tuple(weights.shape)
        ((2, 32), (2, 7))

    Paper: Bahdanau, Cho & Bengio 2015, "Neural Machine Translation by Jointly Learning to
    Align and Translate", section 3.1 and appendix A.1.2.
    """

    def __init__(self, units, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int("units", units)
        self.kernel_initializer = _get_initializer("kernel_initializer", kernel_initializer)

    def _initializer(self):
        return keras.initializers.get(keras.initializers.serialize(self.kernel_initializer))

    def build(self, query_shape, keys_shape=None, values_shape=None):
        if values_shape is None or values_shape[-1] is None or query_shape[-1] is None:
            raise ValueError(
                f"BahdanauAttention needs the query and value widths to build; got "
                f"query_shape={query_shape!r}, values_shape={values_shape!r}."
            )
        self.query_kernel = self.add_weight(
            shape=(query_shape[-1], self.units), name="query_kernel",
            initializer=self._initializer(),
        )
        self.key_kernel = self.add_weight(
            shape=(values_shape[-1], self.units), name="key_kernel",
            initializer=self._initializer(),
        )
        self.score_vector = self.add_weight(
            shape=(self.units,), name="score_vector", initializer=self._initializer()
        )
        super().build(query_shape)

    def project_keys(self, values):
        """``W_k h_j`` for every source position: ``(batch, source, value_dim)`` to
        ``(batch, source, units)``. Compute once per sentence."""
        self._check_built()
        return ops.matmul(values, self.key_kernel)

    def _scores(self, query, keys):
        projected = ops.matmul(query, self.query_kernel)  # (batch, units)
        # (batch, source, units) + (batch, 1, units)
        hidden = ops.tanh(keys + ops.expand_dims(projected, 1))
        return ops.sum(hidden * self.score_vector, axis=-1)  # (batch, source)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class LuongAttention(_SourceAttention):
    """Multiplicative attention: ``e_j = s^T h_j`` ("dot") or ``e_j = s^T W h_j``
    ("general"), ``a = softmax(e)`` over the source positions, context ``c = sum_j a_j h_j``.

    "dot" has no weights and needs the query and the annotations to have the same width;
    "general" learns ``W`` (value_dim x query_dim), so they may differ (a bidirectional
    encoder's annotations are twice as wide as the decoder's state). No scaling by
    ``sqrt(d)``: that came with the Transformer.

    Args:
        score: ``"dot"`` or ``"general"``.
        kernel_initializer: initializer of ``W`` ("general").
        **kwargs: standard layer arguments.

    Call arguments:
        query: ``(batch, query_dim)``, the decoder's current state in Luong et al.
        keys: ``(batch, source_len, query_dim)``, the output of ``project_keys(values)``.
        values: ``(batch, source_len, value_dim)``, the annotations.
        source_mask: optional ``(batch, source_len)``, True (nonzero) for real tokens.

    Returns:
        ``(context, weights)``: ``(batch, value_dim)`` and float32 ``(batch, source_len)``.

    Example:
        >>> attention = LuongAttention("general")
        >>> values = keras.ops.ones((2, 7, 32))
        >>> attention.build((None, 16), None, (None, None, 32))
        >>> keys = attention.project_keys(values)  # (2, 7, 16)
        >>> context, weights = attention(keras.ops.ones((2, 16)), keys, values)

    Paper: Luong, Pham & Manning 2015, "Effective Approaches to Attention-based Neural Machine
    Translation", section 3.1, equation 8.
    """

    def __init__(self, score="general", kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.score = check_choice("score", score, LUONG_SCORES)
        self.kernel_initializer = _get_initializer("kernel_initializer", kernel_initializer)

    def build(self, query_shape, keys_shape=None, values_shape=None):
        if values_shape is None or values_shape[-1] is None or query_shape[-1] is None:
            raise ValueError(
                f"LuongAttention needs the query and value widths to build; got "
                f"query_shape={query_shape!r}, values_shape={values_shape!r}."
            )
        if self.score == "dot" and query_shape[-1] != values_shape[-1]:
            raise ValueError(
                f"score='dot' needs queries and values of one width; got query width "
                f"{query_shape[-1]} and value width {values_shape[-1]}. Use score='general'."
            )
        if self.score == "general":
            self.kernel = self.add_weight(
                shape=(values_shape[-1], query_shape[-1]), name="kernel",
                initializer=self.kernel_initializer,
            )
        super().build(query_shape)

    def project_keys(self, values):
        """``W h_j`` ("general") or ``h_j`` ("dot") for every source position. Compute once
        per sentence."""
        self._check_built()
        if self.score == "dot":
            return values
        return ops.matmul(values, self.kernel)  # (batch, source, query_dim)

    def _scores(self, query, keys):
        return ops.sum(keys * ops.expand_dims(query, 1), axis=-1)  # (batch, source)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "score": self.score,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class Maxout(keras.layers.Layer):
    """The maximum of each group of ``pieces`` consecutive features: ``(..., pieces * k)`` to
    ``(..., k)``.

    Bahdanau et al. read their output through one maxout layer of 500 units (pairs of 1000
    pre-activations): a learned piecewise-linear activation.

    Args:
        pieces: features per group (2 in the paper).
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(..., pieces * k)``.

    Returns:
        ``(..., k)``.

    Example:
        >>> Maxout()(keras.ops.convert_to_tensor([[1.0, 3.0, 4.0, 2.0]]))  # [[3.0, 4.0]]

    Paper: Goodfellow et al. 2013, "Maxout Networks"; Bahdanau et al. 2015, appendix A.2.2.
    """

    def __init__(self, pieces=2, **kwargs):
        super().__init__(**kwargs)
        self.pieces = check_positive_int("pieces", pieces)
        self.supports_masking = True

    def build(self, input_shape):
        if input_shape[-1] is None or input_shape[-1] % self.pieces:
            raise ValueError(
                f"inputs of width {input_shape[-1]} do not split into groups of "
                f"pieces={self.pieces}; expected a known width divisible by pieces."
            )
        super().build(input_shape)

    def call(self, inputs):
        units = inputs.shape[-1] // self.pieces
        leading = ops.shape(inputs)[:-1]
        # (rows, units, pieces): the groups of consecutive features side by side
        grouped = ops.reshape(inputs, (-1, units, self.pieces))
        out = ops.max(grouped, axis=-1)
        return ops.reshape(out, (*leading, units))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // self.pieces)

    def get_config(self):
        return {**super().get_config(), "pieces": self.pieces}


@keras.saving.register_keras_serializable(package="kapps")
class AttentionDecoder(keras.layers.Layer):
    """A recurrent decoder that attends to the source at every step (teacher forcing).

    For target position ``i`` with the embedding ``e_i`` of the previous target token:

    - ``attention="bahdanau"`` (Bahdanau et al. 2015, appendix A.2.2): the previous state
      queries the source, then the cell reads the embedding and the context::

          c_i, a_i = attention(s_{i-1}, h)
          s_i      = cell([e_i; c_i], s_{i-1})
          features = [s_i; e_i; c_i]            (what the paper's deep output reads)

    - ``attention="luong"`` (Luong et al. 2015, sections 3 and 3.3, with input feeding): the
      cell reads the embedding and the previous attentional vector, then the new state
      queries the source::

          s_i      = cell([e_i; h~_{i-1}], s_{i-1})        h~_0 = 0
          c_i, a_i = attention(s_i, h)
          h~_i     = tanh(W_c [c_i; s_i])
          features = h~_i

    The returned features go to the output layers (``keras.layers.Dense`` to logits, or the
    paper's maxout readout); the recurrence does not depend on them, so the model computes the
    logits for all positions at once. The loop is one ``keras.ops.while_loop`` over the
    target positions (a builtin TFLite ``WHILE``) writing step ``i``'s features into a
    ``(batch, target_len, features)`` buffer.

    Backends: the loop is ``keras.ops.while_loop``, which TensorFlow (and PyTorch)
    differentiate; JAX cannot differentiate a ``lax.while_loop``, so training needs the
    TensorFlow or PyTorch backend (inference runs on all three).

    The mask passed as ``mask`` (the target tokens that are not padding) is attached to the
    output, so Keras losses ignore the padded positions. The recurrence is causal, so padding
    after a sentence does not change the outputs before it.

    Args:
        units: size of the decoder state (1000 in Bahdanau et al.).
        attention: ``"bahdanau"`` or ``"luong"``.
        attention_units: hidden width of the Bahdanau score (ignored by Luong).
        luong_score: ``"general"`` or ``"dot"`` (Luong only; "dot" needs encoder outputs of
            width ``units``).
        cell: ``"gru"`` (``kapps.layers.GRUCell``) or ``"lstm"`` (``kapps.layers.LSTMCell``).
        reset_after: the GRU's reset-gate placement (False is Cho et al.'s form, used by
            Bahdanau et al.).
        kernel_initializer: initializer of the input kernels and the attention weights.
        recurrent_initializer: initializer of the recurrent kernel.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, target_len, embedding_dim)``, embeddings of the decoder inputs
            (the target shifted right, starting with the start token).
        encoder_outputs: ``(batch, source_len, encoder_dim)``, the annotations ``h``.
        initial_state: the initial hidden state ``(batch, units)`` (an LSTM's memory cell
            starts at 0).
        source_mask: optional ``(batch, source_len)``, True for real source tokens.
        mask: optional ``(batch, target_len)`` target mask, attached to the output.

    Returns:
        ``(batch, target_len, feature_dim)`` with ``feature_dim = units + embedding_dim +
        encoder_dim`` (Bahdanau) or ``units`` (Luong).

    Example:
        >>> decoder = AttentionDecoder(16, attention_units=16)
        >>> features = decoder(keras.ops.ones((2, 5, 8)), keras.ops.ones((2, 7, 32)),
        ...                    keras.ops.zeros((2, 16)))
        >>> tuple(features.shape)  # 16 + 8 + 32
        (2, 5, 56)

    Paper: Bahdanau, Cho & Bengio 2015, "Neural Machine Translation by Jointly Learning to
    Align and Translate"; Luong, Pham & Manning 2015, "Effective Approaches to
    Attention-based Neural Machine Translation".
    """

    def __init__(
        self,
        units,
        attention="bahdanau",
        attention_units=1000,
        luong_score="general",
        cell="gru",
        reset_after=False,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = check_positive_int("units", units)
        self.attention = check_choice("attention", attention, DECODER_ATTENTIONS)
        self.attention_units = check_positive_int("attention_units", attention_units)
        self.luong_score = check_choice("luong_score", luong_score, LUONG_SCORES)
        self.cell = check_choice("cell", cell, tuple(DECODER_CELLS))
        if not isinstance(reset_after, bool):
            raise ValueError(f"reset_after={reset_after!r} is not allowed; expected True or False.")
        self.reset_after = reset_after
        self.kernel_initializer = _get_initializer("kernel_initializer", kernel_initializer)
        self.recurrent_initializer = _get_initializer(
            "recurrent_initializer", recurrent_initializer
        )
        cell_kwargs = {"reset_after": reset_after} if cell == "gru" else {}
        self.rnn_cell = DECODER_CELLS[cell](
            units,
            kernel_initializer=self._fresh(self.kernel_initializer),
            recurrent_initializer=self._fresh(self.recurrent_initializer),
            dtype=self.dtype_policy,
            name="cell",
            **cell_kwargs,
        )
        if attention == "bahdanau":
            self.source_attention = BahdanauAttention(
                attention_units, kernel_initializer=self._fresh(self.kernel_initializer),
                dtype=self.dtype_policy, name="attention",
            )
            self.attentional = None
        else:
            self.source_attention = LuongAttention(
                luong_score, kernel_initializer=self._fresh(self.kernel_initializer),
                dtype=self.dtype_policy, name="attention",
            )
            # h~ = tanh(W_c [c; s]), no bias (Luong et al. equation 5)
            self.attentional = keras.layers.Dense(
                units, activation="tanh", use_bias=False,
                kernel_initializer=self._fresh(self.kernel_initializer),
                dtype=self.dtype_policy, name="attentional",
            )
        self.supports_masking = True

    @staticmethod
    def _fresh(initializer):
        return keras.initializers.get(keras.initializers.serialize(initializer))

    @property
    def num_states(self):
        """Tensors in the decoder state: the cell's states, plus ``h~`` for Luong."""
        return (2 if self.cell == "lstm" else 1) + (1 if self.attention == "luong" else 0)

    def build(self, inputs_shape, encoder_outputs_shape, initial_state_shape=None,
              source_mask_shape=None):
        embedding_dim, encoder_dim = inputs_shape[-1], encoder_outputs_shape[-1]
        if embedding_dim is None or encoder_dim is None:
            raise ValueError(
                f"AttentionDecoder needs known widths; got inputs of shape "
                f"{tuple(inputs_shape)} and encoder outputs of shape "
                f"{tuple(encoder_outputs_shape)}."
            )
        self.embedding_dim, self.encoder_dim = embedding_dim, encoder_dim
        second = encoder_dim if self.attention == "bahdanau" else self.units
        self.rnn_cell.build((None, embedding_dim + second))
        self.source_attention.build((None, self.units), None, (None, None, encoder_dim))
        if self.attentional is not None:
            self.attentional.build((None, encoder_dim + self.units))
        super().build(inputs_shape)

    @property
    def feature_dim(self):
        if self.attention == "luong":
            return self.units
        return self.units + self.embedding_dim + self.encoder_dim

    def initial_states(self, initial_state):
        """The full decoder state (a list of tensors) from the initial hidden state
        ``(batch, units)``: the LSTM's memory cell starts at 0, Luong's ``h~_0`` at 0."""
        states = [initial_state]
        if self.cell == "lstm":
            states.append(ops.zeros_like(initial_state))
        if self.attention == "luong":
            states.append(ops.zeros_like(states[0]))  # h~_0 = 0
        return states

    def project_keys(self, encoder_outputs):
        """The attention's keys, computed once per sentence."""
        return self.source_attention.project_keys(encoder_outputs)

    def step(self, inputs, states, encoder_outputs, keys, source_mask=None):
        """One decoder step.

        Args:
            inputs: ``(batch, embedding_dim)``, the embedding of the previous target token.
            states: the decoder state (a list, see ``initial_states``).
            encoder_outputs: ``(batch, source_len, encoder_dim)``.
            keys: ``project_keys(encoder_outputs)``.
            source_mask: optional ``(batch, source_len)``.

        Returns:
            ``(features, new_states, weights)``: ``(batch, feature_dim)``, a list, and
            float32 ``(batch, source_len)`` attention weights.
        """
        states = list(states)
        cell_states = states[:2] if self.cell == "lstm" else states[:1]
        if self.attention == "bahdanau":
            context, weights = self.source_attention(
                cell_states[0], keys, encoder_outputs, source_mask=source_mask
            )
            output, cell_states = self.rnn_cell(
                ops.concatenate([inputs, context], axis=-1), cell_states
            )
            return ops.concatenate([output, inputs, context], axis=-1), list(cell_states), weights
        feed = states[-1]
        output, cell_states = self.rnn_cell(ops.concatenate([inputs, feed], axis=-1), cell_states)
        context, weights = self.source_attention(
            output, keys, encoder_outputs, source_mask=source_mask
        )
        attentional = self.attentional(ops.concatenate([context, output], axis=-1))
        return attentional, [*cell_states, attentional], weights

    def call(self, inputs, encoder_outputs, initial_state, source_mask=None, mask=None):
        keys = self.project_keys(encoder_outputs)
        states = self.initial_states(initial_state)
        batch, length = ops.shape(inputs)[0], ops.shape(inputs)[1]
        positions = ops.arange(length, dtype="int32")
        buffer = ops.zeros((batch, length, self.feature_dim), dtype=self.compute_dtype)

        def cond(i, buffer, *states):
            return i < length

        def body(i, buffer, *states):
            step_inputs = ops.take(inputs, i, axis=1)  # (batch, embedding_dim)
            features, states, _ = self.step(
                step_inputs, states, encoder_outputs, keys, source_mask
            )
            at_i = ops.reshape(ops.equal(positions, i), (1, -1, 1))  # (1, target_len, 1)
            buffer = ops.where(at_i, ops.expand_dims(features, 1), buffer)
            return (i + 1, buffer, *states)

        outputs = ops.while_loop(cond, body, (ops.convert_to_tensor(0, "int32"), buffer, *states))
        return outputs[1]

    def compute_output_shape(self, inputs_shape, encoder_outputs_shape, initial_state_shape=None,
                             source_mask_shape=None):
        if self.attention == "luong":
            width = self.units
        else:
            width = self.units + inputs_shape[-1] + encoder_outputs_shape[-1]
        return (inputs_shape[0], inputs_shape[1], width)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "attention": self.attention,
                "attention_units": self.attention_units,
                "luong_score": self.luong_score,
                "cell": self.cell,
                "reset_after": self.reset_after,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "recurrent_initializer": keras.initializers.serialize(
                    self.recurrent_initializer
                ),
            }
        )
        return config
