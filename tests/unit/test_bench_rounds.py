"""The benchmark's bookkeeping: rounds shared over server pairs, ratios taken per round."""

from __future__ import annotations

from typing import Any

import pytest

from bench.run import _shares, _summary


@pytest.mark.parametrize(
    ("rounds", "pairs", "shares"),
    [(10, 2, [5, 5]), (10, 3, [4, 3, 3]), (4, 1, [4]), (2, 5, [1, 1]), (3, 0, [3])],
)
def test_rounds_are_shared_evenly_and_every_pair_gets_one(
    rounds: int, pairs: int, shares: list[int]
) -> None:
    assert _shares(rounds, pairs) == shares
    assert sum(_shares(rounds, pairs)) == rounds


def _round(rps: float, p99: float = 10.0) -> dict[str, Any]:
    return {
        "rps": rps,
        "p50_ms": 5.0,
        "p99_ms": p99,
        "requests": 100,
        "errors": 0,
        "cpu_ms_per_request": 1.0,
    }


def test_the_ratio_is_the_median_of_per_round_ratios_not_a_ratio_of_medians() -> None:
    rounds = {
        "creditgate": [_round(80), _round(50), _round(90)],
        "reference": [_round(100), _round(100), _round(100)],
    }

    summary = _summary(rounds)

    assert summary["ratio"]["rps_per_round"] == [0.8, 0.5, 0.9]
    assert summary["ratio"]["rps"] == 0.8
    assert summary["creditgate"]["rps"] == 80
    assert summary["creditgate"]["requests"] == 300
