"""Swin Transformer: layers checked against the paper's constructions, the canonical counts
against the official implementation, TFLite export of a shifted-window block, and outputs
equal to keras-hub's Swin given the same weights. The tiny model's full contract runs in
tests/test_contract.py."""

import inspect
import time

import keras
import numpy as np
import pytest

import kapps
from kapps import export
from kapps.layers.attention import convert_keras_mha_weights
from kapps.layers.swin import (
    PatchMerging,
    SwinTransformerBlock,
    WindowAttention,
    cyclic_shift,
    relative_position_index,
    resolve_window,
    shifted_window_mask,
    window_partition,
    window_reverse,
)
from kapps.models.classification.swin import swin, swin_t

TINY = kapps.registry.tiny_overrides("swin_t")


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# -- canonical counts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [("swin_t", 28_288_354), ("swin_s", 49_606_258), ("swin_b", 87_768_224)],
)
def test_canonical_counts_equal_the_official_implementation(name, expected):
    start = time.perf_counter()
    model = kapps.build(name)
    seconds = time.perf_counter() - start
    assert _trainable(model) == expected
    assert model.count_params() == expected  # index and masks are constants, not weights
    assert tuple(model.output.shape) == (None, 1000)
    # 224 / 4 / 8 = 7: the last stage is one 7x7 window, so it does not shift
    last = model.get_layer("stage4_block2")
    assert (last.resolved_window_size, last.resolved_shift_size) == (7, 0)
    assert model.get_layer("stage1_block2").resolved_shift_size == 3
    print(f"{name}: built in {seconds:.1f} s")
    del model
    keras.backend.clear_session()


# -- window partition, cyclic shift, index, mask -------------------------------------------


def _reference_partition(x, m):
    """The reference implementation's window_partition (6-D permutation), in numpy."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // m, m, w // m, m, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // m) * (w // m), m * m, c)


def test_window_partition_matches_reference_and_reverses():
    x = np.random.default_rng(0).random((2, 8, 12, 3), dtype="float32")
    windows = _np(window_partition(x, 4))
    np.testing.assert_array_equal(windows, _reference_partition(x, 4))
    assert windows.shape == (2, 6, 16, 3)
    np.testing.assert_array_equal(_np(window_reverse(windows, 4, 8, 12)), x)


@pytest.mark.parametrize("shift", [-2, 2, -3, 5])
def test_cyclic_shift_equals_roll(shift):
    x = np.random.default_rng(1).random((2, 8, 6, 3), dtype="float32")
    np.testing.assert_array_equal(_np(cyclic_shift(x, shift)), np.roll(x, shift, axis=(1, 2)))


def test_relative_position_index_matches_the_papers_construction():
    for m in (2, 4, 7):
        # microsoft/Swin-Transformer, WindowAttention.__init__
        coords = np.stack(np.meshgrid(np.arange(m), np.arange(m), indexing="ij"))  # (2, M, M)
        flat = coords.reshape(2, -1)
        relative = (flat[:, :, None] - flat[:, None, :]).transpose(1, 2, 0).copy()
        relative[:, :, 0] += m - 1
        relative[:, :, 1] += m - 1
        relative[:, :, 0] *= 2 * m - 1
        np.testing.assert_array_equal(relative_position_index(m), relative.sum(-1))
    assert relative_position_index(7).max() == 13 * 13 - 1


def test_shift_mask_allows_only_true_neighbours():
    """After the roll, two tokens of one window may attend iff they were neighbours before it
    (no wrap-around between them): the paper's regions, stated independently."""
    h, w, m, s = 8, 12, 4, 2
    mask = shifted_window_mask(h, w, m, s)
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    origin = np.stack([(rows + s) % h, (cols + s) % w, rows, cols], -1)  # where each came from
    tokens = _reference_partition(origin[None].astype("float32"), m)[0]  # (windows, M*M, 4)
    moved = tokens[:, :, None, :2] - tokens[:, None, :, :2]
    apart = tokens[:, :, None, 2:] - tokens[:, None, :, 2:]
    np.testing.assert_array_equal(mask, np.all(moved == apart, axis=-1))
    assert mask[0].all() and not mask[-1].all()  # only windows at the wrapped edges are masked
    assert shifted_window_mask(h, w, m, 0).all()  # no shift: every pair of a window


def test_attention_weights_across_region_boundaries_are_zero():
    block = SwinTransformerBlock(8, 2, window_size=4, shift_size=2)
    x = np.random.default_rng(2).random((2, 8, 8, 8), dtype="float32")
    block(x)
    _, scores = block.attend(x, return_attention_scores=True)
    scores = _np(scores)  # (batch, windows, heads, M*M, M*M)
    mask = shifted_window_mask(8, 8, 4, 2)[None, :, None]
    assert scores.shape == (2, 4, 2, 16, 16)
    np.testing.assert_array_equal(np.where(mask, 0.0, scores), 0.0)
    assert np.all(scores[np.broadcast_to(mask, scores.shape)] > 0)
    np.testing.assert_allclose(scores.sum(-1), 1.0, rtol=1e-5)


def test_window_resolution_rule():
    assert resolve_window(56, 56, 7, 3) == (7, 3)
    assert resolve_window(7, 7, 7, 3) == (7, 0)  # map = window: one window, no shift
    assert resolve_window(4, 8, 7, 3) == (4, 0)
    with pytest.raises(ValueError, match="8x8 feature map"):
        resolve_window(8, 8, 7, 3)


# -- WindowAttention, PatchMerging ---------------------------------------------------------


def test_window_attention_with_zero_bias_is_multi_head_attention_per_window():
    rng = np.random.default_rng(3)
    x = rng.random((2, 3, 16, 12), dtype="float32")  # (batch, windows, M*M, dim)
    reference = keras.layers.MultiHeadAttention(num_heads=3, key_dim=4)
    flat = x.reshape(6, 16, 12)
    reference(flat, flat)
    layer = WindowAttention(12, 3)
    layer(x)
    layer.attention.set_weights(convert_keras_mha_weights(reference.get_weights()))
    layer.bias_table.assign(np.zeros(layer.bias_table.shape))
    expected = _np(reference(flat, flat)).reshape(2, 3, 16, 12)
    np.testing.assert_allclose(_np(layer(x)), expected, atol=1e-5)
    # with a bias the attention differs, and depends on relative positions only
    layer.bias_table.assign(rng.normal(size=layer.bias_table.shape))
    assert np.abs(_np(layer(x)) - expected).max() > 1e-3
    bias = _np(layer.relative_position_bias())  # (heads, M*M, M*M)
    table = _np(layer.bias_table)
    assert bias[1, 5, 0] == table[relative_position_index(4)[5, 0], 1]


def test_window_attention_parameter_count():
    layer = WindowAttention(12, 3)
    layer.build((None, 4, 49, 12))
    assert layer.count_params() == 4 * (12 * 12 + 12) + 13 * 13 * 3


def test_patch_merging_shapes_count_and_order():
    layer = PatchMerging(16)
    x = np.random.default_rng(4).random((2, 8, 6, 16), dtype="float32")
    y = layer(x)
    assert tuple(y.shape) == (2, 4, 3, 32)
    assert layer.count_params() == 2 * 64 + 64 * 32  # LayerNorm(4C) + Linear(4C, 2C) no bias
    assert len(layer.reduction.weights) == 1
    # the reference implementation's neighbour order: x0 (0,0), x1 (1,0), x2 (0,1), x3 (1,1)
    merged = np.concatenate(
        [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1
    )
    expected = _np(layer.reduction(layer.norm(merged)))
    np.testing.assert_allclose(_np(y), expected, atol=1e-6)
    with pytest.raises(ValueError, match="even"):
        PatchMerging(16)(np.zeros((1, 5, 6, 16), "float32"))


# -- builder -------------------------------------------------------------------------------


def test_tiny_model_names_and_windows():
    model = swin_t(**TINY)
    names = [layer.name for layer in model.layers]
    assert names[:3] == ["image", "patch_embed", "patch_norm"]
    assert {"stage1_block1", "stage1_block2", "stage2_merging", "stage2_block2"} <= set(names)
    assert names[-4:] == ["norm", "avg_pool", "predictions", "probabilities"]
    shifted = model.get_layer("stage1_block2")
    assert (shifted.resolved_window_size, shifted.resolved_shift_size) == (4, 2)
    small = model.get_layer("stage2_block2")  # 4x4 map = window: one window, no shift
    assert (small.resolved_window_size, small.resolved_shift_size) == (4, 0)
    assert model.count_params() == kapps.registry.get_spec("swin_t").tiny_params
    features = swin_t(**TINY, include_top=False)
    assert tuple(features.output.shape) == (None, 4, 4, 32)
    assert tuple(swin_t(**TINY, include_top=False, pooling="avg").output.shape) == (None, 32)


@pytest.mark.parametrize(
    "shape",
    [(256, 256, 3), (100, 100, 3), (224, 225, 3), (16, 16, 3), (None, 224, 3)],
)
def test_input_sizes_that_do_not_divide_raise(shape):
    with pytest.raises(ValueError, match=r"input_shape="):
        swin_t(input_shape=shape)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"num_heads": (1, 3)}, "num_heads="),
        ({"depths": (2, 2, 2), "num_heads": (1, 2)}, "num_heads="),
        ({"depths": ()}, "depths="),
        ({"window_size": 0}, "window_size="),
        ({"stochastic_depth_rate": 1.0}, "stochastic_depth_rate="),
        ({"mlp_ratio": 0}, "mlp_ratio="),
        ({"pooling": "sum"}, "pooling="),
    ],
)
def test_bad_arguments_raise(overrides, match):
    with pytest.raises(ValueError, match=match):
        swin(**{**TINY, **overrides})


def test_stochastic_depth_is_inactive_at_inference():
    x = np.random.default_rng(5).random((4, 8, 8, 8), dtype="float32")
    plain = SwinTransformerBlock(8, 2, window_size=4, shift_size=2)
    dropped = SwinTransformerBlock(8, 2, window_size=4, shift_size=2, stochastic_depth_rate=0.9,
                                   seed=1)
    plain(x)
    dropped(x)
    dropped.set_weights(plain.get_weights())
    np.testing.assert_array_equal(_np(dropped(x, training=False)), _np(plain(x)))
    assert not np.allclose(_np(dropped(x, training=True)), _np(plain(x)))
    # the paper's rates (0.2 / 0.3 / 0.5) rise linearly from 0 to the last block
    for name, rate in (("swin_t", 0.2), ("swin_s", 0.3), ("swin_b", 0.5)):
        signature = inspect.signature(kapps.registry.get_spec(name).builder_fn())
        assert signature.parameters["stochastic_depth_rate"].default == rate
    model = swin_t(**{**TINY, "stochastic_depth_rate": 0.2})
    rates = [model.get_layer(f"stage{s}_block{b}").stochastic_depth_rate
             for s in (1, 2) for b in (1, 2)]
    np.testing.assert_allclose(rates, [0.0, 0.2 / 3, 0.4 / 3, 0.2])
    images = np.random.default_rng(6).random((4, 32, 32, 3), dtype="float32")
    np.testing.assert_array_equal(_np(model(images, training=False)), _np(model(images)))


def test_shifted_block_alone_converts_to_builtin_tflite():
    inputs = keras.Input((8, 8, 16))
    outputs = SwinTransformerBlock(16, 2, window_size=4, shift_size=2, name="block")(inputs)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(6).random((3, 8, 8, 16), dtype="float32")
    flatbuffer = export.to_tflite(model)  # raises for any op that is not a TFLite builtin
    assert export.tflite_parity(model, flatbuffer, x) <= 1e-4


# -- keras-hub -----------------------------------------------------------------------------


def _copy_from_keras_hub(model, classifier):
    """Fill a kapps Swin from a keras-hub SwinTransformerImageClassifier (fused qkv split into
    the query/key/value projections; the reference's names otherwise)."""
    hub = classifier.backbone

    def put(layer, arrays):
        layer.set_weights([np.asarray(a) for a in arrays])

    embed = hub.get_layer("patch_embedding")
    put(model.get_layer("patch_embed").projection, embed.proj.get_weights())
    put(model.get_layer("patch_norm"), embed.norm.get_weights())
    for i, stage in enumerate(hub.stages):
        for j, block in enumerate(stage.blocks):
            ours = model.get_layer(f"stage{i + 1}_block{j + 1}")
            put(ours.attention_norm, block.norm1.get_weights())
            kernel, bias = block.attn.qkv.get_weights()
            c = kernel.shape[0]
            put(
                ours.attention.attention,
                [kernel[:, :c], bias[:c], kernel[:, c:2 * c], bias[c:2 * c],
                 kernel[:, 2 * c:], bias[2 * c:], *block.attn.proj.get_weights()],
            )
            ours.attention.bias_table.assign(_np(block.attn.relative_position_bias_table))
            put(ours.mlp_norm, block.norm2.get_weights())
            put(ours.mlp_dense1, block.mlp.fc1.get_weights())
            put(ours.mlp_dense2, block.mlp.fc2.get_weights())
        if stage.downsample is not None:
            merging = model.get_layer(f"stage{i + 2}_merging")
            put(merging.norm, stage.downsample.norm.get_weights())
            put(merging.reduction, stage.downsample.reduction.get_weights())
    put(model.get_layer("norm"), hub.get_layer("norm").get_weights())
    put(model.get_layer("predictions"), classifier.output_dense.get_weights())


# keras-hub's WindowAttention warns that it drops a Keras mask; none is used here
@pytest.mark.filterwarnings("ignore:Layer 'attn'")
def test_outputs_equal_keras_hub_swin_with_the_same_weights():
    keras_hub = pytest.importorskip("keras_hub")
    config = {k: TINY[k] for k in ("embed_dim", "depths", "num_heads", "window_size", "patch_size")}
    backbone = keras_hub.models.SwinTransformerBackbone(
        image_shape=TINY["input_shape"], drop_path=0.0, **config
    )
    classifier = keras_hub.models.SwinTransformerImageClassifier(backbone=backbone, num_classes=10)
    model = swin_t(**TINY, classifier_activation=None)
    assert model.count_params() == classifier.count_params()
    rng = np.random.default_rng(7)
    for weight in classifier.weights:  # every weight random, bias tables large
        scale = 1.0 if "relative_position" in weight.path else 0.1
        weight.assign(rng.normal(0.0, scale, weight.shape) + weight.path.endswith("gamma"))
    _copy_from_keras_hub(model, classifier)
    x = rng.random((2, *TINY["input_shape"]), dtype="float32")
    np.testing.assert_allclose(_np(model(x)), _np(classifier(x)), atol=1e-5)
