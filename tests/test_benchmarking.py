"""kapps.benchmarking: the alternating-rounds timer and the ratio arithmetic (no speed is
asserted; only the order of calls and the bookkeeping)."""

import pytest

from kapps.benchmarking import alternate_rounds, op_difference, rate_summary


def test_alternate_rounds_warms_up_then_swaps_the_order_every_round():
    calls = []
    steps = {
        label: {"inference": {jit: (lambda label=label, jit=jit: calls.append((label, jit))) for jit in (False, True)}}
        for label in ("a", "b")
    }
    times = alternate_rounds(steps, warmup=1, repeats=2, steps_per_round=3)
    warm, timed = calls[:4], calls[4:]
    assert warm == [("a", False), ("a", True), ("b", False), ("b", True)]
    # round 1: jit False then True, a before b; round 2: both orders reversed
    expected_first = [("a", False), ("b", False), ("a", True), ("b", True)]
    expected_second = [("b", True), ("a", True), ("b", False), ("a", False)]
    assert timed[::3] == expected_first + expected_second
    assert all(len(times[label]["inference"][jit]) == 2 for label in "ab" for jit in (False, True))
    assert all(t >= 0 for label in "ab" for jit in (False, True) for t in times[label]["inference"][jit])


def test_rate_summary_and_op_difference():
    rates, ratio, rounds = rate_summary(8, [0.5, 1.0, 2.0], [1.0, 1.0, 1.0])
    assert rates == [8.0, 8.0] and ratio == 1.0
    assert rounds == pytest.approx([0.5, 1.0, 2.0])  # per round: second time / first time
    assert op_difference({"MatMul": 3, "Add": 1}, {"MatMul": 1, "Einsum": 2}) == {"Add": 1, "Einsum": -2, "MatMul": 2}
