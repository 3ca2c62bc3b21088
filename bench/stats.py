"""Summaries of repeated measurements, and the alternating order that keeps their ratios fair."""

from __future__ import annotations

import os
import statistics
from typing import Iterator, Sequence


def summarize(values: Sequence[float], digits: int = 3) -> dict:
    """The median with min and max, so that a noisy machine shows as a wide range, not a wrong ratio."""
    return {
        "values": [round(value, digits) for value in values],
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (`fraction` 0.5 is the median of an odd count, 0.99 the p99)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil without floats going astray at exact ranks
    return ordered[int(rank) - 1]


def alternating(names: Sequence[str], rounds: int) -> Iterator[tuple[int, str]]:
    """(round, name) for every round, the order reversed every other round, so that
    no command always runs first on a cold cache or last on a tired machine."""
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            yield round_, name


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages, to say how busy it was while measuring."""
    return [round(value, 2) for value in os.getloadavg()]


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 2) if denominator else None
