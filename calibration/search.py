"""The fewest ranked layers to keep in float so that a quantized model meets its budget, in bounded rounds.

Each round quantizes once with a prefix of the ranking kept in float and checks the result; a round is the
expensive unit (a quantize-and-check), so the search bounds them instead of walking the ranking one layer at a
time as OpenVINO's AccuracyAwareQuantization and NNCF's ``quantize_with_accuracy_control`` do (they revert the
most harmful layer, re-validate, and repeat up to ``max_iter_num`` times). The prefix grows by doubling
(1, 2, 4, ...) until a round meets the budget, then bisects between the last miss and the first hit, so a
ranking of ``n`` layers takes at most about ``2 log2(n)`` rounds: 12 rounds cover 64 layers. When the
doubling runs out of rounds, the last round keeps the whole ranking in float, so the search ends with a
model that meets the budget whenever any prefix does.

The metric need not be monotonic in the prefix length (keeping one more layer in float can cost a little
agreement by chance); bisection then finds a prefix that meets the budget, not necessarily the shortest one,
and every round is recorded so the report shows what was tried.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["MAX_ROUNDS", "Round", "SearchResult", "fewest_float_layers"]

MAX_ROUNDS = 12
"""Quantize-and-check rounds a search may take, the first (nothing kept in float) not counted."""

Outcome = TypeVar("Outcome")


@dataclass
class Round(Generic[Outcome]):
    kept_float: int
    met: bool
    outcome: Outcome


@dataclass
class SearchResult(Generic[Outcome]):
    chosen: list[str]
    met: bool
    rounds: list[Round[Outcome]]
    best: Round[Outcome]


def fewest_float_layers(
    ranking: Sequence[str],
    attempt: Callable[[list[str]], tuple[bool, Outcome]],
    *,
    max_rounds: int = MAX_ROUNDS,
) -> SearchResult[Outcome]:
    """Search the shortest prefix of ``ranking`` (most harmful layer first) whose ``attempt(prefix)`` meets the
    budget. ``attempt`` returns ``(met, outcome)``; it is called at most ``max_rounds`` times, each prefix once.

    ``best`` is the round that met the budget with the fewest layers, or, when none did, the last round (the
    whole ranking when the rounds allowed it): the caller decides whether a miss is an error.
    """
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
    rounds: list[Round[Outcome]] = []
    tried: dict[int, Round[Outcome]] = {}

    def run(count: int) -> Round[Outcome]:
        if count not in tried:
            met, outcome = attempt(list(ranking[:count]))
            tried[count] = Round(count, met, outcome)
            rounds.append(tried[count])
        return tried[count]

    total = len(ranking)
    low, high = 0, None
    count = 1
    while total and len(rounds) < max_rounds:
        if len(rounds) == max_rounds - 1 and count < total:
            count = total
        if run(count).met:
            high = count
            break
        low = count
        if count == total:
            break
        count = min(2 * count, total)
    while high is not None and high - low > 1 and len(rounds) < max_rounds:
        middle = (low + high) // 2
        if run(middle).met:
            high = middle
        else:
            low = middle
    if high is None:
        best = rounds[-1] if rounds else None
        return SearchResult([], False, rounds, best)
    return SearchResult(list(ranking[:high]), True, rounds, tried[high])
