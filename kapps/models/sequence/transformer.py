"""The Transformer for translation (Vaswani et al. 2017, "Attention Is All You Need").

An encoder of ``num_layers`` self-attention blocks reads the source sentence; a decoder of
``num_layers`` blocks (masked self-attention, attention to the encoder's output, MLP) reads
the target sentence shifted right and scores the next token at every position (Figure 1).
Token ids become vectors through an embedding multiplied by ``sqrt(hidden_dim)`` plus the
sinusoidal positional encoding, with dropout on the sum (sections 3.4, 3.5, 5.4). By default
one matrix (``SharedEmbedding``) embeds the source and the target tokens and, transposed, is
the pre-softmax projection (section 3.4); the model returns logits (no softmax).

Masks: source padding (``pad_id``) is hidden from the encoder's self-attention and from the
decoder's cross-attention; the decoder's self-attention is causal (position ``i`` sees
``<= i``), so the logits at ``i`` depend only on ``target_ids[:i + 1]``. Target padding
needs no mask: pads come after the sentence, and the causal mask keeps them out of every
real position (leave them out of the loss).

Residual wiring: post-LN, ``LayerNorm(x + Sublayer(x))`` (the paper, default), or pre-LN
(``norm_first=True``: ``x + Sublayer(LayerNorm(x))``, which trains without warm-up; Xiong
et al. 2020), which ends each stack with one more LayerNorm (``encoder_norm``,
``decoder_norm``).

``VARIANTS`` is the paper's Table 3: Transformer base and big. With the paper's shared
37,000-token vocabulary (WMT 2014 English-German byte-pair encoding) ``transformer_base``
has 63,082,496 parameters and ``transformer_big`` 214,245,376 (the paper rounds to 65M and
213M).

Decoding: ``TransformerDecoder(model)`` is the model side of
``kapps.models.sequence.search`` (greedy search in a ``tf.while_loop``, beam search).

Layer names: inputs ``source_ids`` and ``target_ids``; ``embedding`` (shared) or
``source_embedding``, ``target_embedding`` and ``output_projection``;
``source_positional_encoding``, ``target_positional_encoding``; ``source_dropout``,
``target_dropout`` (dropout > 0); ``source_mask``; ``encoder_block1`` ...
``encoder_block{num_layers}``, ``encoder_norm`` (pre-LN); ``decoder_block1`` ...,
``decoder_norm`` (pre-LN); ``logits`` (float32).
"""

import types

import keras
from keras import ops

from kapps._checks import (
    check_bool,
    check_epsilon,
    check_positive_int,
    check_rate,
    check_transformer_dims,
)
from kapps.layers.attention import padding_mask
from kapps.layers.embedding import SharedEmbedding
from kapps.layers.masks import TokenMask
from kapps.layers.position import PositionalEncoding
from kapps.layers.transformer import TransformerDecoderBlock, TransformerEncoderBlock
from kapps.models.classification.common import variant

#: The paper's Table 3, one row per variant: (hidden_dim, num_layers, num_heads, mlp_dim,
#: dropout). "big" used dropout 0.1 for English-French (section 6.1).
VARIANTS = {
    "base": (512, 6, 8, 2048, 0.1),
    "big": (1024, 6, 16, 4096, 0.3),
}




def _check_activation(activation):
    message = (
        f"activation={activation!r} is not allowed; expected a Keras activation name (the "
        "paper's 'relu', or 'gelu', ...) or a callable."
    )
    if activation is None:
        raise ValueError(message)
    try:
        keras.activations.get(activation)
    except (ValueError, TypeError):
        raise ValueError(message) from None
    return activation




def _check_pad_id(pad_id, vocab_size, target_vocab_size):
    smallest = min(vocab_size, target_vocab_size)
    if isinstance(pad_id, bool) or not isinstance(pad_id, int) or not 0 <= pad_id < smallest:
        raise ValueError(
            f"pad_id={pad_id!r} is not allowed; expected a token id in [0, {smallest}) (the "
            "smaller of vocab_size and target_vocab_size)."
        )
    return pad_id


# -- the forward pass, shared by the builder (symbolic) and TransformerDecoder (eager/graph) --


def _embed(parts, side, ids, training=None):
    """Ids ``(batch, len)`` -> ``(batch, len, hidden_dim)``: scaled embedding plus the
    sinusoidal encoding (sections 3.4, 3.5), then dropout (section 5.4)."""
    x = getattr(parts, f"{side}_embedding")(ids)
    x = getattr(parts, f"{side}_positional_encoding")(x)
    dropout = getattr(parts, f"{side}_dropout")
    if dropout is not None:
        x = dropout(x, training=training)
    return x


def _encode(parts, source_ids, training=None):
    """``(encoded (batch, source_len, hidden_dim), source mask (batch, 1, source_len))``."""
    mask = padding_mask(parts.source_mask(source_ids))  # (batch, 1, source_len)
    x = _embed(parts, "source", source_ids, training)
    for block in parts.encoder_blocks:
        x = block(x, attention_mask=mask, training=training)
    if parts.encoder_norm is not None:
        x = parts.encoder_norm(x)
    return x, mask


def _decode(parts, target_ids, encoded, mask, training=None, return_attention=False):
    """Decoder states ``(batch, target_len, hidden_dim)`` (and, with ``return_attention``,
    the last block's cross-attention weights ``(batch, heads, target_len, source_len)``)."""
    x = _embed(parts, "target", target_ids, training)
    cross = None
    last = len(parts.decoder_blocks) - 1
    for i, block in enumerate(parts.decoder_blocks):
        if return_attention and i == last:
            x, (_, cross) = block(
                x, encoded, context_mask=mask, use_causal_mask=True,
                return_attention_scores=True, training=training,
            )
        else:
            x = block(x, encoded, context_mask=mask, use_causal_mask=True, training=training)
    if parts.decoder_norm is not None:
        x = parts.decoder_norm(x)
    return (x, cross) if return_attention else x


def _project(parts, hidden):
    """Decoder states ``(..., hidden_dim)`` -> logits ``(..., target_vocab)``."""
    if isinstance(parts.output_projection, SharedEmbedding):
        return parts.output_projection(hidden, reverse=True)
    return parts.output_projection(hidden)


def transformer(
    vocab_size=37000,
    target_vocab_size=None,
    hidden_dim=512,
    num_layers=6,
    num_heads=8,
    mlp_dim=2048,
    dropout=0.1,
    attention_dropout=0.0,
    norm_first=False,
    activation="relu",
    epsilon=1e-6,
    share_embeddings=True,
    pad_id=0,
    name="transformer",
):
    """Build the encoder-decoder Transformer for translation (defaults: Transformer base with
    the paper's shared 37,000-token vocabulary, 63,082,496 parameters).

    The model takes ``source_ids`` ``(batch, source_len)`` and ``target_ids`` ``(batch,
    target_len)`` (int32; the decoder input: the target shifted right, starting with the
    start token) and returns logits ``(batch, target_len, target_vocab_size)`` (float32, no
    softmax): position ``i`` scores the target token ``i + 1``. Train with
    ``SparseCategoricalCrossentropy(from_logits=True)`` on the unshifted target, padding
    left out of the loss (the paper also smoothed labels by 0.1, section 5.4).

    Args:
        vocab_size: source vocabulary size (and the target's when ``target_vocab_size`` is
            None); the paper's shared byte-pair vocabulary has 37,000 tokens (EN-DE).
        target_vocab_size: target vocabulary size; ``None`` means ``vocab_size``. Must be
            None or ``vocab_size`` when ``share_embeddings``.
        hidden_dim: width of the tokens (the paper's d_model).
        num_layers: blocks in the encoder and in the decoder (N).
        num_heads: attention heads (h); must divide ``hidden_dim``.
        mlp_dim: width of the position-wise feed-forward layer (d_ff).
        dropout: dropout on the embedding sums and on every sub-layer's output before the
            residual addition (P_drop, section 5.4).
        attention_dropout: dropout on the attention weights (0 in the paper; tensor2tensor
            later used 0.1).
        norm_first: post-LN (False, the paper) or pre-LN (True, which adds ``encoder_norm``
            and ``decoder_norm``).
        activation: activation of the feed-forward layer (the paper's ReLU, eq. 2).
        epsilon: epsilon of every LayerNorm (1e-6 as tensor2tensor).
        share_embeddings: one matrix for the source embedding, the target embedding and the
            pre-softmax projection (section 3.4). With False: separate ``source_embedding``
            and ``target_embedding`` (each scaled by ``sqrt(hidden_dim)``) and an untied
            ``output_projection`` Dense without bias (like the tied projection, so that the
            two settings differ only by the tying; vocabularies may differ).
        pad_id: the padding token id, hidden from the attention over the source.
        name: model name.

    Returns:
        A ``keras.Model`` with inputs ``source_ids``, ``target_ids`` and output ``logits``.

    Raises:
        ValueError: for bad arguments, naming the argument, the value received and what is
            allowed.

    Example:
        >>> model = transformer(vocab_size=1000, hidden_dim=64, num_layers=2, num_heads=4,
        ...                     mlp_dim=128)
        >>> logits = model([source_ids, target_ids])  # (batch, target_len, 1000)

    Paper: Vaswani et al. 2017, "Attention Is All You Need", section 3 and Table 3.
    """
    vocab_size = check_positive_int("vocab_size", vocab_size)
    if target_vocab_size is not None:
        check_positive_int("target_vocab_size", target_vocab_size)
    check_positive_int("num_layers", num_layers)
    check_transformer_dims(hidden_dim, num_layers, num_heads, mlp_dim)
    dropout = check_rate("dropout", dropout)
    attention_dropout = check_rate("attention_dropout", attention_dropout)
    check_bool("norm_first", norm_first)
    _check_activation(activation)
    epsilon = check_epsilon(epsilon)
    check_bool("share_embeddings", share_embeddings)
    if share_embeddings and target_vocab_size not in (None, vocab_size):
        raise ValueError(
            f"target_vocab_size={target_vocab_size!r} is not allowed with share_embeddings=True "
            f"and vocab_size={vocab_size!r}; one shared matrix needs one vocabulary: pass "
            "target_vocab_size=None (or equal to vocab_size), or share_embeddings=False."
        )
    target_vocab = vocab_size if target_vocab_size is None else target_vocab_size
    _check_pad_id(pad_id, vocab_size, target_vocab)
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} is not allowed; expected a non-empty string.")

    parts = types.SimpleNamespace()
    if share_embeddings:
        shared = SharedEmbedding(vocab_size, hidden_dim, name="embedding")
        parts.source_embedding = parts.target_embedding = parts.output_projection = shared
    else:
        parts.source_embedding = SharedEmbedding(vocab_size, hidden_dim, name="source_embedding")
        parts.target_embedding = SharedEmbedding(target_vocab, hidden_dim, name="target_embedding")
        parts.output_projection = keras.layers.Dense(
            target_vocab, use_bias=False, name="output_projection"
        )
    for side in ("source", "target"):
        setattr(parts, f"{side}_positional_encoding",
                PositionalEncoding(name=f"{side}_positional_encoding"))
        setattr(parts, f"{side}_dropout",
                keras.layers.Dropout(dropout, name=f"{side}_dropout") if dropout > 0 else None)
    parts.source_mask = TokenMask(pad_id, name="source_mask")
    block_args = dict(
        dropout=dropout, attention_dropout=attention_dropout, norm_first=norm_first,
        epsilon=epsilon, activation=activation,
    )
    parts.encoder_blocks = [
        TransformerEncoderBlock(hidden_dim, num_heads, mlp_dim, name=f"encoder_block{i + 1}",
                                **block_args)
        for i in range(num_layers)
    ]
    parts.decoder_blocks = [
        TransformerDecoderBlock(hidden_dim, num_heads, mlp_dim, name=f"decoder_block{i + 1}",
                                **block_args)
        for i in range(num_layers)
    ]
    parts.encoder_norm = parts.decoder_norm = None
    if norm_first:  # pre-LN leaves the residual stream unnormalised: normalise it once
        parts.encoder_norm = keras.layers.LayerNormalization(epsilon=epsilon, name="encoder_norm")
        parts.decoder_norm = keras.layers.LayerNormalization(epsilon=epsilon, name="decoder_norm")

    source_ids = keras.Input((None,), dtype="int32", name="source_ids")
    target_ids = keras.Input((None,), dtype="int32", name="target_ids")
    encoded, mask = _encode(parts, source_ids)
    hidden = _decode(parts, target_ids, encoded, mask)
    logits = _project(parts, hidden)  # (batch, target_len, target_vocab)
    # float32 logits whatever the dtype policy (a stable softmax in the loss), named output
    logits = keras.layers.Activation("linear", dtype="float32", name="logits")(logits)
    return keras.Model([source_ids, target_ids], logits, name=name)


def _doc(key):
    dim, layers, heads, mlp, rate = VARIANTS[key]
    return (
        f"Transformer ({key}) of Vaswani et al. 2017, Table 3: d_model={dim}, N={layers}, "
        f"h={heads}, d_ff={mlp}, P_drop={rate}; post-LN, embeddings shared with the "
        "pre-softmax projection. Takes ``transformer``'s arguments with these defaults."
    )


def _variant(key):
    dim, layers, heads, mlp, rate = VARIANTS[key]
    defaults = {
        "hidden_dim": dim,
        "num_layers": layers,
        "num_heads": heads,
        "mlp_dim": mlp,
        "dropout": rate,
    }
    return variant(transformer, f"transformer_{key}", _doc(key), defaults)


transformer_base = _variant("base")
transformer_big = _variant("big")


class TransformerDecoder:
    """The model side of autoregressive decoding (``kapps.models.sequence.search``) for a
    ``transformer`` model.

    ``start`` encodes the source once; ``step`` writes the previous token into a fixed-size
    token buffer and reruns the decoder over the whole buffer, returning the logits and the
    last block's cross-attention (averaged over heads) at ``position``. Recomputing every
    position at every step costs ``max_length`` times more than a key/value cache but keeps
    every state tensor at one shape, which a ``tf.while_loop`` and a TFLite ``WHILE`` need;
    the causal mask makes the not-yet-written buffer entries irrelevant. Every operation is a
    keras/TensorFlow op, so it runs eagerly, in ``tf.function`` and in ``tf.while_loop``.

    Args:
        model: a model built by ``transformer`` (layers are found by name).

    Example:
        >>> decoder = TransformerDecoder(model)
        >>> state = decoder.start(source_ids, max_length=20)
        >>> logits, state, attention = decoder.step(start_tokens, 0, state)
    """

    def __init__(self, model):
        names = {layer.name for layer in getattr(model, "layers", ())}
        if "decoder_block1" not in names or "encoder_block1" not in names:
            raise ValueError(
                f"model={getattr(model, 'name', model)!r} is not allowed; expected a model "
                "built by kapps' transformer (layers 'encoder_block1', 'decoder_block1', ...)."
            )
        self.model = model
        get = model.get_layer

        def optional(name):
            return get(name) if name in names else None

        parts = types.SimpleNamespace()
        if "embedding" in names:
            parts.source_embedding = parts.target_embedding = parts.output_projection = get(
                "embedding"
            )
        else:
            parts.source_embedding = get("source_embedding")
            parts.target_embedding = get("target_embedding")
            parts.output_projection = get("output_projection")
        for side in ("source", "target"):
            setattr(parts, f"{side}_positional_encoding", get(f"{side}_positional_encoding"))
            setattr(parts, f"{side}_dropout", optional(f"{side}_dropout"))
        parts.source_mask = get("source_mask")
        for stack in ("encoder", "decoder"):
            blocks = []
            while f"{stack}_block{len(blocks) + 1}" in names:
                blocks.append(get(f"{stack}_block{len(blocks) + 1}"))
            setattr(parts, f"{stack}_blocks", blocks)
            setattr(parts, f"{stack}_norm", optional(f"{stack}_norm"))
        self.parts = parts
        self.pad_id = parts.source_mask.pad_id

    def start(self, source_ids, max_length):
        """Encode ``source_ids`` ``(batch, source_len)`` (padded with the model's ``pad_id``).

        Returns:
            ``(encoded, source_mask, buffer)``: ``(batch, source_len, hidden_dim)``, boolean
            ``(batch, 1, source_len)`` and int32 zeros ``(batch, max_length)``.
        """
        max_length = check_positive_int("max_length", max_length)
        source_ids = ops.cast(source_ids, "int32")
        encoded, mask = _encode(self.parts, source_ids, training=False)
        buffer = ops.zeros((ops.shape(source_ids)[0], max_length), dtype="int32")
        return encoded, mask, buffer

    def step(self, tokens, position, state):
        """One decoding step.

        Args:
            tokens: ``(batch,)`` the previous target token (the start token at position 0).
            position: scalar int32, the position of ``tokens`` in the target (0-based).
            state: what ``start`` or the previous ``step`` returned.

        Returns:
            ``(logits, state, attention)``: float32 ``(batch, target_vocab)`` scores of the
            token after ``tokens``, the new state, and float32 ``(batch, source_len)``
            cross-attention weights of the last decoder block (mean over heads).
        """
        encoded, mask, buffer = state
        length = buffer.shape[1] if buffer.shape[1] is not None else ops.shape(buffer)[1]
        # (max_length,) True at `position`: a one-hot written with `where` (builtin SELECT)
        here = ops.equal(ops.arange(length, dtype="int32"), ops.cast(position, "int32"))
        tokens = ops.cast(ops.reshape(tokens, (-1, 1)), "int32")  # (batch, 1)
        buffer = ops.where(ops.expand_dims(here, 0), tokens, buffer)  # (batch, max_length)
        hidden, cross = _decode(
            self.parts, buffer, encoded, mask, training=False, return_attention=True
        )
        # pick row `position` with a one-hot weighted sum (fixed shapes; exact: 1*x + 0*y)
        pick = ops.reshape(ops.cast(here, hidden.dtype), (1, -1, 1))  # (1, max_length, 1)
        hidden = ops.sum(hidden * pick, axis=1)  # (batch, hidden_dim)
        logits = ops.cast(_project(self.parts, hidden), "float32")  # (batch, vocab)
        cross = ops.mean(ops.cast(cross, "float32"), axis=1)  # (batch, max_length, source_len)
        attention = ops.sum(cross * ops.cast(pick, "float32"), axis=1)  # (batch, source_len)
        return logits, (encoded, mask, buffer), attention
