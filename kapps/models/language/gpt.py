"""GPT: a decoder-only Transformer language model (Radford et al. 2018, 2019).

Every position predicts the next token from the tokens before it:

    token_ids (batch, seq)
      -> token embedding + learned position embedding, dropout
      -> num_layers x pre-LN block: x + CausalSelfAttention(LN(x)), x + MLP(LN(x))
      -> final LayerNorm
      -> logits = x @ token_embedding^T                          (batch, seq, vocab)

The blocks are ``kapps.layers.TransformerEncoderBlock`` with ``norm_first=True`` called with
``use_causal_mask=True``: a decoder without cross-attention is an encoder block that cannot
look ahead. The output projection is the token embedding read backwards
(``SharedEmbedding(reverse=True)``), so GPT-2 small has no second 50257 x 768 matrix.

GPT-2's sizes (Radford et al. 2019, Table 2, with the released models' 50,257-token byte
vocabulary and 1,024 positions) count exactly as keras-hub's ``GPT2Backbone``:

=============  ======  ======  =====  ===============
name           layers  width   heads  parameters
=============  ======  ======  =====  ===============
gpt2_small     12      768     12     124,439,808
gpt2_medium    24      1024    16     354,823,168
gpt2_large     36      1280    20     774,030,080
gpt2_xl        48      1600    25     1,557,611,200
gpt_char       6       384     6      10,795,008 (128 ASCII code points, 256 positions)
=============  ======  ======  =====  ===============

``gpt_char`` is nanoGPT's character-level Shakespeare model (6 layers, 384 wide, 6 heads, a
256-character context); ``recipes/gpt_shakespeare.py`` trains a smaller one on a CPU. Generation with a key/value cache is in
``kapps.models.language.generation``.
"""

import keras

from kapps._checks import (
    check_epsilon,
    check_name,
    check_positive_int,
    check_rate,
    check_transformer_dims,
)
from kapps.layers.activations import get_activation
from kapps.layers.embedding import SharedEmbedding
from kapps.layers.position import PositionEmbedding
from kapps.layers.transformer import TransformerEncoderBlock
from kapps.models.classification.common import variant

#: name -> (num_layers, hidden_dim, num_heads); the MLP is 4 x hidden_dim (GPT-2, Table 2).
VARIANTS = {
    "gpt2_small": (12, 768, 12),
    "gpt2_medium": (24, 1024, 16),
    "gpt2_large": (36, 1280, 20),
    "gpt2_xl": (48, 1600, 25),
}

#: GPT-2's released vocabulary (byte-level BPE) and context.
GPT2_VOCAB_SIZE = 50257
GPT2_MAX_LENGTH = 1024

#: Characters as ASCII code points (keras-hub's ``UnicodeCodepointTokenizer``).
CHAR_VOCAB_SIZE = 128







def gpt(
    vocab_size=GPT2_VOCAB_SIZE,
    max_length=GPT2_MAX_LENGTH,
    num_layers=12,
    num_heads=12,
    hidden_dim=768,
    mlp_dim=3072,
    dropout=0.1,
    epsilon=1e-5,
    activation="gelu_tanh",
    name="gpt",
):
    """Build a GPT language model (defaults: GPT-2 small, 124,439,808 parameters).

    The model takes ``token_ids`` ``(batch, seq)`` int32 with ``seq <= max_length`` and
    returns next-token logits ``(batch, seq, vocab_size)`` (float32, no softmax): position
    ``i`` scores token ``i + 1``. Train with ``SparseCategoricalCrossentropy(from_logits=True)``
    on the ids shifted left by one. Padding at the end of a sequence needs no mask: the
    causal attention never lets a real token see a later one.

    Weights start as GPT-2's: normal with stddev 0.02 for the token embedding and every
    kernel, 0.01 for the position embedding. The paper's extra ``1/sqrt(2 * num_layers)``
    scaling of the residual projections (section 2.3) is not applied: one initializer per
    block keeps the block a plain ``TransformerEncoderBlock``.

    Args:
        vocab_size: tokens in the vocabulary (GPT-2: 50,257 byte-pair tokens).
        max_length: positions of the learned position embedding, the longest context.
        num_layers: Transformer blocks.
        num_heads: attention heads; must divide ``hidden_dim``.
        hidden_dim: width of the tokens (d_model).
        mlp_dim: width of the MLP's hidden layer (4 x hidden_dim in GPT-2).
        dropout: dropout on the embedding sum, the attention weights and every sub-layer's
            output (GPT-2: 0.1; inference ignores it).
        epsilon: LayerNorm epsilon (GPT-2: 1e-5).
        activation: the MLP's activation: ``"gelu_tanh"`` (GPT-2's tanh approximation of
            GELU), or any Keras activation.
        name: model name.

    Returns:
        A ``keras.Model`` with input ``token_ids`` and output ``logits``. Its layers are named
        ``token_embedding``, ``position_embedding``, ``embedding_dropout``, ``block1`` ...
        ``blockN`` and ``final_norm`` (``kapps.models.language.generation`` reads them).

    Raises:
        ValueError: for bad arguments, naming the argument, the value received and what is
            allowed.

    Example:
        >>> model = gpt(vocab_size=65, max_length=64, num_layers=2, num_heads=2,
        ...             hidden_dim=32, mlp_dim=128)
        >>> logits = model(keras.ops.ones((1, 10), "int32"))  # (1, 10, 65)

    Paper: Radford et al. 2018, "Improving Language Understanding by Generative
    Pre-Training"; Radford et al. 2019, "Language Models are Unsupervised Multitask
    Learners", section 2.3 and Table 2.
    """
    vocab_size = check_positive_int("vocab_size", vocab_size)
    max_length = check_positive_int("max_length", max_length)
    check_positive_int("num_layers", num_layers)
    check_transformer_dims(hidden_dim, num_layers, num_heads, mlp_dim)
    dropout = check_rate("dropout", dropout)
    epsilon = check_epsilon(epsilon)
    activation_fn = get_activation(activation)
    check_name(name)

    def normal(stddev):
        return keras.initializers.RandomNormal(mean=0.0, stddev=stddev)

    token_embedding = SharedEmbedding(
        vocab_size, hidden_dim, scale=False, embeddings_initializer=normal(0.02),
        name="token_embedding",
    )
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    x = token_embedding(token_ids)  # (batch, seq, hidden_dim)
    x = PositionEmbedding(
        max_length, interpolation=None, initializer=normal(0.01), name="position_embedding"
    )(x)
    x = keras.layers.Dropout(dropout, name="embedding_dropout")(x)
    for i in range(num_layers):
        x = TransformerEncoderBlock(
            hidden_dim, num_heads, mlp_dim, dropout=dropout, attention_dropout=dropout,
            norm_first=True, epsilon=epsilon, activation=activation_fn,
            kernel_initializer=normal(0.02), name=f"block{i + 1}",
        )(x, use_causal_mask=True)
    # pre-LN leaves the residual stream unnormalised: GPT-2 adds one LayerNorm at the end
    x = keras.layers.LayerNormalization(epsilon=epsilon, name="final_norm")(x)
    logits = token_embedding(x, reverse=True)  # (batch, seq, vocab_size), tied
    # float32 logits whatever the dtype policy (a stable softmax in the loss), named output
    logits = keras.layers.Activation("linear", dtype="float32", name="logits")(logits)
    return keras.Model(token_ids, logits, name=name)


def _variant(key):
    layers, width, heads = VARIANTS[key]
    doc = (
        f"GPT-2 {key.split('_')[1]}: {layers} layers, width {width}, {heads} heads, MLP "
        f"{4 * width}, GPT-2's 50,257-token vocabulary and 1,024 positions (Radford et al. "
        "2019, Table 2). Takes ``gpt``'s arguments with these defaults (keyword arguments "
        "override them)."
    )
    defaults = {"num_layers": layers, "hidden_dim": width, "num_heads": heads, "mlp_dim": 4 * width}
    return variant(gpt, key, doc, defaults)


gpt2_small = _variant("gpt2_small")
gpt2_medium = _variant("gpt2_medium")
gpt2_large = _variant("gpt2_large")
gpt2_xl = _variant("gpt2_xl")


gpt_char = variant(
    gpt, "gpt_char",
    "A character-level GPT: nanoGPT's Shakespeare model (6 layers, width 384, 6 heads, a "
    "256-character context, dropout 0.2) over the 128 ASCII code points of keras-hub's "
    "``UnicodeCodepointTokenizer`` (tiny Shakespeare uses 65), 10,795,008 parameters. Takes "
    "``gpt``'s arguments with these defaults; ``recipes/gpt_shakespeare.py`` trains a smaller "
    "one on a CPU.",
    {"vocab_size": CHAR_VOCAB_SIZE, "max_length": 256, "num_layers": 6, "num_heads": 6,
     "hidden_dim": 384, "mlp_dim": 1536, "dropout": 0.2},
)
