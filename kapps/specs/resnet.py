"""Registry entries of the ResNets (He et al. 2016): ImageNet depths 18-152 and the CIFAR depths
20-110 of Sec. 4.2."""

from kapps.registry import ModelSpec

_PAPER = "He, Zhang, Ren, Sun 2016, Deep Residual Learning for Image Recognition"
_MODULE = "kapps.models.classification.resnet"
# Tiny networks keep each depth's block type and shortcuts (projection, identity, zero padding)
# but have narrow stages of one block, on small inputs, so they build in about a second.
# Their convolutions have no bias: a bias followed by batch normalization gets an exactly zero
# gradient under batch statistics, which the contract (gradients reach every weight) refuses.
_BASIC_TINY = {
    "input_shape": (32, 32, 3),
    "num_classes": 10,
    "filters": (4, 4, 8, 8),
    "blocks": (1, 1, 1, 1),
    "use_bias": False,
}
_BOTTLENECK_TINY = _BASIC_TINY
_CIFAR_TINY = {"input_shape": (8, 8, 3), "num_classes": 10, "filters": (4, 4, 8), "blocks": (1, 1, 1)}

# name, depth-specific figures: params, trainable, flops, tiny params, published figure, source
_IMAGENET = (
    (
        "resnet18", 11_703_912, 11_694_312, 3_628_146_688, 3_670,
        "no keras.applications twin and no count in the paper (Table 1 gives 1.8e9 FLOPs); "
        "torchvision's 11,689,512 plus this model's 4,800 convolution biases and 9,600 "
        "batch-normalization statistics (keras.applications conventions)",
    ),
    (
        "resnet34", 21_823_208, 21_806_184, 7_327_522_816, 3_670,
        "no keras.applications twin and no count in the paper (Table 1 gives 3.6e9 FLOPs); "
        "torchvision's 21,797,672 plus this model's 8,512 convolution biases and 17,024 "
        "batch-normalization statistics (keras.applications conventions)",
    ),
    (
        "resnet50", 25_636_712, 25_583_592, 7_715_946_496, 6_294,
        "keras.applications.ResNet50 (the paper's Table 1 gives 3.8e9 FLOPs)",
    ),
    (
        "resnet101", 44_707_176, 44_601_832, 15_140_388_864, 6_294,
        "keras.applications.ResNet101 (the paper's Table 1 gives 7.6e9 FLOPs)",
    ),
    (
        "resnet152", 60_419_944, 60_268_520, 22_564_831_232, 6_294,
        "keras.applications.ResNet152 (the paper's Table 1 gives 11.3e9 FLOPs)",
    ),
)
_CIFAR = (
    ("resnet20", 271_098, 269_722, 81_102_080, 1_782, "0.27M"),
    ("resnet32", 466_426, 464_154, 137_725_184, 1_782, "0.46M"),
    ("resnet44", 661_754, 658_586, 194_348_288, 1_782, "0.66M"),
    ("resnet56", 857_082, 853_018, 250_971_392, 1_782, "0.85M"),
    ("resnet110", 1_736_058, 1_727_962, 505_775_360, 1_782, "1.7M"),
)

SPECS = [
    ModelSpec(
        name=name,
        builder=f"{_MODULE}:{name}",
        task="classification",
        family="ResNet",
        paper=_PAPER,
        input_shape=(224, 224, 3),
        params=params,
        trainable_params=trainable,
        published_params=params,
        published_kind="total",
        published_source=source,
        flops=flops,
        tiny=_BASIC_TINY if name in ("resnet18", "resnet34") else _BOTTLENECK_TINY,
        tiny_params=tiny_params,
    )
    for name, params, trainable, flops, tiny_params, source in _IMAGENET
] + [
    ModelSpec(
        name=name,
        builder=f"{_MODULE}:{name}",
        task="classification",
        family="ResNet",
        paper=_PAPER,
        input_shape=(32, 32, 3),
        params=params,
        trainable_params=trainable,
        published_params=trainable,
        published_kind="trainable",
        published_source=f"He et al. 2016, Table 6: {about} parameters (option A shortcuts; "
        "the figure counts trainable weights, batch-normalization statistics are not weights)",
        flops=flops,
        tiny=_CIFAR_TINY,
        tiny_params=tiny_params,
    )
    for name, params, trainable, flops, tiny_params, about in _CIFAR
]
