"""Tests of kapps.export: .keras, SavedModel, TFLite (float32/float16/dynamic/int8), the LiteRT
runner, parity, Flex detection and atomic writes. The models are small and built here, so
these tests do not depend on kapps.models."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kapps import export

# --------------------------------------------------------------------------------------------
# Models and data
# --------------------------------------------------------------------------------------------


def small_conv_net():
    """A conv net whose softmax output depends clearly on the input (large final weights), so
    int8 argmax agreement is meaningful; Dense(32) has >1024 weights, so dynamic-range
    quantization shrinks the file."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc1")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    outputs = keras.layers.Dense(
        10,
        activation="softmax",
        kernel_initializer=keras.initializers.RandomNormal(stddev=4.0, seed=1),
        name="predictions",
    )(x)
    return keras.Model(inputs, outputs, name="small_conv_net")


def images(n, seed=0):
    """Images in [0, 1] with a random colour cast each, so that they differ in class."""
    rng = np.random.default_rng(seed)
    return (rng.random((n, 16, 16, 3)) * rng.random((n, 1, 1, 3))).astype("float32")


def two_input_model():
    """Inputs given as a dict whose Keras names sort in the opposite order of model.inputs
    (TFLite orders signature inputs by name), and two outputs."""
    keras.utils.set_random_seed(1)
    image = keras.Input((8, 8, 1), name="zeta_image")
    vector = keras.Input((4,), name="alpha_vector")
    x = keras.layers.Flatten()(keras.layers.Conv2D(2, 3, activation="relu")(image))
    y = keras.layers.Dense(3, activation="relu")(vector)
    out_a = keras.layers.Dense(5, name="head_a")(keras.layers.Concatenate()([x, y]))
    out_b = keras.layers.Dense(2, name="head_b")(y)
    return keras.Model({"zeta_image": image, "alpha_vector": vector}, [out_a, out_b])


def two_inputs(n, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "zeta_image": rng.random((n, 8, 8, 1), dtype=np.float32),
        "alpha_vector": rng.random((n, 4), dtype=np.float32),
    }


class MatrixInverse(keras.layers.Layer):
    """Uses tf.linalg.inv: the TF op MatrixInverse has no TFLite builtin, only a Flex kernel."""

    def call(self, x):
        return tf.linalg.inv(x)


class ErfInv(keras.layers.Layer):
    """tf.math.erfinv: neither a TFLite builtin nor a Flex op."""

    def call(self, x):
        return tf.math.erfinv(x)


def flex_model():
    inputs = keras.Input((3, 3), name="matrix")
    x = MatrixInverse()(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))


@pytest.fixture(scope="module")
def model():
    return small_conv_net()


@pytest.fixture(scope="module")
def float_tflite(model):
    return export.to_tflite(model)


def leftovers(directory, keep=()):
    return sorted(set(os.listdir(directory)) - set(keep))


# --------------------------------------------------------------------------------------------
# TFLite conversion and the runner
# --------------------------------------------------------------------------------------------


def test_float32_parity(model, float_tflite):
    x = images(4)
    assert export.tflite_parity(model, float_tflite, x) <= 1e-4
    runner = export.TFLiteRunner(float_tflite)
    (detail,) = runner.input_details
    assert detail["name"] == "image"
    assert detail["shape"] == (None, 16, 16, 3)  # the batch axis stays dynamic
    assert detail["dtype"] == np.float32 and detail["quantization"] is None
    assert runner.output_details[0]["shape"] == (None, 10)


def test_parity_reports_the_largest_difference(model, float_tflite):
    class Shifted(export.TFLiteRunner):
        def run(self, inputs):
            return {k: v + 0.25 for k, v in super().run(inputs).items()}

    runner = Shifted(float_tflite)
    assert export.tflite_parity(model, runner, images(2)) == pytest.approx(0.25, abs=1e-4)


def test_runner_batch_sizes_and_path(model, float_tflite, tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(float_tflite)
    runner = export.load_tflite(path)
    x = images(3)
    expected = model.predict(x, verbose=0)
    one = runner(x[:1])
    three = runner(x)
    assert one.shape == (1, 10) and three.shape == (3, 10)
    np.testing.assert_allclose(three, expected, atol=1e-4)
    np.testing.assert_allclose(runner(x[:1]), expected[:1], atol=1e-4)  # shrinks back
    np.testing.assert_allclose(runner(image=x), expected, atol=1e-4)  # by name
    with pytest.raises(ValueError, match="input"):
        runner(x, x)


def test_fixed_batch_size_one(model):
    runner = export.TFLiteRunner(export.to_tflite(model, batch_size=1))
    assert runner.input_details[0]["shape"] == (1, 16, 16, 3)
    x = images(3)
    np.testing.assert_allclose(runner(x), model.predict(x, verbose=0), atol=1e-4)


@pytest.mark.parametrize("quantize, tolerance", [("float16", 1e-2), ("dynamic", 5e-2)])
def test_float16_and_dynamic_convert_and_run(model, float_tflite, quantize, tolerance):
    flatbuffer = export.to_tflite(model, quantize=quantize)
    assert len(flatbuffer) < 0.8 * len(float_tflite)  # weights stored in 16 or 8 bits
    runner = export.TFLiteRunner(flatbuffer)
    assert runner.input_details[0]["dtype"] == np.float32
    assert runner.output_details[0]["dtype"] == np.float32
    x = images(4)
    out = runner(x)
    assert out.shape == (4, 10) and np.isfinite(out).all()
    assert export.tflite_parity(model, runner, x) <= tolerance


def test_int8_full_integer(model, float_tflite, tmp_path):
    path = tmp_path / "model_int8.tflite"
    flatbuffer = export.to_tflite(
        model, path, quantize="int8", representative_data=images(100, seed=1)
    )
    assert path.read_bytes() == flatbuffer
    assert len(flatbuffer) < 0.5 * len(float_tflite)
    runner = export.TFLiteRunner(path)
    (inp,), (out,) = runner.input_details, runner.output_details
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    assert inp["quantization"] is not None and out["quantization"] is not None
    x = images(64, seed=2)
    expected = model.predict(x, verbose=0)
    got = runner(x)  # float in, dequantized float out
    assert got.dtype == np.float32 and got.shape == (64, 10)
    assert len(set(expected.argmax(-1))) >= 3  # the check below is not trivial
    agreement = np.mean(got.argmax(-1) == expected.argmax(-1))
    assert agreement >= 0.8, f"int8 argmax agrees with float on only {agreement:.0%}"
    assert np.abs(got - expected).max() <= 0.1


def test_dict_inputs_several_outputs_float_and_int8():
    model = two_input_model()
    x = two_inputs(3)
    runner = export.TFLiteRunner(export.to_tflite(model))
    assert runner.input_names == ["alpha_vector", "zeta_image"]  # TFLite sorts them by name
    assert export.tflite_parity(model, runner, x) <= 1e-4
    a, b = runner(x)
    assert a.shape == (3, 5) and b.shape == (3, 2)

    # int8 calibrated from a tf.data.Dataset of Keras-style (inputs, targets) batches
    data = two_inputs(40, seed=1)
    dataset = tf.data.Dataset.from_tensor_slices((data, np.zeros((40, 5), "float32"))).batch(8)
    int8 = export.TFLiteRunner(
        export.to_tflite(model, quantize="int8", representative_data=dataset)
    )
    assert {d["dtype"] for d in int8.input_details + int8.output_details} == {np.dtype(np.int8)}
    assert export.tflite_parity(model, int8, x) <= 0.1


def test_dict_outputs_are_matched_by_key():
    inputs = keras.Input((4,), name="x")
    # "out10" sorts before "out2" as text; outputs must be matched by key, not position
    model = keras.Model(
        inputs, {"out2": keras.layers.Dense(3)(inputs), "out10": keras.layers.Dense(2)(inputs)}
    )
    runner = export.TFLiteRunner(export.to_tflite(model))
    assert sorted(runner.output_names) == ["out10", "out2"]
    x = np.random.default_rng(0).random((2, 4), dtype=np.float32)
    assert export.tflite_parity(model, runner, x) <= 1e-5
    outputs = runner.run({"x": x})
    assert outputs["out2"].shape == (2, 3) and outputs["out10"].shape == (2, 2)


def test_flex_op_is_refused_by_default_and_named():
    model = flex_model()
    with pytest.raises(export.UnsupportedOpsError) as info:
        export.to_tflite(model)
    assert isinstance(info.value, ValueError)
    assert info.value.flex_ops == ["MatrixInverse"]
    message = str(info.value)
    assert "MatrixInverse" in message and "allow_flex=True" in message
    assert "\n" not in message


def test_flex_op_converts_with_allow_flex(tmp_path):
    model = flex_model()
    flatbuffer = export.to_tflite(model, tmp_path / "flex.tflite", allow_flex=True)
    assert b"FlexMatrixInverse" in flatbuffer  # the op goes through the Flex delegate
    runner = export.TFLiteRunner(flatbuffer)
    with pytest.raises(RuntimeError, match="Flex"):  # ai_edge_litert has no Flex delegate
        runner(np.eye(3, dtype="float32")[None])


def test_op_without_flex_kernel_is_named_even_with_allow_flex():
    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, ErfInv()(inputs))
    with pytest.raises(export.UnsupportedOpsError, match="Erfinv") as info:
        export.to_tflite(model, allow_flex=True)
    assert info.value.custom_ops == ["Erfinv"]


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"quantize": "int4"}, "quantize='int4'"),
        ({"quantize": "int8"}, "representative_data=None"),
        ({"representative_data": np.zeros((2, 16, 16, 3))}, "representative_data"),
        ({"allow_flex": "yes"}, "allow_flex='yes'"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"quantize": "int8", "representative_data": np.zeros((2, 8, 8, 3))}, "shape (2, 8, 8, 3)"),
        ({"quantize": "int8", "representative_data": 3}, "representative_data=int"),
        ({"path": ""}, "path=''"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(model, kwargs, argument):
    with pytest.raises(ValueError) as info:
        export.to_tflite(model, **kwargs)
    assert argument in str(info.value)


def test_bad_model_and_file_arguments(tmp_path, model):
    with pytest.raises(ValueError, match="model="):
        export.to_tflite("model.keras")
    with pytest.raises(ValueError, match=r"path=.*\.keras"):
        export.save_keras(model, tmp_path / "model.h5")
    with pytest.raises(FileNotFoundError):
        export.TFLiteRunner(tmp_path / "missing.tflite")
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ValueError, match="not a valid TFLite model"):
        export.TFLiteRunner(corrupt)


# --------------------------------------------------------------------------------------------
# .keras and SavedModel
# --------------------------------------------------------------------------------------------


def test_saved_model_serving_default_reloads(model, tmp_path):
    path = tmp_path / "saved_model"
    assert export.export_saved_model(model, path) == str(path)
    reloaded = tf.saved_model.load(str(path))
    assert "serving_default" in reloaded.signatures
    x = images(3)
    expected = model.predict(x, verbose=0)
    (out,) = reloaded.signatures["serving_default"](image=tf.constant(x)).values()
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(reloaded.serve(x).numpy(), expected, atol=1e-5)
    export.export_saved_model(model, path)  # replacing an existing export works
    assert leftovers(tmp_path) == ["saved_model"]


def test_keras_file_round_trip(model, tmp_path):
    path = tmp_path / "sub" / "model.keras"
    export.save_keras(model, path)
    loaded = keras.saving.load_model(path, compile=False)
    x = images(2)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert leftovers(path.parent) == ["model.keras"]


# --------------------------------------------------------------------------------------------
# Atomic writes: a failed export leaves nothing where the caller expects a file
# --------------------------------------------------------------------------------------------


def test_failed_conversion_writes_nothing(model, tmp_path, monkeypatch):
    class Failing:
        def __init__(self, *args, **kwargs):
            self.target_spec = type("Spec", (), {})()

        def convert(self):
            raise RuntimeError("conversion failed")

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", Failing)
    fresh = tmp_path / "fresh.tflite"
    existing = tmp_path / "existing.tflite"
    existing.write_bytes(b"previous model")
    for path in (fresh, existing):
        with pytest.raises(RuntimeError, match="conversion failed"):
            export.to_tflite(model, path)
    assert not fresh.exists()
    assert existing.read_bytes() == b"previous model"
    assert leftovers(tmp_path) == ["existing.tflite"]


def test_failure_while_writing_leaves_previous_file(model, float_tflite, tmp_path, monkeypatch):
    existing = tmp_path / "model.tflite"
    existing.write_bytes(b"previous model")

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk full"):
        export._atomic_write_bytes(str(existing), float_tflite)
    with pytest.raises(OSError, match="disk full"):
        export._atomic_write_bytes(str(tmp_path / "new.tflite"), float_tflite)
    assert existing.read_bytes() == b"previous model"
    assert leftovers(tmp_path) == ["model.tflite"]


def test_failed_keras_save_leaves_previous_file(model, tmp_path, monkeypatch):
    existing = tmp_path / "model.keras"
    existing.write_bytes(b"previous model")

    def failing_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"half a zip")
        raise OSError("interrupted")

    monkeypatch.setattr(keras.Model, "save", failing_save)
    for path in (existing, tmp_path / "new.keras"):
        with pytest.raises(OSError, match="interrupted"):
            export.save_keras(model, path)
    assert existing.read_bytes() == b"previous model"
    assert leftovers(tmp_path) == ["model.keras"]


def test_failed_saved_model_export_leaves_previous_directory(model, tmp_path, monkeypatch):
    existing = tmp_path / "saved_model"
    existing.mkdir()
    (existing / "saved_model.pb").write_bytes(b"previous")

    def failing_write_out(self, filepath, *args, **kwargs):
        with open(os.path.join(filepath, "saved_model.pb"), "wb") as f:
            f.write(b"partial")
        raise OSError("interrupted")

    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", failing_write_out)
    for path in (existing, tmp_path / "new_saved_model"):
        with pytest.raises(OSError, match="interrupted"):
            export.export_saved_model(model, path)
    assert (existing / "saved_model.pb").read_bytes() == b"previous"
    assert leftovers(tmp_path) == ["saved_model"]


# --------------------------------------------------------------------------------------------
# export_all
# --------------------------------------------------------------------------------------------


def test_export_all_writes_everything(model, tmp_path):
    report = export.export_all(
        model, tmp_path / "out", representative_data=images(20, seed=3), sample_inputs=images(4)
    )
    out = tmp_path / "out"
    assert sorted(os.listdir(out)) == ["model.keras", "model.tflite", "model_int8.tflite", "saved_model"]
    for key in ("keras", "saved_model", "tflite", "tflite_int8"):
        assert os.path.exists(report[key]["path"])
        assert report[key]["bytes"] > 0
    assert report["tflite"]["bytes"] == os.path.getsize(out / "model.tflite")
    assert report["tflite"]["max_abs_diff"] <= report["tflite"]["tolerance"] == 1e-4
    assert 0 <= report["tflite_int8"]["max_abs_diff"] <= 0.1


def test_export_all_refuses_a_tflite_model_that_misses_parity(model, float_tflite, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "to_tflite", lambda *args, **kwargs: float_tflite)
    monkeypatch.setattr(export, "tflite_parity", lambda *args, **kwargs: 0.5)
    with pytest.raises(export.ParityError, match="0.5") as info:
        export.export_all(model, tmp_path, saved_model=False)
    assert info.value.max_abs_diff == 0.5
    assert not (tmp_path / "model.tflite").exists()


def test_written_files_get_ordinary_permissions(tmp_path):
    """Atomic writes go through private temporary files; the results must not stay private."""
    import stat

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    mask = os.umask(0o022)
    try:
        export.save_keras(model, tmp_path / "m.keras")
        export.to_tflite(model, tmp_path / "m.tflite")
        export.export_saved_model(model, tmp_path / "sm")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "m.keras").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "m.tflite").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "sm").stat().st_mode) == 0o755
