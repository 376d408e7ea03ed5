"""Side-by-side timing for benchmark scripts: two implementations of one model, timed in
alternating rounds in one process so that a noisy, shared machine slows both alike.

Used by ``benchmarks/classifiers_vs_keras_applications.py`` and
``benchmarks/vit_b16_vs_keras_hub.py``; works for any pair of step functions (a user's own
model against a reference, say). Speed is measured by running these, never in a test.
"""

from __future__ import annotations

import statistics
import sys
import time


def size_defaults(parser, args, defaults, zero_allowed=("warmup",)):
    """Fill the size flags a benchmark left unset (``None``) from ``defaults`` (its full or
    ``--tiny`` table) and reject values below 1 (below 0 for ``zero_allowed``) with a usage
    error naming the flag."""
    for flag, value in defaults.items():
        if getattr(args, flag) is None:
            setattr(args, flag, value)
        minimum = 0 if flag in zero_allowed else 1
        if getattr(args, flag) < minimum:
            parser.error(
                f"--{flag.replace('_', '-')}={getattr(args, flag)} is not allowed; expected at "
                f"least {minimum}"
            )


def alternate_rounds(steps, *, warmup, repeats, steps_per_round, name=""):
    """Time every step function in alternating rounds.

    Every function first runs ``warmup`` times (tracing, compiling). Then, ``repeats`` times:
    for each mode, each XLA setting and each implementation, ``steps_per_round`` calls are
    timed together. The order of implementations and of XLA settings reverses every round,
    so neither always runs first (or right after a compilation).

    Args:
        steps: ``{label: {mode: {jit: function}}}``, the same modes and jit settings under
            every label; a function takes no arguments and runs one step.
        warmup: untimed calls of each function first.
        repeats: rounds.
        steps_per_round: calls per timing.
        name: shown in the per-round progress line on stderr.

    Returns:
        ``{label: {mode: {jit: [seconds per step, one per round]}}}``.
    """
    labels = list(steps)
    modes = list(steps[labels[0]])
    jits = list(steps[labels[0]][modes[0]])
    for label in labels:
        for mode in modes:
            for jit in jits:
                for _ in range(warmup):
                    steps[label][mode][jit]()
    times = {label: {mode: {jit: [] for jit in jits} for mode in modes} for label in labels}
    order, jit_order = list(labels), list(jits)
    for repeat in range(repeats):
        for mode in modes:
            for jit in jit_order:
                for label in order:
                    start = time.perf_counter()
                    for _ in range(steps_per_round):
                        steps[label][mode][jit]()
                    times[label][mode][jit].append((time.perf_counter() - start) / steps_per_round)
        order.reverse()
        jit_order.reverse()
        prefix = f"{name}: " if name else ""
        print(f"{prefix}round {repeat + 1}/{repeats} done", file=sys.stderr, flush=True)
    return times


def rate_summary(batch_size, first, second):
    """Examples/s of two lists of per-step times, their ratio of medians (first / second in
    speed) and the sorted per-round ratios."""
    rates = [batch_size / statistics.median(t) for t in (first, second)]
    rounds = sorted(s / f for f, s in zip(first, second))
    return rates, rates[0] / rates[1], rounds


def op_difference(first, second):
    """``{op type: first count - second count}`` for the op types whose counts differ."""
    return {
        op: first.get(op, 0) - second.get(op, 0)
        for op in sorted(set(first) | set(second))
        if first.get(op, 0) != second.get(op, 0)
    }


def graph_op_counts(function, *inputs):
    """``{op type: count}`` of the graph the ``tf.function`` ``function`` traces for
    ``inputs`` (nested function calls included): what a side-by-side benchmark compares to
    explain a speed difference (see :func:`op_difference`)."""
    counts = {}

    def walk(graph):
        for op in graph.get_operations():
            counts[op.type] = counts.get(op.type, 0) + 1
            if op.type in ("PartitionedCall", "StatefulPartitionedCall"):
                nested = graph._get_function(op.get_attr("f").name)
                if nested is not None and hasattr(nested, "graph"):
                    walk(nested.graph)

    walk(function.get_concrete_function(*inputs).graph)
    return counts


def mode_summary(times, per_step, unit, modes, jits, labels=("kapps", "keras-hub")):
    """The JSON record of a side-by-side benchmark, per mode: for each XLA setting both
    rates (``{unit}_per_s``), their ratio (first label / second), the median and list of
    per-round ratios and the step times; with both XLA settings also each side's XLA gain.

    ``times[label][mode][jit]`` holds per-round step times; ``per_step`` is the examples (or
    tokens) one step processes.
    """
    first, second = labels
    keys = [label.replace("-", "_") for label in labels]
    summary = {}
    for mode in modes:
        entry = summary[mode] = {}
        for jit in jits:
            (first_rate, second_rate), ratio, rounds = rate_summary(
                per_step, times[first][mode][jit], times[second][mode][jit]
            )
            entry["xla" if jit else "no_xla"] = {
                f"{keys[0]}_{unit}_per_s": first_rate,
                f"{keys[1]}_{unit}_per_s": second_rate,
                "ratio": ratio,
                "median_round_ratio": statistics.median(rounds),
                "round_ratios": rounds,
                f"{keys[0]}_step_s": times[first][mode][jit],
                f"{keys[1]}_step_s": times[second][mode][jit],
            }
        if len(jits) == 2:
            entry["xla_gain"] = {}
            for label in labels:
                _, gain, rounds = rate_summary(
                    per_step, times[label][mode][True], times[label][mode][False]
                )
                entry["xla_gain"][label] = {"gain": gain, "round_gains": rounds}
    return summary
