"""kapps.training: strategies, batch sizes, precision, seeds, callbacks and resumable fit."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kapps import training


@pytest.fixture
def restore_policy():
    policy = keras.mixed_precision.global_policy().name
    yield
    keras.mixed_precision.set_global_policy(policy)


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int32")
    return x, y


def _dataset(batch=16, seed=0, shuffle=False):
    ds = tf.data.Dataset.from_tensor_slices(_data(seed=seed))
    if shuffle:
        ds = ds.shuffle(64)  # unseeded: the global seed from set_seed decides the order
    return ds.batch(batch)


def _model(strategy=None):
    with (strategy or tf.distribute.get_strategy()).scope():
        inputs = keras.Input((8,))
        hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
        outputs = keras.layers.Dense(2, activation="softmax", name="out")(hidden)
        model = keras.Model(inputs, outputs, name="tiny")
        model.compile(
            optimizer=keras.optimizers.Adam(0.01),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    return model


# ----------------------------------------------------------------------------- strategies


def test_auto_strategy_uses_every_device(cpu_strategy):
    strategy = training.get_strategy("auto")
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    gpus = tf.config.list_logical_devices("GPU")
    expected = len(gpus) if gpus else len(tf.config.list_logical_devices("CPU"))
    assert strategy.num_replicas_in_sync == expected
    if not gpus:  # conftest splits the CPU in two
        assert strategy.num_replicas_in_sync == 2


@pytest.mark.parametrize(
    "name, kind",
    [("mirrored", tf.distribute.MirroredStrategy), ("one_device", tf.distribute.OneDeviceStrategy)],
)
def test_named_strategies(name, kind):
    strategy = training.get_strategy(name)
    assert isinstance(strategy, kind)
    assert strategy.num_replicas_in_sync >= 1


def test_mirrored_with_explicit_devices():
    strategy = training.get_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2


def test_unknown_strategy_is_a_clear_error():
    with pytest.raises(ValueError) as info:
        training.get_strategy("mirorred")
    message = str(info.value)
    assert "strategy='mirorred'" in message
    for name in training.STRATEGIES:
        assert repr(name) in message


@pytest.mark.parametrize(
    "tf_config, fragment",
    [
        (None, "needs the TF_CONFIG environment variable"),
        ("{not json", "not valid JSON"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), "no usable 'cluster'"),
        (json.dumps({"cluster": {"worker": ["localhost:1"]}, "task": {"type": "ps", "index": 0}}), "must name a job"),
        (json.dumps({"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 3}}), "out of range"),
    ],
)
def test_multi_worker_needs_valid_tf_config(monkeypatch, tf_config, fragment):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match=fragment):
        training.get_strategy("multi_worker")


def test_read_tf_config_accepts_a_cluster(monkeypatch):
    config = {"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert training.read_tf_config() == config


def test_tpu_without_a_tpu_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(RuntimeError, match="strategy='tpu' found no TPU"):
        training.get_strategy("tpu")


def test_is_chief_outside_multi_worker(cpu_strategy, tmp_path):
    assert training.is_chief(cpu_strategy)
    assert training.worker_out_dir(tmp_path, cpu_strategy) == os.fspath(tmp_path)


# ------------------------------------------------------------------- batch size and LR


def test_global_batch_size(cpu_strategy):
    assert training.global_batch_size(32, cpu_strategy) == 64
    assert training.global_batch_size(32, 8) == 256
    assert training.per_replica_batch_size(64, cpu_strategy) == 32
    with pytest.raises(ValueError, match="per_replica_batch_size=0"):
        training.global_batch_size(0, cpu_strategy)


def test_global_batch_not_divisible_is_a_clear_error(cpu_strategy):
    with pytest.raises(ValueError) as info:
        training.per_replica_batch_size(63, cpu_strategy)
    message = str(info.value)
    assert "global_batch_size=63" in message and "2 replicas" in message and "62 or 64" in message


def test_scaled_learning_rate():
    assert training.scaled_learning_rate(0.1, 512) == pytest.approx(0.2)
    assert training.scaled_learning_rate(0.01, 64, base_batch_size=128) == pytest.approx(0.005)
    with pytest.raises(ValueError, match="base_learning_rate"):
        training.scaled_learning_rate(-1.0, 64)


# ------------------------------------------------------------------ precision and seeds


def test_mixed_precision_flags(cpu_strategy, restore_policy):
    assert training.set_mixed_precision("mixed_bfloat16") == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    expected_auto = "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"
    assert training.set_mixed_precision("auto") == expected_auto
    assert training.set_mixed_precision("auto", cpu_strategy) == "mixed_bfloat16"
    assert training.set_mixed_precision("none") == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(ValueError, match="mixed_precision='fp16'"):
        training.set_mixed_precision("fp16")


def test_mixed_float16_compile_scales_the_loss(restore_policy):
    training.set_mixed_precision("mixed_float16")
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3)(inputs)
    outputs = keras.layers.Activation("softmax", dtype="float32")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.layers[1].compute_dtype == "float16"
    assert model.output.dtype == "float32"


@pytest.fixture
def restore_determinism():
    yield
    # Op determinism is process-wide; later tests may use unseeded random ops.
    from tensorflow.python.framework import config as tf_config

    if hasattr(tf_config, "disable_op_determinism"):
        tf_config.disable_op_determinism()


def test_seed_makes_fits_repeatable(restore_determinism):
    def run(seed):
        training.set_seed(seed)
        model = _model()
        model.fit(_dataset(shuffle=True), epochs=2, verbose=0, shuffle=False)
        return [w.copy() for w in model.get_weights()]

    first, second, other = run(7), run(7), run(8)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(first, other))
    with pytest.raises(ValueError, match="seed=-1"):
        training.set_seed(-1)


# ---------------------------------------------------------------------------- callbacks


def test_callbacks_content(tmp_path):
    cbs = training.callbacks(tmp_path / "run", lr_schedule=lambda epoch, lr: lr, verbose=0)
    kinds = [type(c) for c in cbs]
    assert kinds[0] is keras.callbacks.BackupAndRestore
    assert isinstance(cbs[1], keras.callbacks.CSVLogger) and cbs[1].append
    assert isinstance(cbs[2], keras.callbacks.ModelCheckpoint) and cbs[2].save_best_only
    assert keras.callbacks.TerminateOnNaN in kinds
    assert (keras.callbacks.TensorBoard in kinds) == training.tensorboard_available()
    assert keras.callbacks.LearningRateScheduler in kinds
    assert kinds[-1] is training.EpochLogger
    assert cbs[0].backup_dir == os.fspath(tmp_path / "run" / "backup")
    assert cbs[1].filename == os.fspath(tmp_path / "run" / "history.csv")
    assert cbs[2].filepath == os.fspath(tmp_path / "run" / "best.keras")
    assert cbs[2].monitor == "val_loss" and cbs[2].mode == "min"

    bare = training.callbacks(tmp_path / "b", backup=False, tensorboard=False, save_best=False, verbose=1)
    assert [type(c).__name__ for c in bare] == ["_ResumableCSVLogger", "TerminateOnNaN"]
    weights = training.callbacks(tmp_path / "w", save_weights_only=True, monitor="val_accuracy", verbose=1)
    assert weights[2].filepath.endswith("best.weights.h5") and weights[2].mode == "max"


def test_tensorboard_flag(tmp_path):
    if training.tensorboard_available():
        cbs = training.callbacks(tmp_path, tensorboard=True, verbose=1)
        assert any(isinstance(c, keras.callbacks.TensorBoard) for c in cbs)
    else:
        with pytest.raises(ImportError, match="pip install tensorboard"):
            training.callbacks(tmp_path, tensorboard=True)
    cbs = training.callbacks(tmp_path, tensorboard=False, verbose=1)
    assert not any(isinstance(c, keras.callbacks.TensorBoard) for c in cbs)


def test_progress_verbosity_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert not training.interactive()
    assert training.progress_verbose() == 0


def test_unwritable_out_dir_is_one_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    out = blocker / "run"
    with pytest.raises(training.OutputDirError) as info:
        training.fit(_model(), _dataset(), epochs=1, out_dir=out, verbose=0)
    assert str(out) in str(info.value) and "--out" in str(info.value)
    assert isinstance(info.value, OSError)


def test_fit_needs_a_compiled_model(tmp_path):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not compiled"):
        training.fit(model, _dataset(), epochs=1, out_dir=tmp_path)
    with pytest.raises(ValueError, match="epochs=0"):
        training.fit(_model(), _dataset(), epochs=0, out_dir=tmp_path)


def test_fit_writes_outputs_and_logs_one_line_per_epoch(tmp_path, capsys):
    history = training.fit(_model(), _dataset(), _dataset(seed=1), epochs=2, out_dir=tmp_path, verbose=0)
    assert history.epoch == [0, 1]
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 2
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2 and lines[1].startswith("epoch 2/2 - ") and "val_loss" in lines[1]
    assert (tmp_path / "best.keras").stat().st_size > 0
    assert (tmp_path / "logs").is_dir() == training.tensorboard_available()
    assert not (tmp_path / "backup").exists()  # removed once training completed
    assert training.read_history(tmp_path / "history.csv")["epoch"] == [0, 1]


class _Interrupt(Exception):
    pass


class _KillAfterEpoch(keras.callbacks.Callback):
    """Stands in for SIGKILL: raises once ``epoch`` has ended and been backed up."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch
        self.weights = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.weights = [w.copy() for w in self.model.get_weights()]
            raise _Interrupt()


class _Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []
        self.start_weights = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.start_weights is None:
            self.start_weights = [w.copy() for w in self.model.get_weights()]
        self.epochs.append(epoch)


def test_interrupted_fit_resumes_from_the_last_completed_epoch(tmp_path, cpu_strategy):
    out = tmp_path / "run"
    kill = _KillAfterEpoch(epoch=1)  # dies after epochs 0 and 1 (the 1st and 2nd)
    with pytest.raises(_Interrupt):
        training.fit(_model(cpu_strategy), _dataset(), epochs=4, out_dir=out, verbose=0, extra_callbacks=[kill])
    assert (out / "backup").is_dir()
    assert training.read_history(out / "history.csv")["epoch"] == [0, 1]
    # A kill between the CSV row and the backup leaves a row of an unfinished epoch behind.
    with open(out / "history.csv", "a") as f:
        f.write("2,0.5,0.5\n")

    record = _Record()
    history = training.fit(
        _model(cpu_strategy), _dataset(), epochs=4, out_dir=out, verbose=0, extra_callbacks=[record]
    )
    assert record.epochs == [2, 3]  # continued at the 3rd epoch
    for restored, saved in zip(record.start_weights, kill.weights):
        np.testing.assert_allclose(restored, saved, rtol=1e-6)
    logged = training.read_history(out / "history.csv")
    assert logged["epoch"] == [0, 1, 2, 3]
    assert history.epoch == [0, 1, 2, 3] and len(history.history["loss"]) == 4
    assert not (out / "backup").exists()
    assert (out / "best.keras").exists()


def test_kill_after_the_last_backup_finishes_without_training_again(tmp_path):
    with pytest.raises(_Interrupt):
        training.fit(_model(), _dataset(), epochs=2, out_dir=tmp_path, verbose=0, extra_callbacks=[_KillAfterEpoch(1)])
    record = _Record()
    history = training.fit(_model(), _dataset(), epochs=2, out_dir=tmp_path, verbose=0, extra_callbacks=[record])
    assert record.epochs == []
    assert history.epoch == [0, 1]
    assert set(history.history) == {"loss", "accuracy"}  # CSVLogger's all-NA val_* columns dropped
    assert not (tmp_path / "backup").exists()


_WORKER = """
import json, os, sys
from kapps import training
import keras, numpy as np, tensorflow as tf

strategy = training.get_strategy("multi_worker")
training.set_seed(3)
x = np.random.default_rng(0).normal(size=(128, 8)).astype("float32")
y = (x[:, 0] > 0).astype("int32")
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
with strategy.scope():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
history = training.fit(model, ds, ds, epochs=2, out_dir=sys.argv[1], verbose=0)
with training.multi_worker_compat(model):
    loss = model.evaluate(ds, verbose=0)[0]
print("RESULT " + json.dumps({
    "replicas": strategy.num_replicas_in_sync, "chief": training.is_chief(strategy),
    "epochs": history.epoch, "loss": loss,
    "weights": [w.tolist() for w in model.get_weights()]}), flush=True)
"""


def _free_ports(n):
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_fit_under_multi_worker_strategy_on_two_processes(tmp_path):
    """Two workers on 127.0.0.1 train with identical weights (Keras 3.15 needs the workaround
    in ``training.multi_worker_compat``); only the chief writes into out_dir."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    try:
        for index in range(2):
            env = dict(
                os.environ,
                TF_CPP_MIN_LOG_LEVEL="2",
                PYTHONPATH=os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")])),
                TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}),
            )
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", _WORKER, str(tmp_path / "out")],
                    env=env,
                    cwd=tmp_path,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        outputs = [p.communicate(timeout=150)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    results = []
    for process, output in zip(processes, outputs):
        lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
        assert process.returncode == 0 and lines, output[-3000:]
        results.append(json.loads(lines[-1][len("RESULT "):]))
    assert [r["chief"] for r in results] == [True, False]
    assert all(r["replicas"] == 2 and r["epochs"] == [0, 1] for r in results)
    assert results[0]["loss"] == pytest.approx(results[1]["loss"])
    for a, b in zip(results[0]["weights"], results[1]["weights"]):
        np.testing.assert_array_equal(np.array(a), np.array(b))
    assert training.read_history(tmp_path / "out" / "history.csv")["epoch"] == [0, 1]
    assert (tmp_path / "out" / ".worker1" / "history.csv").exists()


def test_strategies_created_one_after_another_train_different_models():
    """Collective all-reduce reuses its instance keys in every new strategy of a process, so a
    second CPU strategy training a differently shaped model failed ("Shape mismatch in the
    collective instance"); CPU strategies sum on one device instead."""
    for width in (3, 5):
        strategy = training.get_strategy("mirrored")
        assert strategy.num_replicas_in_sync == 2
        with strategy.scope():
            inputs = keras.Input((4,))
            model = keras.Model(inputs, keras.layers.Dense(width)(inputs))
            model.compile(optimizer="sgd", loss="mse")
        history = model.fit(np.ones((8, 4)), np.ones((8, width)), batch_size=4, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][-1])


def test_add_weight_decay_is_an_l2_loss_on_kernels_only():
    model = keras.Sequential(
        [keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3), keras.layers.BatchNormalization(),
         keras.layers.DepthwiseConv2D(3), keras.layers.Flatten(), keras.layers.Dense(4)]
    )
    assert training.add_weight_decay(model, 1e-2) == 3  # conv, depthwise and dense kernels
    kernels = [w for w in model.trainable_weights if w.path.endswith("kernel")]
    expected = 1e-2 / 2 * sum(float(np.sum(keras.ops.convert_to_numpy(k) ** 2)) for k in kernels)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)
    # its gradient is weight_decay * w, as the papers' SGD update
    kernel = kernels[-1]
    with tf.GradientTape() as tape:
        penalty = sum(model.losses)
    np.testing.assert_allclose(tape.gradient(penalty, kernel.value), 1e-2 * kernel.numpy(), rtol=1e-5)
    assert training.add_weight_decay(model, 0) == 3 and not model.losses
    with pytest.raises(ValueError, match=r"weight_decay=-1 is not allowed"):
        training.add_weight_decay(model, -1)


def test_start_run_needs_exactly_one_batch_size(tmp_path):
    with pytest.raises(ValueError, match=r"batch_size=None and global_batch=None: give exactly one"):
        training.start_run("auto", out_dir=tmp_path / "a")
    with pytest.raises(ValueError, match=r"batch_size=8 and global_batch=16: give exactly one"):
        training.start_run("auto", out_dir=tmp_path / "b", batch_size=8, global_batch=16)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_transformer_schedule_is_the_papers_equation_3():
    schedule = training.TransformerSchedule(512, warmup_steps=4000)
    rates = [float(schedule(step - 1)) for step in (1, 2000, 4000, 16000)]
    expected = [512 ** -0.5 * min(s ** -0.5, s * 4000 ** -1.5) for s in (1, 2000, 4000, 16000)]
    np.testing.assert_allclose(rates, expected, rtol=1e-5)
    assert max(rates) == rates[2]  # the peak is at the end of warm-up: 7.0e-4
    np.testing.assert_allclose(rates[2], 6.9877e-4, rtol=1e-4)
    again = training.TransformerSchedule.from_config(schedule.get_config())
    assert float(again(3999)) == float(schedule(3999))
    optimizer = keras.optimizers.Adam(training.TransformerSchedule(64, 10, scale=2.0))
    assert float(optimizer.learning_rate) > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [({"hidden_dim": 0}, "hidden_dim=0"), ({"warmup_steps": -1}, "warmup_steps=-1"),
     ({"scale": 0}, "scale=0")],
)
def test_transformer_schedule_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        training.TransformerSchedule(**{"hidden_dim": 512, **kwargs})


def test_time_budget_schedule_warms_up_then_follows_the_budget():
    schedule = training.TimeBudgetSchedule(1e-3, minimum=1e-4, warmup_steps=10)
    np.testing.assert_allclose(float(schedule(0)), 1e-4, rtol=1e-5)  # step 1 of 10
    np.testing.assert_allclose(float(schedule(9)), 1e-3, rtol=1e-5)  # warm-up done
    for progress, expected in ((0.0, 1e-3), (0.5, 5.5e-4), (1.0, 1e-4), (2.0, 1e-4)):
        schedule.progress.assign(progress)
        np.testing.assert_allclose(float(schedule(500)), expected, rtol=1e-5)
    again = training.TimeBudgetSchedule.from_config(schedule.get_config())
    assert again.get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="minimum=0.1"):
        training.TimeBudgetSchedule(1e-3, minimum=0.1)
    with pytest.raises(ValueError, match="minutes=0"):
        training.TimeBudget(0)


def test_time_budget_stops_training_and_resumes_the_time_spent(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(training.time, "time", lambda: clock[0])
    schedule = training.TimeBudgetSchedule(1e-2, warmup_steps=0)
    state = tmp_path / "budget.json"

    class Tick(keras.callbacks.Callback):  # every batch takes 6 s
        def on_train_batch_begin(self, batch, logs=None):
            clock[0] += 6.0

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(schedule), "mse")
    x, y = np.zeros((80, 2), "float32"), np.zeros((80, 1), "float32")  # 20 batches
    budget = training.TimeBudget(1.0, schedule, state)  # one minute: 10 batches
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[Tick(), budget], verbose=0)
    assert int(model.optimizer.iterations) == 10  # stopped half way through the epoch
    assert json.loads(state.read_text())["seconds"] == pytest.approx(60.0)
    assert float(schedule.progress) == pytest.approx(1.0)
    # a resumed run reads the time already spent and stops after its first batch
    again = training.TimeBudget(1.0, schedule, state)
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[Tick(), again], verbose=0)
    assert int(model.optimizer.iterations) == 11
