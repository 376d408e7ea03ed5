"""Functional-API builders, grouped by task. Every builder is also reachable by its registry
name through ``kapps.build(name, ...)``."""

from kapps.models import classification, segmentation, sequence
from kapps.models.classification import *  # noqa: F403  (every builder, by name)
from kapps.models.classification import __all__ as _classifiers
from kapps.models.segmentation import *  # noqa: F403
from kapps.models.segmentation import __all__ as _segmenters
from kapps.models.sequence import *  # noqa: F403
from kapps.models.sequence import __all__ as _sequence

__all__ = ["classification", "segmentation", "sequence", *_classifiers, *_segmenters, *_sequence]
