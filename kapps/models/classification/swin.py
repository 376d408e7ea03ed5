"""Swin Transformer (Liu et al. 2021): a hierarchical vision Transformer with shifted windows.

An image is cut into ``patch_size x patch_size`` patches embedded linearly (a strided
convolution, ``kapps.layers.PatchEmbedding``) and normalized; four stages of Swin blocks
follow, each but the first starting with a ``PatchMerging`` that halves the map and doubles
the width, so the feature maps have the strides 4, 8, 16, 32 of a CNN (section 3.1,
Figure 3). Blocks alternate regular (W-MSA) and shifted (SW-MSA, shift ``window_size // 2``)
windows. The classifier is a final LayerNorm, global average pooling and a dense layer.

``VARIANTS`` holds the paper's configurations (section 3.3): Swin-T/S/B differ only in the
width ``C``, the depth of the third stage and the heads. Their trainable parameter counts
with 1000 classes at 224x224 are exactly those of the official implementation
(28,288,354 / 49,606,258 / 87,768,224; the model zoo rounds them to 28M / 50M / 88M); the
relative-position index and shift masks are constants, not weights, so the total equals the
trainable count.

Input sizes: with ``P = patch_size`` and ``n`` stages, height and width must be multiples of
``P * 2^(n - 1)`` (the patch embedding and ``n - 1`` halvings), and at every stage the map
must split into whole windows: a map larger than the window (``min(h, w) > window_size``)
needs both sides to be multiples of ``window_size``; a smaller one is attended as a single
window of side ``min(h, w)`` (no shift), which must divide both sides. The canonical
configuration (``P = 4``, four stages, window 7) accepts multiples of 224 (224, 448, ...,
also 224x448); 384x384 needs ``window_size=12`` (the paper's Swin-B/384).
"""

import keras
import numpy as np

from kapps._checks import check_int_sequence, check_positive_int, check_rate
from kapps.layers.patches import PatchEmbedding
from kapps.layers.swin import DEFAULT_INITIALIZER, PatchMerging, SwinTransformerBlock
from kapps.models.classification.common import (
    check_activation,
    check_classifier_args,
    classifier_output,
    pooled_features,
    variant,
)
from kapps.models.weights import load_into

#: The paper's variants (section 3.3): (embed_dim C, depths, num_heads, stochastic depth).
#: The stochastic-depth rates are the ImageNet-1K training settings of the paper's
#: Appendix A2.1 (0.2 / 0.3 / 0.5).
VARIANTS = {
    "t": (96, (2, 2, 6, 2), (3, 6, 12, 24), 0.2),
    "s": (96, (2, 2, 18, 2), (3, 6, 12, 24), 0.3),
    "b": (128, (2, 2, 18, 2), (4, 8, 16, 32), 0.5),
}

#: Layer-normalization epsilon of the reference implementation (PyTorch's default).
EPSILON = 1e-5


def _check_sequences(depths, num_heads):
    if not isinstance(depths, (list, tuple)) or not depths:
        raise ValueError(
            f"depths={depths!r} is not allowed; expected a non-empty sequence of positive "
            "integers, one per stage, e.g. (2, 2, 6, 2)."
        )
    depths = check_int_sequence("depths", depths, len(depths))
    num_heads = check_int_sequence("num_heads", num_heads, len(depths))
    return depths, num_heads


def _check_input_size(input_shape, patch_size, window_size, stages):
    """Raise unless every stage's map divides into windows (see the module docstring);
    return the stage map sizes."""
    height, width, _ = input_shape
    step = patch_size * 2 ** (stages - 1)
    rule = (
        f"height and width must be multiples of patch_size * 2^(stages - 1) = {step}, and "
        f"every stage's feature map must divide into window_size={window_size} windows (a map "
        f"not larger than the window is one window of its smaller side); with these settings, "
        f"e.g. {step * window_size}x{step * window_size}, or choose another window_size"
    )
    if height % step or width % step:
        raise ValueError(f"input_shape={tuple(input_shape)!r} is not allowed: {rule}.")
    sizes = []
    h, w = height // patch_size, width // patch_size
    for stage in range(1, stages + 1):
        window = window_size if min(h, w) > window_size else min(h, w)
        if h % window or w % window:
            raise ValueError(
                f"input_shape={tuple(input_shape)!r} is not allowed: the stage {stage} feature "
                f"map is {h}x{w}, not divisible into {window}x{window} windows; {rule}."
            )
        sizes.append((h, w))
        h, w = h // 2, w // 2
    return sizes


def swin(
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    pooling=None,
    classifier_activation="softmax",
    weights=None,
    embed_dim=96,
    depths=(2, 2, 6, 2),
    num_heads=(3, 6, 12, 24),
    patch_size=4,
    window_size=7,
    mlp_ratio=4.0,
    dropout=0.0,
    attention_dropout=0.0,
    stochastic_depth_rate=0.2,
    seed=None,
    name="swin",
):
    """Build a Swin Transformer classifier (defaults: Swin-T at 224x224).

    Args:
        num_classes: number of classes of the top.
        input_shape: ``(height, width, channels)`` with a static size that every stage can
            split into windows: multiples of ``patch_size * 2^(stages - 1)`` whose stage maps
            are multiples of ``window_size`` (or not larger than it); see the module
            docstring. Canonical: multiples of 224.
        include_top: whether to end with global average pooling and the classifier.
        pooling: with ``include_top=False``: None (the last normalized feature map
            ``(batch, H/32, W/32, 8C)``), ``"avg"`` or ``"max"``.
        classifier_activation: activation of the top (None for logits).
        weights: None, a ``.weights.h5``/``.keras`` path or a ``keras.Model`` of the same
            configuration to copy from.
        embed_dim: width ``C`` of the first stage; stage ``i`` has ``C * 2^(i - 1)``.
        depths: Swin blocks per stage.
        num_heads: attention heads per stage (``C * 2^(i - 1)`` must be divisible by them).
        patch_size: side of the embedded patches (4 in the paper).
        window_size: side ``M`` of the attention windows (7 in the paper); shifted blocks
            shift by ``M // 2``.
        mlp_ratio: hidden width of the MLPs relative to the tokens.
        dropout: dropout after the patch embedding, on the attention projections and in the
            MLPs (0 in the paper's ImageNet settings).
        attention_dropout: dropout on the attention weights.
        stochastic_depth_rate: stochastic-depth rate of the last block; block ``b`` of ``n``
            uses ``rate * b / (n - 1)`` (the reference's ``linspace(0, rate, n)``). The paper
            uses 0.2 / 0.3 / 0.5 for T / S / B.
        seed: optional integer seed of the dropouts and stochastic depth.
        name: model name.

    Returns:
        A ``keras.Model`` whose layers are named ``patch_embed``, ``patch_norm``,
        ``stage1_block1`` ... (``stage2_merging`` starts stage 2), ``norm``, ``avg_pool``,
        ``predictions``; inside a block: ``attention_norm``, ``attention``
        (``WindowAttention``, its projections ``attention/attention``), ``mlp_norm``,
        ``mlp_dense1``, ``mlp_dense2``.

    Raises:
        ValueError: for bad arguments, naming the argument and what is allowed (an input size
            that does not divide into windows names ``input_shape``).

    Example:
        >>> model = swin(num_classes=10, input_shape=(32, 32, 3), patch_size=2,
        ...              embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4)
    """
    check_positive_int("embed_dim", embed_dim)
    depths, num_heads = _check_sequences(depths, num_heads)
    check_positive_int("patch_size", patch_size)
    check_positive_int("window_size", window_size)
    if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or not mlp_ratio > 0:
        raise ValueError(f"mlp_ratio={mlp_ratio!r} is not allowed; expected a number > 0.")
    check_rate("dropout", dropout)
    check_rate("attention_dropout", attention_dropout)
    check_rate("stochastic_depth_rate", stochastic_depth_rate)
    check_activation("classifier_activation", classifier_activation)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed={seed!r} is not allowed; expected None or an integer >= 0.")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} is not allowed; expected a non-empty string.")
    stages = len(depths)
    for stage, heads in enumerate(num_heads):
        width = embed_dim * 2**stage
        if width % heads:
            raise ValueError(
                f"num_heads={num_heads!r} is not allowed: stage {stage + 1} has width "
                f"embed_dim * 2^{stage} = {width}, not divisible by {heads} heads."
            )
    min_size = patch_size * 2 ** (stages - 1)
    input_shape = check_classifier_args(
        num_classes, input_shape, include_top, pooling, min_size=min_size
    )
    _check_input_size(input_shape, patch_size, window_size, stages)

    total_blocks = sum(depths)
    # linspace(0, rate, n): the first block is never dropped, the last with `rate`
    rates = [float(r) for r in np.linspace(0.0, stochastic_depth_rate, total_blocks)]

    def seed_at(offset):
        return None if seed is None else seed + offset

    inputs = keras.Input(input_shape, name="image")
    x = PatchEmbedding(patch_size, embed_dim, flatten=False, name="patch_embed")(inputs)
    x = keras.layers.LayerNormalization(epsilon=EPSILON, name="patch_norm")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, seed=seed_at(0), name="patch_dropout")(x)
    b = 0
    for stage, (depth, heads) in enumerate(zip(depths, num_heads), 1):
        width = embed_dim * 2 ** (stage - 1)
        if stage > 1:
            x = PatchMerging(
                width // 2, epsilon=EPSILON, kernel_initializer=DEFAULT_INITIALIZER,
                name=f"stage{stage}_merging",
            )(x)
        for j in range(depth):
            x = SwinTransformerBlock(
                width,
                heads,
                window_size=window_size,
                shift_size=0 if j % 2 == 0 else window_size // 2,
                mlp_ratio=mlp_ratio,
                dropout=dropout,
                attention_dropout=attention_dropout,
                stochastic_depth_rate=rates[b],
                epsilon=EPSILON,
                seed=seed_at(10 * (b + 1)),
                name=f"stage{stage}_block{j + 1}",
            )(x)
            b += 1
    x = keras.layers.LayerNormalization(epsilon=EPSILON, name="norm")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(
            num_classes, kernel_initializer=DEFAULT_INITIALIZER, name="predictions"
        )(x)
        outputs = classifier_output(x, classifier_activation)
    else:
        outputs = pooled_features(x, pooling)
    model = keras.Model(inputs, outputs, name=name)
    return load_into(model, weights)


def _doc(key):
    embed_dim, depths, heads, rate = VARIANTS[key]
    return (
        f"Swin-{key.upper()} of Liu et al. 2021: C = {embed_dim}, depths {depths}, heads "
        f"{heads}, window 7, 224x224 input, stochastic depth {rate}.\n\n"
        f"    ``swin(embed_dim={embed_dim}, depths={depths}, num_heads={heads}, ...)`` with the\n"
        "    same arguments; see ``swin``.\n"
    )


def _variant(key):
    embed_dim, depths, heads, rate = VARIANTS[key]
    defaults = {
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": heads,
        "stochastic_depth_rate": rate,
    }
    return variant(swin, f"swin_{key}", _doc(key), defaults)


swin_t = _variant("t")
swin_s = _variant("s")
swin_b = _variant("b")
