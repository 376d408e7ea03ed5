"""Token embeddings for sequence models: one matrix that turns token ids into vectors and, read
backwards, vectors into scores over the vocabulary (the padding mask read from the ids is
``kapps.layers.TokenMask``).

The Transformer (Vaswani et al. 2017, section 3.4) uses one learned matrix three times: for
the encoder's input tokens, the decoder's input tokens and the pre-softmax projection that
scores every vocabulary entry (as Press & Wolf 2017 proposed). ``SharedEmbedding`` is that
matrix; call it on ids for vectors and with ``reverse=True`` on vectors for logits.
"""

import keras
from keras import ops

from kapps._checks import check_positive_int


def _default_initializer(hidden_dim):
    # tensor2tensor's embedding initialisation: normal with stddev hidden_dim ** -0.5, so
    # that the scaled lookup (times sqrt(hidden_dim)) starts at unit variance per feature
    return keras.initializers.RandomNormal(mean=0.0, stddev=hidden_dim**-0.5)


@keras.saving.register_keras_serializable(package="kapps")
class SharedEmbedding(keras.layers.Layer):
    """A token embedding that is also the output projection tied to it.

    Forward (``reverse=False``): ids ``(..., )`` to vectors ``embeddings[ids]``, multiplied by
    ``sqrt(hidden_dim)`` when ``scale`` (section 3.4: "In the embedding layers, we multiply
    those weights by sqrt(d_model)"), so the embeddings are on the scale of the sinusoidal
    positional encoding added next. Reverse (``reverse=True``): vectors ``(..., hidden_dim)``
    to logits ``vectors @ embeddings^T`` ``(..., vocab_size)``, the pre-softmax linear
    transformation of the paper, with no bias and no scaling. Use one layer object for the
    encoder input, the decoder input and the output projection to share the matrix between
    all three ("we share the same weight matrix between the two embedding layers and the
    pre-softmax linear transformation", section 3.4).

    The lookup is a ``GATHER`` and the projection a matrix product in TFLite, both builtins.

    Args:
        vocab_size: number of tokens (rows of the matrix).
        hidden_dim: width of the vectors (the paper's d_model).
        scale: multiply the looked-up vectors by ``sqrt(hidden_dim)``.
        embeddings_initializer: initializer of the ``(vocab_size, hidden_dim)`` matrix;
            ``None`` means normal with stddev ``hidden_dim ** -0.5`` (tensor2tensor's, which
            makes the scaled vectors start at unit variance).
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: integer ids of any shape (forward), or ``(..., hidden_dim)`` vectors
            (``reverse=True``).
        reverse: project vectors to logits over the vocabulary instead of looking ids up.

    Returns:
        ``(..., hidden_dim)`` vectors (forward) or ``(..., vocab_size)`` logits (reverse), in
        the layer's compute dtype.

    Example:
        >>> embedding = SharedEmbedding(100, 16)
        >>> vectors = embedding(np.array([[1, 2, 3]]))
        >>> tuple(vectors.shape), tuple(embedding(vectors, reverse=True).shape)
        ((1, 3, 16), (1, 3, 100))

    Paper: Vaswani et al. 2017, "Attention Is All You Need", section 3.4; Press & Wolf 2017,
    "Using the Output Embedding to Improve Language Models".
    """

    def __init__(self, vocab_size, hidden_dim, scale=True, embeddings_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = check_positive_int("vocab_size", vocab_size)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        if not isinstance(scale, bool):
            raise ValueError(f"scale={scale!r} is not allowed; expected True or False.")
        self.scale = scale
        self.embeddings_initializer = (
            _default_initializer(hidden_dim)
            if embeddings_initializer is None
            else keras.initializers.get(embeddings_initializer)
        )

    def build(self, input_shape=None):
        # one (vocab_size, hidden_dim) matrix whichever direction the layer is first called in
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.vocab_size, self.hidden_dim),
            initializer=self.embeddings_initializer,
        )

    def call(self, inputs, reverse=False):
        embeddings = ops.cast(self.embeddings, self.compute_dtype)
        if reverse:
            if inputs.shape[-1] != self.hidden_dim:
                raise ValueError(
                    f"reverse=True needs vectors of hidden_dim={self.hidden_dim} features; "
                    f"received shape {tuple(inputs.shape)}."
                )
            # (..., hidden_dim) x (hidden_dim, vocab_size) -> (..., vocab_size)
            return ops.matmul(ops.cast(inputs, self.compute_dtype), ops.transpose(embeddings))
        if "int" not in str(inputs.dtype):
            inputs = ops.cast(inputs, "int32")
        vectors = ops.take(embeddings, inputs, axis=0)  # (..., hidden_dim)
        if self.scale:
            vectors = vectors * ops.cast(self.hidden_dim**0.5, vectors.dtype)
        return vectors

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocab_size": self.vocab_size,
                "hidden_dim": self.hidden_dim,
                "scale": self.scale,
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer
                ),
            }
        )
        return config
