"""Run statistics: percentiles and compact per-run series.

The percentile definition is the wire contract's: percentile p of n sorted
values is ``sorted[int((n - 1) * p)]``.  Values are kept in ``array('d')``
(8 bytes a sample), so a 6-hour run at 1 s costs about 170 KiB a series.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

STAT_KEYS = ("peak", "p99", "p95", "p75", "p50", "avg")
PERCENTILES = (("p99", 0.99), ("p95", 0.95), ("p75", 0.75), ("p50", 0.50))


def percentile(sorted_values: list[float] | array, p: float) -> float:
    """Percentile ``p`` (0..1) of already sorted values, by the wire contract's index rule."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("percentile of no values")
    return sorted_values[int((n - 1) * p)]


def summarize(values: Iterable[float]) -> dict[str, float] | None:
    """The stat object ``{peak, p99, p95, p75, p50, avg}`` of values; None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    out = {"peak": ordered[-1]}
    for key, p in PERCENTILES:
        out[key] = percentile(ordered, p)
    out["avg"] = sum(ordered) / len(ordered)
    return out


def empty_stat() -> dict[str, float]:
    """A stat object of zeros, for a series that has no values (the wire format has no null)."""
    return dict.fromkeys(STAT_KEYS, 0.0)


class Series:
    """A growing series of floats, stored compactly, summarised on demand."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values = array("d")

    def add(self, value: float) -> None:
        self._values.append(value)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def values(self) -> array:
        return self._values

    def summary(self) -> dict[str, float] | None:
        return summarize(self._values)

    def summary_or_zero(self) -> dict[str, float]:
        return self.summary() or empty_stat()
