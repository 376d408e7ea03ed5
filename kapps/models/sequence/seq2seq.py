"""RNNsearch: a bidirectional recurrent encoder and an attentive recurrent decoder
(Bahdanau, Cho & Bengio 2015), with Luong et al. 2015's multiplicative attention as an option.

Sutskever et al. 2014 translated with an encoder that reads the source into one vector and a
decoder that writes the target from it; long sentences suffered, since everything had to fit
in that vector. Bahdanau et al. keep one vector per source word (the annotations of a
bidirectional RNN) and let the decoder *attend*: at every target step it weighs the source
words and reads their weighted average. The weights are a soft alignment, learned with the
translation (``kapps.plots`` can draw them).

``seq2seq_attention(...)`` builds the training graph (teacher forcing: source ids and the
shifted target ids in, logits for every target position out); ``Seq2SeqDecoder(model)``
runs the same weights one step at a time for greedy or beam search
(``kapps.models.sequence.search``).
"""

import keras
from keras import ops

from kapps._checks import check_bool, check_choice, check_positive_int, check_rate
from kapps.layers.recurrent import RNN, GRUCell, LSTMCell
from kapps.layers.recurrent_attention import (
    DECODER_ATTENTIONS,
    DECODER_CELLS,
    AttentionDecoder,
    Maxout,
)
from kapps.layers.masks import TokenMask

_ENCODER_CELLS = {"gru": GRUCell, "lstm": LSTMCell}




def seq2seq_attention(
    source_vocab_size=30000,
    target_vocab_size=30000,
    embedding_dim=620,
    units=1000,
    attention_units=1000,
    attention="bahdanau",
    cell="gru",
    maxout_units=500,
    reset_after=False,
    dropout=0.0,
    pad_id=0,
    seed=None,
    name="seq2seq_attention",
):
    """RNNsearch (Bahdanau et al. 2015): bidirectional GRU encoder, attentive GRU decoder.

    The defaults are the paper's RNNsearch-50 sizes (appendix A.2 and section 4.2): 30,000
    word vocabularies on each side, 620-dimensional embeddings, 1000 hidden units in each
    encoder direction and in the decoder, a 1000-unit alignment model and a maxout readout of
    500 units; 80,442,000 parameters with these defaults.

    Graph (teacher forcing)::

        source_ids -> source_embedding -> encoder (Bidirectional kapps RNN, masked) -> h_1..h_S
        s_0 = tanh(decoder_init(backward h_1))           (appendix A.2.2: s_0 = tanh(W_s <-h_1))
        target_ids -> target_embedding -> decoder (AttentionDecoder) -> features
        features -> readout (Dense 2 * maxout_units) -> maxout -> logits (Dense vocab)

    The decoder state starts from the backward encoder state at the first source word (the
    state that has read the whole sentence right to left), as in the paper, not from the
    concatenated final states. The paper's equations omit biases; the Dense layers here have
    them. The paper's readout reads the previous state ``s_{i-1}`` in appendix A.2.2 but
    ``s_i`` in equation 4; the new state ``s_i`` is used (as in its GroundHog code and
    Nematus). With ``maxout_units=None`` the maxout layer is omitted and the logits are a
    linear function of the features (``[s_i; E y_{i-1}; c_i]`` for Bahdanau attention, the
    attentional vector ``h~_i`` for Luong, which is Luong et al.'s own readout).

    Vocabulary assumptions: ids are ints in ``[0, vocab_size)``; ``pad_id`` pads both
    sequences (it is masked out of the encoder, the attention and, through the mask on the
    logits, Keras losses); the start and end tokens are ordinary ids chosen by the caller (a
    tokenizer's BOS/EOS), the model has no built-in special tokens besides ``pad_id``.
    ``target_ids`` is the decoder input: the target sentence shifted right by one, starting
    with the start token; the labels are the target followed by the end token, padded with
    ``pad_id`` to the same length.

    Args:
        source_vocab_size: source vocabulary size (30,000 in the paper).
        target_vocab_size: target vocabulary size (30,000).
        embedding_dim: word embedding width of both languages (620, ``m``).
        units: hidden units of each encoder direction and of the decoder (1000, ``n``).
        attention_units: hidden width of Bahdanau's alignment model (1000, ``n'``); unused by
            Luong attention.
        attention: ``"bahdanau"`` (additive, previous decoder state as query) or ``"luong"``
            (Luong et al.'s "general" score on the current state, with input feeding).
        cell: ``"gru"`` (the paper's gated units, ``kapps.layers.GRUCell``) or ``"lstm"``
            (``kapps.layers.LSTMCell``; the decoder's initial memory cell is zero).
        maxout_units: units of the maxout readout (500, ``l``); ``None`` omits it.
        reset_after: GRU reset-gate placement; False is Cho et al. 2014's form, used by the
            paper (True is Keras' and cuDNN's default).
        dropout: dropout on the embeddings and before the logits (the paper used none).
        pad_id: the padding token id.
        seed: optional integer seed of the dropouts.
        name: model name.

    Returns:
        A ``keras.Model`` with two int32 inputs, ``source_ids`` ``(batch, source_len)`` and
        ``target_ids`` ``(batch, target_len)``, returning float32 logits ``(batch, target_len,
        target_vocab_size)`` (no softmax; train with
        ``SparseCategoricalCrossentropy(from_logits=True)``).

    Raises:
        ValueError: for an argument outside its allowed values (the message names it).

    Example:
        >>> model = seq2seq_attention(source_vocab_size=8000, target_vocab_size=8000,
        ...                           embedding_dim=256, units=256, attention_units=256)
        >>> model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> model.fit({"source_ids": src, "target_ids": tgt_in}, tgt_out, epochs=10)
        >>> ids = kapps.models.sequence.search.beam_search(model, src[:4], 50, start_id=1,
        ...                                                end_id=2)

    Paper: Bahdanau, Cho & Bengio 2015, "Neural Machine Translation by Jointly Learning to
    Align and Translate" (ICLR); Luong, Pham & Manning 2015, "Effective Approaches to
    Attention-based Neural Machine Translation" (EMNLP); the encoder-decoder is Sutskever,
    Vinyals & Le 2014, "Sequence to Sequence Learning with Neural Networks" and Cho et al. 2014.
    """
    check_positive_int("source_vocab_size", source_vocab_size)
    check_positive_int("target_vocab_size", target_vocab_size)
    check_positive_int("embedding_dim", embedding_dim)
    check_positive_int("units", units)
    check_positive_int("attention_units", attention_units)
    check_choice("attention", attention, DECODER_ATTENTIONS)
    check_choice("cell", cell, tuple(DECODER_CELLS))
    if maxout_units is not None:
        check_positive_int("maxout_units", maxout_units)
    check_bool("reset_after", reset_after)
    dropout = check_rate("dropout", dropout)
    if isinstance(pad_id, bool) or not isinstance(pad_id, int) or pad_id < 0:
        raise ValueError(f"pad_id={pad_id!r} is not allowed; expected an int >= 0.")
    if pad_id >= min(source_vocab_size, target_vocab_size):
        raise ValueError(
            f"pad_id={pad_id!r} is not allowed; expected an id below both vocabulary sizes "
            f"({source_vocab_size} and {target_vocab_size})."
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed={seed!r} is not allowed; expected None or an integer >= 0.")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} is not allowed; expected a non-empty string.")

    def _seed(offset):
        return None if seed is None else seed + offset

    cell_kwargs = {"reset_after": reset_after} if cell == "gru" else {}
    source_ids = keras.Input((None,), dtype="int32", name="source_ids")
    target_ids = keras.Input((None,), dtype="int32", name="target_ids")
    source_mask = TokenMask(pad_id, name="source_mask")(source_ids)
    target_mask = TokenMask(pad_id, name="target_mask")(target_ids)

    x = keras.layers.Embedding(source_vocab_size, embedding_dim, name="source_embedding")(
        source_ids
    )
    if dropout:
        x = keras.layers.Dropout(dropout, seed=_seed(1), name="source_dropout")(x)
    encoder = keras.layers.Bidirectional(
        RNN(
            _ENCODER_CELLS[cell](units, **cell_kwargs), return_sequences=True, return_state=True
        ),
        name="encoder",
    )
    encoded = encoder(x, mask=source_mask)
    # [outputs, forward states..., backward states...]; the backward RNN ends at word 1
    annotations, backward_h = encoded[0], encoded[1 + (len(encoded) - 1) // 2]
    s0 = keras.layers.Dense(units, activation="tanh", name="decoder_init")(backward_h)

    y = keras.layers.Embedding(target_vocab_size, embedding_dim, name="target_embedding")(
        target_ids
    )
    if dropout:
        y = keras.layers.Dropout(dropout, seed=_seed(2), name="target_dropout")(y)
    features = AttentionDecoder(
        units,
        attention=attention,
        attention_units=attention_units,
        cell=cell,
        reset_after=reset_after,
        name="decoder",
    )(y, annotations, s0, source_mask=source_mask, mask=target_mask)
    if maxout_units is not None:
        features = keras.layers.Dense(2 * maxout_units, name="readout")(features)
        features = Maxout(2, name="maxout")(features)
    if dropout:
        features = keras.layers.Dropout(dropout, seed=_seed(3), name="readout_dropout")(features)
    logits = keras.layers.Dense(target_vocab_size, dtype="float32", name="logits")(features)
    return keras.Model({"source_ids": source_ids, "target_ids": target_ids}, logits, name=name)


class Seq2SeqDecoder:
    """Runs a ``seq2seq_attention`` model one target step at a time (for
    ``kapps.models.sequence.search``).

    ``start`` encodes the source once (annotations, the attention's projected keys, the
    source mask and the decoder's initial state); ``step`` embeds the previous token, runs one
    decoder step and the readout, and returns the logits. Both use only the model's layers and
    keras/TensorFlow ops, so they run eagerly and inside ``tf.function`` / ``tf.while_loop``
    (and convert to TFLite). Running ``step`` over the teacher-forced tokens gives the model's
    own logits.

    Args:
        model: a model built by ``seq2seq_attention``.

    Example:
        >>> decoder = Seq2SeqDecoder(model)
        >>> state = decoder.start(source_ids, max_length=20)
        >>> logits, state, weights = decoder.step(tokens, tf.constant(0), state)
    """

    def __init__(self, model):
        names = {layer.name for layer in getattr(model, "layers", ())}
        missing = {"source_mask", "source_embedding", "encoder", "decoder_init",
                   "target_embedding", "decoder", "logits"} - names
        if missing:
            raise ValueError(
                f"model={getattr(model, 'name', model)!r} is not a seq2seq_attention model; "
                f"it lacks the layers {sorted(missing)}."
            )
        self.model = model
        self.pad_id = model.get_layer("source_mask").pad_id
        self.source_embedding = model.get_layer("source_embedding")
        self.encoder = model.get_layer("encoder")
        self.decoder_init = model.get_layer("decoder_init")
        self.target_embedding = model.get_layer("target_embedding")
        self.decoder = model.get_layer("decoder")
        # the readout after the decoder, in order (dropouts are inactive at inference)
        self.readout = [model.get_layer(n) for n in ("readout", "maxout") if n in names]
        self.logits = model.get_layer("logits")

    def start(self, source_ids, max_length=None):
        """Encode ``source_ids`` ``(batch, source_len)``; returns the state tuple
        ``(annotations, keys, source_mask, *decoder_states)``. ``max_length`` is not needed
        (the state has no token buffer) and is accepted for the decoder protocol."""
        source_ids = ops.cast(source_ids, "int32")
        source_mask = ops.not_equal(source_ids, self.pad_id)
        encoded = self.encoder(self.source_embedding(source_ids), mask=source_mask)
        annotations, backward_h = encoded[0], encoded[1 + (len(encoded) - 1) // 2]
        s0 = self.decoder_init(backward_h)
        states = self.decoder.initial_states(s0)
        keys = self.decoder.project_keys(annotations)
        return (annotations, keys, source_mask, *states)

    def step(self, tokens, position, state):
        """One step: ``tokens`` ``(batch,)`` previous target tokens, ``position`` a scalar
        (unused: the recurrent state knows where it is). Returns ``(logits (batch, vocab)
        float32, new_state, attention (batch, source_len) float32)``."""
        annotations, keys, source_mask, *states = state
        embedded = self.target_embedding(ops.cast(tokens, "int32"))
        features, states, weights = self.decoder.step(
            embedded, states, annotations, keys, source_mask
        )
        for layer in self.readout:
            features = layer(features)
        logits = ops.cast(self.logits(features), "float32")
        return logits, (annotations, keys, source_mask, *states), ops.cast(weights, "float32")
