"""Confidence intervals for benchmark scores.

Accuracy on n items is a binomial proportion: the Wilson score interval behaves at small n
and at 0 % / 100 %, where the normal approximation does not. Means of continuous scores
(ROUGE-L, judge grades) and base-vs-tuned differences on the same items use a seeded
percentile bootstrap (paired for differences, so item difficulty cancels out).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval for a proportion; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def _percentiles(values: list[float], level: float) -> tuple[float, float]:
    values.sort()
    lo = values[int(math.floor((1 - level) / 2 * (len(values) - 1)))]
    hi = values[int(math.ceil((1 + level) / 2 * (len(values) - 1)))]
    return lo, hi


def bootstrap_mean(values: Sequence[float], *, resamples: int = 2000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    n = len(values)
    if n == 0:
        return 0.0, 0.0
    rng = random.Random(seed)
    means = [sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples)]
    return _percentiles(means, level)


def paired_bootstrap_diff(a: Sequence[float], b: Sequence[float], *, resamples: int = 2000, seed: int = 0,
                          level: float = 0.95) -> tuple[float, float, float]:
    """(mean(b) - mean(a), low, high) resampling items jointly: the CI of the improvement."""
    if len(a) != len(b):
        raise ValueError("paired scores must cover the same items")
    n = len(a)
    if n == 0:
        return 0.0, 0.0, 0.0
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    rng = random.Random(seed)
    means = [sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples)]
    lo, hi = _percentiles(means, level)
    return sum(diffs) / n, lo, hi
