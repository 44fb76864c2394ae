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


# The standard deviation of the median of m normal values, in units of their standard
# deviation (measured: 200,000 draws each; m = 2 is the mean, m = 4 the mean of the
# middle two).  Past the table, the large-sample sqrt(pi / 2) / sqrt(m).
_MEDIAN_SD = {1: 1.0, 2: 0.708, 3: 0.669, 4: 0.546, 5: 0.535, 6: 0.463, 7: 0.458}


def median_sd(m: int) -> float:
    """How far the median of ``m`` values strays from the centre, per standard deviation."""
    if m < 1:
        raise ValueError("median of no values")
    return _MEDIAN_SD.get(m, 1.2533 / m**0.5)


# Qn's factors for n = 2..9 values (Croux and Rousseeuw, 1992).
_QN_SMALL = {2: 0.399, 3: 0.994, 4: 0.512, 5: 0.844, 6: 0.611, 7: 0.857, 8: 0.669, 9: 0.872}


def qn_scale(values: Sequence[float]) -> float:
    """Rousseeuw and Croux's Qn: a robust standard deviation from the pairwise distances
    (their first quartile, about), 82 % efficient on normal values where the MAD is 37 %:
    a baseline of 15 runs gives a steadier scale.  With its small-sample factors."""
    n = len(values)
    if n < 2:
        return 0.0
    distances = sorted(abs(values[i] - values[j]) for i in range(n) for j in range(i + 1, n))
    h = n // 2 + 1
    k = h * (h - 1) // 2
    small = _QN_SMALL.get(n) or (n / (n + 1.4) if n % 2 else n / (n + 3.8))
    return 2.2219 * distances[k - 1] * small
