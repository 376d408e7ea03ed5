"""The LeNet-5 MNIST recipe: its quick path under MirroredStrategy, resuming after SIGKILL,
two MultiWorkerMirroredStrategy workers on 127.0.0.1, and one clear error per user mistake."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import kapps
from recipes import lenet5_mnist

OUTPUTS = (
    "model.keras",
    "saved_model/saved_model.pb",
    "model.tflite",
    "model_int8.tflite",
    "metrics.json",
    "history.csv",
    "curves.png",
    "samples.png",
)


def recipe_command(tfds_dir, out, *flags):
    return [sys.executable, "-m", "recipes.lenet5_mnist", "--tfds-data-dir", str(tfds_dir),
            "--out", str(out), "--no-download", *flags]


def child_env(**extra):
    env = dict(os.environ, CI="1", PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", **extra)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def history_epochs(out):
    path = out / "history.csv"
    if not path.exists():
        return []
    rows = path.read_text().strip().splitlines()[1:]
    return [int(row.split(",")[0]) for row in rows if row]


def test_quick_run_under_mirrored_strategy(tfds_dir, tmp_path, restore_global_state):
    out = tmp_path / "run"
    metrics = lenet5_mnist.main(
        ["--quick", "--epochs", "1", "--strategy", "mirrored", "--tfds-data-dir", str(tfds_dir),
         "--out", str(out), "--no-download"]
    )
    assert metrics["replicas"] == 2 and metrics["global_batch_size"] == 64
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["variant"] == "modern" and saved["trainable_params"] == 61_706
    assert saved["test_examples"] == lenet5_mnist.QUICK["test"]
    assert set(saved["test_accuracy"]) == {"keras", "tflite", "tflite_int8"}
    assert saved["tflite_max_abs_diff"]["tflite"] <= 1e-4
    # the float TFLite model classifies exactly as Keras does on the same digits
    assert saved["test_accuracy"]["tflite"] == pytest.approx(saved["test_accuracy"]["keras"], abs=1e-3)
    assert saved["test_accuracy"]["keras"] > 0.3  # 16 steps on real digits: well above guessing
    model = keras.saving.load_model(out / "model.keras")
    assert kapps.testing.count_params(model) == (61_706, 61_706)


def test_resumes_after_sigkill(tfds_dir, tmp_path):
    out = tmp_path / "run"
    command = recipe_command(tfds_dir, out, "--quick", "--epochs", "6")
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=child_env(), cwd=tmp_path)
    deadline = time.time() + 240
    try:
        while len(history_epochs(out)) < 2:
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.time() < deadline, "the first run did not finish two epochs in time"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    done_before = history_epochs(out)
    assert 2 <= len(done_before) < 6, "the kill should land in the middle of training"
    assert not (out / "metrics.json").exists()

    second = subprocess.run(command, capture_output=True, text=True, env=child_env(), cwd=tmp_path, timeout=300)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    printed = [line.split()[1] for line in second.stdout.splitlines() if line.startswith("epoch ")]
    assert printed and printed[0] == f"{len(done_before) + 1}/6", second.stdout[-3000:]
    assert history_epochs(out) == list(range(6))
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 6
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_end_with_identical_weights(tfds_dir, tmp_path):
    out = tmp_path / "run"
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    command = recipe_command(tfds_dir, out, "--quick", "--epochs", "2", "--strategy", "multi_worker")
    processes = []
    try:
        for index in range(2):
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            processes.append(
                subprocess.Popen(
                    command,
                    stdout=open(tmp_path / f"worker{index}.log", "w"),
                    stderr=subprocess.STDOUT,
                    env=child_env(TF_CONFIG=json.dumps(tf_config)),
                    cwd=tmp_path,
                )
            )
        for index, process in enumerate(processes):
            code = process.wait(timeout=300)
            assert code == 0, (tmp_path / f"worker{index}.log").read_text()[-3000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    weights = []
    for path in (out / "final.weights.h5", out / ".worker1" / "final.weights.h5"):
        model = kapps.build("lenet5", input_shape=(28, 28, 1), variant="modern")
        model.load_weights(path)
        weights.append(model.get_weights())
    for chief, worker in zip(*weights):
        np.testing.assert_array_equal(chief, worker)
    # only the chief exports, and what it exported has learned from the shared steps
    assert (out / "model.tflite").exists() and not (out / ".worker1" / "model.tflite").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    # 32 steps of 64 digits: well above the 10% of guessing, whatever the shuffle
    assert metrics["replicas"] == 2 and metrics["test_accuracy"]["keras"] > 0.3


def run_cli(argv):
    return subprocess.run(
        [sys.executable, "-m", "recipes.lenet5_mnist", *argv],
        capture_output=True, text=True, env=child_env(), timeout=120,
    )


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("lenet5_mnist: error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_tfds_dir_says_where_it_looked(tmp_path):
    missing = tmp_path / "no_tfds"
    result = run_cli(["--quick", "--tfds-data-dir", str(missing), "--out", str(tmp_path / "o"), "--no-download"])
    assert_one_line_error(result, str(missing), "mnist")


def test_corrupt_tfds_dir(tmp_path):
    broken = tmp_path / "tfds" / "mnist" / "3.0.1"
    broken.mkdir(parents=True)
    (broken / "dataset_info.json").write_text("{ not json")
    result = run_cli(["--quick", "--tfds-data-dir", str(tmp_path / "tfds"), "--out", str(tmp_path / "o"), "--no-download"])
    assert_one_line_error(result, "mnist")


def test_unknown_strategy(tmp_path):
    result = run_cli(["--strategy", "gpu_cluster", "--out", str(tmp_path)])
    assert result.returncode == 2 and "invalid choice: 'gpu_cluster'" in result.stderr


def test_batch_not_divisible_by_replicas(tfds_dir, tmp_path, restore_global_state):
    with pytest.raises(ValueError, match="33"):
        lenet5_mnist.main(["--quick", "--strategy", "mirrored", "--global-batch-size", "33",
                           "--tfds-data-dir", str(tfds_dir), "--out", str(tmp_path)])


def test_unwritable_output_directory(tfds_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    result = run_cli(["--quick", "--tfds-data-dir", str(tfds_dir), "--out", str(blocker / "out")])
    assert_one_line_error(result, str(blocker / "out"))


def test_bad_flag_values(tmp_path):
    result = run_cli(["--epochs", "0", "--out", str(tmp_path)])
    assert result.returncode == 2 and "--epochs=0" in result.stderr
