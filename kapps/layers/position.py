"""Where a token is: learned position embeddings (ViT, BERT, GPT) and the sinusoidal
positional encoding of the original Transformer.

Attention is blind to order: permuting the tokens permutes the outputs the same way. A
vector that depends on the position is therefore added to every token.
"""

import math

import keras
import numpy as np
from keras import ops

from kapps._checks import check_choice, check_positive_int

#: Position embeddings start small (ViT and BERT reference code: normal, stddev 0.02).
POSITION_INITIALIZER = {"class_name": "TruncatedNormal", "config": {"stddev": 0.02}}

#: Accepted values of ``PositionEmbedding(interpolation=...)``.
INTERPOLATIONS = ("bicubic", "bilinear", None)


def sinusoidal_encoding(length, dim, start=0, max_wavelength=10000.0, dtype="float32"):
    """The sinusoidal positional encoding of Vaswani et al. 2017, section 3.5.

    ``PE[pos, 2i] = sin(pos / max_wavelength^(2i/dim))`` and
    ``PE[pos, 2i+1] = cos(pos / max_wavelength^(2i/dim))`` for ``pos = start, ...,
    start + length - 1``. Each pair of features is a clock hand turning at its own speed,
    from one turn per ``2 pi`` positions down to one per ``2 pi * max_wavelength``, so
    ``PE[pos + k]`` is a fixed rotation of ``PE[pos]`` and relative offsets are easy to read.
    An odd ``dim`` ends with a sine.

    Args:
        length: number of positions (int or scalar tensor).
        dim: number of features (int).
        start: first position (int or scalar tensor), e.g. the number of cached tokens.
        max_wavelength: the base ``10000`` of the paper.
        dtype: dtype of the result.

    Returns:
        A ``(length, dim)`` tensor.

    Example:
        >>> tuple(sinusoidal_encoding(50, 16).shape)
        (50, 16)
    """
    features = np.arange(dim)
    # 1 / max_wavelength^(2i/dim) for feature 2i and 2i+1: (dim,), a constant
    rates = np.power(float(max_wavelength), -2.0 * (features // 2) / dim).astype("float32")
    is_sine = features % 2 == 0
    positions = ops.cast(ops.arange(length, dtype="int32") + ops.cast(start, "int32"), "float32")
    # (length, 1) * (1, dim) -> (length, dim)
    angles = ops.expand_dims(positions, 1) * ops.expand_dims(ops.convert_to_tensor(rates), 0)
    encoding = ops.where(ops.convert_to_tensor(is_sine), ops.sin(angles), ops.cos(angles))
    return ops.cast(encoding, dtype)


def resize_position_grid(table, source_grid, target_grid, num_prefix_tokens=0,
                         interpolation="bicubic"):
    """Resize the grid part of a position-embedding table, keeping the prefix vectors.

    ``table`` is ``(num_prefix_tokens + gh * gw, dim)``: prefix vectors (a class token's), then
    a ``gh x gw`` grid read row by row. The grid is resized as an image to ``target_grid``
    with ``keras.ops.image.resize`` (the same as ``tf.image.resize``), as when a ViT is
    fine-tuned at another resolution (Dosovitskiy et al. 2021, section 3.2). Grids need not be
    square. ``PositionEmbedding.interpolate`` uses it; so do builders that load a table saved
    at another image size.

    Args:
        table: ``(num_prefix_tokens + gh * gw, dim)`` array or tensor.
        source_grid: ``(gh, gw)`` of ``table``.
        target_grid: ``(new_gh, new_gw)``.
        num_prefix_tokens: leading vectors that are not part of the grid.
        interpolation: ``"bicubic"`` or ``"bilinear"``.

    Returns:
        A ``(num_prefix_tokens + new_gh * new_gw, dim)`` tensor of ``table``'s dtype (``table``
        itself, as a tensor, when the grids agree).

    Example:
        >>> tuple(resize_position_grid(np.zeros((17, 8)), (4, 4), (8, 8), 1).shape)
        (65, 8)
    """
    check_choice("interpolation", interpolation, INTERPOLATIONS[:2])
    table = ops.convert_to_tensor(table)
    (gh, gw), (nh, nw) = tuple(source_grid), tuple(target_grid)
    prefix, dim = num_prefix_tokens, table.shape[-1]
    if table.shape[0] != prefix + gh * gw:
        raise ValueError(
            f"the table has {table.shape[0]} vectors; expected num_prefix_tokens={prefix} plus "
            f"the {gh}x{gw} source_grid={tuple(source_grid)!r}."
        )
    if (gh, gw) == (nh, nw):
        return table
    grid = ops.cast(table[prefix:], "float32")
    # (gh*gw, dim) -> (1, gh, gw, dim): the grid as a one-image batch
    grid = ops.reshape(grid, (1, gh, gw, dim))
    grid = ops.image.resize(
        grid, (nh, nw), interpolation=interpolation, data_format="channels_last"
    )
    grid = ops.cast(ops.reshape(grid, (nh * nw, dim)), table.dtype)  # (nh*nw, dim)
    return ops.concatenate([table[:prefix], grid], axis=0)


def _check_start(start, interpolation):
    if isinstance(start, bool) or (isinstance(start, int) and start < 0):
        raise ValueError(f"start={start!r} is not allowed; expected an integer >= 0.")
    if interpolation is not None and not (isinstance(start, int) and start == 0):
        raise ValueError(
            f"start={start!r} is only allowed with interpolation=None (a 1-D sequence); a grid "
            "of patches always starts at position 0."
        )


@keras.saving.register_keras_serializable(package="kapps")
class PositionEmbedding(keras.layers.Layer):
    """Add a learned vector per position: ``inputs + embeddings[:tokens]``.

    The table holds ``num_positions`` vectors of the input's size. Two uses:

    - **Grid of patches** (ViT; ``interpolation="bicubic"`` or ``"bilinear"``): the table is
      ``num_prefix_tokens`` leading vectors (1 for ViT's class token) followed by a square
      ``g x g`` grid. Called on another number of tokens (fine-tuning at a higher
      resolution, section 3.2 of the ViT paper), the grid part is resized as an image to the
      new ``h x h`` grid with ``keras.ops.image.resize`` (the same as ``tf.image.resize``);
      the prefix vectors are kept as they are. ``interpolate(tokens)`` returns that table,
      to store it in a model built for the new size.
    - **1-D sequence** (BERT, GPT; ``interpolation=None``): a sequence of ``n <=
      num_positions`` tokens gets positions ``start, ..., start + n - 1`` (``start`` counts
      cached tokens in incremental decoding).

    Args:
        num_positions: number of vectors, prefix tokens included (ViT-B/16 at 224: 197).
        num_prefix_tokens: leading vectors that are not part of the grid (1 for a class
            token; 0 for none).
        interpolation: ``"bicubic"`` (default; as timm), ``"bilinear"``, or ``None`` for a
            1-D sequence (no interpolation).
        initializer: initializer of the table.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, tokens, dim)``.
        start: first position (``interpolation=None`` only): an int or a scalar tensor.

    Example:
        >>> embed = PositionEmbedding(197, num_prefix_tokens=1)
        >>> tuple(embed(keras.ops.ones((2, 197, 64))).shape)
        (2, 197, 64)
        >>> tuple(embed(keras.ops.ones((2, 1 + 24 * 24, 64))).shape)  # 384x384 images
        (2, 577, 64)

    Paper: Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words", sections 3.1 and 3.2
    ("2D interpolation of the pre-trained position embeddings").
    """

    def __init__(
        self,
        num_positions,
        num_prefix_tokens=0,
        interpolation="bicubic",
        initializer=POSITION_INITIALIZER,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_positions = check_positive_int("num_positions", num_positions)
        if isinstance(num_prefix_tokens, bool) or not isinstance(num_prefix_tokens, int) or not (
            0 <= num_prefix_tokens < num_positions
        ):
            raise ValueError(
                f"num_prefix_tokens={num_prefix_tokens!r} is not allowed; expected an integer "
                f"in [0, num_positions={num_positions})."
            )
        self.num_prefix_tokens = num_prefix_tokens
        self.interpolation = check_choice("interpolation", interpolation, INTERPOLATIONS)
        self.initializer = keras.initializers.get(initializer)

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                f"PositionEmbedding expects (batch, tokens, dim) with a known dim; received "
                f"shape {tuple(input_shape)}."
            )
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.num_positions, input_shape[-1]),
            initializer=self.initializer,
        )

    @staticmethod
    def _side(tokens, what):
        side = math.isqrt(tokens) if tokens > 0 else 0
        if side * side != tokens or side == 0:
            raise ValueError(
                f"{what} {tokens} patch tokens, which is not a square grid (side * side); "
                "interpolation needs square grids (or use interpolation=None for sequences)."
            )
        return side

    def interpolate(self, num_tokens):
        """The table for ``num_tokens`` tokens: ``(num_tokens, dim)``, the prefix vectors
        unchanged and the grid resized. Returns the table itself when the count agrees."""
        if self.interpolation is None:
            raise ValueError(
                "interpolation=None (a 1-D sequence) is not allowed for interpolate(); build "
                "the layer with interpolation='bicubic' or 'bilinear'."
            )
        table = ops.convert_to_tensor(self.embeddings)
        if num_tokens == self.num_positions:
            return table
        prefix = self.num_prefix_tokens
        old = self._side(self.num_positions - prefix, f"num_positions={self.num_positions} "
                         f"minus num_prefix_tokens={prefix} leaves")
        new = self._side(num_tokens - prefix, f"the input has {num_tokens} tokens; minus "
                         f"num_prefix_tokens={prefix} that leaves")
        return resize_position_grid(table, (old, old), (new, new), prefix, self.interpolation)

    def call(self, inputs, start=0):
        _check_start(start, self.interpolation)
        tokens = inputs.shape[1]
        dim = inputs.shape[-1]
        if self.interpolation is None:
            if tokens is not None and isinstance(start, int) and (
                start + tokens > self.num_positions
            ):
                raise ValueError(
                    f"the input has {tokens} tokens from position {start}, more than "
                    f"num_positions={self.num_positions}."
                )
            length = tokens if tokens is not None else ops.shape(inputs)[1]
            table = ops.slice(self.embeddings, (start, 0), (length, dim))  # (tokens, dim)
        else:
            if tokens is None:
                raise ValueError(
                    "PositionEmbedding with interpolation needs a known number of tokens; the "
                    f"input has shape {tuple(inputs.shape)}."
                )
            table = self.interpolate(tokens)
        return inputs + ops.cast(ops.expand_dims(table, 0), inputs.dtype)  # (1, tokens, dim)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_positions": self.num_positions,
                "num_prefix_tokens": self.num_prefix_tokens,
                "interpolation": self.interpolation,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class PositionalEncoding(keras.layers.Layer):
    """Add the fixed sinusoidal positional encoding: ``inputs + PE[start:start + tokens]``.

    No weights, any sequence length (also unknown until run time), and the encoding of
    position ``pos + k`` is a linear function of that of ``pos``, which the paper hoped would
    let the model extrapolate to longer sequences (Vaswani et al. 2017, section 3.5; the
    formula is in ``sinusoidal_encoding``). The paper multiplies the token embeddings by
    ``sqrt(d_model)`` before adding (section 3.4); that is the caller's step.

    Args:
        max_wavelength: the base ``10000`` of the paper's formula.
        **kwargs: standard layer arguments.

    Call arguments:
        inputs: ``(batch, tokens, dim)``.
        start: position of the first token, an int or a scalar tensor (the number of cached
            tokens in incremental decoding).

    Example:
        >>> encode = PositionalEncoding()
        >>> tuple(encode(keras.ops.zeros((2, 10, 16)), start=5).shape)
        (2, 10, 16)

    Paper: Vaswani et al. 2017, "Attention Is All You Need", section 3.5.
    """

    def __init__(self, max_wavelength=10000.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(max_wavelength, bool) or not isinstance(max_wavelength, (int, float)) or (
            not max_wavelength > 1
        ):
            raise ValueError(
                f"max_wavelength={max_wavelength!r} is not allowed; expected a number > 1."
            )
        self.max_wavelength = float(max_wavelength)
        self.supports_masking = True

    def call(self, inputs, start=0):
        if isinstance(start, bool) or (isinstance(start, int) and start < 0):
            raise ValueError(f"start={start!r} is not allowed; expected an integer >= 0.")
        length = inputs.shape[1] if inputs.shape[1] is not None else ops.shape(inputs)[1]
        encoding = sinusoidal_encoding(
            length, inputs.shape[-1], start, self.max_wavelength, dtype=inputs.dtype
        )
        return inputs + ops.expand_dims(encoding, 0)  # (1, tokens, dim)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"max_wavelength": self.max_wavelength})
        return config
