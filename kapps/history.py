"""Reading the ``history.csv`` files that training writes (no TensorFlow needed)."""

import csv
import math
import os


def read_history(csv_path) -> dict:
    """Read a ``history.csv`` written by ``keras.callbacks.CSVLogger``.

    Args:
        csv_path: the file.

    Returns:
        ``{column: [values]}`` with ``"epoch"`` as ints and the rest as floats. ``CSVLogger``
        writes ``NA`` for a value it did not get (it adds ``val_*`` columns even to runs
        without validation): those become NaN, and columns that hold nothing else are left
        out. Empty when the file does not exist.
    """
    if not os.path.exists(csv_path):
        return {}
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = {}
    for row in rows:
        for key, value in row.items():
            columns.setdefault(key, []).append(value)
    return {
        key: [int(v) for v in values] if key == "epoch" else [_to_float(v) for v in values]
        for key, values in columns.items()
        if key == "epoch" or any(v not in ("NA", "", None) for v in values)
    }


def _to_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
