"""Functional-API builders, grouped by task. Every builder is also reachable by its registry
name through ``kapps.build(name, ...)``."""

from kapps.models import classification, detection, generative, language, segmentation, sequence
from kapps.models.classification import *  # noqa: F403  (every builder, by name)
from kapps.models.classification import __all__ as _classifiers
from kapps.models.detection import *  # noqa: F403
from kapps.models.detection import __all__ as _detectors
from kapps.models.generative import *  # noqa: F403
from kapps.models.generative import __all__ as _generative
from kapps.models.language import *  # noqa: F403
from kapps.models.language import __all__ as _language
from kapps.models.segmentation import *  # noqa: F403
from kapps.models.segmentation import __all__ as _segmenters
from kapps.models.sequence import *  # noqa: F403
from kapps.models.sequence import __all__ as _sequence

__all__ = [
    "classification", "detection", "generative", "language", "segmentation", "sequence",
    *_classifiers, *_detectors, *_generative, *_language, *_segmenters, *_sequence,
]
