"""Functional-API builders, grouped by task. Every builder is also reachable by its registry
name through ``kapps.build(name, ...)``."""

from kapps.models import classification
from kapps.models.classification import alexnet, lenet5, vgg, vgg11, vgg13, vgg16, vgg19

__all__ = ["alexnet", "classification", "lenet5", "vgg", "vgg11", "vgg13", "vgg16", "vgg19"]
