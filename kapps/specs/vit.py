"""Registry entries of the Vision Transformer (Dosovitskiy et al. 2021): ViT-Ti/16 and S/16
(DeiT's widths), B/16, B/32, L/16, L/32 and H/14 (the paper's Table 1), at 224x224 with a
1000-class token head.

Counts are exact, measured from ``kapps.models.classification.vit``; ``vit_b16`` equals
keras-hub's ``ViTBackbone(image_shape=(224, 224, 3), patch_size=16, num_layers=12,
num_heads=12, hidden_dim=768, mlp_dim=3072)`` (85,798,656) plus a 1000-class
``ViTImageClassifier`` head (769,000). The paper's Table 1 rounds (86M, 307M, 632M) and counts
its own heads and resolutions: its 307M for ViT-L is not the 224x224, 1000-class figure
(304,326,632, as timm's ``vit_large_patch16_224``). FLOPs are 2 x multiply-accumulates at
224x224 (``kapps.flops``; ViT-B/16: 35.1G, i.e. the 17.6 G multiply-adds usually quoted).
"""

from kapps.registry import ModelSpec

_PAPER = (
    "Dosovitskiy et al. 2021, An Image is Worth 16x16 Words: Transformers for Image "
    "Recognition at Scale"
)

#: 32x32 images, 8x8 patches (a 4x4 grid + class token), width 32, two blocks of two heads.
_TINY = {
    "input_shape": (32, 32, 3),
    "num_classes": 10,
    "patch_size": 8,
    "hidden_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "mlp_dim": 64,
}
_TINY_PARAMS = 24_234

# (variant, name in the sources, total = trainable, FLOPs, published figure, its source)
_VARIANTS = (
    ("ti16", "ViT-Ti/16", 5_717_416, 2_507_366_400,
     "DeiT-Ti (Touvron et al. 2021, Table 1): 5M parameters, the same architecture"),
    ("s16", "ViT-S/16", 22_050_664, 9_197_764_608,
     "DeiT-S (Touvron et al. 2021, Table 1): 22M parameters, the same architecture"),
    ("b16", "ViT-B/16", 86_567_656, 35_127_656_448,
     "keras-hub ViTBackbone (85,798,656) + 1000-class ViTImageClassifier head, the same "
     "count; the paper's Table 1 says 86M for ViT-Base"),
    ("b32", "ViT-B/32", 88_224_232, 8_818_372_608,
     "the paper's Table 1: 86M for ViT-Base (counted without the patch size: a 32x32 patch "
     "projection has 1.66M more weights than a 16x16 one)"),
    ("l16", "ViT-L/16", 304_326_632, 123_109_425_152,
     "the paper's Table 1: 307M for ViT-Large (rounded, another head and resolution; "
     "timm's vit_large_patch16_224 has 304,326,632 as here)"),
    ("l32", "ViT-L/32", 306_535_400, 30_755_078_144,
     "the paper's Table 1: 307M for ViT-Large (rounded, counted without the patch size)"),
    ("h14", "ViT-H/14", 632_045_800, 334_590_218_240,
     "the paper's Table 1: 632M for ViT-Huge"),
)

SPECS = [
    ModelSpec(
        name=f"vit_{key}",
        builder=f"kapps.models.classification.vit:vit_{key}",
        task="classification",
        family="ViT",
        paper=_PAPER,
        input_shape=(224, 224, 3),
        params=total,
        trainable_params=total,
        published_params=total,
        published_kind="total",
        published_source=f"{label} at 224x224, 1000 classes, measured exactly; {source}",
        flops=flops,
        tiny=_TINY,
        tiny_params=_TINY_PARAMS,
    )
    for key, label, total, flops, source in _VARIANTS
]
