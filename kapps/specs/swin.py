"""Registry entries of Swin-T, Swin-S and Swin-B (Liu et al. 2021).

The published figures are trainable parameters of the official implementation
(microsoft/Swin-Transformer, 1000 classes at 224x224): 28,288,354 / 49,606,258 /
87,768,224, which its model zoo and the paper's Table 1(a) round to 28M / 50M / 88M. The
relative-position indices and shift masks are constants (buffers in the reference), so
totals equal trainable counts. FLOPs are 2 x multiply-accumulates (``kapps.flops``),
including the attention products; the paper's Table 1(a) lists multiply-accumulates and
calls them FLOPs: 4.5G / 8.7G / 15.4G.
"""

from kapps.registry import ModelSpec

_PAPER = (
    "Liu, Lin, Cao, Hu, Wei, Zhang, Lin, Guo 2021, Swin Transformer: Hierarchical Vision "
    "Transformer using Shifted Windows"
)

#: 32x32 input, 4x4 patches (an 8x8 map), width 16, two stages of two blocks with window 4:
#: stage 1 has a regular and a shifted-window block (2x2 windows, shift 2), a patch merging
#: leads to stage 2, whose 4x4 map is one window (no shift, the reference's rule).
#: Stochastic depth is off: the contract's gradient check runs one training call on two
#: examples, and a branch dropped for both (probability up to 1/4 at Swin-B's 0.5) would
#: get no gradient; tests/test_swin.py checks stochastic depth itself.
_TINY = {
    "input_shape": (32, 32, 3),
    "num_classes": 10,
    "patch_size": 4,
    "embed_dim": 16,
    "depths": (2, 2),
    "num_heads": (1, 2),
    "window_size": 4,
    "stochastic_depth_rate": 0.0,
}
_TINY_PARAMS = 35_648

# (variant, total = trainable, FLOPs, official model name, model-zoo parameters, paper's
# FLOPs (multiply-adds)).
_VARIANTS = (
    ("t", 28_288_354, 8_981_133_312, "swin_tiny_patch4_window7_224", "28M", "4.5G"),
    ("s", 49_606_258, 17_481_750_528, "swin_small_patch4_window7_224", "50M", "8.7G"),
    ("b", 87_768_224, 30_861_893_632, "swin_base_patch4_window7_224", "88M", "15.4G"),
)

SPECS = [
    ModelSpec(
        name=f"swin_{key}",
        builder=f"kapps.models.classification.swin:swin_{key}",
        task="classification",
        family="Swin",
        paper=_PAPER,
        input_shape=(224, 224, 3),
        params=params,
        trainable_params=params,
        published_params=params,
        published_kind="trainable",
        published_source=f"trainable parameters of the official implementation "
        f"(microsoft/Swin-Transformer, {official}, 1000 classes; equal to keras-hub 0.32's "
        f"SwinTransformerImageClassifier of the same configuration); its model zoo and the "
        f"paper's Table 1(a) say {zoo_params} parameters and {paper_flops} FLOPs (multiply-adds)",
        flops=flops,
        tiny=_TINY,
        tiny_params=_TINY_PARAMS,
    )
    for key, params, flops, official, zoo_params, paper_flops in _VARIANTS
]
