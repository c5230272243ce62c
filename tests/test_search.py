"""The bounded search for the fewest layers kept in float (calibration.search), against a linear scan."""

from __future__ import annotations

import math

import pytest

from edgecnn.calibration.search import MAX_ROUNDS, fewest_float_layers

LAYERS = [f"layer{i}" for i in range(64)]


def threshold_attempt(needed: int, calls: list[int]):
    def attempt(prefix: list[str]):
        calls.append(len(prefix))
        return len(prefix) >= needed, {"kept": len(prefix)}

    return attempt


@pytest.mark.parametrize("total", [1, 2, 3, 7, 13, 64])
def test_finds_the_shortest_prefix_a_linear_scan_finds(total):
    ranking = LAYERS[:total]
    for needed in range(1, total + 1):
        calls: list[int] = []
        result = fewest_float_layers(ranking, threshold_attempt(needed, calls))
        scan = next(k for k in range(1, total + 1) if k >= needed)
        assert result.met and result.chosen == ranking[:scan]
        assert result.best.kept_float == scan and result.best.outcome == {"kept": scan}
        assert len(calls) == len(set(calls)) <= 2 * math.ceil(math.log2(total)) + 1
        assert len(calls) <= MAX_ROUNDS


def test_no_prefix_meets_the_budget_ends_on_the_whole_ranking():
    calls: list[int] = []
    result = fewest_float_layers(LAYERS[:10], threshold_attempt(11, calls))
    assert not result.met and result.chosen == []
    assert result.best.kept_float == 10 and calls == [1, 2, 4, 8, 10]


def test_the_round_budget_is_kept_and_the_last_round_tries_everything():
    calls: list[int] = []
    result = fewest_float_layers(LAYERS, threshold_attempt(60, calls), max_rounds=4)
    assert calls == [1, 2, 4, 64] and result.met and result.chosen == LAYERS
    calls.clear()
    missed = fewest_float_layers(LAYERS, threshold_attempt(65, calls), max_rounds=3)
    assert calls == [1, 2, 64] and not missed.met


def test_a_non_monotonic_metric_still_ends_on_a_prefix_that_met():
    good = {3, 8, 9, 10}

    def attempt(prefix):
        return len(prefix) in good, len(prefix)

    result = fewest_float_layers(LAYERS[:12], attempt)
    assert result.met and len(result.chosen) in good
    assert [r.kept_float for r in result.rounds] == [1, 2, 4, 8, 6, 7]


def test_zero_rounds_is_refused():
    with pytest.raises(ValueError):
        fewest_float_layers(LAYERS, lambda prefix: (True, None), max_rounds=0)
