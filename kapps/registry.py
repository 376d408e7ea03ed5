"""The model registry: name -> builder, task, family, paper, published figures, test sizes.

Everything here is plain data so that ``kapps list`` and ``kapps info`` answer without importing
TensorFlow; a builder is imported only when ``build`` is called.

The figures ``params`` and ``flops`` describe the canonical configuration (the builder's
defaults, which reproduce the paper). They are pinned by ``tests/test_registry.py``, which
builds every canonical model and counts, so they cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from typing import Any, Callable

TASKS = ("classification", "segmentation", "detection", "sequence", "language", "generative")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model.

    Attributes:
        name: registry name, e.g. ``"vgg16"``.
        builder: ``"module:function"`` of the functional builder.
        task: one of ``TASKS``.
        family: architecture family shown in tables, e.g. ``"VGG"``.
        paper: the paper that defines the architecture.
        input_shape: canonical input shape, without the batch axis.
        params: total parameters (trainable and not) of the canonical configuration.
        trainable_params: trainable parameters of the canonical configuration.
        published_params: the published figure ``params`` is checked against.
        published_kind: ``"total"`` or ``"trainable"``: which count the published figure is.
        published_source: where the published figure comes from.
        flops: floating-point operations per example of the canonical configuration
            (2 x multiply-accumulates of convolutions and matrix products, see ``kapps.flops``),
            or ``None`` where tracing cannot count them (the steps of a recurrent loop).
        flops_input_shape: for inputs of free length (token sequences), the example shape the
            FLOPs are counted at, e.g. ``(32,)``: 32 source and 32 target tokens.
        tiny: overrides that build a small version in well under a second, for tests.
        tiny_params: total parameters of the tiny configuration (pinned by the contract test).
        tflite_note: empty when the model converts to TFLite with builtin ops only; otherwise
            why it cannot.
        tiny_tflite_tolerance: largest absolute TFLite/Keras difference accepted at the tiny
            configuration on random inputs.
    """

    name: str
    builder: str
    task: str
    family: str
    paper: str
    input_shape: tuple
    params: int
    trainable_params: int
    published_params: int
    published_kind: str
    published_source: str
    flops: int | None
    tiny: dict = dataclasses.field(default_factory=dict)
    tiny_params: int | None = None
    tflite_note: str = ""
    tiny_tflite_tolerance: float = 1e-4
    flops_input_shape: tuple | None = None

    def builder_fn(self) -> Callable[..., Any]:
        """Import and return the builder function."""
        module_name, fn_name = self.builder.split(":")
        return getattr(importlib.import_module(module_name), fn_name)


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry (also for users' own builders).

    Raises:
        ValueError: if the name is taken or the task is unknown.
    """
    if spec.name in _REGISTRY:
        raise ValueError(f"name={spec.name!r} is already registered; choose another name.")
    if spec.task not in TASKS:
        raise ValueError(f"task={spec.task!r} is not a known task; expected one of {TASKS}.")
    if spec.published_kind not in ("total", "trainable"):
        raise ValueError(
            f"published_kind={spec.published_kind!r} is not allowed; expected 'total' or 'trainable'."
        )
    _REGISTRY[spec.name] = spec
    return spec


def _register_catalog():
    """Register the specs of every module in ``kapps.specs`` (one module per family, plain
    data, so importing them never imports TensorFlow)."""
    import pkgutil

    import kapps.specs

    for module in pkgutil.iter_modules(kapps.specs.__path__):
        for spec in importlib.import_module(f"kapps.specs.{module.name}").SPECS:
            register(spec)


_register_catalog()


def get_spec(name: str) -> ModelSpec:
    """The ``ModelSpec`` registered under ``name``.

    Raises:
        ValueError: for an unknown name, listing the closest registered names.
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        close = difflib.get_close_matches(str(name).lower(), list(_REGISTRY), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"name={name!r} is not a registered model.{hint} "
            f"Registered: {', '.join(sorted(_REGISTRY))}."
        )
    return _REGISTRY[name]


def list_models(task: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally only those of one ``task``.

    Raises:
        ValueError: for a task that is not one of ``TASKS``.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"task={task!r} is not a known task; expected one of {TASKS} or None.")
    return sorted(n for n, s in _REGISTRY.items() if task is None or s.task == task)


def build(name: str, /, **overrides):
    """Build the registered model ``name`` as a ``keras.Model``.

    With no overrides this is the canonical configuration (the paper's). Overrides are the
    builder's keyword arguments, e.g. ``build("vgg16", num_classes=10, input_shape=(64, 64, 3))``;
    ``name`` is positional-only, so ``build("vgg16", name="my_vgg")`` names the model.

    Example:
        >>> model = kapps.build("lenet5", input_shape=(28, 28, 1))
    """
    return get_spec(name).builder_fn()(**overrides)


def tiny_overrides(name: str) -> dict:
    """The overrides of the small test configuration of ``name`` (a copy)."""
    return dict(get_spec(name).tiny)


def info(name: str) -> dict:
    """A dictionary describing ``name``: task, family, paper, canonical input shape,
    parameter counts and the published figure they are checked against, FLOPs per example."""
    spec = get_spec(name)
    return {
        "name": spec.name,
        "task": spec.task,
        "family": spec.family,
        "paper": spec.paper,
        "builder": spec.builder.replace(":", "."),
        "input_shape": spec.input_shape,
        "params": spec.params,
        "trainable_params": spec.trainable_params,
        "published_params": spec.published_params,
        "published_kind": spec.published_kind,
        "published_source": spec.published_source,
        "flops": spec.flops,
        "flops_input_shape": spec.flops_input_shape,
        "tflite": "builtin ops" if not spec.tflite_note else spec.tflite_note,
    }


def _human(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def markdown_table(task: str | None = None) -> str:
    """The README's model table, rendered from the registry."""
    rows = [
        "| name | task | family | paper | input | parameters | FLOPs |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for name in list_models(task):
        s = _REGISTRY[name]
        shape = (
            "token ids" if None in s.input_shape else "x".join(str(d) for d in s.input_shape)
        )
        flops = "n/a" if s.flops is None else _human(s.flops)
        if s.flops is not None and s.flops_input_shape:
            flops += f" ({s.flops_input_shape[0]} tokens)"
        params = f"{s.params:,}"
        if s.trainable_params != s.params:
            params += f" ({s.trainable_params:,} trainable)"
        rows.append(
            f"| `{name}` | {s.task} | {s.family} | {s.paper} | {shape} | {params} | {flops} |"
        )
    return "\n".join(rows)
