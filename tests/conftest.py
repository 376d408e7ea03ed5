"""Test setup shared by every test module.

At import, before TensorFlow creates its devices, the host CPU is split into two logical
devices, so ``MirroredStrategy`` runs with two replicas on any machine (CI has no GPU).

Real data lives beside the checkout in ``../shared`` (override with ``KAPPS_SHARED_DIR``);
the fixtures below skip a test, naming the path looked up, only when that data is absent.
"""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from kapps.testing import use_logical_cpus  # noqa: E402

#: Logical CPU devices the tests train on (``MirroredStrategy`` replicas).
NUM_CPU_REPLICAS = 2

use_logical_cpus(NUM_CPU_REPLICAS)

SHARED_DIR = Path(
    os.environ.get("KAPPS_SHARED_DIR") or Path(__file__).resolve().parents[1].parent / "shared"
)


def _existing(path: Path, what: str) -> Path:
    if not path.is_dir():
        pytest.skip(f"{what} not found at {path} (set KAPPS_SHARED_DIR to the shared/ folder)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared folder beside the checkout (``../shared`` or ``$KAPPS_SHARED_DIR``)."""
    return _existing(SHARED_DIR, "shared data folder")


@pytest.fixture(scope="session")
def tfds_dir() -> Path:
    """Prepared TensorFlow Datasets (``shared/tfds``: ``mnist``, ``tiny_shakespeare``)."""
    return _existing(SHARED_DIR / "tfds", "prepared TFDS data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Raw datasets (``shared/data``: ``cifar10``, ``camvid``, ``bccd``, ...; see its README)."""
    return _existing(SHARED_DIR / "data", "raw datasets folder")


@pytest.fixture
def cpu_strategy() -> tf.distribute.MirroredStrategy:
    """``MirroredStrategy`` over the logical CPU devices (two replicas)."""
    from kapps import testing

    return testing.cpu_strategy()


@pytest.fixture
def restore_global_state():
    """Undo the process-wide settings a recipe makes (op determinism, the dtype policy), so
    tests that run a recipe in-process leave later tests as they found them."""
    import keras

    policy = keras.mixed_precision.global_policy()
    yield
    keras.mixed_precision.set_global_policy(policy)
    from tensorflow.python.framework import config as tf_config

    if hasattr(tf_config, "disable_op_determinism"):
        tf_config.disable_op_determinism()
