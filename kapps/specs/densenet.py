"""Registry entries of DenseNet: the ImageNet networks of keras.applications and DenseNet-BC for
CIFAR."""

from kapps.registry import ModelSpec

_DENSENET = "Huang, Liu, van der Maaten, Weinberger 2017, Densely Connected Convolutional Networks"
_BUILDER = "kapps.models.classification.densenet"


# Two one-layer blocks around one transition: every code path of the ImageNet networks at a
# size whose TFLite conversion and distributed step stay quick.
_TINY = {"input_shape": (32, 32, 3), "num_classes": 10, "growth_rate": 4, "blocks": (1, 1)}


def _imagenet(depth, params, trainable, flops):
    return ModelSpec(
        name=f"densenet{depth}",
        builder=f"{_BUILDER}:densenet{depth}",
        task="classification",
        family="DenseNet",
        paper=_DENSENET,
        input_shape=(224, 224, 3),
        params=params,
        trainable_params=trainable,
        published_params=params,
        published_kind="total",
        published_source=f"keras.applications.DenseNet{depth} (total, with batch-normalization "
        "statistics; its ImageNet weights copy over)",
        flops=flops,
        tiny=_TINY,
        tiny_params=3_038,
    )


SPECS = [
    _imagenet(121, 8_062_504, 7_978_856, 5_668_323_328),
    _imagenet(169, 14_307_880, 14_149_480, 6_719_686_656),
    _imagenet(201, 20_242_984, 20_013_928, 8_582_731_776),
    ModelSpec(
        name="densenet_bc_100",
        builder=f"{_BUILDER}:densenet_bc_100",
        task="classification",
        family="DenseNet",
        paper=_DENSENET,
        input_shape=(32, 32, 3),
        params=793_150,
        trainable_params=769_162,
        published_params=769_162,
        published_kind="trainable",
        published_source="Huang et al. 2017, Table 2: DenseNet-BC (L=100, k=12), 0.8M parameters "
        "(exactly 769,162 trainable here with bias-free convolutions; 793,150 with BN statistics)",
        flops=575_859_384,
        tiny={"num_classes": 10, "growth_rate": 4, "depth": 10},
        tiny_params=2_862,
    ),
]
