"""Image classifiers. Each shares the signature ``num_classes, input_shape, include_top,
pooling, classifier_activation, weights, name``."""

from kapps.models.classification.alexnet import alexnet
from kapps.models.classification.densenet import (
    densenet,
    densenet121,
    densenet169,
    densenet201,
    densenet_bc_100,
)
from kapps.models.classification.efficientnet import (
    efficientnet,
    efficientnet_b0,
    efficientnet_b1,
    efficientnet_b2,
    efficientnet_b3,
    efficientnet_b4,
    efficientnet_b5,
    efficientnet_b6,
    efficientnet_b7,
)
from kapps.models.classification.googlenet import googlenet
from kapps.models.classification.lenet import lenet5
from kapps.models.classification.resnet import (
    resnet,
    resnet_cifar,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
    resnet110,
)
from kapps.models.classification.swin import swin, swin_b, swin_s, swin_t
from kapps.models.classification.vgg import vgg, vgg11, vgg13, vgg16, vgg19

__all__ = [
    "alexnet",
    "densenet",
    "densenet121",
    "densenet169",
    "densenet201",
    "densenet_bc_100",
    "efficientnet",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "googlenet",
    "lenet5",
    "resnet",
    "resnet_cifar",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "swin",
    "swin_b",
    "swin_s",
    "swin_t",
    "vgg",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
]
