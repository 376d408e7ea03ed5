"""Registry entries of the fully convolutional networks: FCN-32s, FCN-16s, FCN-8s (VGG16)."""

from kapps.registry import ModelSpec

_FCN = "Long, Shelhamer, Darrell 2015, Fully Convolutional Networks for Semantic Segmentation"
_SOURCE = (
    "parameters of the reference Caffe net shelhamer/fcn.berkeleyvision.org voc-{}/net.py "
    "(21 classes) that the paper trains: the x2 upsamplings learned (Section 4.2), the final "
    "bilinear upsampling fixed (lr_mult 0)"
)
# Small widths build in a fraction of a second. score_initializer: the paper's zero-initialized
# score layers pass no gradient below themselves before the first update, and the contract
# checks that gradients reach every trainable weight.
_TINY = {
    "input_shape": (32, 32, 3),
    "num_classes": 3,
    "filters": (4, 8, 8, 16, 16),
    "fc_units": 16,
    "score_initializer": "glorot_uniform",
}

SPECS = [
    ModelSpec(
        name="fcn32s",
        builder="kapps.models.segmentation.fcn:fcn32s",
        task="segmentation",
        family="FCN",
        paper=_FCN,
        input_shape=(500, 500, 3),
        params=134_346_581,
        trainable_params=134_346_581,
        published_params=134_346_581,
        published_kind="trainable",
        published_source=_SOURCE.format("fcn32s"),
        flops=361_850_906_112,
        tiny=_TINY,
        tiny_params=28_543,
    ),
    ModelSpec(
        name="fcn16s",
        builder="kapps.models.segmentation.fcn:fcn16s",
        task="segmentation",
        family="FCN",
        paper=_FCN,
        input_shape=(500, 500, 3),
        params=134_364_410,
        trainable_params=134_364_410,
        published_params=134_364_410,
        published_kind="trainable",
        published_source=_SOURCE.format("fcn16s"),
        flops=361_901_827_584,
        tiny=_TINY,
        tiny_params=28_738,
    ),
    ModelSpec(
        name="fcn8s",
        builder="kapps.models.segmentation.fcn:fcn8s",
        task="segmentation",
        family="FCN",
        paper=_FCN,
        input_shape=(500, 500, 3),
        params=134_376_863,
        trainable_params=134_376_863,
        published_params=134_376_863,
        published_kind="trainable",
        published_source=_SOURCE.format("fcn8s"),
        flops=362_004_372_096,
        tiny=_TINY,
        tiny_params=28_909,
    ),
]
