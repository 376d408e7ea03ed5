"""Registry entries of EfficientNet B0-B7 (Tan & Le 2019).

Counts include keras.applications' input Rescaling + Normalization (7 non-trainable values:
mean 3, variance 3, count 1), reproduced by the builders' default ``include_preprocessing=True``
so that counts and weights line up with ``keras.applications.EfficientNetB0`` ... ``B7``
(measured with ``weights=None``: identical totals and trainable counts). FLOPs are
2 x multiply-accumulates at the canonical resolution (the paper's Table 2 lists
multiply-accumulates and calls them FLOPs: B0 0.39B).
"""

from kapps.registry import ModelSpec

_PAPER = "Tan, Le 2019, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks"

#: A 32x32 network with one block per stage (widths 8..32, head 128), built by the same
#: compound-scaling rule; deeper blocks with stochastic depth are tested in
#: tests/test_efficientnet.py.
_TINY = {
    "input_shape": (32, 32, 3),
    "num_classes": 10,
    "width_coefficient": 0.1,
    "depth_coefficient": 0.25,
}
_TINY_PARAMS = 36_269

# (variant, resolution, total, trainable, FLOPs, paper's Table 2 parameters and FLOPs).
_VARIANTS = (
    ("b0", 224, 5_330_571, 5_288_548, 771_629_504, "5.3M", "0.39B"),
    ("b1", 240, 7_856_239, 7_794_184, 1_373_605_664, "7.8M", "0.70B"),
    ("b2", 260, 9_177_569, 9_109_994, 1_987_123_744, "9.2M", "1.0B"),
    ("b3", 300, 12_320_535, 12_233_232, 3_654_282_784, "12M", "1.8B"),
    ("b4", 380, 19_466_823, 19_341_616, 8_787_542_048, "19M", "4.2B"),
    ("b5", 456, 30_562_527, 30_389_784, 20_532_769_504, "30M", "9.9B"),
    ("b6", 528, 43_265_143, 43_040_704, 38_135_187_072, "43M", "19B"),
    ("b7", 600, 66_658_687, 66_347_960, 75_491_768_384, "66M", "37B"),
)

SPECS = [
    ModelSpec(
        name=f"efficientnet_{key}",
        builder=f"kapps.models.classification.efficientnet:efficientnet_{key}",
        task="classification",
        family="EfficientNet",
        paper=_PAPER,
        input_shape=(size, size, 3),
        params=total,
        trainable_params=trainable,
        published_params=total,
        published_kind="total",
        published_source=f"keras.applications.EfficientNet{key.upper()} (weights=None), including "
        f"its 7-value input Normalization; the paper's Table 2 says {paper_params} parameters "
        f"and {paper_flops} FLOPs (multiply-adds)",
        flops=flops,
        tiny=_TINY,
        tiny_params=_TINY_PARAMS,
    )
    for key, size, total, trainable, flops, paper_params, paper_flops in _VARIANTS
]
