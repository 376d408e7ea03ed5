"""Training stack shared by the recipes: strategy, batch sizes, precision, seeds, callbacks, fit.

A recipe uses it like this::

    strategy = training.get_strategy(args.strategy)       # first: multi-worker/TPU set up TF
    training.set_seed(args.seed)
    training.set_mixed_precision(args.mixed_precision, strategy)
    batch = training.global_batch_size(args.batch_size, strategy)  # per replica x replicas
    train_ds = kapps.data.mnist("train", batch, data_dir=args.tfds_data_dir)
    with strategy.scope():
        model = kapps.build("lenet5")
        model.compile(
            optimizer=keras.optimizers.SGD(training.scaled_learning_rate(0.01, batch, 128)),
            loss="sparse_categorical_crossentropy", metrics=["accuracy"],
            jit_compile=args.jit_compile)
    history = training.fit(model, train_ds, val_ds, epochs=args.epochs, out_dir=out)
    with training.multi_worker_compat(model):              # a no-op unless multi-worker
        test_loss, test_accuracy = model.evaluate(test_ds)

``fit`` resumes an interrupted run from its last completed epoch (``out_dir/backup``), keeps
``out_dir/history.csv`` (one row per epoch, across restarts), ``out_dir/best.keras`` and
TensorBoard logs in ``out_dir/logs``.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import math
import os
import sys
import tempfile
import time

import keras
import tensorflow as tf

from kapps._checks import check_choice, check_positive_int
from kapps.history import read_history

STRATEGIES = ("auto", "mirrored", "multi_worker", "tpu", "one_device")
MIXED_PRECISION = ("none", "auto", "mixed_float16", "mixed_bfloat16")

HISTORY_CSV = "history.csv"
BEST_MODEL = "best.keras"
BEST_WEIGHTS = "best.weights.h5"
BACKUP_DIR = "backup"
LOG_DIR = "logs"


class OutputDirError(OSError):
    """The output directory cannot be created or written."""


# --------------------------------------------------------------------------------------------
# Strategies


def get_strategy(name: str = "auto", *, devices=None, tpu: str | None = None) -> tf.distribute.Strategy:
    """A ``tf.distribute`` strategy chosen by one flag.

    Call it at the start of the program, before other TensorFlow work: a multi-worker or TPU
    strategy must configure the runtime before it is used.

    Args:
        name: one of ``STRATEGIES``:

            - ``"auto"``: ``MirroredStrategy`` over every visible GPU, or over every logical CPU
              device when there is no GPU (one CPU device normally; tests split the CPU into
              two logical devices to exercise two replicas).
            - ``"mirrored"``: ``MirroredStrategy(devices)``; TensorFlow's default device choice
              (all GPUs, else the CPU) when ``devices`` is ``None``.
            - ``"multi_worker"``: ``MultiWorkerMirroredStrategy`` configured by the
              ``TF_CONFIG`` environment variable (one process per machine; each runs the same
              command with its own ``task.index``).
            - ``"tpu"``: ``TPUStrategy`` through ``TPUClusterResolver(tpu)``.
            - ``"one_device"``: ``OneDeviceStrategy`` on ``devices[0]`` or the first GPU,
              else the CPU.
        devices: device names for ``"mirrored"`` and ``"one_device"``.
        tpu: TPU name or ``grpc://`` address for ``"tpu"``; ``"local"`` on a TPU VM; ``None``
            reads the ``TPU_NAME`` environment variable.

    Returns:
        The strategy. ``strategy.num_replicas_in_sync`` is the number of replicas.

    Raises:
        ValueError: ``name`` is not one of ``STRATEGIES``; ``TF_CONFIG`` is missing or invalid
            for ``"multi_worker"``.
        RuntimeError: no TPU could be reached for ``"tpu"``.
    """
    check_choice("strategy", name, STRATEGIES)
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        chosen = gpus or tf.config.list_logical_devices("CPU")
        return _mirrored([d.name for d in chosen])
    if name == "mirrored":
        return _mirrored(devices)
    if name == "multi_worker":
        read_tf_config()  # fail with a clear message before TensorFlow does
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except Exception as err:  # ValueError, NotFoundError, ... depending on the platform
            raise RuntimeError(
                f"strategy='tpu' found no TPU (tpu={tpu!r}): {err}. Run on a TPU VM "
                "(tpu='local'), or give the TPU name or grpc:// address, or set TPU_NAME."
            ) from err
        return tf.distribute.TPUStrategy(resolver)
    # one_device
    if devices:
        device = devices[0]
    else:
        gpus = tf.config.list_logical_devices("GPU")
        device = gpus[0].name if gpus else "/cpu:0"
    return tf.distribute.OneDeviceStrategy(device)


def _mirrored(devices=None) -> tf.distribute.MirroredStrategy:
    """``MirroredStrategy`` over ``devices``; on CPUs only, gradients are summed on one device.

    Collective all-reduce gains nothing between CPU devices of one host, and its instance keys
    are reused by every strategy a process creates, so a second strategy over the same CPUs
    can fail with "Shape mismatch in the collective instance". ``ReductionToOneDevice`` has
    neither problem. GPUs keep TensorFlow's default (NCCL all-reduce).
    """
    names = devices or [d.name for d in tf.config.list_logical_devices("GPU")]
    if not names or all("CPU" in str(d).upper() for d in names):
        return tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    return tf.distribute.MirroredStrategy(devices)


def read_tf_config() -> dict:
    """Read and check the ``TF_CONFIG`` environment variable for multi-worker training.

    ``TF_CONFIG`` is JSON such as::

        {"cluster": {"worker": ["host1:12345", "host2:12345"]},
         "task": {"type": "worker", "index": 0}}

    Returns:
        The parsed configuration.

    Raises:
        ValueError: ``TF_CONFIG`` is unset, not JSON, or lacks a cluster / task that agree.
    """
    example = (
        'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
        '"task": {"type": "worker", "index": 0}}\''
    )
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        raise ValueError(
            "strategy='multi_worker' needs the TF_CONFIG environment variable, set differently "
            f"in each worker process, e.g. {example}."
        )
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON ({err}); expected e.g. {example}.") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster or not all(
        isinstance(v, list) and v for v in cluster.values()
    ):
        raise ValueError(f"TF_CONFIG has no usable 'cluster' (got {cluster!r}); expected e.g. {example}.")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise ValueError(
            f"TF_CONFIG 'task' must name a job of the cluster {sorted(cluster)} "
            f"(got {task!r}); expected e.g. {example}."
        )
    index = task.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[task["type"]]):
        raise ValueError(
            f"TF_CONFIG task index {index!r} is out of range for "
            f"{len(cluster[task['type']])} {task['type']!r} task(s)."
        )
    return config


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process should write outputs (always true outside multi-worker training).

    Under ``MultiWorkerMirroredStrategy`` the chief is the ``chief`` task, or worker 0 when
    the cluster has no chief; the other workers run the same code but write elsewhere.
    """
    strategy = strategy or tf.distribute.get_strategy()
    return bool(getattr(strategy.extended, "should_checkpoint", True))


# --------------------------------------------------------------------------------------------
# Batch size and learning rate


def _replicas(strategy) -> int:
    if isinstance(strategy, int) and not isinstance(strategy, bool):
        return check_positive_int("strategy", strategy)
    return strategy.num_replicas_in_sync


def global_batch_size(per_replica_batch_size: int, strategy) -> int:
    """Global batch = per-replica batch x replicas: what the ``tf.data`` pipeline batches by.

    Under ``tf.distribute`` the dataset is batched with the global size and each replica
    receives ``global / replicas`` examples per step.

    Args:
        per_replica_batch_size: examples per replica per step.
        strategy: a ``tf.distribute.Strategy`` or the number of replicas.

    Returns:
        The global batch size.

    Raises:
        ValueError: ``per_replica_batch_size`` is not a positive integer.
    """
    check_positive_int("per_replica_batch_size", per_replica_batch_size)
    return per_replica_batch_size * _replicas(strategy)


def per_replica_batch_size(global_batch_size: int, strategy) -> int:
    """Check that a global batch splits evenly over the replicas; return each replica's share.

    Args:
        global_batch_size: examples per step over all replicas.
        strategy: a ``tf.distribute.Strategy`` or the number of replicas.

    Returns:
        ``global_batch_size // replicas``.

    Raises:
        ValueError: ``global_batch_size`` is not a positive integer or not divisible by the
            number of replicas (the message gives the nearest sizes that are).
    """
    check_positive_int("global_batch_size", global_batch_size)
    replicas = _replicas(strategy)
    if global_batch_size % replicas:
        lower = max(replicas, global_batch_size // replicas * replicas)
        raise ValueError(
            f"global_batch_size={global_batch_size} is not divisible by the {replicas} replicas "
            f"of the strategy; use a multiple of {replicas} (e.g. {lower} or {lower + replicas}) "
            "or give the batch size per replica."
        )
    return global_batch_size // replicas


def scaled_learning_rate(
    base_learning_rate: float, global_batch_size: int, base_batch_size: int = 256
) -> float:
    """The linear scaling rule: scale the learning rate with the global batch size.

    "When the minibatch size is multiplied by k, multiply the learning rate by k" (Goyal et al.
    2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour", Section 2.1). A recipe
    states the learning rate it was tuned with at ``base_batch_size``; on more replicas the
    global batch grows and so does the rate. The rule holds for SGD with momentum up to
    batches of about 8k on ImageNet, with a few epochs of warm-up for large k; adaptive
    optimizers (Adam) usually need less than linear scaling.

    Args:
        base_learning_rate: the rate tuned at ``base_batch_size``.
        global_batch_size: the global batch actually used.
        base_batch_size: the batch the base rate was tuned with.

    Returns:
        ``base_learning_rate * global_batch_size / base_batch_size``.

    Raises:
        ValueError: a batch size is not a positive integer or the rate is not positive.
    """
    check_positive_int("global_batch_size", global_batch_size)
    check_positive_int("base_batch_size", base_batch_size)
    rate = base_learning_rate
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
        raise ValueError(f"base_learning_rate={rate!r} is not allowed; expected a positive number.")
    return float(base_learning_rate) * global_batch_size / base_batch_size


# --------------------------------------------------------------------------------------------
# Precision and seeds


@keras.saving.register_keras_serializable(package="kapps")
class TransformerSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The Transformer's learning rate: linear warm-up, then inverse square root decay.

    ``lr(step) = scale * hidden_dim ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)``
    (Vaswani et al. 2017, section 5.3, equation 3, with ``step`` counted from 1): it rises
    linearly for ``warmup_steps`` steps to its peak ``scale / sqrt(hidden_dim *
    warmup_steps)`` (7.0e-4 for the base model's 512 and 4000) and then falls as
    ``1 / sqrt(step)``. The paper used Adam with ``beta_1=0.9, beta_2=0.98, epsilon=1e-9``.

    Args:
        hidden_dim: the model width ``d_model``.
        warmup_steps: steps of linear warm-up (4000 in the paper).
        scale: a factor on the whole curve (1 in the paper; smaller models and smaller
            batches often want less).

    Example:
        >>> schedule = TransformerSchedule(512, warmup_steps=4000)
        >>> optimizer = keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.98, epsilon=1e-9)
    """

    def __init__(self, hidden_dim, warmup_steps=4000, scale=1.0):
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.warmup_steps = check_positive_int("warmup_steps", warmup_steps)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"scale={scale!r} is not allowed; expected a number > 0.")
        self.scale = float(scale)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32") + 1.0  # optimizer iterations start at 0
        decay = keras.ops.minimum(keras.ops.rsqrt(step), step * self.warmup_steps ** -1.5)
        return self.scale * self.hidden_dim ** -0.5 * decay

    def get_config(self):
        return {"hidden_dim": self.hidden_dim, "warmup_steps": self.warmup_steps,
                "scale": self.scale}


@keras.saving.register_keras_serializable(package="kapps")
class TimeBudgetSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up over steps, then cosine decay over a wall-clock budget.

    A step-count schedule has to guess how many steps fit in the time a run has; on a
    shared or slower machine it is cut off before the learning rate has come down, which
    costs most of what the decay is for. Here the decay follows the fraction of the budget
    spent, ``progress`` in [0, 1] (a variable that ``TimeBudget`` updates after every batch),
    as Geiping & Goldstein 2023 ("Cramming", section 3) schedule BERT pre-training on one
    GPU-day: ``lr = minimum + (peak - minimum) * (1 + cos(pi * progress)) / 2``, after
    ``warmup_steps`` steps rising linearly from 0 to ``peak``.

    Args:
        peak: the learning rate after warm-up.
        minimum: the learning rate when the budget is spent.
        warmup_steps: steps of linear warm-up (0: none).

    Example:
        >>> schedule = TimeBudgetSchedule(2e-3, minimum=1e-4, warmup_steps=100)
        >>> model.compile(keras.optimizers.AdamW(schedule), ...)
        >>> model.fit(..., callbacks=[TimeBudget(30, schedule, "run/budget.json")])
    """

    def __init__(self, peak, minimum=0.0, warmup_steps=0):
        for name, value in (("peak", peak), ("minimum", minimum)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name}={value!r} is not allowed; expected a number >= 0.")
        if minimum > peak:
            raise ValueError(f"minimum={minimum!r} is not allowed; expected at most peak={peak!r}.")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"warmup_steps={warmup_steps!r} is not allowed; expected an int >= 0.")
        self.peak, self.minimum, self.warmup_steps = float(peak), float(minimum), warmup_steps
        self.progress = keras.Variable(0.0, trainable=False, name="budget_progress")

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32") + 1.0  # optimizer iterations start at 0
        progress = ops.clip(ops.convert_to_tensor(self.progress), 0.0, 1.0)
        cosine = self.minimum + 0.5 * (self.peak - self.minimum) * (1.0 + ops.cos(math.pi * progress))
        if not self.warmup_steps:
            return cosine
        return ops.minimum(cosine, self.peak * step / self.warmup_steps)

    def get_config(self):
        return {"peak": self.peak, "minimum": self.minimum, "warmup_steps": self.warmup_steps}


class TimeBudget(keras.callbacks.Callback):
    """Stop training when ``minutes`` of training time are spent, and drive a
    ``TimeBudgetSchedule``.

    The time spent is kept in ``state_path`` (JSON) at every epoch end, so a resumed run
    (``fit`` restores the last completed epoch) continues the budget and the schedule where
    that epoch left them. Evaluation on the validation data counts as training time.

    Args:
        minutes: the budget, > 0.
        schedule: an optional ``TimeBudgetSchedule`` whose ``progress`` this sets.
        state_path: optional JSON file of the time spent (for resuming).
    """

    def __init__(self, minutes, schedule=None, state_path=None):
        super().__init__()
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not minutes > 0:
            raise ValueError(f"minutes={minutes!r} is not allowed; expected a number > 0.")
        self.seconds = 60.0 * minutes
        self.schedule = schedule
        self.state_path = None if state_path is None else os.fspath(state_path)
        self.spent_before = 0.0

    def _spent(self):
        return self.spent_before + time.time() - self.started

    def on_train_begin(self, logs=None):
        self.spent_before = 0.0
        if self.state_path and os.path.isfile(self.state_path):
            with open(self.state_path) as f:
                self.spent_before = float(json.load(f).get("seconds", 0.0))
        self.started = time.time()
        self._update()

    def _update(self):
        progress = self._spent() / self.seconds
        if self.schedule is not None:
            self.schedule.progress.assign(min(progress, 1.0))
        if progress >= 1.0:
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        self._update()

    def on_epoch_end(self, epoch, logs=None):
        if self.state_path:
            _atomic_json(self.state_path, {"seconds": round(self._spent(), 3), "epochs": epoch + 1})


def _atomic_json(path, value):
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp") as f:
        json.dump(value, f)
    os.replace(f.name, path)


def add_weight_decay(model: keras.Model, weight_decay: float) -> int:
    """L2 weight decay through the loss, as the classic papers train (He et al. 2016: 1e-4).

    Each convolution and dense kernel gets a ``keras.regularizers.L2(weight_decay / 2)``, whose
    gradient is ``weight_decay * w``: the update ``lr * weight_decay * w`` of the papers' SGD,
    passed through momentum like the rest of the gradient. (The ``weight_decay=`` argument of
    Keras optimizers is decoupled decay, Loshchilov and Hutter 2019: it skips momentum, so with
    momentum 0.9 it decays about ten times less than the papers' setting.) Biases and
    BatchNorm scales and offsets are not decayed. Call it after building and before training;
    the penalty shows in ``model.losses`` and in the training loss.

    Args:
        model: a built model.
        weight_decay: the papers' coefficient (non-negative; 0 removes the penalty).

    Returns:
        The number of kernels decayed.

    Raises:
        ValueError: ``weight_decay`` is negative or not a number.
    """
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"weight_decay={weight_decay!r} is not allowed; expected a number >= 0.")
    regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
    decayed = 0
    for variable in model.trainable_weights:
        if variable.path.rsplit("/", 1)[-1].endswith("kernel"):  # kernel, depthwise_kernel, ...
            variable.regularizer = regularizer
            decayed += 1
    return decayed


def set_mixed_precision(flag: str = "none", strategy: tf.distribute.Strategy | None = None) -> str:
    """Set Keras' global dtype policy from a recipe's ``--mixed-precision`` flag.

    This changes global state, so only recipes call it (library code never does), before
    building the model. Under a mixed policy layers compute in float16/bfloat16 and keep
    float32 variables. Two rules keep training stable:

    - The model's outputs must be float32: builders give their final activation
      ``dtype="float32"`` (softmax in float16 loses probability mass).
    - float16 needs loss scaling so small gradients do not underflow. Keras 3 applies it
      itself: ``model.compile`` wraps the optimizer in ``keras.optimizers.LossScaleOptimizer``
      when the model's policy is ``mixed_float16`` (checked in Keras 3.15). bfloat16 has
      float32's exponent range and needs none.

    Args:
        flag: one of ``MIXED_PRECISION``: ``"none"`` (float32), ``"auto"`` (``mixed_float16``
            on GPUs, ``mixed_bfloat16`` on TPUs and CPUs), ``"mixed_float16"``,
            ``"mixed_bfloat16"``.
        strategy: the strategy whose devices decide ``"auto"``; ``None`` looks at the visible
            devices.

    Returns:
        The policy name now in force (``"float32"``, ``"mixed_float16"`` or ``"mixed_bfloat16"``).

    Raises:
        ValueError: ``flag`` is not one of ``MIXED_PRECISION``.
    """
    check_choice("mixed_precision", flag, MIXED_PRECISION)
    if flag == "none":
        policy = "float32"
    elif flag == "auto":
        policy = "mixed_float16" if _accelerator(strategy) == "GPU" else "mixed_bfloat16"
    else:
        policy = flag
    keras.mixed_precision.set_global_policy(policy)
    return policy


def _accelerator(strategy) -> str:
    """``"TPU"``, ``"GPU"`` or ``"CPU"``: what ``strategy`` (or this machine) computes on."""
    if strategy is None:
        return "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "TPU"
    devices = " ".join(strategy.extended.worker_devices).upper()
    return "GPU" if "GPU" in devices else "CPU"


def set_seed(seed: int, *, deterministic: bool = True) -> None:
    """Make a run repeatable on one machine.

    Seeds Python's, NumPy's and TensorFlow's generators and Keras' global seed
    (``keras.utils.set_random_seed``); with ``deterministic``, also turns on TensorFlow op
    determinism (``tf.config.experimental.enable_op_determinism``), which makes GPU kernels
    and ``tf.data`` parallel maps deterministic, at some cost in speed. Same seed, same
    machine, same devices and versions: same weights. Across different hardware or numbers of
    replicas results still differ in the last bits. Op determinism cannot be turned off again
    in the same process, and afterwards stateful random ops without a seed raise an error.

    Args:
        seed: a non-negative integer.
        deterministic: also enable op determinism.

    Raises:
        ValueError: ``seed`` is not a non-negative integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} is not allowed; expected a non-negative integer.")
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


# --------------------------------------------------------------------------------------------
# Output directory, progress and history


def start_run(
    strategy: str = "auto",
    *,
    seed: int = 0,
    mixed_precision: str = "none",
    out_dir,
    batch_size: int | None = None,
    global_batch: int | None = None,
):
    """The first steps of every recipe, in the order they must run.

    Creates the strategy (first: multi-worker and TPU strategies set TensorFlow up), seeds,
    sets the dtype policy, works out the global batch and prepares the output folder.

    Args:
        strategy: a name for :func:`get_strategy`.
        seed: for :func:`set_seed`.
        mixed_precision: a flag for :func:`set_mixed_precision`.
        out_dir: the run's output folder (:func:`prepare_out_dir`).
        batch_size: per-replica batch; the global batch is this times the replicas.
        global_batch: instead of ``batch_size``, the global batch; must divide by the replicas.

    Returns:
        ``(strategy, global_batch, out_dir, chief)``: the strategy object, the global batch
        size, the prepared folder and whether this process is the chief.

    Raises:
        ValueError: neither or both batch sizes given, or one that does not fit the replicas.
        OutputDirError: ``out_dir`` cannot be written.
    """
    if (batch_size is None) == (global_batch is None):
        raise ValueError(
            f"batch_size={batch_size!r} and global_batch={global_batch!r}: give exactly one."
        )
    strategy = get_strategy(strategy)
    set_seed(seed)
    set_mixed_precision(mixed_precision, strategy)
    if global_batch is not None:
        per_replica_batch_size(global_batch, strategy)  # raises unless divisible
    else:
        global_batch = global_batch_size(batch_size, strategy)
    return strategy, global_batch, prepare_out_dir(out_dir), is_chief(strategy)


def prepare_out_dir(out_dir) -> str:
    """Create ``out_dir`` if needed and check that files can be written in it.

    Args:
        out_dir: the output directory.

    Returns:
        The directory as a string.

    Raises:
        OutputDirError: the directory cannot be created or written (one message naming it).
    """
    out_dir = os.fspath(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as err:
        raise OutputDirError(
            f"cannot write to the output directory {out_dir!r}: {err.strerror or err}. "
            "Choose a writable directory (--out)."
        ) from None
    return out_dir


def interactive() -> bool:
    """Whether a person is watching: stdout is a terminal and the ``CI`` variable is not set."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        return False
    return bool(getattr(sys.stdout, "isatty", lambda: False)())


class EpochLogger(keras.callbacks.Callback):
    """Print one line per epoch, for logs read later (CI, ``nohup``, batch jobs).

    ``epoch 3/10 - 4.2s - loss 0.1234 - accuracy 0.9650 - val_loss 0.1100 - ...``

    Keras' progress bar rewrites one line with carriage returns, which turns a log file into
    noise; ``verbose=2`` prints two lines per epoch. This prints one, flushed at once.
    """

    def on_train_begin(self, logs=None):
        self._epochs = self.params.get("epochs")

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        items = " - ".join(f"{k} {_format_value(v)}" for k, v in (logs or {}).items())
        print(f"epoch {epoch + 1}/{self._epochs} - {seconds:.1f}s - {items}", flush=True)


def _format_value(value) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{value:.4g}" if abs(value) < 1e-3 and value else f"{value:.4f}"


class _ResumableCSVLogger(keras.callbacks.CSVLogger):
    """``CSVLogger(append=True)`` that drops rows of epochs about to be run again.

    After an interruption the file may hold the row of an epoch whose backup was not written
    (killed between the two); on the first epoch of the resumed run, rows from that epoch on
    are removed, so the file holds each epoch once. A run that starts at epoch 0 starts a new
    file.
    """

    def __init__(self, filename):
        super().__init__(filename, append=True)
        self._opened = False

    def on_train_begin(self, logs=None):
        self._opened = False  # open at the first epoch, when the starting epoch is known

    def on_epoch_begin(self, epoch, logs=None):
        if not self._opened:
            _truncate_history(self.filename, keep_before=epoch)
            super().on_train_begin()
            self._opened = True

    def on_train_end(self, logs=None):
        if self._opened:
            super().on_train_end(logs)


def _truncate_history(path, keep_before: int) -> None:
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if keep_before <= 0 or not rows:
        os.remove(path)
        return
    header, body = rows[0], rows[1:]
    kept = [r for r in body if r and r[0].isdigit() and int(r[0]) < keep_before]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *kept])


class _ResumableModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """Best-only ``ModelCheckpoint`` that, on resuming, remembers the best value logged so far.

    Without this the first epoch after a restart always counts as an improvement and could
    overwrite a better checkpoint.
    """

    def __init__(self, filepath, history_path, **kwargs):
        super().__init__(filepath, save_best_only=True, **kwargs)
        self._history_path = history_path
        self._first_epoch = True

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        if self._first_epoch:
            self._first_epoch = False
            history = read_history(self._history_path)
            values = [
                v
                for e, v in zip(history.get("epoch", []), history.get(self.monitor, []))
                if e < epoch and not math.isnan(v)
            ]
            if values and epoch > 0:
                self.best = max(values) if self.mode == "max" else min(values)


def _monitor_mode(monitor: str, mode: str) -> str:
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    return "min" if "loss" in name or "error" in name else "max"


# --------------------------------------------------------------------------------------------
# Callbacks and the fit runner


def callbacks(
    out_dir,
    *,
    monitor: str = "val_loss",
    mode: str = "auto",
    save_best: bool = True,
    save_weights_only: bool = False,
    backup: bool = True,
    tensorboard: bool | None = None,
    lr_schedule=None,
    verbose: int | None = None,
    strategy: tf.distribute.Strategy | None = None,
    extra=(),
) -> list:
    """The callbacks every recipe trains with.

    In order:

    - ``BackupAndRestore`` into ``out_dir/backup``: saves weights, optimizer state and the
      epoch at the end of every epoch (keeping the previous backup too, in case a kill lands
      mid-write); a restarted run with the same ``out_dir`` continues from the last completed
      epoch. The backup is deleted when training finishes.
    - ``CSVLogger`` into ``out_dir/history.csv``: one row per epoch, appended across restarts
      without duplicated epochs.
    - ``ModelCheckpoint`` of the best epoch by ``monitor``: ``out_dir/best.keras`` (or
      ``best.weights.h5``), remembering the best value across restarts.
    - ``TerminateOnNaN``: stop when the loss becomes NaN.
    - ``TensorBoard`` into ``out_dir/logs`` (TensorFlow 2.21 no longer installs the
      ``tensorboard`` package; without it, and ``tensorboard=None``, this one is left out).
    - ``LearningRateScheduler(lr_schedule)`` when a schedule function ``(epoch, lr) -> lr``
      is given (a ``keras.callbacks.Callback`` is used as is).
    - :class:`EpochLogger` when ``verbose`` is 0 and nobody watches a terminal (see
      :func:`progress_verbose`), then ``extra``.

    Under multi-worker training only the chief writes to ``out_dir``; the other workers write
    to ``out_dir/.worker<N>`` (each needs its own backup to resume).

    Args:
        out_dir: output directory (created; must be writable).
        monitor: quantity for the best checkpoint (``"loss"`` when there is no validation).
        mode: ``"auto"``, ``"min"`` or ``"max"`` for ``monitor``; ``auto`` treats names with
            "loss" or "error" as lower-is-better and others as higher-is-better.
        save_best: add the best-checkpoint callback.
        save_weights_only: save ``best.weights.h5`` instead of a whole ``best.keras`` model.
        backup: add ``BackupAndRestore``.
        tensorboard: add ``TensorBoard``: ``True`` always (the ``tensorboard`` package must be
            installed), ``None`` when that package is installed, ``False`` never.
        lr_schedule: a function ``(epoch, lr) -> lr`` or a callback, or ``None``.
        verbose: the ``verbose`` value ``model.fit`` will use; ``None`` picks it with
            :func:`progress_verbose`. With 0, an :class:`EpochLogger` is added.
        strategy: the strategy training runs under (to pick the chief); ``None`` uses the
            current one.
        extra: further callbacks, appended.

    Returns:
        A list of ``keras.callbacks.Callback``.

    Raises:
        OutputDirError: ``out_dir`` cannot be written.
        ValueError: ``mode`` is not ``"auto"``, ``"min"`` or ``"max"``.
        ImportError: ``tensorboard=True`` but the ``tensorboard`` package is not installed.
    """
    check_choice("mode", mode, ("auto", "min", "max"))
    if tensorboard is None:
        tensorboard = tensorboard_available()
    elif tensorboard and not tensorboard_available():
        raise ImportError(
            "tensorboard=True needs the tensorboard package, which TensorFlow 2.21 no longer "
            "installs: pip install tensorboard (or pass tensorboard=None to skip it)."
        )
    out_dir = worker_out_dir(out_dir, strategy)
    prepare_out_dir(out_dir)
    history_path = os.path.join(out_dir, HISTORY_CSV)
    result = []
    if backup:
        result.append(
            keras.callbacks.BackupAndRestore(os.path.join(out_dir, BACKUP_DIR), double_checkpoint=True)
        )
    result.append(_ResumableCSVLogger(history_path))
    if save_best:
        result.append(
            _ResumableModelCheckpoint(
                os.path.join(out_dir, BEST_WEIGHTS if save_weights_only else BEST_MODEL),
                history_path,
                monitor=monitor,
                mode=_monitor_mode(monitor, mode),
                save_weights_only=save_weights_only,
            )
        )
    result.append(keras.callbacks.TerminateOnNaN())
    if tensorboard:
        result.append(keras.callbacks.TensorBoard(os.path.join(out_dir, LOG_DIR), write_graph=False))
    if lr_schedule is not None:
        if not isinstance(lr_schedule, keras.callbacks.Callback):
            lr_schedule = keras.callbacks.LearningRateScheduler(lr_schedule)
        result.append(lr_schedule)
    if (progress_verbose() if verbose is None else verbose) == 0:
        result.append(EpochLogger())
    result.extend(extra)
    return result


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package (needed by ``keras.callbacks.TensorBoard``) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


def progress_verbose() -> int:
    """``verbose`` for ``model.fit``: 1 (Keras' progress bar) when a person watches a
    terminal, else 0 with :class:`EpochLogger` printing one line per epoch."""
    return 1 if interactive() else 0


def worker_out_dir(out_dir, strategy=None) -> str:
    """``out_dir`` for the chief (and single-process runs), ``out_dir/.worker<N>`` otherwise."""
    out_dir = os.fspath(out_dir)
    strategy = strategy or tf.distribute.get_strategy()
    if is_chief(strategy):
        return out_dir
    resolver = getattr(strategy, "cluster_resolver", None)
    task_id = getattr(resolver, "task_id", None)
    return os.path.join(out_dir, f".worker{task_id}")


@contextlib.contextmanager
def multi_worker_compat(model: keras.Model):
    """Make ``fit``/``evaluate``/``predict`` work under ``MultiWorkerMirroredStrategy``.

    Keras 3.15's TensorFlow trainer fails under ``MultiWorkerMirroredStrategy`` in two places
    (keras-team/keras#20585, tensorflow/tensorflow#72388): before the first step it reduces the
    first batch, a tuple, with ``strategy.reduce`` (which takes one value) and raises "Attempt to
    convert a value (PerReplica...)"; and it averages the scalar step logs with
    ``strategy.reduce("MEAN", v, axis=0)``, which raises "Invalid reduction dimension 0 for
    input with 0 dimensions". Inside this context both are avoided: the model defers building
    to the first traced step (as it does without a strategy) and scalar logs are averaged over
    replicas with ``axis=None``. Gradients are all-reduced by the optimizer as usual, so every
    worker ends with the same weights. Outside multi-worker training this does nothing.

    Example:
        >>> with training.multi_worker_compat(model):
        ...     model.evaluate(test_ds)
    """
    strategy = model.distribute_strategy
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        yield
        return
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original_reduce = getattr(tf_trainer, "reduce_per_replica", None)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean"):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original_reduce(values, strategy, reduction)

    saved_strategy = getattr(model, "_distribute_strategy", None)
    model._distribute_strategy = None  # read via the scope below instead
    if original_reduce is not None:
        tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        with strategy.scope():
            yield
    finally:
        model._distribute_strategy = saved_strategy
        if original_reduce is not None:
            tf_trainer.reduce_per_replica = original_reduce


def fit(
    model: keras.Model,
    train_ds,
    val_ds=None,
    *,
    epochs: int,
    out_dir,
    steps_per_epoch: int | None = None,
    validation_steps: int | None = None,
    monitor: str | None = None,
    lr_schedule=None,
    verbose: int | None = None,
    extra_callbacks=(),
    **callback_options,
) -> keras.callbacks.History:
    """Train a compiled model with the standard callbacks; resume if a backup exists.

    Running the same call again after an interruption (Ctrl-C, SIGKILL, a preempted machine)
    continues from the last completed epoch and ends after ``epochs`` epochs in total.

    Args:
        model: a built and compiled ``keras.Model`` (build and compile it inside
            ``strategy.scope()`` for distributed training).
        train_ds: training data, typically a batched ``tf.data.Dataset``.
        val_ds: validation data or ``None``.
        epochs: total number of epochs, counting epochs done before a restart.
        out_dir: where ``history.csv``, ``best.keras``, ``backup/`` and ``logs/`` go.
        steps_per_epoch: batches per epoch (``None``: until ``train_ds`` is exhausted).
        validation_steps: validation batches (``None``: all of ``val_ds``).
        monitor: the best checkpoint's quantity; default ``"val_loss"`` with validation data,
            else ``"loss"``.
        lr_schedule: see :func:`callbacks`.
        verbose: 0, 1 or 2 for ``model.fit``; ``None``: the progress bar at a terminal, one
            line per epoch otherwise (see :func:`progress_verbose`).
        extra_callbacks: more callbacks, run after the standard ones.
        **callback_options: passed to :func:`callbacks` (``save_best``, ``tensorboard``, ...).

    Returns:
        A ``keras.callbacks.History`` whose ``history`` and ``epoch`` cover every epoch of the
        run, including those before a restart (read back from ``history.csv``).

    Raises:
        ValueError: ``epochs`` is not a positive integer or the model is not compiled.
        OutputDirError: ``out_dir`` cannot be written.
    """
    check_positive_int("epochs", epochs)
    if getattr(model, "optimizer", None) is None:
        raise ValueError(f"model {model.name!r} is not compiled; call model.compile(...) before fit.")
    verbose = progress_verbose() if verbose is None else verbose
    cbs = callbacks(
        out_dir,
        monitor=monitor or ("val_loss" if val_ds is not None else "loss"),
        lr_schedule=lr_schedule,
        verbose=verbose,
        strategy=model.distribute_strategy,
        extra=extra_callbacks,
        **callback_options,
    )
    with multi_worker_compat(model):
        keras_history = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps,
            callbacks=cbs,
            verbose=verbose,
            # Shuffling belongs to the input pipeline; Keras ignores (and warns about) this
            # flag for datasets, but it does shuffle NumPy arrays.
            shuffle=not isinstance(train_ds, tf.data.Dataset),
        )
    csv_logger = next(c for c in cbs if isinstance(c, _ResumableCSVLogger))
    logged = read_history(csv_logger.filename)
    history = keras.callbacks.History()
    history.set_model(model)
    history.set_params(keras_history.params)
    history.epoch = logged.pop("epoch", list(keras_history.epoch))
    history.history = logged or dict(keras_history.history)
    return history
