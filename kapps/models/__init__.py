"""Functional-API builders, grouped by task. Every builder is also reachable by its registry
name through ``kapps.build(name, ...)``."""

from kapps.models import classification
from kapps.models.classification import *  # noqa: F403  (every builder, by name)
from kapps.models.classification import __all__ as _classifiers

__all__ = ["classification", *_classifiers]
