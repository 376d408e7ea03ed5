"""The model contract: checks every kapps model passes, for kapps' tests and for users who add
their own builders to the registry.

``check_model_contract(name)`` runs every check on the registered model's tiny configuration;
each check is also a function of its own. A failed check raises ``AssertionError`` with a
message that says what differed.

MirroredStrategy checks need at least two devices. On a machine without GPUs, split the CPU
into logical devices before TensorFlow starts (``use_logical_cpus(2)``, which kapps' own
``tests/conftest.py`` calls at import time).
"""

from __future__ import annotations

import inspect
import os
import tempfile

import numpy as np

from kapps import registry

CHECKS = (
    "output_shapes",
    "gradients",
    "param_counts",
    "config",
    "keras_roundtrip",
    "tflite_parity",
    "distributed_train_step",
)


def use_logical_cpus(count=2):
    """Split the first physical CPU into ``count`` logical devices (before TensorFlow runs any
    op), so MirroredStrategy can be exercised without GPUs. Returns the logical CPU count."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError:
        pass  # already initialised: keep whatever configuration is in place
    return len(tf.config.list_logical_devices("CPU"))


_CPU_STRATEGY = []


def cpu_strategy():
    """One ``MirroredStrategy`` over every logical CPU device, shared by the whole process.

    Gradients are summed on one device (``ReductionToOneDevice``) rather than by collective
    all-reduce, whose instance keys collide between strategies created in one process
    ("Shape mismatch in the collective instance"); ``kapps.training.get_strategy`` does the
    same on CPUs.
    """
    import tensorflow as tf

    if not _CPU_STRATEGY:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        assert len(devices) >= 2, (
            "MirroredStrategy check needs two devices; call kapps.testing.use_logical_cpus(2) "
            "before TensorFlow starts"
        )
        _CPU_STRATEGY.append(
            tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
        )
    return _CPU_STRATEGY[0]


#: Integer inputs that index small tables, by input name: values in ``[0, high)`` instead of
#: ``[0, 10)`` (BERT's ``segment_ids`` index two segment embeddings).
INTEGER_INPUT_HIGH = {"segment_ids": 2}


def sample_inputs(model, batch_size=2, seed=0, input_shape=None, sequence_length=8):
    """Random inputs for ``model``: floats in [0, 1), integers in [0, 10) for integer inputs
    (``[0, INTEGER_INPUT_HIGH[name])`` for the inputs named there).

    Unknown non-batch dimensions are taken from ``input_shape`` (one example's shape); token
    inputs of unknown length ``(batch, None)`` get ``sequence_length`` tokens."""
    rng = np.random.default_rng(seed)
    arrays = []
    for tensor in model.inputs:
        dims = list(tensor.shape[1:])
        integer = "int" in str(tensor.dtype)
        if any(d is None for d in dims):
            if input_shape is not None and None not in tuple(input_shape):
                dims = list(input_shape)
            elif integer and len(dims) == 1:
                dims = [sequence_length]
            else:
                raise ValueError(
                    f"input_shape={input_shape!r} is not allowed for model {model.name!r}, whose "
                    f"input shape {tuple(tensor.shape)} has unknown dimensions; pass one "
                    "example's shape."
                )
        shape = (batch_size, *dims)
        if integer:
            high = INTEGER_INPUT_HIGH.get(getattr(tensor, "name", None), 10)
            arrays.append(rng.integers(0, high, size=shape).astype(str(tensor.dtype)))
        else:
            arrays.append(rng.random(shape, dtype="float32"))
    return arrays[0] if len(arrays) == 1 else arrays


def _as_list(outputs):
    if isinstance(outputs, dict):
        return [outputs[k] for k in sorted(outputs)]
    if isinstance(outputs, (list, tuple)):
        return list(outputs)
    return [outputs]


def _numpy_outputs(model, inputs, training=False):
    import keras

    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in _as_list(model(inputs, training=training))]


def check_output_shapes(model, inputs):
    """The symbolic output shapes agree with eager outputs, which contain no NaN or inf."""
    symbolic = [tuple(t.shape) for t in _as_list(model.outputs)]
    eager = _numpy_outputs(model, inputs)
    assert len(symbolic) == len(eager), f"{len(symbolic)} symbolic outputs but {len(eager)} eager"
    for spec, value in zip(symbolic, eager):
        assert len(spec) == value.ndim, f"symbolic shape {spec} but eager shape {value.shape}"
        for s, v in zip(spec, value.shape):
            assert s is None or s == v, f"symbolic shape {spec} but eager shape {value.shape}"
        assert np.all(np.isfinite(value)), "outputs contain NaN or inf"


def check_gradients(model, inputs, seed=0):
    """A random projection of the outputs has a finite gradient, not all zero, with respect to
    every trainable weight."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    with tf.GradientTape() as tape:
        outputs = _as_list(model(inputs, training=True))
        loss = tf.add_n(
            [
                tf.reduce_sum(tf.cast(o, "float32") * rng.standard_normal(o.shape).astype("float32"))
                for o in outputs
            ]
        )
    grads = tape.gradient(loss, model.trainable_weights)
    assert model.trainable_weights, f"model {model.name!r} has no trainable weights"
    for weight, grad in zip(model.trainable_weights, grads):
        assert grad is not None, f"no gradient reaches {weight.path}"
        grad = np.asarray(tf.convert_to_tensor(grad))
        assert np.all(np.isfinite(grad)), f"gradient of {weight.path} has NaN or inf"
        assert np.any(grad != 0), f"gradient of {weight.path} is zero everywhere"


def count_params(model):
    """``(total, trainable)`` parameter counts."""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return model.count_params(), trainable


def check_param_counts(model, total=None, trainable=None):
    """Exact parameter counts (either may be None to skip it)."""
    got_total, got_trainable = count_params(model)
    if total is not None:
        assert got_total == total, f"{model.name}: {got_total:,} parameters, expected {total:,}"
    if trainable is not None:
        assert got_trainable == trainable, (
            f"{model.name}: {got_trainable:,} trainable parameters, expected {trainable:,}"
        )


def check_config(model):
    """Every kapps layer's ``get_config`` holds every ``__init__`` argument and rebuilds an
    equal layer (``from_config(get_config())`` has the same config)."""
    seen = set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        cls = type(layer)
        if not cls.__module__.startswith("kapps.") or cls in seen:
            continue
        seen.add(cls)
        config = layer.get_config()
        params = inspect.signature(cls.__init__).parameters
        for arg, param in params.items():
            if arg == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                continue
            assert arg in config, f"{cls.__name__}.get_config() lacks the __init__ argument {arg!r}"
        clone = cls.from_config(config)
        assert clone.get_config() == config, f"{cls.__name__}.from_config does not round-trip"


def check_keras_roundtrip(model, inputs, directory=None):
    """Saving to ``.keras`` and loading back gives identical outputs."""
    import keras

    import kapps.layers  # noqa: F401  (registers the serializable layers)

    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, compile=False)
    for before, after in zip(_numpy_outputs(model, inputs), _numpy_outputs(loaded, inputs)):
        np.testing.assert_array_equal(before, after, err_msg=".keras round trip changed outputs")


def check_tflite_parity(model, inputs, tolerance=1e-4):
    """The float32 TFLite model (builtin ops only) matches Keras within ``tolerance``."""
    from kapps import export

    flatbuffer = export.to_tflite(model)
    error = export.tflite_parity(model, flatbuffer, inputs)
    assert error <= tolerance, f"TFLite differs from Keras by {error:.3g} > {tolerance:g}"
    return error


def check_distributed_train_step(build_fn, inputs_fn, strategy=None):
    """One ``fit`` step under MirroredStrategy over at least two replicas changes the weights
    and gives a finite loss. Models with a ``training_batch(batch_size)`` method (the
    generative models, whose ``train_step`` trains on images rather than on targets of their
    forward pass) are compiled with only an optimizer and fit on that batch; every metric
    they report must be finite.

    Args:
        build_fn: a function with no arguments returning a new model; called inside the
            strategy's scope.
        inputs_fn: a function taking a model and a batch size, returning inputs.
        strategy: defaults to MirroredStrategy over every logical CPU.
    """
    import keras

    if strategy is None:
        strategy = cpu_strategy()
    assert strategy.num_replicas_in_sync >= 2, "the strategy has fewer than two replicas"
    batch = 2 * strategy.num_replicas_in_sync
    with strategy.scope():
        model = build_fn()
        if hasattr(model, "training_batch"):
            # generative models train on data, not on (inputs, targets) of their forward pass:
            # their own train_step on a batch of what fit takes
            model.compile(optimizer=keras.optimizers.SGD(0.01))
        else:
            model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    if hasattr(model, "training_batch"):
        before = [np.array(w) for w in model.trainable_weights]
        history = model.fit(*model.training_batch(batch), batch_size=batch, epochs=1, verbose=0)
        losses = {k: v[-1] for k, v in history.history.items()}
        assert losses and all(np.isfinite(v) for v in losses.values()), (
            f"metrics after one distributed step: {losses}"
        )
        changed = sum(not np.array_equal(b, np.array(w)) for b, w in zip(before, model.trainable_weights))
        assert changed > 0, "no weight changed after one distributed training step"
        return
    inputs = inputs_fn(model, batch)
    if any(None in tuple(o.shape[1:]) for o in _as_list(model.outputs)):
        # unknown lengths (sequence models): targets of the shapes the model produces
        shapes = [o.shape for o in _numpy_outputs(model, inputs)]
    else:
        shapes = [(batch, *o.shape[1:]) for o in _as_list(model.outputs)]
    targets = [np.random.default_rng(1).random(shape, dtype="float32") for shape in shapes]
    before = [np.array(w) for w in model.trainable_weights]
    history = model.fit(
        inputs, targets[0] if len(targets) == 1 else targets, batch_size=batch, epochs=1, verbose=0
    )
    loss = history.history["loss"][-1]
    assert np.isfinite(loss), f"loss after one distributed step is {loss}"
    changed = sum(not np.array_equal(b, np.array(w)) for b, w in zip(before, model.trainable_weights))
    assert changed > 0, "no weight changed after one distributed training step"


def check_model_contract(name, overrides=None, checks=CHECKS, directory=None):
    """Run the contract on registered model ``name`` at its tiny configuration (or with
    ``overrides`` instead). Returns a dict of figures (parameters, TFLite error)."""
    import keras

    spec = registry.get_spec(name)
    config = registry.tiny_overrides(name) if overrides is None else dict(overrides)
    unknown = set(checks) - set(CHECKS)
    if unknown:
        raise ValueError(f"checks={sorted(unknown)!r} are not known; expected some of {CHECKS}.")
    example_shape = config.get("input_shape", spec.input_shape)
    model = registry.build(name, **config)
    inputs = sample_inputs(model, input_shape=example_shape)
    figures = {"params": count_params(model)}
    if "output_shapes" in checks:
        check_output_shapes(model, inputs)
    if "gradients" in checks:
        check_gradients(model, inputs)
    if "param_counts" in checks and overrides is None:
        check_param_counts(model, total=spec.tiny_params)
    if "config" in checks:
        check_config(model)
    if "keras_roundtrip" in checks:
        check_keras_roundtrip(model, inputs, directory)
    if "tflite_parity" in checks and not spec.tflite_note:
        figures["tflite_error"] = check_tflite_parity(model, inputs, spec.tiny_tflite_tolerance)
    if "distributed_train_step" in checks:
        check_distributed_train_step(
            lambda: registry.build(name, **config),
            lambda m, batch: sample_inputs(m, batch_size=batch, input_shape=example_shape),
        )
    keras.backend.clear_session()
    return figures
