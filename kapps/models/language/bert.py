"""BERT: an encoder-only Transformer pre-trained as a masked language model (Devlin et al.
2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding").

Every token sees every other (real) token, in both directions:

    token_ids, segment_ids, padding_mask (batch, seq)
      -> token embedding + learned position embedding + segment embedding (sentence A / B),
         LayerNorm, dropout                                            (batch, seq, hidden)
      -> num_layers x post-LN block: LN(x + SelfAttention(x)), LN(x + MLP(x)), padding
         hidden from the attention                     sequence_output (batch, seq, hidden)
      -> pooler: Dense(hidden, tanh) on the first ([CLS]) token   pooled_output (batch, hidden)

Section 3 and Figure 2 of the paper; the blocks are ``kapps.layers.TransformerEncoderBlock``
with ``norm_first=False`` and ``epsilon=1e-12``, and every initializer is the reference
code's truncated normal of standard deviation 0.02.

Heads (each takes the backbone object, so the head and the backbone share weights):

- ``bert_masked_lm``: the pre-training head of section 3.1 / appendix A.1: gather the
  hidden vectors at the masked positions, Dense(hidden, activation) + LayerNorm, then the
  token embedding matrix read backwards (tied, no second vocab x hidden matrix) plus an
  output bias; optionally the next-sentence head (Dense(2) on the pooled output).
- ``bert_classifier``: dropout and a Dense layer on the pooled output, for fine-tuning
  (section 4.1).

Sizes (with the 30,522-token uncased WordPiece vocabulary, 512 positions, 2 segments; the
counts include the pooler and equal keras-hub's ``BertBackbone`` and the public checkpoints):

=============  ======  ======  =====  =====  ===========
name           layers  width   heads  MLP    parameters
=============  ======  ======  =====  =====  ===========
bert_tiny      2       128     2      512    4,385,920
bert_base      12      768     12     3072   109,482,240
bert_large     24      1024    16     4096   335,141,888
=============  ======  ======  =====  =====  ===========

``bert_tiny`` is BERT-Tiny of Turc et al. 2019 ("Well-Read Students Learn Better").

Activation: the string ``"gelu"`` (the default) is the exact ``x Phi(x)``; Google's reference
code and keras-hub use the tanh approximation, ``activation="gelu_tanh"``, which
``load_keras_hub_bert_weights`` needs for outputs equal to keras-hub's (the two differ by
about 1e-3 per activation).

Layer names: inputs ``token_ids``, ``segment_ids``, ``padding_mask``; ``token_embedding``,
``position_embedding``, ``segment_embedding``, ``embeddings_add``, ``embeddings_norm``,
``embeddings_dropout``, ``block1`` ... ``block{num_layers}``, ``pooler``. Heads add
``mlm_gather``, ``mlm_dense``, ``mlm_norm``, ``mlm_bias``, ``masked_lm_logits``,
``next_sentence`` and ``next_sentence_logits`` (MLM), or ``classifier_dropout``,
``classifier`` and ``logits`` (classifier).
"""

import keras
from keras import ops

from kapps._checks import (
    check_bool,
    check_epsilon,
    check_name,
    check_positive_int,
    check_rate,
    check_transformer_dims,
)
from kapps.layers.activations import get_activation
from kapps.layers.attention import padding_mask as attention_padding_mask
from kapps.layers.embedding import SharedEmbedding
from kapps.layers.position import PositionEmbedding
from kapps.layers.transformer import TransformerEncoderBlock
from kapps.models.classification.common import variant

#: name -> (num_layers, hidden_dim, num_heads, mlp_dim). base and large: the paper, section
#: 3; tiny: Turc et al. 2019's BERT-Tiny (L=2, H=128, A=2).
VARIANTS = {
    "tiny": (2, 128, 2, 512),
    "base": (12, 768, 12, 3072),
    "large": (24, 1024, 16, 4096),
}

#: The uncased English WordPiece vocabulary of the released checkpoints.
BERT_VOCAB_SIZE = 30522

#: The reference code's ``initializer_range``: truncated normal, standard deviation 0.02.
_INITIALIZER = {"class_name": "TruncatedNormal", "config": {"stddev": 0.02}}


#: The backbone's input names, in order.
INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")


def _initializer():
    # a fresh instance per weight, so equal shapes do not get equal values
    return keras.initializers.get(_INITIALIZER)










@keras.saving.register_keras_serializable(package="kapps")
class GatherPositions(keras.layers.Layer):
    """Pick the vectors at given positions of each sequence: ``out[b, i] = x[b, p[b, i]]``.

    The first step of BERT's masked-language-model head: only the masked tokens are scored,
    so the ``vocab_size``-wide projection runs on ``num_predictions`` vectors per example, not
    on the whole sequence. Runs as ``take_along_axis`` (TFLite builtin ops).

    Args:
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, seq, dim)`` vectors.
        positions: ``(batch, num_predictions)`` integer positions in ``[0, seq)``.

    Returns:
        ``(batch, num_predictions, dim)``.

    Example:
        >>> gather = GatherPositions()
        >>> tuple(gather(keras.ops.ones((2, 10, 16)), np.array([[1, 4], [0, 9]])).shape)
        (2, 2, 16)

    Paper: Devlin et al. 2019, "BERT", section 3.1 (Task #1: Masked LM).
    """

    def call(self, inputs, positions):
        positions = ops.cast(positions, "int32")
        # (batch, num_predictions) -> (batch, num_predictions, 1): one index per vector,
        # broadcast over the features
        return ops.take_along_axis(inputs, ops.expand_dims(positions, -1), axis=1)

    def compute_output_shape(self, inputs_shape, positions_shape):
        return (inputs_shape[0], positions_shape[1], inputs_shape[-1])


@keras.saving.register_keras_serializable(package="kapps")
class OutputBias(keras.layers.Layer):
    """Add a learned bias vector to the last axis: ``inputs + bias``.

    BERT's masked-language-model head projects with the token embedding matrix, which has no
    bias of its own; the reference code adds one vector of ``vocab_size`` biases
    (``cls/predictions/output_bias``).

    Args:
        units: size of the last axis (the vocabulary).
        bias_initializer: initializer of the ``(units,)`` bias.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(..., units)``.

    Example:
        >>> tuple(OutputBias(100)(keras.ops.ones((2, 3, 100))).shape)
        (2, 3, 100)

    Paper: Devlin et al. 2019, "BERT", section 3.1; Google's reference code
    (``run_pretraining.py``, ``get_masked_lm_output``).
    """

    def __init__(self, units, bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int("units", units)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        if input_shape[-1] != self.units:
            raise ValueError(
                f"units={self.units!r} does not match the input's last axis of shape "
                f"{tuple(input_shape)}."
            )
        self.bias = self.add_weight(
            name="bias", shape=(self.units,), initializer=self.bias_initializer
        )

    def call(self, inputs):
        return inputs + ops.cast(self.bias, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config


def bert(
    vocab_size=BERT_VOCAB_SIZE,
    max_length=512,
    num_segments=2,
    num_layers=12,
    num_heads=12,
    hidden_dim=768,
    mlp_dim=3072,
    dropout=0.1,
    epsilon=1e-12,
    activation="gelu",
    include_pooler=True,
    name="bert",
):
    """Build the BERT encoder (backbone); defaults: BERT-base, 109,482,240 parameters.

    Inputs (int32, in this order): ``token_ids`` ``(batch, seq)``, ``segment_ids`` ``(batch,
    seq)`` (0 for sentence A, 1 for sentence B) and ``padding_mask`` ``(batch, seq)`` (1 for
    real tokens, 0 for padding, which no token attends to). ``seq`` may be anything up to
    ``max_length``. Outputs: a dict with ``sequence_output`` ``(batch, seq, hidden_dim)`` and,
    with ``include_pooler``, ``pooled_output`` ``(batch, hidden_dim)``: ``tanh(Dense)`` of the
    first token (``[CLS]``), the sentence vector the paper's classifiers and next-sentence
    head read.

    Args:
        vocab_size: WordPiece vocabulary size (30,522: the released uncased vocabulary).
        max_length: number of learned positions (512 in the paper).
        num_segments: number of segment (sentence) embeddings (2: sentences A and B).
        num_layers: encoder blocks (L).
        num_heads: attention heads (A); must divide ``hidden_dim``.
        hidden_dim: width of every token vector (H).
        mlp_dim: width of the blocks' MLP (4H).
        dropout: dropout on the embeddings, on every sub-layer's output and on the attention
            weights (the reference code's ``hidden_dropout_prob`` and
            ``attention_probs_dropout_prob``, both 0.1).
        epsilon: epsilon of every LayerNorm (1e-12 in the reference code).
        activation: the MLP's activation: ``"gelu"`` (exact), ``"gelu_tanh"`` (the tanh
            approximation of the reference code and keras-hub), another Keras activation or
            a callable.
        include_pooler: add the pooler and the ``pooled_output`` output.
        name: model name.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: for bad arguments, naming the argument, the value received and what is
            allowed.

    Example:
        >>> backbone = bert(vocab_size=1000, num_layers=2, hidden_dim=64, num_heads=2,
        ...                 mlp_dim=128)
        >>> out = backbone([token_ids, segment_ids, padding_mask])
        >>> out["sequence_output"].shape, out["pooled_output"].shape  # (b, s, 64), (b, 64)

    Paper: Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for
    Language Understanding", section 3 and Figure 2.
    """
    vocab_size = check_positive_int("vocab_size", vocab_size)
    max_length = check_positive_int("max_length", max_length)
    num_segments = check_positive_int("num_segments", num_segments)
    check_positive_int("num_layers", num_layers)
    check_transformer_dims(hidden_dim, num_layers, num_heads, mlp_dim)
    dropout = check_rate("dropout", dropout)
    epsilon = check_epsilon(epsilon)
    activation_fn = get_activation(activation)
    check_bool("include_pooler", include_pooler)
    check_name(name)

    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    segment_ids = keras.Input((None,), dtype="int32", name="segment_ids")
    padding = keras.Input((None,), dtype="int32", name="padding_mask")

    token_embedding = SharedEmbedding(
        vocab_size, hidden_dim, scale=False, embeddings_initializer=_initializer(),
        name="token_embedding",
    )
    x = token_embedding(token_ids)  # (batch, seq, hidden)
    # adds positions 0 .. seq-1 to the token vectors
    x = PositionEmbedding(
        max_length, interpolation=None, initializer=_INITIALIZER, name="position_embedding"
    )(x)
    segments = keras.layers.Embedding(
        num_segments, hidden_dim, embeddings_initializer=_initializer(),
        name="segment_embedding",
    )(segment_ids)
    x = keras.layers.Add(name="embeddings_add")([x, segments])
    x = keras.layers.LayerNormalization(epsilon=epsilon, name="embeddings_norm")(x)
    x = keras.layers.Dropout(dropout, name="embeddings_dropout")(x)

    mask = attention_padding_mask(padding)  # (batch, 1, seq): no query attends to padding
    for i in range(num_layers):
        x = TransformerEncoderBlock(
            hidden_dim, num_heads, mlp_dim, dropout=dropout, attention_dropout=dropout,
            norm_first=False, epsilon=epsilon, activation=activation_fn,
            kernel_initializer=_INITIALIZER, name=f"block{i + 1}",
        )(x, attention_mask=mask)
    outputs = {"sequence_output": x}
    if include_pooler:
        # (batch, seq, hidden) -> (batch, hidden): the [CLS] token's vector
        first = ops.take(x, 0, axis=1)
        outputs["pooled_output"] = keras.layers.Dense(
            hidden_dim, activation="tanh", kernel_initializer=_initializer(), name="pooler"
        )(first)
    return keras.Model([token_ids, segment_ids, padding], outputs, name=name)


def _doc(key):
    layers, dim, heads, mlp = VARIANTS[key]
    source = (
        "Turc et al. 2019's BERT-Tiny" if key == "tiny" else f"BERT-{key} of Devlin et al. 2019"
    )
    return (
        f"{source}: L={layers}, H={dim}, A={heads}, MLP {mlp}. Takes ``bert``'s arguments "
        "with these defaults (keyword arguments override them)."
    )


def _variant(key):
    layers, dim, heads, mlp = VARIANTS[key]
    defaults = {"num_layers": layers, "hidden_dim": dim, "num_heads": heads, "mlp_dim": mlp}
    return variant(bert, f"bert_{key}", _doc(key), defaults)


bert_tiny = _variant("tiny")
bert_base = _variant("base")
bert_large = _variant("large")


# -- heads --------------------------------------------------------------------------------


def _backbone_layer(backbone, name, argument="backbone"):
    try:
        return backbone.get_layer(name)
    except ValueError:
        raise ValueError(
            f"{argument}={getattr(backbone, 'name', backbone)!r} is not allowed; expected a "
            f"model built by kapps' bert (it has no layer {name!r})."
        ) from None


def _check_backbone(backbone, argument="backbone"):
    """Raise unless ``backbone`` is a model built by ``bert``; return its token embedding."""
    if not isinstance(backbone, keras.Model):
        raise ValueError(
            f"{argument}={backbone!r} is not allowed; expected a keras.Model built by kapps' bert."
        )
    names = tuple(t.name for t in backbone.inputs)
    if names != INPUT_NAMES:
        raise ValueError(
            f"{argument}={backbone.name!r} is not allowed; its inputs are {names}, expected "
            f"{INPUT_NAMES} (a model built by kapps' bert)."
        )
    embedding = _backbone_layer(backbone, "token_embedding", argument)
    if not isinstance(embedding, SharedEmbedding):
        raise ValueError(
            f"{argument}={backbone.name!r} is not allowed; its 'token_embedding' is a "
            f"{type(embedding).__name__}, expected kapps' SharedEmbedding."
        )
    return embedding


def _has_pooler(backbone):
    return isinstance(backbone.output, dict) and "pooled_output" in backbone.output


def _backbone_inputs():
    return [keras.Input((None,), dtype="int32", name=n) for n in INPUT_NAMES]


@keras.saving.register_keras_serializable(package="kapps")
class BertMaskedLM(keras.Model):
    """BERT with its pre-training heads: masked-token logits (and next-sentence logits).

    Built by ``bert_masked_lm`` (see there). A ``keras.Model`` subclass only so that a
    ``.keras`` file rebuilds the head around the saved backbone: the logits are computed with
    the backbone's own ``token_embedding`` (weight tying), and a plain functional model would
    load that shared layer as two separate copies.

    Args:
        backbone: a model built by ``bert``.
        next_sentence: also return the next-sentence logits (needs the pooler).
        name: model name.
        **kwargs: standard model arguments (``trainable``).
    """

    def __init__(self, backbone, next_sentence=False, name="bert_masked_lm", **kwargs):
        embedding = _check_backbone(backbone)
        check_bool("next_sentence", next_sentence)
        check_name(name)
        if next_sentence and not _has_pooler(backbone):
            raise ValueError(
                "next_sentence=True is not allowed with a backbone built with "
                "include_pooler=False; the next-sentence head reads the pooled output."
            )
        block = _backbone_layer(backbone, "block1")
        hidden_dim, vocab_size = embedding.hidden_dim, embedding.vocab_size

        inputs = _backbone_inputs()
        positions = keras.Input((None,), dtype="int32", name="mask_positions")
        features = backbone(inputs)
        x = GatherPositions(name="mlm_gather")(features["sequence_output"], positions)
        # the "transform" of the reference code's MLM head: Dense + activation + LayerNorm
        x = keras.layers.Dense(
            hidden_dim, activation=block.activation, kernel_initializer=_initializer(),
            name="mlm_dense",
        )(x)
        x = keras.layers.LayerNormalization(epsilon=block.epsilon, name="mlm_norm")(x)
        # (batch, num_predictions, hidden) x (hidden, vocab): the tied output projection
        x = embedding(x, reverse=True)
        x = OutputBias(vocab_size, name="mlm_bias")(x)
        # float32 logits whatever the dtype policy (a stable softmax in the loss)
        logits = keras.layers.Activation("linear", dtype="float32", name="masked_lm_logits")(x)
        outputs = logits
        if next_sentence:
            nsp = keras.layers.Dense(
                2, kernel_initializer=_initializer(), name="next_sentence"
            )(features["pooled_output"])
            nsp = keras.layers.Activation(
                "linear", dtype="float32", name="next_sentence_logits"
            )(nsp)
            outputs = {"masked_lm_logits": logits, "next_sentence_logits": nsp}
        super().__init__([*inputs, positions], outputs, name=name, **kwargs)
        self.backbone = backbone
        self.next_sentence = next_sentence

    def get_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "next_sentence": self.next_sentence,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(
            config["backbone"], custom_objects=custom_objects
        )
        return cls(**config)


def bert_masked_lm(backbone, *, next_sentence=False, name="bert_masked_lm"):
    """BERT's pre-training model: masked-language-model logits on top of ``backbone``.

    Inputs: the backbone's ``token_ids``, ``segment_ids``, ``padding_mask`` and
    ``mask_positions`` ``(batch, num_predictions)`` int32, the positions of the masked tokens
    (as keras-hub's ``MaskedLMMaskGenerator`` returns them; padded positions are scored too and
    should get weight 0 in the loss). Output: ``masked_lm_logits`` ``(batch, num_predictions,
    vocab_size)`` float32; with ``next_sentence=True`` a dict that adds
    ``next_sentence_logits`` ``(batch, 2)`` (Dense on the pooled output; the reference code
    labels 0 when sentence B follows A and 1 when B is a random sentence).

    The head (section 3.1 and appendix A.1; Google's ``get_masked_lm_output``): gather the
    hidden vectors at ``mask_positions``, Dense(hidden_dim, the backbone's activation),
    LayerNorm (the backbone's epsilon), then the backbone's token embedding matrix, transposed,
    plus an output bias of ``vocab_size``. The projection is tied: no second
    ``vocab_size x hidden_dim`` matrix. ``backbone`` itself is a layer of the returned model,
    so training the MLM trains the backbone object (pass it to ``bert_classifier`` next).

    Args:
        backbone: a model built by ``bert`` (any size).
        next_sentence: add the next-sentence head (section 3.1, Task #2); needs the pooler.
        name: model name.

    Returns:
        A ``BertMaskedLM`` (a ``keras.Model``), with attribute ``backbone``.

    Raises:
        ValueError: if ``backbone`` is not a kapps BERT backbone, or ``next_sentence=True``
            on a backbone without pooler, or for a bad ``name``.

    Example:
        >>> mlm = bert_masked_lm(bert_tiny(vocab_size=1000))
        >>> logits = mlm([token_ids, segment_ids, padding_mask, mask_positions])

    Paper: Devlin et al. 2019, "BERT", section 3.1 and appendix A.1.
    """
    return BertMaskedLM(backbone, next_sentence=next_sentence, name=name)


def bert_classifier(backbone, num_classes, *, dropout=0.1, name="bert_classifier"):
    """A sentence (pair) classifier for fine-tuning: dropout and Dense on the pooled output.

    Inputs: the backbone's three inputs. Output: ``logits`` ``(batch, num_classes)`` float32
    (no softmax). ``backbone`` is a layer of the returned model (fine-tuning updates it).

    Args:
        backbone: a model built by ``bert`` with ``include_pooler=True``.
        num_classes: number of classes.
        dropout: dropout on the pooled output (0.1, as the reference code's fine-tuning).
        name: model name.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: if ``backbone`` is not a kapps BERT backbone or has no pooler, or for bad
            ``num_classes``, ``dropout`` or ``name``.

    Example:
        >>> classifier = bert_classifier(backbone, num_classes=2)
        >>> logits = classifier([token_ids, segment_ids, padding_mask])  # (batch, 2)

    Paper: Devlin et al. 2019, "BERT", section 4.1 and Figure 4.
    """
    _check_backbone(backbone)
    num_classes = check_positive_int("num_classes", num_classes)
    dropout = check_rate("dropout", dropout)
    check_name(name)
    if not _has_pooler(backbone):
        raise ValueError(
            f"backbone={backbone.name!r} is not allowed: it was built with include_pooler="
            "False, and the classifier reads the pooled output; build it with "
            "include_pooler=True."
        )
    inputs = _backbone_inputs()
    pooled = backbone(inputs)["pooled_output"]
    x = keras.layers.Dropout(dropout, name="classifier_dropout")(pooled)
    x = keras.layers.Dense(num_classes, kernel_initializer=_initializer(), name="classifier")(x)
    logits = keras.layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=name)


# -- weights from keras-hub ------------------------------------------------------------------


def _assign(layer, arrays, what):
    ours = layer.get_weights()
    shapes = [tuple(a.shape) for a in arrays]
    if [tuple(w.shape) for w in ours] != shapes:
        raise ValueError(
            f"the keras-hub weights of {what} have shapes {shapes} but layer {layer.name!r} "
            f"has {[tuple(w.shape) for w in ours]}; build the model with the same sizes."
        )
    layer.set_weights(arrays)


def load_keras_hub_bert_weights(model, keras_hub_backbone):
    """Copy the weights of a ``keras_hub.models.BertBackbone`` into a kapps ``bert`` model.

    The two compute the same function once the weights are copied, provided ``model`` was
    built with the same sizes and ``activation="gelu_tanh"`` (keras-hub, like Google's
    reference code, uses the tanh approximation of GELU). Attention kernels are reshaped by
    ``kapps.layers.attention.convert_keras_mha_weights`` (Keras keeps the heads as a
    separate kernel axis). Use it with a preset loaded from a local file, e.g.
    ``keras_hub.models.BertBackbone.from_preset(local_path)``; nothing is downloaded here.

    Args:
        model: a model built by ``bert`` (``include_pooler=False`` skips the pooler), or a
            ``BertMaskedLM`` (its ``backbone`` is loaded; the MLM head is not).
        keras_hub_backbone: a built ``keras_hub.models.BertBackbone``.

    Returns:
        ``model``, with the weights copied.

    Raises:
        ValueError: if ``model`` is not a kapps BERT, if ``keras_hub_backbone`` does not look
            like a ``BertBackbone``, or if any size differs (named in the message).

    Example:
        >>> hub = keras_hub.models.BertBackbone(vocabulary_size=1000, num_layers=2,
        ...     num_heads=2, hidden_dim=64, intermediate_dim=128, max_sequence_length=64)
        >>> ours = bert(vocab_size=1000, num_layers=2, num_heads=2, hidden_dim=64,
        ...     mlp_dim=128, max_length=64, activation="gelu_tanh")
        >>> load_keras_hub_bert_weights(ours, hub)
    """
    target = model.backbone if isinstance(model, BertMaskedLM) else model
    _check_backbone(target, argument="model")
    hub = keras_hub_backbone
    needed = ("token_embedding", "position_embedding", "segment_embedding",
              "embeddings_layer_norm", "transformer_layers", "pooled_dense")
    missing = [n for n in needed if not hasattr(hub, n)]
    if missing:
        raise ValueError(
            f"keras_hub_backbone={getattr(hub, 'name', hub)!r} is not allowed; expected a "
            f"keras_hub.models.BertBackbone (it lacks {missing})."
        )
    blocks = []
    while f"block{len(blocks) + 1}" in {layer.name for layer in target.layers}:
        blocks.append(target.get_layer(f"block{len(blocks) + 1}"))
    if len(blocks) != len(hub.transformer_layers):
        raise ValueError(
            f"model has {len(blocks)} blocks but keras_hub_backbone has "
            f"{len(hub.transformer_layers)} transformer layers; num_layers must match."
        )
    get = target.get_layer
    # ReversibleEmbedding(tie_weights=True) holds one matrix, (vocab, hidden) as ours
    _assign(get("token_embedding"), hub.token_embedding.get_weights()[:1], "token_embedding")
    _assign(get("position_embedding"), hub.position_embedding.get_weights(),
            "position_embedding")
    _assign(get("segment_embedding"), hub.segment_embedding.get_weights(), "segment_embedding")
    _assign(get("embeddings_norm"), hub.embeddings_layer_norm.get_weights(),
            "embeddings_layer_norm")
    for i, (ours, theirs) in enumerate(zip(blocks, hub.transformer_layers)):
        where = f"transformer_layer_{i}"
        try:
            ours.attention.load_keras_weights(theirs._self_attention_layer)
        except ValueError as error:
            raise ValueError(f"{where} self-attention: {error}") from None
        _assign(ours.attention_norm, theirs._self_attention_layer_norm.get_weights(),
                f"{where} self_attention_layer_norm")
        _assign(ours.mlp_dense1, theirs._feedforward_intermediate_dense.get_weights(),
                f"{where} feedforward_intermediate_dense")
        _assign(ours.mlp_dense2, theirs._feedforward_output_dense.get_weights(),
                f"{where} feedforward_output_dense")
        _assign(ours.mlp_norm, theirs._feedforward_layer_norm.get_weights(),
                f"{where} feedforward_layer_norm")
    if _has_pooler(target):
        _assign(get("pooler"), hub.pooled_dense.get_weights(), "pooled_dense")
    return model
