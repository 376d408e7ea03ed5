"""The ``kapps`` command line.

Subcommands::

    kapps list [--task T] [--markdown]       registered models
    kapps info NAME                          what the registry knows about one model
    kapps export MODEL.keras --to tflite|saved_model [--quantize float16|dynamic|int8]
                 [--calibration-data PATH] [--out PATH] [--allow-flex]
    kapps predict MODEL IMAGE... [--top-k 5] [--labels FILE] [--scale 1/255]

``kapps --help``, ``list`` and ``info`` answer without importing TensorFlow: the heavy imports
happen inside the subcommands that need them. A missing or corrupt file and a bad argument
value print one line, ``kapps: error: ...``, on stderr and exit non-zero without a traceback
(``--debug`` shows the traceback and TensorFlow's own log output, which is otherwise kept off
the terminal while ``export`` and ``predict`` run).

Exit codes: 0 success, 1 a file or the model could not be used, 2 a bad command line
(unknown subcommand, option or model name, bad value).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import math
import os
import re
import sys
import tempfile
import zipfile

PROG = "kapps"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")
QUANTIZE_CHOICES = ("none", "float16", "dynamic", "int8")
PARITY_EXAMPLES = 4
FLOAT32_TOLERANCE = 1e-4


class CLIError(Exception):
    """An error shown as one line, ``kapps: error: <message>``, with ``exit_code``."""

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage block) and exit code 2."""

    def error(self, message):
        raise CLIError(f"{message} (see '{self.prog} --help')", exit_code=2)


def _one_line(text):
    return " ".join(str(text).split())


def _first_line(error):
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", str(error))  # TF op-error prefix
    text = re.sub(r"\s*\[Op:\w+\].*", "", text)  # ... and suffix
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(error).__name__


@contextlib.contextmanager
def _quiet(enabled=True):
    """Keep TensorFlow's and LiteRT's log output (C++ logs on file descriptor 2, Python
    warnings) off the terminal while heavy work runs; our own messages are printed after."""
    if not enabled:
        yield
        return
    with contextlib.ExitStack() as stack:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            saved = None
        if saved is not None:
            log = stack.enter_context(tempfile.TemporaryFile())
            os.dup2(log.fileno(), 2)

            def restore():
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)

            stack.callback(restore)
        stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        yield


def _require_file(path, what):
    if not os.path.exists(path):
        raise CLIError(f"{what} not found: {path}")
    if not os.path.isfile(path):
        raise CLIError(f"{what} is not a file: {path}")


def _format_bytes(n):
    return f"{n:,} bytes"


# --------------------------------------------------------------------------------------------
# list / info (no TensorFlow)
# --------------------------------------------------------------------------------------------


def _cmd_list(args):
    from kapps import registry

    if args.markdown:
        print(registry.markdown_table(args.task))
        return 0
    rows = [("name", "task", "family", "params")]
    for name in registry.list_models(args.task):
        info = registry.info(name)
        rows.append((name, info["task"], info["family"], f"{info['params']:,}"))
    if len(rows) == 1:
        print(f"no registered models for task {args.task!r}")
        return 0
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print(
            f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  "
            f"{row[3]:>{widths[3]}}"
        )
    return 0


_COUNT_KEYS = ("params", "trainable_params", "published_params", "flops")


def _cmd_info(args):
    from kapps import registry

    names = registry.list_models()
    if args.name not in names:
        close = difflib.get_close_matches(args.name.lower(), names, n=3, cutoff=0.4)
        hint = f"; close matches: {', '.join(close)}" if close else "; see 'kapps list'"
        raise CLIError(f"no registered model named {args.name!r}{hint}", exit_code=2)
    info = registry.info(args.name)
    if info.get("flops_input_shape") is None:
        info.pop("flops_input_shape", None)  # only sequence models count at a stated length
    if info.get("flops") is None:
        info["flops"] = "n/a (not counted through a recurrent loop)"
    width = max(len(k) for k in info)
    for key, value in info.items():
        if key in _COUNT_KEYS and isinstance(value, int):
            value = f"{value:,}"
        elif key == "input_shape" and None in value:
            value = "token ids of any length"
        elif key == "flops_input_shape":
            value = f"{value[0]} source and {value[0]} target tokens"
        elif isinstance(value, tuple):
            value = " x ".join(str(v) for v in value)
        print(f"{key + ':':<{width + 1}} {value}")
    return 0


# --------------------------------------------------------------------------------------------
# Shared helpers for export / predict (TensorFlow imported inside)
# --------------------------------------------------------------------------------------------


def _load_keras_model(path):
    _require_file(path, "model file")
    if not zipfile.is_zipfile(path):
        raise CLIError(f"cannot load Keras model {path}: not a .keras file (not a zip archive)")
    import keras

    with contextlib.suppress(ImportError):
        import kapps.layers  # noqa: F401  (registers kapps' serializable layers)
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # corrupt zip, missing config, unknown layer class, ...
        raise CLIError(f"cannot load Keras model {path}: {_one_line(_first_line(error))}") from error


def _load_image(path, height, width, channels, scale):
    """``(height, width, channels)`` float32 array: decoded, converted to ``channels`` (alpha
    dropped, gray <-> RGB), resized to ``height x width`` (``None`` keeps the image's size) and
    multiplied by ``scale``."""
    import tensorflow as tf

    _require_file(path, "image file")
    try:
        data = tf.io.read_file(path)
        image = tf.io.decode_image(data, channels=0, expand_animations=False)
    except (tf.errors.OpError, ValueError) as error:
        raise CLIError(f"cannot decode image {path}: {_one_line(_first_line(error))}") from error
    have = image.shape[-1]
    if have in (2, 4):  # drop alpha
        image = image[..., : have - 1]
        have -= 1
    if channels == 1 and have == 3:
        image = tf.image.rgb_to_grayscale(image)
    elif channels == 3 and have == 1:
        image = tf.image.grayscale_to_rgb(image)
    image = tf.cast(image, tf.float32)
    size = (height or image.shape[0], width or image.shape[1])
    if tuple(image.shape[:2]) != size:
        image = tf.image.resize(image, size, antialias=True)
    return (image * scale).numpy()


def _image_input(shape, what):
    """(height, width, channels) of a single image input of ``shape`` (batch first)."""
    if len(shape) != 4 or shape[-1] not in (1, 3):
        raise CLIError(
            f"{what} needs a model with one image input (batch, height, width, 1 or 3 "
            f"channels); this model's input has shape {tuple(shape)}"
        )
    return shape[1], shape[2], shape[3]


def _parse_scale(text):
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            value = float(num) / float(den)
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected a number or a fraction such as 1/255"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected a positive number")
    return value


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected an integer >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected an integer >= 1")
    return value


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------


def _default_out(model_path, to, quantize):
    stem = os.path.splitext(model_path)[0]
    if to == "saved_model":
        return stem + "_saved_model"
    return stem + ("" if quantize in (None, "none") else f"_{quantize}") + ".tflite"


def _calibration_data(path, model, limit, scale):
    """An array of input samples from a ``.npy`` file or a folder of images."""
    import numpy as np

    if len(model.inputs) != 1:
        raise CLIError(
            f"--calibration-data supports single-input models; this model has "
            f"{len(model.inputs)} inputs (use kapps.export.to_tflite from Python)"
        )
    shape = tuple(model.inputs[0].shape)
    if os.path.isdir(path):
        height, width, channels = _image_input(shape, "--calibration-data as a folder of images")
        files = sorted(
            f for f in os.listdir(path)
            if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(path, f))
        )
        if not files:
            raise CLIError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in calibration folder {path}"
            )
        if height is None or width is None:
            raise CLIError(
                "--calibration-data as a folder of images needs a model with a fixed input "
                f"height and width; this model's input has shape {shape} (use a .npy array)"
            )
        return np.stack(
            [_load_image(os.path.join(path, f), height, width, channels, scale) for f in files[:limit]]
        )
    _require_file(path, "calibration data")
    if not path.lower().endswith(".npy"):
        raise CLIError(f"calibration data must be a .npy file or a folder of images: {path}")
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise CLIError(f"cannot read calibration data {path}: not a .npy file")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as error:  # truncated, not an .npy file, pickled objects, ...
        raise CLIError(f"cannot read calibration data {path}: {_one_line(_first_line(error))}") from error
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise CLIError(f"calibration data {path} must hold a numeric array")
    fits = array.ndim == len(shape) and all(
        d is None or d == a for d, a in zip(shape[1:], array.shape[1:])
    )
    if not fits or array.shape[0] == 0:
        expected = ", ".join(str(d) for d in shape[1:])
        raise CLIError(
            f"calibration data {path} has shape {array.shape}; expected (samples, {expected}) "
            f"with at least one sample"
        )
    return array[:limit].astype("float32")


def _cmd_export(args):
    quantize = args.quantize
    if args.to == "saved_model" and quantize not in (None, "none"):
        raise CLIError("--quantize applies to --to tflite only", exit_code=2)
    if args.to == "saved_model" and args.allow_flex:
        raise CLIError("--allow-flex applies to --to tflite only", exit_code=2)
    if quantize == "int8" and args.calibration_data is None:
        raise CLIError(
            "--quantize int8 needs --calibration-data (a .npy array of input samples or a "
            "folder of images)",
            exit_code=2,
        )
    if quantize != "int8" and args.calibration_data is not None:
        raise CLIError("--calibration-data is only used with --quantize int8", exit_code=2)
    if not args.model.endswith(".keras"):
        raise CLIError(f"export reads a Keras model file ending in .keras; received {args.model}", 2)
    _require_file(args.model, "model file")
    if args.calibration_data is not None and not os.path.exists(args.calibration_data):
        raise CLIError(f"calibration data not found: {args.calibration_data}")
    out = args.out or _default_out(args.model, args.to, quantize)
    if os.path.abspath(out) == os.path.abspath(args.model):
        raise CLIError(f"--out {out} would overwrite the input model", exit_code=2)

    from kapps import export

    model = _load_keras_model(args.model)
    if args.to == "saved_model":
        export.export_saved_model(model, out)
        print(f"wrote {out}{os.sep} ({_format_bytes(export._file_size(out))}; SavedModel, "
              f"signature serving_default)")
        return 0

    calibration = None
    if quantize == "int8":
        calibration = _calibration_data(args.calibration_data, model, args.calibration_samples, args.scale)
    try:
        flatbuffer = export.to_tflite(
            model,
            out,
            quantize=quantize,
            representative_data=calibration,
            allow_flex=args.allow_flex,
            calibration_samples=args.calibration_samples,
        )
    except export.UnsupportedOpsError as error:
        raise CLIError(error.describe("--allow-flex")) from error
    kind = "float32" if quantize in (None, "none") else quantize
    ops = "builtin ops and Flex ops allowed" if args.allow_flex else "builtin ops only"
    print(f"wrote {out} ({_format_bytes(len(flatbuffer))}; {kind}, {ops})")
    if calibration is not None:
        inputs, source = calibration[:PARITY_EXAMPLES], "calibration inputs"
    else:
        inputs, source = export._random_inputs(model, batch_size=PARITY_EXAMPLES), "random inputs in [0, 1)"
    try:
        error = export.tflite_parity(model, flatbuffer, inputs)
    except RuntimeError as failure:  # e.g. Flex ops: ai_edge_litert cannot run them
        print(f"parity not checked: {_one_line(_first_line(failure))}")
    else:
        n = len(next(iter(inputs.values())) if isinstance(inputs, dict) else
                inputs[0] if isinstance(inputs, (list, tuple)) else inputs)
        note = ""
        if kind == "float32" and not error <= FLOAT32_TOLERANCE:
            note = f" (more than {FLOAT32_TOLERANCE:g}: check the model's ops)"
        print(f"max |Keras - TFLite| = {error:.3g} on {n} {source}{note}")
    return 0


# --------------------------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------------------------


class _KerasPredictor:
    def __init__(self, path):
        self.model = _load_keras_model(path)
        if len(self.model.inputs) != 1:
            raise CLIError(f"predict needs a model with one input; {path} has {len(self.model.inputs)}")
        self.input_shape = tuple(self.model.inputs[0].shape)
        self.outputs_probabilities = False  # decided from the values

    def __call__(self, batch):
        import keras

        outputs = keras.tree.flatten(self.model(batch, training=False))
        return [keras.ops.convert_to_numpy(o) for o in outputs]


class _TFLitePredictor:
    def __init__(self, path):
        from kapps import export

        _require_file(path, "model file")
        try:
            self.runner = export.TFLiteRunner(path)
        except ValueError as error:
            raise CLIError(_one_line(_first_line(error))) from error
        if len(self.runner.input_details) != 1:
            raise CLIError(
                f"predict needs a model with one input; {path} has {len(self.runner.input_details)}"
            )
        self.input_shape = self.runner.input_details[0]["shape"]
        # TFLite requires int8 softmax outputs to be quantized with scale 1/256 and zero point
        # -128; their dequantized rows need not sum to 1 exactly (tiny values round to 0)
        quantization = self.runner.output_details[0]["quantization"]
        self.outputs_probabilities = bool(
            quantization and abs(quantization[0] - 1 / 256) < 1e-9 and quantization[1] == -128
        )

    def __call__(self, batch):
        outputs = self.runner(batch)
        return outputs if isinstance(outputs, list) else [outputs]


def _probabilities(scores, known=False):
    """``scores`` if they are already probabilities (``known``, or every row is a
    distribution), else their softmax."""
    import numpy as np

    scores = np.asarray(scores, dtype=np.float64)
    if known or (
        scores.size
        and scores.min() >= -1e-6
        and scores.max() <= 1 + 1e-6
        and np.allclose(scores.sum(-1), 1.0, atol=2e-2)
    ):
        return scores
    shifted = np.exp(scores - scores.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def _read_labels(path):
    _require_file(path, "labels file")
    try:
        with open(path, encoding="utf-8") as f:
            labels = [line.strip() for line in f.read().splitlines()]
    except UnicodeDecodeError:
        raise CLIError(f"cannot read labels file {path}: not UTF-8 text") from None
    except OSError as error:
        raise CLIError(f"cannot read labels file {path}: {error.strerror or error}") from None
    while labels and not labels[-1]:
        labels.pop()
    if not labels:
        raise CLIError(f"labels file {path} is empty (expected one class name per line)")
    return labels


def _cmd_predict(args):
    if not args.model.endswith((".keras", ".tflite")):
        raise CLIError(f"predict reads a .keras or .tflite model; received {args.model}", 2)
    _require_file(args.model, "model file")
    for image in args.images:
        _require_file(image, "image file")
    labels = _read_labels(args.labels) if args.labels else None

    import numpy as np

    predictor = (_TFLitePredictor if args.model.endswith(".tflite") else _KerasPredictor)(args.model)
    height, width, channels = _image_input(predictor.input_shape, "predict")
    results = []
    for path in args.images:
        image = _load_image(path, height, width, channels, args.scale)
        outputs = predictor(image[None])
        if len(outputs) != 1 or outputs[0].ndim != 2:
            shapes = ", ".join(str(tuple(o.shape)) for o in outputs)
            raise CLIError(
                f"predict shows the top classes of a classifier (one output of shape "
                f"(batch, classes)); this model outputs {shapes}"
            )
        probs = _probabilities(outputs[0], predictor.outputs_probabilities)[0]
        if labels is not None and len(labels) != probs.shape[0]:
            raise CLIError(
                f"labels file {args.labels} has {len(labels)} name(s) but the model has "
                f"{probs.shape[0]} classes"
            )
        top = np.argsort(-probs, kind="stable")[: args.top_k]
        results.append((path, [(int(i), float(probs[i])) for i in top]))
    for path, top in results:
        print(path)
        for rank, (index, prob) in enumerate(top, 1):
            name = labels[index] if labels is not None else f"class {index}"
            print(f"  {rank}. {name}: {prob:.4f}")
    return 0


# --------------------------------------------------------------------------------------------
# The parser and main
# --------------------------------------------------------------------------------------------


def build_parser():
    """The ``argparse`` parser of the ``kapps`` command."""
    from kapps import __version__, registry

    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's default does not overwrite a `kapps --debug ...` given before it
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS,
        help="show tracebacks and TensorFlow's log output on errors",
    )
    parser = _Parser(
        prog=PROG,
        description="Classic deep-learning architectures for Keras 3: list, inspect, export "
        "and run models.",
    )
    parser.add_argument("--version", action="version", version=f"kapps {__version__}")
    parser.add_argument(
        "--debug", action="store_true",
        help="show tracebacks and TensorFlow's log output on errors",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("list", parents=[common], help="list the registered models",
                       description="List the registered models (name, task, family, parameters).")
    p.add_argument("--task", choices=registry.TASKS, help="only models of this task")
    p.add_argument("--markdown", action="store_true", help="print the README's markdown table")
    p.set_defaults(func=_cmd_list, heavy=False)

    p = sub.add_parser("info", parents=[common], help="describe one registered model",
                       description="Task, family, paper, input shape, parameter counts and "
                       "FLOPs of one registered model.")
    p.add_argument("name", metavar="NAME", help="registered model name, e.g. vgg16")
    p.set_defaults(func=_cmd_info, heavy=False)

    p = sub.add_parser(
        "export", parents=[common], help="export a .keras model to TFLite or SavedModel",
        description="Export a .keras model to TFLite (builtin ops only unless --allow-flex) or "
        "to a SavedModel directory. Prints what was written and, for TFLite, the largest "
        "difference from the Keras model on a few inputs.",
    )
    p.add_argument("model", metavar="MODEL.keras", help="the Keras model file")
    p.add_argument("--to", required=True, choices=("tflite", "saved_model"), help="output format")
    p.add_argument("--quantize", choices=QUANTIZE_CHOICES, default="none",
                   help="TFLite quantization (default: none, i.e. float32); int8 needs "
                   "--calibration-data")
    p.add_argument("--calibration-data", metavar="PATH",
                   help="int8 calibration inputs: a .npy array of input samples (used as is) or "
                   "a folder of images (resized to the model input, multiplied by --scale)")
    p.add_argument("--calibration-samples", type=_positive_int, default=100, metavar="N",
                   help="use at most N calibration samples (default: 100)")
    p.add_argument("--scale", type=_parse_scale, default=1 / 255, metavar="S",
                   help="factor applied to calibration image pixels (default: 1/255)")
    p.add_argument("--out", metavar="PATH",
                   help="output path (default: beside MODEL: NAME.tflite, NAME_<quantize>.tflite "
                   "or NAME_saved_model/)")
    p.add_argument("--allow-flex", action="store_true",
                   help="allow TensorFlow (Flex, SELECT_TF_OPS) ops; the app then needs the "
                   "Flex delegate")
    p.set_defaults(func=_cmd_export, heavy=True)

    p = sub.add_parser(
        "predict", parents=[common], help="top-k classes of images with a .keras or .tflite model",
        description="Classify images: each is converted to the model's channels, resized to its "
        "input size and multiplied by --scale, and the top-k classes are printed.",
    )
    p.add_argument("model", metavar="MODEL", help="a .keras or .tflite classifier")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="PNG, JPEG, GIF, BMP or WebP files")
    p.add_argument("--top-k", type=_positive_int, default=5, metavar="K",
                   help="number of classes to show (default: 5)")
    p.add_argument("--labels", metavar="FILE", help="class names, one per line")
    p.add_argument("--scale", type=_parse_scale, default=1 / 255, metavar="S",
                   help="factor applied to pixel values 0..255 (default: 1/255: kapps models "
                   "take images in [0, 1])")
    p.set_defaults(func=_cmd_predict, heavy=True)
    return parser


def _error(message):
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)


def main(argv=None) -> int:
    """Run the ``kapps`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit
    code (it does not call ``sys.exit``)."""
    parser = build_parser()
    debug = False
    try:
        args = parser.parse_args(argv)
        debug = getattr(args, "debug", False)
        if args.command is None:
            parser.print_help()
            return 2
        with _quiet(enabled=args.heavy and not debug):
            return int(args.func(args) or 0)
    except SystemExit as exit_:  # --help, --version
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except CLIError as error:
        if debug:
            raise
        _error(error.message)
        return error.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`kapps list | head`): stop quietly, as Unix tools do, and
        # keep Python from complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as error:  # noqa: BLE001  (one line instead of a traceback)
        if debug:
            raise
        _error(f"{_first_line(error)} ({type(error).__name__}; run with --debug for details)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
