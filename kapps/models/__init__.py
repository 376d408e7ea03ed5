"""Functional-API builders, grouped by task. Every builder is also reachable by its registry
name through ``kapps.build(name, ...)``."""

from kapps.models import classification, segmentation
from kapps.models.classification import *  # noqa: F403  (every builder, by name)
from kapps.models.classification import __all__ as _classifiers
from kapps.models.segmentation import *  # noqa: F403
from kapps.models.segmentation import __all__ as _segmenters

__all__ = ["classification", "segmentation", *_classifiers, *_segmenters]
