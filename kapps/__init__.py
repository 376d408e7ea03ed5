"""kapps: classic deep-learning architectures for Keras 3 / TensorFlow.

The public face:

- ``kapps.build(name, **overrides)``: a registered model as a ``keras.Model``.
- ``kapps.list_models(task=None)``: registered names.
- ``kapps.info(name)``: task, family, paper, canonical input shape, parameter count
  (and the published figure it is checked against) and FLOPs per example.
- Submodules ``layers``, ``models``, ``export``, ``data``, ``training``, ``losses``,
  ``metrics``, ``inference`` (tiled prediction), ``boxes`` (box formats, IoU, non-max
  suppression, anchor clustering), loaded on first use
  so that ``import kapps`` (and ``kapps list``) does not pay for importing TensorFlow.
"""

import importlib

from kapps.registry import build, info, list_models

__version__ = "0.1.0"

_SUBMODULES = (
    "layers", "models", "export", "data", "training", "testing", "plots", "flops",
    "losses", "metrics", "inference", "benchmarking", "boxes",
)

__all__ = ["build", "info", "list_models", "__version__", *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f"kapps.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'kapps' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))
