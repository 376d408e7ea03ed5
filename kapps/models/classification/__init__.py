"""Image classifiers. Each shares the signature ``num_classes, input_shape, include_top,
pooling, classifier_activation, weights, name``."""

from kapps.models.classification.alexnet import alexnet
from kapps.models.classification.lenet import lenet5
from kapps.models.classification.vgg import vgg, vgg11, vgg13, vgg16, vgg19

__all__ = ["alexnet", "lenet5", "vgg", "vgg11", "vgg13", "vgg16", "vgg19"]
