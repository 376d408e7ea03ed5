"""Export Keras models to ``.keras``, SavedModel and TFLite (LiteRT), run and check them.

Everything a recipe or ``kapps export`` writes goes through this module:

- ``save_keras(model, path)``: the native ``.keras`` file.
- ``export_saved_model(model, path)``: a SavedModel directory with a ``serving_default``
  signature (inference mode), for TF Serving and ``tf.saved_model.load``.
- ``to_tflite(model, path=None, quantize=None, representative_data=None, allow_flex=False)``:
  a TFLite flatbuffer as float32, float16, dynamic-range or full-integer int8, with builtin
  ops only unless Flex is explicitly allowed.
- ``TFLiteRunner`` / ``load_tflite``: run a ``.tflite`` file with the LiteRT interpreter
  (``ai_edge_litert``), any batch size, with int8 inputs and outputs (de)quantized for you.
- ``tflite_parity(model, tflite, inputs)``: the largest absolute Keras/LiteRT difference.
- ``export_all(model, out_dir)``: all of the above into one folder, parity-checked.

Every file is written atomically: to a temporary name in the destination directory first and
renamed into place only after it is complete, so a failed export leaves nothing half-written
where the caller expects a file (and an existing file there stays untouched).

How the TFLite conversion is done, and why (TensorFlow 2.21, Keras 3.15):

- The model is exported with ``keras.export.ExportArchive`` to a temporary SavedModel whose
  ``serving_default`` signature calls ``model(inputs, training=False)``, and that SavedModel is
  converted with ``tf.lite.TFLiteConverter.from_saved_model``.
- ``TFLiteConverter.from_concrete_functions([fn], trackable_obj=model)`` with a Keras 3 model
  silently produces a flatbuffer whose weights are uninitialised resource variables
  (``VAR_HANDLE``/``READ_VARIABLE`` ops): it runs and returns NaN. Without ``trackable_obj`` it
  uses a deprecated path.
- ``TFLiteConverter.from_keras_model`` does the ExportArchive step itself for list inputs, but
  fails for functional models with dict inputs ("'NoneType' object is not callable") because it
  swallows the export error and falls back to a Keras 2 code path; it also prints the
  SavedModel's endpoints to stdout.
- ``model.export(path, format="litert")`` turns on ``SELECT_TF_OPS`` (Flex) silently; Flex ops
  do not run on a plain LiteRT runtime, so it is not used.

The batch dimension stays dynamic: TFLite input shape signatures are ``[-1, ...]`` and the
runtime resizes the input tensors to the batch it is given (``TFLiteRunner`` does this). Pass
``batch_size=1`` to ``to_tflite`` for a fully static graph (some delegates and
microcontrollers need one).

TFLite orders the inputs and outputs of a signature by name, not by the order of
``model.inputs``: signature inputs are named after the Keras ``Input`` tensors, outputs are
``output_0``, ``output_1``, ... (or the keys of a dict output). ``TFLiteRunner`` takes inputs by
name (keywords or a dict) or positionally in the order of ``runner.input_names``, and returns
outputs in the model's output order.

TensorFlow, Keras and LiteRT are imported inside the functions, so importing this module is
cheap.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import tempfile
import warnings
from typing import Any

import numpy as np

__all__ = [
    "QUANTIZE_OPTIONS",
    "ParityError",
    "TFLiteConversionError",
    "TFLiteRunner",
    "UnsupportedOpsError",
    "export_all",
    "export_saved_model",
    "load_tflite",
    "save_keras",
    "tflite_parity",
    "to_tflite",
    "translator_to_tflite",
]

#: Accepted values of ``to_tflite(quantize=...)``.
QUANTIZE_OPTIONS = (None, "none", "float16", "dynamic", "int8")

_SERVING_KEY = "serving_default"
_DEFAULT_CALIBRATION_SAMPLES = 100


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class UnsupportedOpsError(ValueError):
    """The model needs TensorFlow ops that are not TFLite builtins.

    Attributes:
        flex_ops: sorted names of ops (``"MatrixInverse"``) that would run only through the
            Flex delegate (``SELECT_TF_OPS``); ``to_tflite(..., allow_flex=True)`` opts in.
        custom_ops: sorted names of ops that have neither a builtin nor a Flex kernel;
            nothing but changing the model helps.
        ops: ``flex_ops + custom_ops``.
    """

    def __init__(self, flex_ops=(), custom_ops=(), opt_in="allow_flex=True"):
        self.flex_ops = sorted(set(flex_ops))
        self.custom_ops = sorted(set(custom_ops) - set(flex_ops))
        self.ops = self.flex_ops + self.custom_ops
        super().__init__(self.describe(opt_in))

    def describe(self, opt_in="allow_flex=True"):
        """The error message, naming ``opt_in`` as the way to allow Flex ops."""
        parts = []
        if self.flex_ops:
            parts.append(
                f"the model needs TensorFlow ops that are not TFLite builtins: "
                f"{', '.join(self.flex_ops)}. They run only with the Flex delegate "
                f"(SELECT_TF_OPS), which a plain LiteRT runtime does not include; pass "
                f"{opt_in} to opt in explicitly, or replace the layers that use them"
            )
        if self.custom_ops:
            parts.append(
                f"the model needs ops with neither a TFLite builtin nor a Flex kernel: "
                f"{', '.join(self.custom_ops)}; {opt_in} does not help, replace the layers "
                f"that use them"
            )
        if not parts:
            parts.append("the model needs ops that TFLite does not support")
        text = "; ".join(parts)
        return text[0].upper() + text[1:] + "."


class TFLiteConversionError(RuntimeError):
    """The TFLite converter failed for a reason other than unsupported ops."""


class ParityError(RuntimeError):
    """An exported model's outputs differ from the Keras model's by more than the tolerance.

    Attributes:
        max_abs_diff: the measured largest absolute difference.
        tolerance: the accepted difference.
    """

    def __init__(self, message, max_abs_diff, tolerance):
        super().__init__(message)
        self.max_abs_diff = max_abs_diff
        self.tolerance = tolerance


# --------------------------------------------------------------------------------------------
# Atomic file helpers
# --------------------------------------------------------------------------------------------


def _fspath(path, argument="path"):
    try:
        path = os.fspath(path)
    except TypeError:
        raise ValueError(
            f"{argument}={path!r} is not allowed; expected a file system path (str or os.PathLike)."
        ) from None
    if not path:
        raise ValueError(f"{argument}={path!r} is not allowed; expected a non-empty path.")
    return path


def _parent_dir(path):
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    return parent


def _remove(path):
    with contextlib.suppress(OSError):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _default_permissions(path):
    """Give a temporary file or directory the permissions a plain ``open``/``mkdir`` would
    (``mkstemp``/``mkdtemp`` create them private to the owner)."""
    mask = _umask()
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~mask)


def _atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` through a temporary file in the same directory."""
    parent = _parent_dir(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _default_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _directory_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, name))
    return total


def _file_size(path):
    return _directory_size(path) if os.path.isdir(path) else os.path.getsize(path)


# --------------------------------------------------------------------------------------------
# .keras and SavedModel
# --------------------------------------------------------------------------------------------


def _check_model(model):
    import keras

    if not isinstance(model, keras.Model):
        raise ValueError(
            f"model={type(model).__name__} is not allowed; expected a keras.Model "
            f"(for a file, load it with keras.saving.load_model first)."
        )
    if not model.built:
        raise ValueError(
            f"model={model.name!r} has not been built; call it on data or build it before export."
        )


def save_keras(model, path):
    """Save ``model`` as a native Keras ``.keras`` file, atomically.

    The model is written to a temporary ``.keras`` file in the destination directory and
    renamed onto ``path`` only when complete: a failure leaves ``path`` as it was (absent or
    the previous file). Missing parent directories are created.

    Args:
        model: a built ``keras.Model``.
        path: destination; must end with ``.keras``.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: if ``model`` is not a built Keras model or ``path`` does not end with
            ``.keras``.

    Example:
        >>> save_keras(model, "saved_models/lenet5/model.keras")
        'saved_models/lenet5/model.keras'
    """
    path = _fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(f"path={path!r} is not allowed; a Keras model file must end with '.keras'.")
    _check_model(model)
    parent = _parent_dir(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp.keras", dir=parent)
    os.close(fd)
    try:
        model.save(tmp)
        _default_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


def _serving_signature(model, batch_size=None, input_signature=None):
    """The input signature of the serving function: a list (one entry per positional argument
    of the model's call) of structures of ``tf.TensorSpec``, every spec named.

    Functional and sequential models: ``model.input`` with the batch axis set to
    ``batch_size`` (``None``: dynamic), specs named after the Keras inputs. Subclassed models:
    ``input_signature`` if given, else the shapes Keras recorded on the first call. Unnamed
    specs are named ``input_0``, ``input_1``, ... in flat order."""
    import keras
    import tensorflow as tf

    if input_signature is None:
        try:
            structure = model.input  # functional and sequential models: the (nested) inputs
        except (AttributeError, ValueError):
            structure = None
        if structure is not None:
            input_signature = [structure]
        else:
            try:
                from keras.src.export.export_utils import get_input_signature
            except ImportError:  # private Keras API moved
                raise ValueError(
                    f"input_signature=None is not allowed for the subclassed model "
                    f"{model.name!r}; pass a list of tf.TensorSpec, one per call argument."
                ) from None
            input_signature = get_input_signature(model)  # ValueError if never called
    elif not isinstance(input_signature, (list, tuple)):
        raise ValueError(
            f"input_signature={input_signature!r} is not allowed; expected a list with one "
            f"structure of tf.TensorSpec per positional argument of the model's call."
        )
    counter = iter(range(1 << 30))

    def spec(x):
        shape = tuple(x.shape)
        if batch_size is not None and shape:
            shape = (batch_size,) + shape[1:]
        name = getattr(x, "name", None) or f"input_{next(counter)}"
        return tf.TensorSpec(shape, dtype=tf.as_dtype(keras.backend.standardize_dtype(x.dtype)), name=name)

    return [keras.tree.map_structure(spec, s) for s in input_signature]


def _write_saved_model(model, directory, input_signature):
    """Write an inference SavedModel with a ``serving_default`` signature into ``directory``.

    ``input_signature`` comes from ``_serving_signature``."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    # training=False: the serving graph is the inference graph (dropout off, BN moving stats)
    # even for layers whose call() defaults to training=True.
    archive.add_endpoint(
        "serve", functools.partial(model.__call__, training=False), input_signature
    )
    archive.write_out(directory, verbose=False)


def export_saved_model(model, path, input_signature=None):
    """Export ``model`` for inference as a TensorFlow SavedModel directory.

    The SavedModel has a ``serve`` endpoint, also exposed as the ``serving_default`` signature,
    computing ``model(inputs, training=False)`` with a dynamic batch dimension. It does not
    need kapps or Keras to run: ``tf.saved_model.load(path).serve(x)``.

    The directory is written beside ``path`` under a temporary name and renamed into place
    only after it is complete; an existing directory at ``path`` is replaced only then.

    Args:
        model: a built ``keras.Model``.
        path: the SavedModel directory to create.
        input_signature: optional list of ``tf.TensorSpec`` structures (one per positional
            argument of the model's ``call``), needed for subclassed models that have never
            been called; by default it is taken from ``model.input`` with a dynamic batch axis.

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: if ``model`` is not a built Keras model, or ``path`` exists and is not a
            directory.

    Example:
        >>> export_saved_model(model, "saved_models/lenet5/saved_model")
        >>> reloaded = tf.saved_model.load("saved_models/lenet5/saved_model")
        >>> probs = reloaded.serve(x)  # or, by input name:
        >>> outputs = reloaded.signatures["serving_default"](image=x)  # {"output_0": probs}
    """
    path = _fspath(path)
    _check_model(model)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(
            f"path={path!r} exists and is not a directory; a SavedModel is a directory."
        )
    parent = _parent_dir(path)
    base = os.path.basename(os.path.normpath(path))
    tmp = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
    try:
        _write_saved_model(model, tmp, _serving_signature(model, input_signature=input_signature))
        _default_permissions(tmp)
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{base}.", suffix=".old", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # put the previous export back
                raise
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    return path


# --------------------------------------------------------------------------------------------
# TFLite conversion
# --------------------------------------------------------------------------------------------


def _natural_key(name):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(name))]


def _check_quantize(quantize):
    if isinstance(quantize, str):
        quantize = quantize.lower()
    if quantize not in QUANTIZE_OPTIONS:
        raise ValueError(
            f"quantize={quantize!r} is not allowed; expected one of None, 'none' (float32), "
            f"'float16', 'dynamic' (dynamic-range) or 'int8' (full integer)."
        )
    return None if quantize == "none" else quantize


def _is_array(x):
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, (dict, list, tuple))


def _input_specs_flat(signature):
    """(name, shape, numpy dtype) of each input in flat model order."""
    import keras

    return [
        (s.name, tuple(s.shape), np.dtype(s.dtype.as_numpy_dtype))
        for s in keras.tree.flatten(signature)
    ]


def _flatten_inputs(value, names):
    """The flat list of input arrays of one batch, in model order (``names``)."""
    import keras

    if _is_array(value):
        return [value]
    if isinstance(value, dict) and sorted(value) == sorted(names):
        return [value[n] for n in names]  # keyed by input name
    flat = keras.tree.flatten(value)
    if len(flat) != len(names) and isinstance(value, tuple) and len(value) in (2, 3):
        # a Keras-style (inputs, targets[, sample_weights]) element: keep the inputs
        return _flatten_inputs(value[0], names)
    return flat


def _calibration_samples(model, signature, data, limit):
    """Materialise up to ``limit`` single-example batches (lists of float32 arrays, model
    order) from ``representative_data``, validating shapes."""
    import tensorflow as tf

    specs = _input_specs_flat(signature)
    n = len(specs)
    names = [s[0] for s in specs]

    def check(arrays):
        if len(arrays) != n:
            raise ValueError(
                f"representative_data gives {len(arrays)} array(s) per batch but the model has "
                f"{n} input(s) ({', '.join(s[0] for s in specs)})."
            )
        out = []
        for arr, (name, shape, dtype) in zip(arrays, specs):
            arr = np.asarray(arr)
            ok = arr.ndim == len(shape) and all(
                d is None or d == a for d, a in zip(shape[1:], arr.shape[1:])
            )
            if not ok:
                raise ValueError(
                    f"representative_data has an array of shape {arr.shape} for input {name!r}, "
                    f"which expects (samples, {', '.join(str(d) for d in shape[1:])}); the first "
                    f"axis counts samples."
                )
            out.append(arr.astype(dtype if dtype.kind in "iub" else np.float32, copy=False))
        batch = {a.shape[0] for a in out}
        if len(batch) != 1:
            raise ValueError(
                f"representative_data gives inputs with different numbers of samples {sorted(batch)}."
            )
        return out

    if _is_array(data) or isinstance(data, dict) or (
        isinstance(data, (list, tuple)) and n > 1 and len(data) == n and all(_is_array(a) for a in data)
    ):
        batches = [_flatten_inputs(data, names)]  # whole arrays: the first axis counts samples
    elif isinstance(data, tf.data.Dataset):
        batches = data.as_numpy_iterator()
    else:
        try:
            batches = iter(data)
        except TypeError:
            raise ValueError(
                f"representative_data={type(data).__name__} is not allowed; expected an array of "
                f"input samples, a list/dict of such arrays (one per input), an iterable of input "
                f"batches or a tf.data.Dataset."
            ) from None
    samples = []
    for batch in batches:
        arrays = check(_flatten_inputs(batch, names))
        for i in range(arrays[0].shape[0]):
            samples.append([a[i : i + 1] for a in arrays])
            if len(samples) >= limit:
                return samples
    if not samples:
        raise ValueError("representative_data is empty; int8 calibration needs input samples.")
    return samples


def _parse_converter_error(error):
    """(flex_ops, custom_ops) named by a ``ConverterError``."""
    flex, custom = set(), set()
    for item in getattr(error, "errors", None) or ():
        try:
            code = item.DESCRIPTOR.fields_by_name["error_code"].enum_type.values_by_number[
                item.error_code
            ].name
        except (AttributeError, KeyError):
            code = str(getattr(item, "error_code", ""))
        op = getattr(getattr(item, "operator", None), "name", "") or ""
        op = op[3:] if op.startswith("tf.") else op
        if not op:
            continue
        if code == "ERROR_NEEDS_FLEX_OPS":
            flex.add(op)
        elif code == "ERROR_NEEDS_CUSTOM_OPS":
            custom.add(op)
    text = str(error)
    for label, bucket in (("TF Select ops", flex), ("Custom ops", custom)):
        for match in re.finditer(rf"{label}: ([^\n]+)", text):
            bucket.update(op.strip() for op in match.group(1).split(",") if op.strip())
    return sorted(flex), sorted(custom)


def _short_converter_message(error):
    messages = []
    for item in getattr(error, "errors", None) or ():
        msg = (getattr(item, "error_message", "") or "").strip().splitlines()
        if msg and msg[0] not in messages:
            messages.append(msg[0])
    if not messages:
        lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
        messages = lines[:1] or [type(error).__name__]
    return "; ".join(messages[:5])


def to_tflite(
    model,
    path=None,
    quantize=None,
    representative_data=None,
    allow_flex=False,
    *,
    batch_size=None,
    input_signature=None,
    calibration_samples=_DEFAULT_CALIBRATION_SAMPLES,
):
    """Convert ``model`` to a TFLite (LiteRT) flatbuffer with ``tf.lite.TFLiteConverter``.

    The model is exported to a temporary inference SavedModel and converted from its
    ``serving_default`` signature (see the module docstring for why). Only TFLite builtin ops
    are allowed unless ``allow_flex=True``. The batch dimension stays dynamic unless
    ``batch_size`` is given.

    Quantization:

    - ``None`` / ``"none"``: float32 weights and activations.
    - ``"float16"``: float16 weights (half the size), float32 inputs and outputs.
    - ``"dynamic"``: dynamic-range quantization, int8 weights, float32 inputs and outputs.
    - ``"int8"``: full integer quantization (``TFLITE_BUILTINS_INT8``) with int8 inputs and
      outputs; needs ``representative_data`` to calibrate activation ranges. Run the result
      with ``TFLiteRunner``, which quantizes float inputs and dequantizes outputs.

    Args:
        model: a built ``keras.Model``.
        path: optional destination file; written atomically.
        quantize: one of ``QUANTIZE_OPTIONS``.
        representative_data: for ``quantize="int8"`` only: an array of input samples (the first
            axis counts samples), a list or dict of such arrays for several inputs, an iterable
            of input batches, or a ``tf.data.Dataset`` of input batches (``(inputs, targets)``
            elements are accepted; targets are dropped). Use real, preprocessed inputs.
        allow_flex: also allow TensorFlow ops through the Flex delegate (``SELECT_TF_OPS``).
            The result then needs a runtime linked with Flex; ``ai_edge_litert`` cannot run it.
        batch_size: ``None`` (default) keeps the batch axis dynamic; an int fixes it.
        input_signature: optional list of ``tf.TensorSpec`` structures, for subclassed models.
        calibration_samples: at most this many samples of ``representative_data`` are used.

    Returns:
        The flatbuffer as ``bytes``.

    Raises:
        ValueError: for a bad argument (naming it, the value received and what is allowed),
            e.g. an unknown ``quantize``, ``"int8"`` without ``representative_data``, or data
            whose shapes do not fit the model.
        UnsupportedOpsError: (a ``ValueError``) when the conversion needs ops that are not
            builtins; the message names them.
        TFLiteConversionError: when the converter fails for another reason.

    Example:
        >>> flatbuffer = to_tflite(model, "model.tflite")
        >>> to_tflite(model, "model_int8.tflite", quantize="int8", representative_data=x_train[:200])
    """
    quantize = _check_quantize(quantize)
    if path is not None:
        path = _fspath(path)
    if not isinstance(allow_flex, bool):
        raise ValueError(f"allow_flex={allow_flex!r} is not allowed; expected True or False.")
    if quantize == "int8" and representative_data is None:
        raise ValueError(
            "representative_data=None is not allowed with quantize='int8'; full integer "
            "quantization needs input samples to calibrate activation ranges (an array, an "
            "iterable of batches or a tf.data.Dataset)."
        )
    if quantize != "int8" and representative_data is not None:
        raise ValueError(
            f"representative_data is only used with quantize='int8'; received quantize={quantize!r}."
        )
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(
            f"batch_size={batch_size!r} is not allowed; expected None (dynamic) or an int >= 1."
        )
    if isinstance(calibration_samples, bool) or not isinstance(calibration_samples, int) or (
        calibration_samples < 1
    ):
        raise ValueError(
            f"calibration_samples={calibration_samples!r} is not allowed; expected an int >= 1."
        )
    _check_model(model)

    import tensorflow as tf

    signature = _serving_signature(model, batch_size, input_signature)
    samples = None
    if quantize == "int8":
        samples = _calibration_samples(model, signature, representative_data, calibration_samples)

    with tempfile.TemporaryDirectory(prefix="kapps-tflite-") as tmp:
        _write_saved_model(model, tmp, signature)
        names = [spec[0] for spec in _input_specs_flat(signature)]
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[_SERVING_KEY])
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if quantize == "int8" else tf.lite.OpsSet.TFLITE_BUILTINS]
        if allow_flex:
            ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
        converter.target_spec.supported_ops = ops
        if quantize is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8

            def representative_dataset():
                for sample in samples:
                    # keyed by signature input name: TFLite orders inputs by name, not model order
                    yield dict(zip(names, sample))

            converter.representative_dataset = representative_dataset
        flatbuffer = _convert(converter, allow_flex)
    if path is not None:
        _atomic_write_bytes(path, flatbuffer)
    return flatbuffer


def _convert(converter, allow_flex):
    """Run ``converter``; unsupported ops and other converter failures become kapps errors."""
    try:
        with warnings.catch_warnings():
            # int8 calibration uses the deprecated tf.lite.Interpreter internally
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
            flatbuffer = converter.convert()
    except Exception as error:  # ConverterError lives in a private module
        if type(error).__name__ != "ConverterError":
            raise
        flex, custom = _parse_converter_error(error)
        if custom or (flex and not allow_flex):
            raise UnsupportedOpsError(flex if not allow_flex else (), custom) from error
        raise TFLiteConversionError(
            f"TFLite conversion failed: {_short_converter_message(error)}"
        ) from error
    return bytes(flatbuffer)


def translator_to_tflite(model, path=None, *, source_length, max_length, start_id, end_id,
                         pad_id=0):
    """Convert a sequence-to-sequence model's greedy translation to TFLite, builtin ops only.

    The encoder and the whole greedy decoding loop are one graph (a ``WHILE`` op around the
    decoder step, ``kapps.models.sequence.search.greedy_function``): token ids in, token ids
    out. Tokenization stays outside (ship the SentencePiece model beside the file).

    Args:
        model: a ``seq2seq_attention`` or ``transformer`` model (or a decoder object).
        path: optional destination file, written atomically.
        source_length: the fixed source length; pad source ids with ``pad_id`` to it.
        max_length: target tokens produced at most.
        start_id, end_id, pad_id: the special tokens.

    Returns:
        The flatbuffer. Its signature takes ``source_ids`` ``int32 (1, source_length)`` and
        returns ``target_ids`` ``int32 (1, max_length)``: the Keras greedy decode's ids.

    Raises:
        UnsupportedOpsError: if some op of the decoding graph is not a TFLite builtin.

    Example:
        >>> translator_to_tflite(model, "translator.tflite", source_length=32, max_length=40,
        ...                      start_id=2, end_id=3)
        >>> ids = load_tflite("translator.tflite")(source_ids)
    """
    import tensorflow as tf

    from kapps.models.sequence.search import greedy_function

    function = greedy_function(
        model, source_length, max_length, start_id=start_id, end_id=end_id, pad_id=pad_id
    )
    spec = tf.TensorSpec((1, source_length), tf.int32, name="source_ids")
    flatbuffer = _loop_to_tflite(function, [spec], "target_ids", (1, max_length))
    if path is not None:
        _atomic_write_bytes(_fspath(path), flatbuffer)
    return flatbuffer


def _loop_to_tflite(function, input_specs, output_name, output_shape):
    """Convert a ``tf.function`` holding a decoding loop to builtin-only TFLite.

    Weights read inside a ``WHILE`` body stay variables (READ_VARIABLE ops that fail at run
    time) unless the graph is frozen first; the frozen function is then wrapped again so the
    signature keeps the names of ``input_specs`` and ``output_name``.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    frozen = convert_variables_to_constants_v2(
        function.get_concrete_function(), lower_control_flow=False
    )

    @tf.function(input_signature=list(input_specs))
    def run(*inputs):
        outputs = frozen(*inputs)
        outputs = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        return {output_name: tf.ensure_shape(outputs, output_shape)}

    holder = tf.Module()
    holder.run = run
    with tempfile.TemporaryDirectory(prefix="kapps-loop-") as tmp:
        tf.saved_model.save(holder, tmp, signatures={_SERVING_KEY: run.get_concrete_function()})
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[_SERVING_KEY])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return _convert(converter, allow_flex=False)


def generator_to_tflite(model, path=None, *, max_length, stop_token_id=None, pad_id=0):
    """Convert a GPT's greedy generation to TFLite, builtin ops only.

    The prefill, the key/value cache (a fixed-size buffer per block) and the whole greedy
    loop are one graph (``kapps.models.language.generation.greedy_function``): prompt ids in,
    prompt plus generated ids out. An app tokenizes, calls it once, and detokenizes.

    Args:
        model: a kapps GPT (``kapps.models.language.gpt``).
        path: optional destination file, written atomically.
        max_length: total tokens, prompt included.
        stop_token_id: optional id that ends generation (later slots get ``pad_id``).
        pad_id: the padding id.

    Returns:
        The flatbuffer. Its signature takes ``prompt_ids`` ``int32 (1, max_length)`` (the
        prompt, padded) and ``prompt_length`` ``int32 (1,)`` and returns ``token_ids``
        ``int32 (1, max_length)``: the same tokens as Keras greedy generation.

    Raises:
        UnsupportedOpsError: if some op of the generation graph is not a TFLite builtin.

    Example:
        >>> generator_to_tflite(model, "generator.tflite", max_length=256)
        >>> runner = load_tflite("generator.tflite")
        >>> ids = runner.run({"prompt_ids": padded, "prompt_length": np.array([n], "int32")})
    """
    import tensorflow as tf

    from kapps.models.language.generation import greedy_function

    function = greedy_function(model, max_length, stop_token_id=stop_token_id, pad_id=pad_id)
    specs = [
        tf.TensorSpec((1, max_length), tf.int32, name="prompt_ids"),
        tf.TensorSpec((1,), tf.int32, name="prompt_length"),
    ]
    flatbuffer = _loop_to_tflite(function, specs, "token_ids", (1, max_length))
    if path is not None:
        _atomic_write_bytes(_fspath(path), flatbuffer)
    return flatbuffer


# --------------------------------------------------------------------------------------------
# Running TFLite files
# --------------------------------------------------------------------------------------------


def _quantization(detail):
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), dtype=np.float64)
    zeros = np.asarray(params.get("zero_points", []), dtype=np.int64)
    if scales.size == 0:
        scale, zero = detail.get("quantization", (0.0, 0))
        if not scale:
            return None
        return float(scale), int(zero)
    if scales.size == 1:
        return float(scales[0]), int(zeros[0]) if zeros.size else 0
    return None  # per-axis quantization of an I/O tensor is not used for model inputs/outputs


def _public_detail(name, detail):
    dtype = np.dtype(detail["dtype"])
    shape_sig = detail.get("shape_signature")
    if shape_sig is None or len(shape_sig) == 0:
        shape_sig = detail["shape"]
    return {
        "name": name,
        "shape": tuple(None if int(d) < 0 else int(d) for d in shape_sig),
        "dtype": dtype,
        "quantization": _quantization(detail) if dtype.kind in "iu" else None,
        "index": int(detail["index"]),
    }


class TFLiteRunner:
    """Run a TFLite (LiteRT) model with ``ai_edge_litert.interpreter.Interpreter``.

    Inputs may have any batch size: the input tensors are resized on each call (a model whose
    batch axis is fixed to 1 is run one example at a time). Float inputs of int8/uint8/int16
    input tensors are quantized with the tensor's scale and zero point, and quantized outputs
    are dequantized, so an int8 model is called exactly like the float one.

    Inputs are matched by name when given as keywords or a dict, otherwise positionally in the
    order of ``input_names`` (sorted by name, as TFLite orders a signature's inputs; pass
    ``input_names`` to choose another order). Outputs come back as one array for a single
    output, else a list in the order of ``output_names``: ``output_0``, ``output_1``, ... for a
    model returning a list (the model's order), the sorted keys for a model returning a dict.
    ``run`` returns a dict by name.

    Not thread-safe: use one runner per thread.

    Args:
        model: path of a ``.tflite`` file, or the flatbuffer as ``bytes``.
        input_names: optional order of the inputs for positional calls.
        num_threads: optional number of CPU threads for the interpreter.

    Attributes:
        input_details: list of dicts ``name``, ``shape`` (``None`` for dynamic axes),
            ``dtype`` (numpy), ``quantization`` (``(scale, zero_point)`` or ``None``), ``index``.
        output_details: the same for outputs.
        input_names, output_names: names in call and return order.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if the file or bytes are not a TFLite model, or ``input_names`` does not
            name the model's inputs.

    Example:
        >>> runner = TFLiteRunner("model.tflite")
        >>> probs = runner(images)            # (batch, classes), any batch size
        >>> runner.input_details[0]["shape"]  # (None, 32, 32, 1)
    """

    def __init__(self, model, input_names=None, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        if isinstance(model, (bytes, bytearray, memoryview)):
            kwargs = {"model_content": bytes(model)}
            self.source = "<bytes>"
        else:
            path = _fspath(model, "model")
            if not os.path.isfile(path):
                raise FileNotFoundError(f"TFLite model file not found: {path}")
            kwargs = {"model_path": path}
            self.source = path
        try:
            self._interpreter = Interpreter(num_threads=num_threads, **kwargs)
        except (ValueError, RuntimeError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"{self.source} is not a valid TFLite model: {first}") from error

        signatures = self._interpreter.get_signature_list()
        self._signature = None
        if signatures:
            key = _SERVING_KEY if _SERVING_KEY in signatures else sorted(signatures)[0]
            self._signature = self._interpreter.get_signature_runner(key)
            ins = self._signature.get_input_details()
            outs = self._signature.get_output_details()
            in_list = [_public_detail(n, d) for n, d in ins.items()]
            out_list = [_public_detail(n, d) for n, d in outs.items()]
        else:
            in_list = [_public_detail(d["name"], d) for d in self._interpreter.get_input_details()]
            out_list = [_public_detail(d["name"], d) for d in self._interpreter.get_output_details()]
            self._interpreter.allocate_tensors()
        if self._signature is not None:
            # signature inputs are named after the Keras inputs; outputs are output_0, output_1,
            # ... (list outputs) or the dict keys: sorting gives the model's output order
            in_list.sort(key=lambda d: _natural_key(d["name"]))
            out_list.sort(key=lambda d: _natural_key(d["name"]))
        if input_names is not None:
            input_names = list(input_names)
            by_name = {d["name"]: d for d in in_list}
            if sorted(input_names) != sorted(by_name):
                raise ValueError(
                    f"input_names={input_names!r} is not allowed; expected an ordering of "
                    f"{sorted(by_name)}."
                )
            in_list = [by_name[n] for n in input_names]
        self.input_details = in_list
        self.output_details = out_list
        self.input_names = [d["name"] for d in in_list]
        self.output_names = [d["name"] for d in out_list]

    def __repr__(self):
        ins = ", ".join(f"{d['name']}: {d['shape']} {d['dtype'].name}" for d in self.input_details)
        return f"TFLiteRunner({self.source!r}, inputs=[{ins}])"

    # -- input / output conversion ---------------------------------------------------------

    @staticmethod
    def _to_tensor(value, detail):
        value = np.asarray(value)
        dtype = detail["dtype"]
        quant = detail["quantization"]
        if quant is not None and value.dtype.kind == "f":
            scale, zero = quant
            info = np.iinfo(dtype)
            value = np.clip(np.round(value / scale + zero), info.min, info.max)
        return np.ascontiguousarray(value.astype(dtype, copy=False))

    @staticmethod
    def _from_tensor(value, detail):
        quant = detail["quantization"]
        if quant is not None:
            scale, zero = quant
            return ((value.astype(np.float32) - zero) * scale).astype(np.float32)
        return np.array(value)

    def _named(self, inputs, named):
        if named:
            if inputs:
                raise ValueError("pass inputs either positionally or by name, not both.")
            values = dict(named)
        elif len(inputs) == 1 and isinstance(inputs[0], dict):
            values = dict(inputs[0])
        else:
            if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)) and len(self.input_names) > 1:
                inputs = tuple(inputs[0])
            if len(inputs) != len(self.input_names):
                raise ValueError(
                    f"the model has {len(self.input_names)} input(s) {self.input_names}; "
                    f"received {len(inputs)}."
                )
            values = dict(zip(self.input_names, inputs))
        if sorted(values) != sorted(self.input_names):
            raise ValueError(
                f"inputs named {sorted(values)} do not match the model's inputs {self.input_names}."
            )
        return values

    def run(self, inputs):
        """Run on a dict ``{input name: array}``; returns ``{output name: array}``."""
        values = self._named((), inputs)
        details = {d["name"]: d for d in self.input_details}
        arrays = {}
        for name, value in values.items():
            detail = details[name]
            value = np.asarray(value)
            if value.ndim != len(detail["shape"]):
                raise ValueError(
                    f"input {name!r} expects {len(detail['shape'])} axes {detail['shape']}; "
                    f"received shape {value.shape}."
                )
            arrays[name] = value
        batches = {a.shape[0] for a in arrays.values() if a.ndim}
        fixed_one = any(
            d["shape"] and d["shape"][0] == 1 for d in self.input_details
        )
        if fixed_one and batches and max(batches) > 1 and len(batches) == 1:
            # batch axis fixed to 1 in the graph: run example by example
            n = batches.pop()
            parts = [self._invoke({k: v[i : i + 1] for k, v in arrays.items()}) for i in range(n)]
            return {k: np.concatenate([p[k] for p in parts]) for k in self.output_names}
        return self._invoke(arrays)

    def _invoke(self, arrays):
        details = {d["name"]: d for d in self.input_details}
        tensors = {n: self._to_tensor(v, details[n]) for n, v in arrays.items()}
        try:
            if self._signature is not None:
                raw = self._signature(**tensors)
            else:
                interp = self._interpreter
                for name, value in tensors.items():
                    interp.resize_tensor_input(details[name]["index"], value.shape)
                interp.allocate_tensors()
                for name, value in tensors.items():
                    interp.set_tensor(details[name]["index"], value)
                interp.invoke()
                raw = {d["name"]: interp.get_tensor(d["index"]) for d in self.output_details}
        except RuntimeError as error:
            if "Select TensorFlow op" in str(error) or "Flex" in str(error):
                raise RuntimeError(
                    f"{self.source} contains Flex (SELECT_TF_OPS) ops, which the ai_edge_litert "
                    f"interpreter cannot run; convert without allow_flex or run it with a "
                    f"runtime linked with the Flex delegate."
                ) from error
            raise
        out = {d["name"]: self._from_tensor(raw[d["name"]], d) for d in self.output_details}
        return out

    def __call__(self, *inputs, **named_inputs):
        """Run the model; returns one array, or a list in output order for several outputs."""
        out = self.run(self._named(inputs, named_inputs))
        arrays = [out[n] for n in self.output_names]
        return arrays[0] if len(arrays) == 1 else arrays


def load_tflite(model, input_names=None, num_threads=None):
    """A ``TFLiteRunner`` for a ``.tflite`` path or flatbuffer bytes (see ``TFLiteRunner``).

    Example:
        >>> probs = load_tflite("model.tflite")(images)
    """
    return TFLiteRunner(model, input_names=input_names, num_threads=num_threads)


# --------------------------------------------------------------------------------------------
# Parity and the one-call export used by recipes
# --------------------------------------------------------------------------------------------


def _keras_outputs(model, inputs, names=None):
    """Keras outputs as a list of numpy arrays: in ``names`` order when the model returns a
    dict with exactly those keys, else in flat (``keras.tree.flatten``) order."""
    import keras

    outputs = model(inputs, training=False)
    if isinstance(outputs, dict) and names is not None and sorted(outputs) == sorted(names):
        outputs = [outputs[n] for n in names]
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in keras.tree.flatten(outputs)]


def _named_inputs_for(model, inputs, runner):
    """Map ``inputs`` (the structure the Keras model takes) to the runner's input names."""
    import keras

    try:
        structure = model.input
    except (AttributeError, ValueError):
        structure = None
    if isinstance(inputs, dict) and sorted(inputs) == sorted(runner.input_names):
        return dict(inputs)  # already keyed by input name
    flat_values = [inputs] if _is_array(inputs) else keras.tree.flatten(inputs)
    if structure is not None:
        names = [t.name for t in keras.tree.flatten(structure)]
        if sorted(names) == sorted(runner.input_names) and len(names) == len(flat_values):
            return dict(zip(names, flat_values))
    if len(flat_values) != len(runner.input_names):
        raise ValueError(
            f"inputs hold {len(flat_values)} array(s) but the TFLite model has "
            f"{len(runner.input_names)} input(s) {runner.input_names}."
        )
    return dict(zip(runner.input_names, flat_values))


def _as_runner(tflite):
    return tflite if isinstance(tflite, TFLiteRunner) else TFLiteRunner(tflite)


def tflite_parity(model, tflite, inputs):
    """The largest absolute difference between Keras and LiteRT outputs on ``inputs``.

    Both models are run on the same inputs (Keras with ``training=False``); every output is
    compared and the maximum over all elements of all outputs is returned. Quantized TFLite
    outputs are dequantized first.

    Args:
        model: the ``keras.Model``.
        tflite: a ``.tflite`` path, flatbuffer bytes or a ``TFLiteRunner``.
        inputs: inputs in the structure the Keras model takes (an array, a list or a dict).

    Returns:
        The largest absolute difference, a Python float (``inf`` for NaN mismatches).

    Raises:
        ValueError: if the two models' inputs or outputs do not correspond.

    Example:
        >>> err = tflite_parity(model, to_tflite(model), x_test[:8])
        >>> assert err <= 1e-4
    """
    runner = _as_runner(tflite)
    expected = _keras_outputs(model, inputs, runner.output_names)
    got = runner.run(_named_inputs_for(model, inputs, runner))
    got = [got[n] for n in runner.output_names]
    if len(expected) != len(got):
        raise ValueError(
            f"the Keras model has {len(expected)} output(s) but the TFLite model has {len(got)}."
        )
    worst = 0.0
    for i, (e, g) in enumerate(zip(expected, got)):
        if e.shape != g.shape:
            raise ValueError(
                f"output {i} has shape {e.shape} in Keras but {g.shape} in TFLite."
            )
        if e.size == 0:
            continue
        diff = np.abs(e.astype(np.float64) - g.astype(np.float64))
        if np.isnan(diff).any():
            both_nan = np.isnan(e.astype(np.float64)) & np.isnan(g.astype(np.float64))
            if (np.isnan(diff) & ~both_nan).any():
                return float("inf")
            diff = np.where(both_nan, 0.0, diff)
        worst = max(worst, float(diff.max()))
    return worst


def _random_inputs(model, batch_size=2, seed=0):
    """Random inputs in the model's input structure: floats in [0, 1), integers in {0, 1};
    unknown non-batch axes get length 8."""
    import keras

    rng = np.random.default_rng(seed)

    def make(spec):
        shape = (batch_size,) + tuple(d if d is not None else 8 for d in spec.shape[1:])
        dtype = np.dtype(spec.dtype.as_numpy_dtype)
        if dtype.kind in "iub":
            return rng.integers(0, 2, size=shape).astype(dtype)
        return rng.random(shape, dtype=np.float32).astype(dtype)

    signature = _serving_signature(model)
    if len(signature) != 1:
        raise ValueError(
            f"model {model.name!r} takes {len(signature)} positional arguments; pass sample_inputs."
        )
    return keras.tree.map_structure(make, signature[0])


def export_all(
    model,
    out_dir,
    *,
    representative_data=None,
    sample_inputs=None,
    tolerance=1e-4,
    allow_flex=False,
    saved_model=True,
):
    """Write ``model.keras``, ``saved_model/``, ``model.tflite`` (and ``model_int8.tflite``)
    into ``out_dir``, checking float32 TFLite parity.

    The float32 TFLite model is compared with Keras on ``sample_inputs`` (random inputs in
    [0, 1) when omitted) before it is written: if the largest absolute difference exceeds
    ``tolerance``, ``ParityError`` is raised and no ``model.tflite`` is written. With
    ``representative_data`` an int8 model is written too and its difference is reported (not
    enforced: int8 error depends on the data's range).

    Args:
        model: a built ``keras.Model``.
        out_dir: destination directory (created if needed).
        representative_data: calibration inputs for ``model_int8.tflite`` (see ``to_tflite``);
            omit to skip the int8 model.
        sample_inputs: inputs for the parity checks, in the structure the model takes.
        tolerance: largest accepted float32 Keras/TFLite absolute difference.
        allow_flex: passed to ``to_tflite``.
        saved_model: also write the SavedModel directory.

    Returns:
        A JSON-serialisable dict: for each of ``"keras"``, ``"saved_model"``, ``"tflite"``
        (and ``"tflite_int8"``) a dict with ``path`` and ``bytes``; the TFLite entries also
        have ``max_abs_diff``, and ``"tflite"`` has ``tolerance``.

    Raises:
        ParityError: if the float32 TFLite model differs from Keras by more than ``tolerance``.
        UnsupportedOpsError, TFLiteConversionError, ValueError: see ``to_tflite``.

    Example:
        >>> report = export_all(model, "saved_models/lenet5_mnist", representative_data=x_train[:200])
        >>> report["tflite"]["max_abs_diff"] <= 1e-4
        True
    """
    out_dir = _fspath(out_dir, "out_dir")
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not tolerance >= 0:
        raise ValueError(f"tolerance={tolerance!r} is not allowed; expected a number >= 0.")
    _check_model(model)
    os.makedirs(out_dir, exist_ok=True)
    if sample_inputs is None:
        sample_inputs = _random_inputs(model)
    report: dict[str, Any] = {}

    keras_path = save_keras(model, os.path.join(out_dir, "model.keras"))
    report["keras"] = {"path": keras_path, "bytes": _file_size(keras_path)}
    if saved_model:
        sm_path = export_saved_model(model, os.path.join(out_dir, "saved_model"))
        report["saved_model"] = {"path": sm_path, "bytes": _file_size(sm_path)}

    flatbuffer = to_tflite(model, allow_flex=allow_flex)
    error = tflite_parity(model, flatbuffer, sample_inputs)
    tflite_path = os.path.join(out_dir, "model.tflite")
    if not error <= tolerance:
        raise ParityError(
            f"the float32 TFLite model differs from Keras by {error:.3g} > tolerance "
            f"{tolerance:g}; {tflite_path} was not written.",
            error,
            tolerance,
        )
    _atomic_write_bytes(tflite_path, flatbuffer)
    report["tflite"] = {
        "path": tflite_path,
        "bytes": len(flatbuffer),
        "max_abs_diff": error,
        "tolerance": float(tolerance),
    }
    if representative_data is not None:
        int8_path = os.path.join(out_dir, "model_int8.tflite")
        int8 = to_tflite(
            model, int8_path, quantize="int8", representative_data=representative_data,
            allow_flex=allow_flex,
        )
        report["tflite_int8"] = {
            "path": int8_path,
            "bytes": len(int8),
            "max_abs_diff": tflite_parity(model, int8, sample_inputs),
        }
    return report
