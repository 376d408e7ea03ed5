"""Decoding for the sequence-to-sequence models: greedy search in one ``tf.while_loop`` (the
same graph runs in Keras and, exported, on a phone) and beam search with a length penalty.

Both work on any model that offers a *decoder*: an object with

- ``start(source_ids, max_length) -> state``: a tuple of tensors whose first axis is the batch
  and whose shapes do not change from step to step (encoder outputs, masks, recurrent state,
  a fixed-size token buffer), and
- ``step(tokens, position, state) -> (logits, state, attention)``: ``tokens`` ``(batch,)`` the
  previous target token (the start token at position 0), ``position`` a scalar ``int32``;
  ``logits`` ``(batch, vocab)``, ``attention`` ``(batch, source_len)`` weights of this step.

``kapps.models.sequence.seq2seq.Seq2SeqDecoder`` and
``kapps.models.sequence.transformer.TransformerDecoder`` are the two in kapps;
:func:`decoder_for` picks the right one for a model.

Token conventions: ``pad_id`` fills everything after the end token; outputs exclude the start
token and include the end token when one was produced.
"""

import numpy as np

from kapps._checks import check_positive_int


def _check_token(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name}={value!r} is not allowed; expected a token id (an int >= 0).")
    return int(value)


def _check_length_penalty(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(
            f"length_penalty={value!r} is not allowed; expected a number >= 0 (0 turns it off; "
            "0.6 is Wu et al.'s and the Transformer paper's)."
        )
    return float(value)


def decoder_for(model):
    """The decoder object of a kapps sequence-to-sequence ``model`` (see the module docstring).

    Raises:
        ValueError: when ``model`` is neither a ``seq2seq_attention`` nor a ``transformer``.
    """
    names = {layer.name for layer in getattr(model, "layers", ())}
    if "decoder_block1" in names:
        from kapps.models.sequence.transformer import TransformerDecoder

        return TransformerDecoder(model)
    if "decoder" in names:
        from kapps.models.sequence.seq2seq import Seq2SeqDecoder

        return Seq2SeqDecoder(model)
    raise ValueError(
        f"model={getattr(model, 'name', model)!r} is not a kapps sequence-to-sequence model; "
        "expected one built by seq2seq_attention or transformer (a layer named 'decoder' or "
        "'decoder_block1')."
    )


def _as_decoder(model_or_decoder):
    if hasattr(model_or_decoder, "start") and hasattr(model_or_decoder, "step"):
        return model_or_decoder
    return decoder_for(model_or_decoder)


def greedy_search(
    model, source_ids, max_length, *, start_id, end_id, pad_id=0, return_attention=False
):
    """Greedy decoding: at every step the most likely token, until every sentence has produced
    ``end_id`` or ``max_length`` tokens.

    The loop is one ``tf.while_loop`` over fixed-shape tensors, so the same function runs
    eagerly, inside ``tf.function``, and in a TFLite graph (``WHILE`` is a builtin op); see
    :func:`greedy_function`.

    Args:
        model: a kapps sequence-to-sequence model, or a decoder object (module docstring).
        source_ids: ``(batch, source_len)`` int token ids, padded with ``pad_id``.
        max_length: most target tokens to produce (end token included).
        start_id: the token that starts every target sentence.
        end_id: the token that ends one.
        pad_id: written after the end token.
        return_attention: also return the attention weights.

    Returns:
        ``(batch, max_length)`` int32 token ids; with ``return_attention`` also
        ``(batch, max_length, source_len)`` float32 weights (zeros after the end).

    Example:
        >>> ids = greedy_search(model, source_ids, 40, start_id=2, end_id=3)
    """
    import tensorflow as tf

    max_length = check_positive_int("max_length", max_length)
    start_id, end_id, pad_id = (
        _check_token("start_id", start_id), _check_token("end_id", end_id),
        _check_token("pad_id", pad_id),
    )
    decoder = _as_decoder(model)
    source_ids = tf.convert_to_tensor(source_ids)
    if source_ids.shape.rank != 2:
        raise ValueError(
            f"source_ids has shape {tuple(source_ids.shape)}; expected (batch, source_len)."
        )
    source_ids = tf.cast(source_ids, "int32")
    batch = tf.shape(source_ids)[0]
    source_len = tf.shape(source_ids)[1]
    state = tuple(decoder.start(source_ids, max_length))
    positions = tf.range(max_length)

    def body(i, previous, finished, output, weights, state):
        logits, state, attention = decoder.step(previous, i, state)
        token = tf.cast(tf.argmax(logits, axis=-1, output_type=tf.int32), "int32")
        token = tf.where(finished, tf.fill(tf.shape(token), pad_id), token)
        at_i = tf.equal(positions, i)[None, :]  # (1, max_length)
        output = tf.where(at_i, token[:, None], output)
        if return_attention:
            attention = tf.where(finished[:, None], tf.zeros_like(attention), attention)
            weights = tf.where(
                at_i[:, :, None], tf.cast(attention, weights.dtype)[:, None, :], weights
            )
        finished = tf.logical_or(finished, tf.equal(token, end_id))
        return i + 1, token, finished, output, weights, tuple(state)

    def cond(i, previous, finished, output, weights, state):
        return tf.logical_and(i < max_length, tf.logical_not(tf.reduce_all(finished)))

    weights = (
        tf.zeros((batch, max_length, source_len), "float32")
        if return_attention else tf.zeros((1, 1, 1), "float32")
    )
    loop = (
        tf.constant(0), tf.fill([batch], tf.constant(start_id, "int32")),
        tf.zeros([batch], "bool"), tf.fill([batch, max_length], tf.constant(pad_id, "int32")),
        weights, state,
    )
    _, _, _, output, weights, _ = tf.while_loop(cond, body, loop)
    return (output, weights) if return_attention else output


def greedy_function(model, source_length, max_length, *, start_id, end_id, pad_id=0,
                    batch_size=1):
    """A ``tf.function`` with a fixed input signature that runs :func:`greedy_search`: source
    ids ``(batch_size, source_length)`` in, ``{"target_ids": (batch_size, max_length)}`` out;
    what ``kapps.export.translator_to_tflite`` converts (with ``batch_size=1``).
    ``batch_size=None`` accepts any batch (the fast way to decode a test set in Keras).

    Example:
        >>> translate = greedy_function(model, 32, 40, start_id=2, end_id=3)
        >>> ids = translate(source_ids)
    """
    import tensorflow as tf

    source_length = check_positive_int("source_length", source_length)
    if batch_size is not None:
        batch_size = check_positive_int("batch_size", batch_size)
    decoder = _as_decoder(model)

    @tf.function(
        input_signature=[tf.TensorSpec((batch_size, source_length), tf.int32, name="source_ids")]
    )
    def translate(source_ids):
        return {"target_ids": greedy_search(
            decoder, source_ids, max_length, start_id=start_id, end_id=end_id, pad_id=pad_id
        )}

    return translate


def length_penalty_factor(length, alpha):
    """Wu et al. 2016's length normalisation ``((5 + length) / 6) ** alpha``: a hypothesis'
    log-probability is divided by it before hypotheses of different lengths are compared."""
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(
    model, source_ids, max_length, *, start_id, end_id, pad_id=0, beam_size=4,
    length_penalty=0.6, return_attention=False,
):
    """Beam search with Wu et al. 2016's length penalty (the Transformer paper: beam 4,
    ``alpha = 0.6``).

    Every step extends each of the ``beam_size`` live hypotheses of a sentence by every token
    and keeps the ``beam_size`` best non-finished ones by log-probability; a hypothesis that
    produces ``end_id`` joins the finished list, ranked by ``log p / ((5 + length) / 6) **
    alpha``. A sentence stops when it has ``beam_size`` finished hypotheses and no live one
    can still beat the worst of them, or at ``max_length``.

    The bookkeeping runs in Python around the model's ``step`` (traced once with
    ``tf.function``); greedy search is the one exported to TFLite.

    Args:
        model: a kapps sequence-to-sequence model or a decoder object.
        source_ids: ``(batch, source_len)`` token ids padded with ``pad_id``.
        max_length: most target tokens (end token included).
        start_id, end_id, pad_id: special tokens.
        beam_size: hypotheses kept per sentence; 1 is greedy search.
        length_penalty: ``alpha``; 0 ranks by raw log-probability (favours short outputs).
        return_attention: also return each best hypothesis' attention weights.

    Returns:
        ``(batch, max_length)`` int32 ids of the best hypothesis per sentence (padded with
        ``pad_id``); with ``return_attention`` also ``(batch, max_length, source_len)`` weights.
    """
    import tensorflow as tf

    max_length = check_positive_int("max_length", max_length)
    beam_size = check_positive_int("beam_size", beam_size)
    alpha = _check_length_penalty(length_penalty)
    start_id, end_id, pad_id = (
        _check_token("start_id", start_id), _check_token("end_id", end_id),
        _check_token("pad_id", pad_id),
    )
    decoder = _as_decoder(model)
    source_ids = np.asarray(source_ids)
    if source_ids.ndim != 2:
        raise ValueError(f"source_ids has shape {source_ids.shape}; expected (batch, source_len).")
    batch, source_len = source_ids.shape
    k = beam_size
    # every sentence repeated k times: (batch * k, source_len)
    tiled = tf.constant(np.repeat(source_ids.astype("int32"), k, axis=0))
    state = tuple(decoder.start(tiled, max_length))
    tokens = np.full((batch, k, 0), pad_id, "int32")
    attention = np.zeros((batch, k, 0, source_len), "float32")
    scores = np.full((batch, k), -np.inf)
    scores[:, 0] = 0.0  # all k copies are the same hypothesis: expand only the first
    previous = np.full((batch * k,), start_id, "int32")
    finished = [[] for _ in range(batch)]  # (normalised score, tokens, attention)
    done = np.zeros(batch, bool)

    # one traced step for the whole search: the state's shapes never change
    step = tf.function(decoder.step, reduce_retracing=True)
    for position in range(max_length):
        logits, state, weights = step(
            tf.constant(previous), tf.constant(position, "int32"), state
        )
        log_probs = tf.nn.log_softmax(tf.cast(logits, "float32"), axis=-1).numpy()
        vocab = log_probs.shape[-1]
        weights = np.asarray(weights, "float32").reshape(batch, k, 1, source_len)
        candidates = scores[:, :, None] + log_probs.reshape(batch, k, vocab)
        flat = candidates.reshape(batch, k * vocab)
        new_tokens = np.full((batch, k, position + 1), pad_id, "int32")
        new_attention = np.zeros((batch, k, position + 1, source_len), "float32")
        new_scores = np.full((batch, k), -np.inf)
        parents = np.zeros((batch, k), "int64")
        penalty = length_penalty_factor(position + 1, alpha)
        for b in range(batch):
            if done[b]:
                continue
            order = np.argsort(-flat[b], kind="stable")[: 2 * k]
            kept = 0
            for index in order:
                score = flat[b, index]
                if not np.isfinite(score):
                    break
                parent, token = divmod(int(index), vocab)
                path = np.append(tokens[b, parent], token).astype("int32")
                path_attention = np.concatenate([attention[b, parent], weights[b, parent]])
                if token == end_id:
                    finished[b].append((score / penalty, path, path_attention))
                    continue
                if kept < k:
                    new_tokens[b, kept] = path
                    new_attention[b, kept] = path_attention
                    new_scores[b, kept] = score
                    parents[b, kept] = parent
                    kept += 1
                if kept == k and len(finished[b]) >= k:
                    break
            finished[b].sort(key=lambda item: -item[0])
            del finished[b][k:]
            live = new_scores[b].max()
            # a live hypothesis only loses log-probability; its best possible normalised
            # score divides by the largest penalty still reachable
            if not np.isfinite(live) or (
                len(finished[b]) >= k
                and live / length_penalty_factor(max_length, alpha) <= finished[b][-1][0]
            ):
                done[b] = True
        if done.all():
            break
        tokens, attention, scores = new_tokens, new_attention, new_scores
        gather = (np.arange(batch)[:, None] * k + parents).reshape(-1)
        state = tuple(tf.gather(s, gather) for s in state)
        previous = np.where(np.isfinite(scores), tokens[:, :, -1], pad_id).reshape(-1).astype("int32")

    output = np.full((batch, max_length), pad_id, "int32")
    weights_out = np.zeros((batch, max_length, source_len), "float32")
    for b in range(batch):
        if finished[b]:
            _, path, path_attention = finished[b][0]
        else:  # nothing ended within max_length: the best live hypothesis
            best = int(np.argmax(scores[b]))
            path, path_attention = tokens[b, best], attention[b, best]
        output[b, : len(path)] = path
        weights_out[b, : len(path)] = path_attention
    return (output, weights_out) if return_attention else output


def strip_special(ids, *, end_id, pad_id=0, start_id=None):
    """Token lists without padding: each row cut before its first ``end_id`` and with
    ``pad_id`` (and ``start_id``, when given) removed."""
    rows = []
    for row in np.asarray(ids):
        row = list(int(t) for t in row)
        if end_id in row:
            row = row[: row.index(end_id)]
        rows.append([t for t in row if t != pad_id and t != start_id])
    return rows
