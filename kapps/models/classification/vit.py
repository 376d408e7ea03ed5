"""Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words").

An image becomes a sentence of patches: ``P x P`` patches are flattened and projected to
``hidden_dim`` features (``PatchEmbedding``), a learned class token is prepended
(``ClassToken``), learned position embeddings are added (``PositionEmbedding``), and a stack
of pre-LN Transformer encoder blocks (``TransformerEncoderBlock``: ``x + MSA(LN(x))``,
``x + MLP(LN(x))``, GELU MLP) ends with one more LayerNorm (eq. 1-4). The classifier reads the
final state of the class token (``classifier_pooling="token"``, the paper's default) or the
mean of the patch tokens (``"gap"``; the paper's Appendix D.3 variant, built without a class
token). An optional ``representation_size`` adds the pre-logits layer (Dense + tanh) used for
pre-training (section 3.1, "MLP with one hidden layer at pre-training time").

``VARIANTS`` is the paper's Table 1 (plus DeiT's Tiny and Small), one row per variant:
patch size, hidden size, depth, heads, MLP size. ``vit_b16`` at 224x224 with 1000 classes has
86,567,656 parameters (85,798,656 without the head), exactly keras-hub's
``ViTBackbone(image_shape=(224, 224, 3), patch_size=16, num_layers=12, num_heads=12,
hidden_dim=768, mlp_dim=3072)`` plus its 1000-class ``ViTImageClassifier`` head: the same
class token, 197 learned position embeddings and final LayerNorm.

``weights=`` takes a kapps ViT (a model or a ``.keras``/``.weights.h5`` file) built at another
image size (the position grid is resized, section 3.2) or a keras-hub ``ViTBackbone`` /
``ViTImageClassifier`` object (copied by architecture). ``attention_rollout`` computes
Abnar & Zuidema's attention rollout from every block's attention scores.

Layer names: ``patch_embedding``, ``class_token`` (token pooling), ``position_embedding``,
``embedding_dropout`` (dropout > 0), ``encoder_block1`` ... ``encoder_block{depth}``,
``encoder_norm``, then the head (``token_select``/``token_features`` or ``gap``,
``pre_logits``, ``predictions``, ``probabilities``) or, without it, ``patch_tokens`` and
``avg_pool``/``max_pool``.
"""

import math
import os
import warnings
import weakref

import keras
import numpy as np

from kapps._checks import (
    check_choice,
    check_epsilon,
    check_positive_int,
    check_rate,
    check_transformer_dims,
)
from kapps.layers.attention import convert_keras_mha_weights
from kapps.layers.patches import ClassToken, PatchEmbedding, _check_patch_size
from kapps.layers.position import PositionEmbedding, resize_position_grid
from kapps.layers.transformer import TransformerEncoderBlock
from kapps.models.classification.common import (
    check_activation,
    check_classifier_args,
    classifier_output,
    variant,
)
from kapps.models.weights import load_into, read_reference

#: The paper's Table 1 (Base, Large, Huge) and DeiT's Tiny and Small (Touvron et al. 2021),
#: one row per variant: (patch_size, hidden_dim, depth, num_heads, mlp_dim).
VARIANTS = {
    "ti16": (16, 192, 12, 3, 768),
    "s16": (16, 384, 12, 6, 1536),
    "b16": (16, 768, 12, 12, 3072),
    "b32": (32, 768, 12, 12, 3072),
    "l16": (16, 1024, 24, 16, 4096),
    "l32": (32, 1024, 24, 16, 4096),
    "h14": (14, 1280, 32, 16, 5120),
}
_VARIANT_NAMES = {"ti": "Tiny", "s": "Small", "b": "Base", "l": "Large", "h": "Huge"}

CLASSIFIER_POOLING = ("token", "gap")
HEAD_FUSIONS = ("mean", "max", "min")

#: The reference code's initializers (google-research/vision_transformer, models_vit.py): the
#: patch projection is a Flax Conv (LeCun normal); the encoder's Dense layers Xavier uniform.
PATCH_KERNEL_INITIALIZER = "lecun_normal"

#: What to tell a user whose weights do not fit.
_HINT = (
    "Build the model with the reference's patch_size, hidden_dim, depth, num_heads, mlp_dim "
    "and classifier_pooling (the image size and the head may differ)."
)

#: Layers of the network before the head, in order (the blocks go between).
_STEM = ("patch_embedding", "class_token", "position_embedding")
#: Sublayers of a ``TransformerEncoderBlock`` whose weights are copied.
_BLOCK_PARTS = ("attention_norm", "attention", "mlp_norm", "mlp_dense1", "mlp_dense2")
#: Head layers, copied only when both sides have them with the same shapes.
_HEAD = ("pre_logits", "predictions")


def _check_optional_positive_int(name, value):
    if value is not None:
        check_positive_int(name, value)
    return value




def _check_seed(seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed={seed!r} is not allowed; expected None or an integer >= 0.")
    return seed


def _grid(input_shape, patch_size):
    """``(rows, cols)`` of patches; raise unless the image size is divisible by the patch."""
    height, width = input_shape[:2]
    if height % patch_size[0] or width % patch_size[1]:
        raise ValueError(
            f"input_shape={tuple(input_shape)!r} is not allowed with patch_size={patch_size!r}: "
            f"height and width must be multiples of the patch size ({patch_size[0]} and "
            f"{patch_size[1]}), e.g. ({height // patch_size[0] * patch_size[0] or patch_size[0]}, "
            f"{width // patch_size[1] * patch_size[1] or patch_size[1]}, {input_shape[2]})."
        )
    return height // patch_size[0], width // patch_size[1]


def vit(
    num_classes=1000,
    input_shape=(224, 224, 3),
    include_top=True,
    pooling=None,
    classifier_activation="softmax",
    weights=None,
    patch_size=16,
    hidden_dim=768,
    depth=12,
    num_heads=12,
    mlp_dim=3072,
    dropout=0.0,
    attention_dropout=0.0,
    stochastic_depth_rate=0.0,
    classifier_pooling="token",
    representation_size=None,
    layer_norm_epsilon=1e-6,
    seed=None,
    name="vit",
):
    """Build a Vision Transformer (defaults: ViT-B/16 at 224x224, 1000 classes).

    Args:
        num_classes: number of classes of the top.
        input_shape: ``(height, width, channels)``; height and width must be known multiples
            of the patch size (the grid need not be square).
        include_top: whether to end with the classifier (pooling, optional pre-logits,
            ``predictions``).
        pooling: with ``include_top=False``: None (the whole sequence after the final
            LayerNorm, ``(batch, tokens, hidden_dim)``, as keras-hub's ``ViTBackbone``),
            ``"avg"`` or ``"max"`` (over the patch tokens, the class token left out).
        classifier_activation: activation of the top (None for logits).
        weights: None; a kapps ViT ``keras.Model`` or ``.keras``/``.weights.h5`` file of the
            same architecture, possibly built at another image size (the position embeddings
            are resized bicubically, section 3.2); or a keras-hub ``ViTBackbone`` /
            ``ViTImageClassifier`` (copied layer by layer). The head (``pre_logits``,
            ``predictions``) is copied when both have it with the same shapes; otherwise it
            keeps its initialization (fine-tuning to other classes), with a warning when the
            reference had one.
        patch_size: side of the square patches, or ``(height, width)``.
        hidden_dim: width of the tokens (the paper's D).
        depth: number of encoder blocks (the paper's "Layers").
        num_heads: attention heads; must divide ``hidden_dim``.
        mlp_dim: width of each block's MLP.
        dropout: dropout after the position embeddings and on each sub-layer's output (the
            paper used 0.1 for ImageNet, 0.0 for JFT; Appendix B.1).
        attention_dropout: dropout on the attention weights.
        stochastic_depth_rate: stochastic depth of the last block; block ``i`` of ``n`` uses
            ``rate * i / (n - 1)`` (from 0 in the first; DeiT, timm).
        classifier_pooling: ``"token"`` (a class token, read by the head; the paper's
            default) or ``"gap"`` (no class token; the head reads the mean of the patch
            tokens, Appendix D.3).
        representation_size: None, or the width of a pre-logits ``Dense`` with tanh before
            the classifier (pre-training heads; section 3.1). Part of the top only.
        layer_norm_epsilon: epsilon of every LayerNorm (1e-6 as in the reference code).
        seed: optional integer seed of the dropouts and stochastic depth.
        name: model name.

    Returns:
        A ``keras.Model``.

    Raises:
        ValueError: for bad arguments (an image size that is not a multiple of the patch
            size names ``input_shape`` and ``patch_size``), or weights that do not fit.

    Example:
        >>> model = vit(num_classes=10, input_shape=(32, 32, 3), patch_size=8, hidden_dim=32,
        ...             depth=2, num_heads=2, mlp_dim=64)
    """
    patch_size = _check_patch_size(patch_size)
    check_transformer_dims(hidden_dim, depth, num_heads, mlp_dim)
    dropout = check_rate("dropout", dropout)
    attention_dropout = check_rate("attention_dropout", attention_dropout)
    stochastic_depth_rate = check_rate("stochastic_depth_rate", stochastic_depth_rate)
    check_choice("classifier_pooling", classifier_pooling, CLASSIFIER_POOLING)
    _check_optional_positive_int("representation_size", representation_size)
    layer_norm_epsilon = check_epsilon(layer_norm_epsilon, "layer_norm_epsilon")
    seed = _check_seed(seed)
    check_activation("classifier_activation", classifier_activation)
    input_shape = check_classifier_args(num_classes, input_shape, include_top, pooling, min_size=1)
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} is not allowed; expected a non-empty string.")
    grid = _grid(input_shape, patch_size)
    reference, argument = read_reference(weights)  # before building: fail fast on bad paths

    prefix = 1 if classifier_pooling == "token" else 0
    inputs = keras.Input(input_shape, name="image")
    # (batch, H, W, C) -> (batch, rows * cols, hidden_dim), patches row by row (eq. 1)
    x = PatchEmbedding(
        patch_size, hidden_dim, kernel_initializer=PATCH_KERNEL_INITIALIZER, name="patch_embedding"
    )(inputs)
    if prefix:
        x = ClassToken(name="class_token")(x)  # (batch, 1 + rows * cols, hidden_dim)
    x = PositionEmbedding(prefix + grid[0] * grid[1], num_prefix_tokens=prefix,
                          name="position_embedding")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, seed=seed, name="embedding_dropout")(x)
    for i in range(depth):
        x = TransformerEncoderBlock(
            hidden_dim,
            num_heads,
            mlp_dim,
            dropout=dropout,
            attention_dropout=attention_dropout,
            stochastic_depth_rate=stochastic_depth_rate * i / max(depth - 1, 1),
            epsilon=layer_norm_epsilon,
            seed=None if seed is None else seed + 16 * (i + 1),
            name=f"encoder_block{i + 1}",
        )(x)
    x = keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, name="encoder_norm")(x)

    if include_top:
        if prefix:
            # (batch, tokens, dim) -> (batch, 1, dim) -> (batch, dim): the class token's state
            x = keras.layers.Cropping1D((0, grid[0] * grid[1]), name="token_select")(x)
            x = keras.layers.Flatten(name="token_features")(x)
        else:
            x = keras.layers.GlobalAveragePooling1D(name="gap")(x)
        if representation_size is not None:
            x = keras.layers.Dense(representation_size, activation="tanh", name="pre_logits")(x)
        x = keras.layers.Dense(num_classes, name="predictions")(x)
        outputs = classifier_output(x, classifier_activation)
    else:
        if pooling is not None and prefix:
            x = keras.layers.Cropping1D((prefix, 0), name="patch_tokens")(x)  # drop the token
        if pooling == "avg":
            x = keras.layers.GlobalAveragePooling1D(name="avg_pool")(x)
        elif pooling == "max":
            x = keras.layers.GlobalMaxPooling1D(name="max_pool")(x)
        outputs = x
    model = keras.Model(inputs, outputs, name=name)

    if reference is not None:
        _copy_from(model, reference, argument)
    elif weights is not None:
        path = os.fspath(weights)
        rows = _stored_position_rows(path)
        if rows is None or rows == prefix + grid[0] * grid[1]:
            load_into(model, weights, copy=lambda m, r, argument: _copy_from(m, r, argument))
        else:  # saved at another image size: read it into a twin of that size, then copy
            config = dict(
                num_classes=num_classes, include_top=include_top, pooling=pooling,
                classifier_activation=classifier_activation, patch_size=patch_size,
                hidden_dim=hidden_dim, depth=depth, num_heads=num_heads, mlp_dim=mlp_dim,
                classifier_pooling=classifier_pooling, representation_size=representation_size,
                layer_norm_epsilon=layer_norm_epsilon, name=name,
            )
            _copy_from(model, _twin_for_file(path, argument, rows, config, input_shape, prefix),
                       argument)
    return model


# -- weights: kapps models at any image size, keras-hub ViTs ---------------------------------


def _stored_position_rows(path):
    """Rows of the position table stored in a ``.weights.h5`` file, or None (another kind of
    file, or no single such table: ``load_into`` then reports what does not fit)."""
    if not path.endswith(".weights.h5") or not os.path.isfile(path):
        return None
    import h5py

    shapes = []
    try:
        with h5py.File(path, "r") as f:
            f.visititems(
                lambda key, item: shapes.append(item.shape)
                if isinstance(item, h5py.Dataset) and "position_embedding" in key
                else None
            )
    except OSError:
        return None
    return shapes[0][0] if len(shapes) == 1 and len(shapes[0]) == 2 else None


def _twin_for_file(path, argument, rows, config, input_shape, prefix):
    """The kapps ViT a ``.weights.h5`` file saved at another image size was built as (with
    its weights): the grid, assumed square, is read from the position table's ``rows``."""
    side = math.isqrt(max(rows - prefix, 0))
    if side * side != rows - prefix or side == 0:
        raise ValueError(
            f"{argument}: its position table has {rows} vectors, not {prefix} + a square grid, "
            "so the image size it was saved at is unknown; save that model as .keras (which "
            "records its input shape) to load it at another size."
        )
    patch = config["patch_size"]
    shape = (side * patch[0], side * patch[1], input_shape[2])
    twin = vit(input_shape=shape, **config)
    try:
        twin.load_weights(path)
    except Exception as error:
        raise ValueError(
            f"{argument} does not fit: read as a {shape[0]}x{shape[1]} model of this "
            f"configuration (from its {rows} position vectors) it fails to load "
            f"({str(error).strip().splitlines()[0][:300]}). " + _HINT
        ) from None
    return twin


def _layer_or_none(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def _kapps_state(model):
    """The weights of a kapps ViT as ``{part: [arrays]}``, plus its grid and prefix."""
    parts = {}
    for name in _STEM + _HEAD + ("encoder_norm",):
        layer = _layer_or_none(model, name)
        if layer is not None:
            parts[name] = layer.get_weights()
    depth = 0
    while (block := _layer_or_none(model, f"encoder_block{depth + 1}")) is not None:
        depth += 1
        for part in _BLOCK_PARTS:
            parts[f"encoder_block{depth}/{part}"] = getattr(block, part).get_weights()
    patch = model.get_layer("patch_embedding").patch_size
    grid = _grid(tuple(model.inputs[0].shape[1:]), patch)
    prefix = 1 if "class_token" in parts else 0
    return parts, grid, prefix, depth, None


def _keras_hub_state(reference):
    """The weights of a keras-hub ``ViTBackbone`` or ``ViTImageClassifier`` in kapps' layout.

    keras-hub keeps the class token, patch projection and position table in one layer
    (``vit_patching_and_embedding``), each block's projections as ``EinsumDense`` kernels
    with a separate heads axis (reshaped by ``convert_keras_mha_weights``), and the MLP in a
    sublayer ``mlp`` (``dense_1``, ``dense_2``).
    """
    backbone = getattr(reference, "backbone", reference)
    embedding = backbone.get_layer("vit_patching_and_embedding")
    encoder = backbone.get_layer("vit_encoder")
    parts = {"patch_embedding": embedding.patch_embedding.get_weights()}
    if embedding.use_class_token:
        parts["class_token"] = [keras.ops.convert_to_numpy(embedding.class_token)]
    parts["position_embedding"] = embedding.position_embedding.get_weights()
    for i, block in enumerate(encoder.encoder_layers, 1):
        parts[f"encoder_block{i}/attention_norm"] = block.layer_norm_1.get_weights()
        parts[f"encoder_block{i}/attention"] = convert_keras_mha_weights(block.mha.get_weights())
        parts[f"encoder_block{i}/mlp_norm"] = block.layer_norm_2.get_weights()
        parts[f"encoder_block{i}/mlp_dense1"] = block.mlp.dense_1.get_weights()
        parts[f"encoder_block{i}/mlp_dense2"] = block.mlp.dense_2.get_weights()
    parts["encoder_norm"] = encoder.layer_norm.get_weights()
    head_pooling = None
    if reference is not backbone:  # a ViTImageClassifier
        head_pooling = getattr(reference, "pooling", "token")
        if getattr(reference, "intermediate_layer", None) is not None:
            parts["pre_logits"] = reference.intermediate_layer.get_weights()
        parts["predictions"] = reference.output_dense.get_weights()
    grid = tuple(s // p for s, p in zip(embedding.image_size, embedding.patch_size))
    prefix = 1 if embedding.use_class_token else 0
    extras = {"epsilon": float(encoder.layer_norm_epsilon), "head_pooling": head_pooling}
    return parts, grid, prefix, len(encoder.encoder_layers), extras


def _is_keras_hub_vit(reference):
    backbone = getattr(reference, "backbone", reference)
    return isinstance(backbone, keras.Model) and (
        _layer_or_none(backbone, "vit_patching_and_embedding") is not None
        and _layer_or_none(backbone, "vit_encoder") is not None
    )


def _shapes(arrays):
    return [tuple(np.shape(a)) for a in arrays]


def _copy_from(model, reference, argument):
    """Fill the kapps ViT ``model`` from ``reference`` (a kapps ViT at any image size, or a
    keras-hub ``ViTBackbone``/``ViTImageClassifier``); check everything before assigning."""
    where = f"{argument} does not fit model {model.name!r}"
    if _is_keras_hub_vit(reference):
        source, source_grid, source_prefix, source_depth, extras = _keras_hub_state(reference)
    elif _layer_or_none(reference, "patch_embedding") is not None and (
        _layer_or_none(reference, "encoder_block1") is not None
    ):
        source, source_grid, source_prefix, source_depth, extras = _kapps_state(reference)
    else:
        raise ValueError(
            f"{where}: it is neither a kapps ViT (layers 'patch_embedding', 'encoder_block1', "
            "...) nor a keras-hub ViTBackbone/ViTImageClassifier. " + _HINT
        )
    target, grid, prefix, depth, _ = _kapps_state(model)
    if extras is not None:
        norm = model.get_layer("encoder_norm").epsilon
        if not math.isclose(extras["epsilon"], norm, rel_tol=1e-6):
            raise ValueError(
                f"{where}: the reference's layer_norm_epsilon is {extras['epsilon']:g}, the "
                f"model's {norm:g}; build it with layer_norm_epsilon={extras['epsilon']:g}."
            )
        if extras["head_pooling"] not in (None, "token") and "predictions" in target:
            raise ValueError(
                f"{where}: the keras-hub classifier pools with pooling="
                f"{extras['head_pooling']!r} (the mean of all tokens, the class token "
                "included), which no kapps ViT head computes; build the model with "
                "include_top=False, or use a classifier with pooling='token'."
            )
    if source_prefix != prefix:
        kinds = {1: "a class token (classifier_pooling='token')",
                 0: "no class token (classifier_pooling='gap')"}
        raise ValueError(
            f"{where}: the reference has {kinds[source_prefix]}, the model {kinds[prefix]}. "
            + _HINT
        )
    if source_depth != depth:
        raise ValueError(
            f"{where}: the reference has {source_depth} encoder blocks, the model {depth}. "
            + _HINT
        )
    # the position grid is resized when the image sizes differ (section 3.2)
    table = source["position_embedding"][0]
    expected = (prefix + source_grid[0] * source_grid[1], np.shape(target["position_embedding"][0])[1])
    if tuple(np.shape(table)) == expected and source_grid != grid:
        source["position_embedding"] = [
            keras.ops.convert_to_numpy(resize_position_grid(table, source_grid, grid, prefix))
        ]
    assignments = []
    for part, arrays in target.items():  # the body must fit...
        theirs = source.get(part)
        if part in _HEAD:
            continue
        if theirs is None or _shapes(theirs) != _shapes(arrays):
            got = "nothing" if theirs is None else _shapes(theirs)
            raise ValueError(
                f"{where}: layer {part!r} has {got} in the reference where the model has "
                f"{_shapes(arrays)}. " + _HINT
            )
        assignments.append((part, theirs))
    for part in _HEAD:  # ...the head is copied where it fits (fine-tuning replaces it)
        ours, theirs = target.get(part), source.get(part)
        if ours is not None and theirs is not None and _shapes(theirs) == _shapes(ours):
            assignments.append((part, theirs))
        elif ours is not None and theirs is not None:
            warnings.warn(
                f"{argument}: the reference's head layer {part!r} {_shapes(theirs)} does not "
                f"fit the model's {_shapes(ours)}; it keeps its initialization.",
                stacklevel=3,
            )
    for part, arrays in assignments:
        layer_name, _, sub = part.partition("/")
        layer = model.get_layer(layer_name)
        (getattr(layer, sub) if sub else layer).set_weights(
            [np.asarray(a, dtype=np.asarray(b).dtype) for a, b in zip(arrays, target[part])]
        )
    return model


# -- attention rollout ------------------------------------------------------------------------

_SCORE_MODELS = weakref.WeakKeyDictionary()


class _AttentionScores(keras.Model):
    """``images -> [scores of each block]``, calling a ViT's own layer objects.

    A subclassed model rather than a functional one: Keras' functional graph check counts a
    shared layer's outputs from its first call, so a block first called for one output cannot
    be reused for two (``(outputs, scores)``) in a second functional model.
    """

    def __init__(self, stem, blocks, **kwargs):
        super().__init__(**kwargs)
        self.stem = list(stem)
        self.blocks = list(blocks)

    def call(self, images, training=False):
        x = images
        for layer in self.stem:
            x = layer(x)
        scores = []
        for block in self.blocks:
            x, s = block(x, return_attention_scores=True, training=training)
            scores.append(s)  # (batch, heads, tokens, tokens)
        return scores


def attention_scores_model(model):
    """A model ``images -> [scores of encoder_block1, ...]`` that shares ``model``'s layers.

    Each output is ``(batch, heads, tokens, tokens)``: every block called again with
    ``return_attention_scores=True`` on the same layer objects (no copy of the weights, so it
    follows any later training of ``model``). Built once per model and cached.

    Args:
        model: a kapps ViT (``vit``, ``vit_b16``, ...).

    Raises:
        ValueError: if ``model`` is not a kapps ViT.
    """
    if model in _SCORE_MODELS:
        return _SCORE_MODELS[model]
    if not isinstance(model, keras.Model) or any(
        _layer_or_none(model, n) is None for n in ("patch_embedding", "position_embedding",
                                                   "encoder_block1")
    ):
        raise ValueError(
            f"model={getattr(model, 'name', model)!r} is not allowed; expected a kapps ViT "
            "(layers 'patch_embedding', 'position_embedding', 'encoder_block1', ...)."
        )
    stem = [layer for name in _STEM if (layer := _layer_or_none(model, name)) is not None]
    blocks = []
    while (block := _layer_or_none(model, f"encoder_block{len(blocks) + 1}")) is not None:
        blocks.append(block)
    scores_model = _AttentionScores(stem, blocks, name=f"{model.name}_attention_scores")
    _SCORE_MODELS[model] = scores_model
    return scores_model


def rollout_from_scores(scores, num_prefix_tokens=1, head_fusion="mean", discard_ratio=0.0):
    """Attention rollout (Abnar & Zuidema 2020) of a list of per-block attention scores.

    Per block, the heads are fused (``mean``, ``max`` or ``min``), the ``discard_ratio``
    smallest fused weights of each example are set to 0 (never the class token's attention
    to itself), the identity is added for the residual connection and the rows are
    renormalised: ``A = (W + I) / rowsum(W + I)``. The rollout is the product
    ``A_L ... A_2 A_1``: how much each output token draws from each input token.

    Args:
        scores: a list of ``(batch, heads, tokens, tokens)`` arrays, first block first.
        num_prefix_tokens: 1 when token 0 is a class token (its row is returned), 0 for GAP
            models (the mean of all rows is returned: the pooled feature's mixture).
        head_fusion: ``"mean"``, ``"max"`` or ``"min"``.
        discard_ratio: fraction of the smallest fused weights dropped per block, in [0, 1).

    Returns:
        A float64 ``(batch, tokens - num_prefix_tokens)`` array: the rollout weight of each
        patch token.
    """
    check_choice("head_fusion", head_fusion, HEAD_FUSIONS)
    discard_ratio = check_rate("discard_ratio", discard_ratio)
    result = None
    for s in scores:
        s = np.asarray(keras.ops.convert_to_numpy(s), dtype=np.float64)
        fused = getattr(s, head_fusion)(axis=1)  # (batch, tokens, tokens)
        batch, tokens, _ = fused.shape
        if discard_ratio > 0:
            flat = fused.reshape(batch, -1).copy()
            k = int(flat.shape[1] * discard_ratio)
            lowest = np.argsort(flat, axis=1, kind="stable")[:, :k]
            for b in range(batch):
                drop = lowest[b][lowest[b] != 0]  # keep [0, 0]: the class token on itself
                flat[b, drop] = 0.0
            fused = flat.reshape(batch, tokens, tokens)
        a = fused + np.eye(tokens)  # the residual connection
        a = a / a.sum(axis=-1, keepdims=True)
        result = a if result is None else a @ result  # (batch, tokens, tokens)
    if num_prefix_tokens:
        return result[:, 0, num_prefix_tokens:]  # the class token's row, patches only
    return result.mean(axis=1)


def attention_rollout(model, images, head_fusion="mean", discard_ratio=0.0, batch_size=32):
    """Attention rollout of a kapps ViT: where its prediction looks, per patch.

    The class token's row of the rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow
    in Transformers"; see ``rollout_from_scores``), restricted to the patches and laid out on
    the patch grid. For a model with ``classifier_pooling="gap"`` (no class token) the mean
    row is used, the pooled feature's mixture of input patches. The weights sum (over the
    patches) to at most 1; divide by the maximum for display (``kapps.plots.
    plot_attention_map`` does).

    Args:
        model: a kapps ViT.
        images: ``(batch, height, width, channels)`` of the model's input size.
        head_fusion: how heads are combined: ``"mean"``, ``"max"`` or ``"min"``.
        discard_ratio: fraction of the lowest fused attention weights dropped per block.
        batch_size: images per forward pass.

    Returns:
        A float64 ``(batch, grid_h, grid_w)`` array.

    Raises:
        ValueError: for a model that is not a kapps ViT or bad arguments.

    Example:
        >>> maps = attention_rollout(model, images)  # (batch, 14, 14) for ViT-B/16 at 224
    """
    check_choice("head_fusion", head_fusion, HEAD_FUSIONS)
    check_rate("discard_ratio", discard_ratio)
    check_positive_int("batch_size", batch_size)
    scores_model = attention_scores_model(model)
    images = np.asarray(keras.ops.convert_to_numpy(images))
    expected = tuple(model.inputs[0].shape[1:])
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"images of shape {images.shape} are not allowed; expected (batch, *{expected})."
        )
    prefix = 1 if _layer_or_none(model, "class_token") is not None else 0
    grid = _grid(expected, model.get_layer("patch_embedding").patch_size)
    maps = []
    for start in range(0, len(images), batch_size):
        scores = scores_model(images[start:start + batch_size], training=False)
        maps.append(rollout_from_scores(scores, prefix, head_fusion, discard_ratio))
    return np.concatenate(maps).reshape(len(images), *grid)


# -- variants ---------------------------------------------------------------------------------


def _doc(key):
    patch, dim, depth, heads, mlp = VARIANTS[key]
    size = _VARIANT_NAMES[key.rstrip("0123456789")]
    source = "DeiT (Touvron et al. 2021)" if key[:2] in ("ti", "s1") else "the paper's Table 1"
    return (
        f"ViT-{size}/{patch} of Dosovitskiy et al. 2021 ({source}): {patch}x{patch} patches, "
        f"hidden size {dim}, {depth} layers, {heads} heads, MLP size {mlp}.\n\n"
        f"    ``vit(patch_size={patch}, hidden_dim={dim}, depth={depth}, num_heads={heads}, "
        f"mlp_dim={mlp}, ...)`` with the\n    same arguments; see ``vit``.\n"
    )


def _variant(key):
    patch, dim, depth, heads, mlp = VARIANTS[key]
    defaults = {
        "patch_size": patch,
        "hidden_dim": dim,
        "depth": depth,
        "num_heads": heads,
        "mlp_dim": mlp,
    }
    return variant(vit, f"vit_{key}", _doc(key), defaults)


vit_ti16 = _variant("ti16")
vit_s16 = _variant("s16")
vit_b16 = _variant("b16")
vit_b32 = _variant("b32")
vit_l16 = _variant("l16")
vit_l32 = _variant("l32")
vit_h14 = _variant("h14")
