"""Robust figures of a handful of runs: median, MAD, percentiles, a trend's slope."""

from __future__ import annotations

from collections.abc import Sequence

from resmon.stats import percentile

# 1.4826 x MAD estimates the standard deviation of normally distributed values.
MAD_SCALE = 1.4826


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median of no values")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def mad(values: Sequence[float], centre: float | None = None) -> float:
    """The median absolute deviation from ``centre`` (the median by default)."""
    centre = median(values) if centre is None else centre
    return median([abs(v - centre) for v in values])


def quantile(values: Sequence[float], p: float) -> float:
    """Percentile ``p`` (0..1) by the wire contract's index rule (:func:`resmon.stats.percentile`)."""
    return percentile(sorted(values), p)


def spread(values: Sequence[float]) -> float:
    """The robust coefficient of variation, 1.4826 x MAD / median (0 for a median of 0)."""
    if not values:
        return 0.0
    centre = median(values)
    return MAD_SCALE * mad(values, centre) / centre if centre > 0 else 0.0


def slope(values: Sequence[float]) -> float:
    """Theil-Sen slope per step of ``values`` in order: the median of the pairwise
    slopes, which one outlier (a spike, an OOM-killed run) does not tilt."""
    n = len(values)
    pairs = [(values[j] - values[i]) / (j - i) for i in range(n) for j in range(i + 1, n)]
    return median(pairs) if pairs else 0.0
