"""Tests of the ``kapps`` command line: in-process through ``main([...])`` and as real
subprocesses. The models are small and built here, so these tests do not depend on
kapps.models."""

import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from kapps import cli, export, registry

REPO = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 16
CLASSES = ("cat", "dog", "bird", "fish")


@keras.saving.register_keras_serializable(package="kapps_test_cli")
class MatrixInverse(keras.layers.Layer):
    """tf.linalg.inv: the MatrixInverse op exists in TFLite only through Flex."""

    def call(self, x):
        return tf.linalg.inv(x)


def classifier(softmax=True):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(
        len(CLASSES),
        activation="softmax" if softmax else None,
        kernel_initializer=keras.initializers.RandomNormal(stddev=3.0, seed=1),
    )(x)
    return keras.Model(inputs, outputs, name="classifier")


def write_png(path, height, width, channels, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    path.write_bytes(tf.io.encode_png(pixels).numpy())
    return path


def preprocess(path):
    """What predict does for a 3-channel model: decode, to RGB, resize, scale to [0, 1]."""
    image = tf.io.decode_image(tf.io.read_file(str(path)), expand_animations=False)
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    image = image[..., :3]
    image = tf.image.resize(tf.cast(image, tf.float32), (IMAGE_SIZE, IMAGE_SIZE), antialias=True)
    return (image / 255.0).numpy()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    model = classifier()
    model.save(root / "classifier.keras")
    classifier(softmax=False).save(root / "logits.keras")
    export.to_tflite(model, root / "classifier.tflite")
    images = root / "images"
    images.mkdir()
    write_png(images / "gray.png", 20, 24, 1, seed=1)
    write_png(images / "rgba.png", 12, 12, 4, seed=2)
    write_png(images / "rgb.png", 32, 16, 3, seed=3)
    (root / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    np.save(root / "calibration.npy", np.random.default_rng(4).random((10, 16, 16, 3), dtype=np.float32))
    (root / "corrupt.keras").write_bytes(b"PK\x03\x04 this is not really a zip")
    (root / "corrupt.tflite").write_bytes(b"\x00" * 64)
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    (root / "labels.bin").write_bytes(b"\xff\xfe\x00\xd8 not utf-8")
    (root / "empty").mkdir()
    return {"root": root, "model": model}


def run_main(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, expected=None):
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("kapps: error: ")
    assert "Traceback" not in err
    if expected:
        assert re.search(expected, lines[0]), lines[0]


def subprocess_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


# --------------------------------------------------------------------------------------------
# list, info, --help: no TensorFlow
# --------------------------------------------------------------------------------------------


def test_help_list_info_do_not_import_tensorflow():
    code = (
        "import sys\n"
        "from kapps.cli import main\n"
        "codes = [main(['--help']), main(['list']), main(['info', 'vgg16']),"
        " main(['list', '--markdown']), main(['export', '--help'])]\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'ai_edge_litert') if m in sys.modules]\n"
        "print('CODES', codes, 'HEAVY', heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
        env=subprocess_env(), timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "CODES [0, 0, 0, 0, 0] HEAVY []" in result.stdout
    assert "usage: kapps" in result.stdout and "138,357,544" in result.stdout


def test_real_subprocess_info_and_error():
    result = subprocess.run(
        [sys.executable, "-m", "kapps.cli", "info", "vgg16"], capture_output=True, text=True,
        cwd=REPO, env=subprocess_env(), timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"params:\s+138,357,544", result.stdout)
    result = subprocess.run(
        [sys.executable, "-m", "kapps.cli", "info", "vgg61"], capture_output=True, text=True,
        cwd=REPO, env=subprocess_env(), timeout=120,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert_one_line_error(result.returncode, result.stderr, "vgg16")


def test_corrupt_image_in_a_real_subprocess_is_one_line(files):
    """TensorFlow's own log lines must not reach the terminal either."""
    root = files["root"]
    result = subprocess.run(
        [sys.executable, "-m", "kapps.cli", "predict", root / "classifier.keras", root / "corrupt.png"],
        capture_output=True, text=True, cwd=REPO, env=subprocess_env(), timeout=300,
    )
    assert_one_line_error(result.returncode, result.stderr, "cannot decode image .*corrupt.png")
    assert result.stdout == ""


def test_list(capsys):
    code, out, err = run_main(capsys, "list")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["name", "task", "family", "params"]
    names = [line.split()[0] for line in lines[1:]]
    assert names == registry.list_models()
    vgg16 = next(line for line in lines if line.startswith("vgg16 "))
    assert vgg16.split() == ["vgg16", "classification", "VGG", "138,357,544"]

    code, out, _ = run_main(capsys, "list", "--task", "classification", "--markdown")
    assert code == 0 and out == registry.markdown_table("classification") + "\n"


def test_info(capsys):
    code, out, err = run_main(capsys, "info", "vgg16")
    assert code == 0 and err == ""
    fields = dict(line.split(":", 1) for line in out.splitlines())
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    info = registry.info("vgg16")
    assert fields["params"] == "138,357,544" == f"{info['params']:,}"
    assert fields["published_params"] == "138,357,544"
    assert fields["task"] == "classification" and fields["family"] == "VGG"
    assert fields["flops"] == f"{info['flops']:,}"
    assert fields["input_shape"] == "224 x 224 x 3"
    assert "flops_input_shape" not in fields


def test_info_of_sequence_models(capsys):
    code, out, _ = run_main(capsys, "info", "transformer_base")
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in out.splitlines())}
    assert code == 0 and fields["params"] == "63,082,496"
    assert fields["input_shape"] == "token ids of any length"
    assert fields["flops_input_shape"] == "32 source and 32 target tokens"
    code, out, _ = run_main(capsys, "info", "seq2seq_attention")
    assert code == 0 and "n/a (not counted through a recurrent loop)" in out


def test_info_unknown_name(capsys):
    code, out, err = run_main(capsys, "info", "vgg61")
    assert code == 2 and out == ""
    assert_one_line_error(code, err, r"'vgg61'.*vgg16")


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["frobnicate"], "invalid choice"),
        (["list", "--task", "cooking"], "--task"),
        (["info"], "NAME"),
        (["export", "{root}/classifier.keras", "--to", "onnx"], "--to"),
        (["export", "{root}/classifier.keras", "--to", "tflite", "--quantize", "int4"], "--quantize"),
        (["export", "{root}/classifier.keras", "--to", "tflite", "--quantize", "int8"], "--calibration-data"),
        (["export", "{root}/classifier.keras", "--to", "saved_model", "--quantize", "float16"], "--quantize"),
        (["export", "{root}/classifier.keras", "--to", "tflite", "--calibration-data", "{root}/calibration.npy"], "int8"),
        (["export", "{root}/classifier.tflite", "--to", "tflite"], r"\.keras"),
        (["export", "{root}/classifier.keras", "--to", "tflite", "--out", "{root}/classifier.keras"], "overwrite"),
        (["predict", "{root}/classifier.keras", "{root}/images/gray.png", "--top-k", "0"], "--top-k"),
        (["predict", "{root}/classifier.keras", "{root}/images/gray.png", "--scale", "1/0"], "--scale"),
        (["predict", "{root}/classifier.keras"], "IMAGE"),
        (["predict", "{root}/labels.txt", "{root}/images/gray.png"], r"\.keras or \.tflite"),
    ],
)
def test_bad_arguments_are_one_line(capsys, files, argv, expected):
    argv = [a.format(root=files["root"]) for a in argv]
    code, out, err = run_main(capsys, *argv)
    assert code == 2 and out == ""
    assert_one_line_error(code, err, expected)


def test_help_exits_zero(capsys):
    code, out, _ = run_main(capsys, "predict", "--help")
    assert code == 0 and "--top-k" in out and "--labels" in out


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------


def test_export_tflite_round_trip(capsys, files, tmp_path):
    source = tmp_path / "model.keras"
    files["model"].save(source)
    code, out, err = run_main(capsys, "export", source, "--to", "tflite")
    assert code == 0, err
    written = tmp_path / "model.tflite"  # default: beside the input
    assert f"wrote {written} ({written.stat().st_size:,} bytes; float32" in out
    parity = float(re.search(r"max \|Keras - TFLite\| = (\S+)", out).group(1))
    assert parity <= 1e-4
    x = np.random.default_rng(0).random((2, 16, 16, 3), dtype=np.float32)
    assert export.tflite_parity(files["model"], written, x) <= 1e-4


def test_export_saved_model_round_trip(capsys, files, tmp_path):
    out_dir = tmp_path / "exported"
    code, out, err = run_main(
        capsys, "export", files["root"] / "classifier.keras", "--to", "saved_model", "--out", out_dir
    )
    assert code == 0, err
    assert f"wrote {out_dir}{os.sep}" in out and "serving_default" in out
    reloaded = tf.saved_model.load(str(out_dir))
    x = np.random.default_rng(0).random((2, 16, 16, 3), dtype=np.float32)
    (y,) = reloaded.signatures["serving_default"](image=tf.constant(x)).values()
    np.testing.assert_allclose(y.numpy(), files["model"].predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("calibration", ["images", "calibration.npy"])
def test_export_int8_with_calibration_data(capsys, files, tmp_path, calibration):
    source = tmp_path / "net.keras"
    files["model"].save(source)
    code, out, err = run_main(
        capsys, "export", source, "--to", "tflite", "--quantize", "int8",
        "--calibration-data", files["root"] / calibration,
    )
    assert code == 0, err
    written = tmp_path / "net_int8.tflite"
    assert f"wrote {written}" in out and "int8" in out
    assert re.search(r"max \|Keras - TFLite\| = \S+ on \d+ calibration inputs", out)
    runner = export.TFLiteRunner(written)
    assert runner.input_details[0]["dtype"] == np.int8
    assert runner.output_details[0]["dtype"] == np.int8


def test_export_flex_needs_opt_in(capsys, tmp_path):
    inputs = keras.Input((3, 3), name="matrix")
    model = keras.Model(inputs, keras.layers.Flatten()(MatrixInverse()(inputs)))
    source = tmp_path / "flex.keras"
    model.save(source)
    code, out, err = run_main(capsys, "export", source, "--to", "tflite")
    assert_one_line_error(code, err, r"MatrixInverse.*--allow-flex")
    assert not (tmp_path / "flex.tflite").exists()
    code, out, err = run_main(capsys, "export", source, "--to", "tflite", "--allow-flex")
    assert code == 0, err
    assert (tmp_path / "flex.tflite").exists()
    assert "Flex" in out and "parity not checked" in out


# --------------------------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------------------------


def parse_predictions(out):
    """{image path: [(label, probability), ...]} from predict's output."""
    result, current = {}, None
    for line in out.splitlines():
        match = re.match(r"\s+\d+\. (.+): ([0-9.]+)$", line)
        if match:
            result[current].append((match.group(1), float(match.group(2))))
        else:
            current = line
            result[current] = []
    return result


@pytest.mark.parametrize("model_file", ["classifier.keras", "classifier.tflite"])
def test_predict_top_k(capsys, files, model_file):
    root = files["root"]
    images = [root / "images" / n for n in ("gray.png", "rgba.png", "rgb.png")]
    code, out, err = run_main(
        capsys, "predict", root / model_file, *images, "--top-k", "2", "--labels", root / "labels.txt"
    )
    assert code == 0, err
    predictions = parse_predictions(out)
    assert list(predictions) == [str(p) for p in images]
    expected = files["model"].predict(np.stack([preprocess(p) for p in images]), verbose=0)
    for path, row in zip(images, expected):
        top = predictions[str(path)]
        assert len(top) == 2
        assert top[0][0] == CLASSES[int(row.argmax())]
        assert top[0][1] == pytest.approx(float(row.max()), abs=1e-3)
        assert top[0][1] >= top[1][1]


def test_predict_applies_softmax_to_logits_only(capsys, files):
    root = files["root"]
    image = root / "images" / "rgb.png"
    code, out, err = run_main(capsys, "predict", root / "logits.keras", image, "--top-k", "4")
    assert code == 0, err
    (top,) = parse_predictions(out).values()
    assert [label for label, _ in top][0].startswith("class ")
    assert sum(p for _, p in top) == pytest.approx(1.0, abs=1e-3)
    logits = keras.saving.load_model(root / "logits.keras").predict(preprocess(image)[None], verbose=0)[0]
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert top[0][1] == pytest.approx(float(softmax.max()), abs=1e-3)


def test_probabilities_are_not_softmaxed_twice():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), size=2)
    np.testing.assert_allclose(cli._probabilities(probs), probs)
    quantized = np.round(rng.dirichlet(np.ones(1000))[None] * 256) / 256  # int8 softmax output
    np.testing.assert_array_equal(cli._probabilities(quantized, known=True), quantized)
    logits = rng.normal(size=(2, 10)) * 3
    softmax = cli._probabilities(logits)
    np.testing.assert_allclose(softmax.sum(-1), 1.0)
    assert (softmax.argmax(-1) == logits.argmax(-1)).all()


def test_predict_with_an_int8_tflite_model(capsys, files, tmp_path):
    root = files["root"]
    path = tmp_path / "int8.tflite"
    calibration = np.stack([preprocess(p) for p in sorted((root / "images").iterdir())])
    export.to_tflite(files["model"], path, quantize="int8", representative_data=calibration)
    image = root / "images" / "rgb.png"
    code, out, err = run_main(capsys, "predict", path, image, "--top-k", "4")
    assert code == 0, err
    (top,) = parse_predictions(out).values()
    expected = files["model"].predict(preprocess(image)[None], verbose=0)[0]
    # probabilities shown as the int8 model computes them (not softmaxed a second time)
    assert top[0][1] == pytest.approx(float(expected.max()), abs=0.05)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["predict", "{root}/missing.keras", "{root}/images/gray.png"], "model file not found"),
        (["predict", "{root}/corrupt.keras", "{root}/images/gray.png"], "cannot load Keras model"),
        (["predict", "{root}/corrupt.tflite", "{root}/images/gray.png"], "not a valid TFLite model"),
        (["predict", "{root}/classifier.keras", "{root}/images/missing.png"], "image file not found"),
        (["predict", "{root}/classifier.tflite", "{root}/corrupt.png"], "cannot decode image"),
        (["predict", "{root}/classifier.keras", "{root}/images"], "not a file"),
        (["predict", "{root}/classifier.keras", "{root}/images/gray.png", "--labels", "{root}/missing.txt"], "labels file not found"),
        (["predict", "{root}/classifier.keras", "{root}/images/gray.png", "--labels", "{root}/labels.bin"], "UTF-8"),
        (["predict", "{root}/classifier.keras", "{root}/images/gray.png", "--labels", "{root}/calibration.npy"], "labels"),
        (["export", "{root}/missing.keras", "--to", "tflite"], "model file not found"),
        (["export", "{root}/corrupt.keras", "--to", "saved_model"], "cannot load Keras model"),
        (["export", "{root}/classifier.keras", "--to", "tflite", "--quantize", "int8", "--calibration-data", "{root}/missing.npy"], "calibration data not found"),
        (["export", "{root}/classifier.keras", "--to", "tflite", "--quantize", "int8", "--calibration-data", "{root}/corrupt.npy"], "cannot read calibration data"),
        (["export", "{root}/classifier.keras", "--to", "tflite", "--quantize", "int8", "--calibration-data", "{root}/empty"], "no images"),
        (["export", "{root}/classifier.keras", "--to", "tflite", "--quantize", "int8", "--calibration-data", "{root}/labels.txt"], r"\.npy file or a folder"),
    ],
)
def test_missing_or_corrupt_files_are_one_line(capsys, files, argv, expected):
    argv = [a.format(root=files["root"]) for a in argv]
    code, out, err = run_main(capsys, *argv)
    assert out == ""
    assert_one_line_error(code, err, expected)


def test_calibration_array_of_the_wrong_shape_is_one_line(capsys, files, tmp_path):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((4, 8, 8, 3), dtype=np.float32))
    code, out, err = run_main(
        capsys, "export", files["root"] / "classifier.keras", "--to", "tflite",
        "--quantize", "int8", "--calibration-data", wrong, "--out", tmp_path / "x.tflite",
    )
    assert_one_line_error(code, err, r"shape \(4, 8, 8, 3\)")
    assert not (tmp_path / "x.tflite").exists()


def test_predict_refuses_a_model_that_is_not_a_classifier(capsys, tmp_path):
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    model.save(tmp_path / "segmenter.keras")
    write_png(tmp_path / "x.png", 8, 8, 3)
    code, out, err = run_main(capsys, "predict", tmp_path / "segmenter.keras", tmp_path / "x.png")
    assert_one_line_error(code, err, "classifier")


def test_closed_pipe_is_not_an_error():
    """`kapps info NAME | head -1` stops quietly instead of reporting a BrokenPipeError."""
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "kapps.cli", "info", "vgg16"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.close()  # the reader is gone before kapps writes, like `head` exiting early
    stderr = process.stderr.read().decode()
    process.wait(timeout=60)
    assert "error" not in stderr.lower() and "Traceback" not in stderr
