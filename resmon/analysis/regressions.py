"""Is a run a regression?  Its figures against the job's baseline: the median and MAD
of the job's previous runs in the window.

Two tests, each both *robustly unusual* and *large*:

- **single**: the run alone.  ``x - median > mad_threshold x 1.4826 x MAD`` (1.4826 x
  MAD estimates the standard deviation, and one outlier among the previous runs does
  not move it) and ``x - median > change_threshold x median``.
- **shift**: the run and the ones just before it.  A regression in CI is a step that
  stays (a new dependency, a bigger test suite); at 20 % noise a +30 % run alone is
  1.5 standard deviations out, which no single-run test can tell from noise, but the
  median of the m runs since the step tells it.  For m = 2 .. ``shift_runs``: the
  median of the last m runs (this one included) against the median and MAD of the
  runs before them, ``difference > shift_threshold x 1.4826 x MAD x sqrt(sd_m^2 +
  1.2533^2 / n)`` (the standard error of the difference of the two medians: sd_m is
  that of the median of m values, :func:`resmon.analysis.robust.median_sd`) and
  ``difference > change_threshold x median``; the run itself above the old median.
  It flags the run at which the evidence *becomes* enough, trying m from 2 up: once
  the same runs without this one (m - 1 of them, the single test for m = 2) were
  enough already, the step was flagged at an earlier run and this test stops, so a
  step is flagged once by it, not again at each run after it.

Both also need more than the figure's :data:`MIN_CHANGE` (a job going from 0.01 to
0.02 cores doubled, and nobody cares).  Only increases are regressions.  Figures
compared: the job's CPU-seconds, CPU p95 (cores), memory peak (bytes) and duration,
and each container's CPU-seconds, CPU p95 and memory peak.  Fewer than
:data:`MIN_BASELINE_RUNS` previous runs with a figure: no comparison of it (and the
shift test over m runs needs that many before them).  ``bench/regressions.py``
measures both on injected steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resmon.analysis.robust import MAD_SCALE, mad, median, median_sd, qn_scale

MIN_BASELINE_RUNS = 5
DEFAULT_MAD_THRESHOLD = 3.5
DEFAULT_CHANGE_THRESHOLD = 0.20
DEFAULT_SHIFT_THRESHOLD = 3.0
DEFAULT_SHIFT_RUNS = 5
# The median of n baseline values strays 1.2533 / sqrt(n) standard deviations.
_BASELINE_MEDIAN_SD2 = 1.2533**2
# The figures compared, each with the smallest change that counts (in its unit).
MIN_CHANGE = {
    "cpu_seconds": 1.0,
    "cpu_cores_p95": 0.05,
    "memory_bytes_peak": 16 * 1024 * 1024,
    "duration_seconds": 5.0,
}
JOB_METRICS = ("cpu_seconds", "cpu_cores_p95", "memory_bytes_peak", "duration_seconds")
CONTAINER_METRICS = ("cpu_seconds", "cpu_cores_p95", "memory_bytes_peak")


@dataclass(frozen=True)
class Thresholds:
    mad: float = DEFAULT_MAD_THRESHOLD
    change: float = DEFAULT_CHANGE_THRESHOLD
    shift: float = DEFAULT_SHIFT_THRESHOLD
    shift_runs: int = DEFAULT_SHIFT_RUNS  # below 2: no shift test

    def answer(self) -> dict[str, float]:
        return {
            "mad": self.mad,
            "change": self.change,
            "shift": self.shift,
            "shift_runs": self.shift_runs,
        }


def _large(metric: str, difference: float, centre: float, value: float, change: float) -> bool:
    return (
        difference > MIN_CHANGE.get(metric, 0.0)
        and difference > change * centre
        and (centre > 0 or value > 0)
    )


@dataclass(frozen=True)
class _Baseline:
    """The runs a test compares with: their median, robust sigma and count."""

    centre: float
    sigma: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> _Baseline:
        centre = median(values)
        return cls(centre, MAD_SCALE * mad(values, centre), len(values))


def _shift_baseline(values: Sequence[float]) -> _Baseline:
    """The shift test's baseline.  Its scale is the larger of Qn and 1.4826 x MAD: Qn is
    steadier than the MAD on 15 runs (a MAD small by chance made false shifts), but
    0 on a baseline of two tied levels (600, 1400, 600, ...), where the MAD is not."""
    centre = median(values)
    sigma = max(qn_scale(values), MAD_SCALE * mad(values, centre))
    return _Baseline(centre, sigma, len(values))


def _single(metric: str, value: float, base: _Baseline, thresholds: Thresholds) -> bool:
    difference = value - base.centre
    return difference > thresholds.mad * base.sigma and _large(
        metric, difference, base.centre, value, thresholds.change
    )


def _shift_score(recent: Sequence[float], base: _Baseline) -> tuple[float, float | None]:
    """The difference of the medians, and it over its standard error (None for a 0 MAD)."""
    difference = median(recent) - base.centre
    error = base.sigma * math.sqrt(median_sd(len(recent)) ** 2 + _BASELINE_MEDIAN_SD2 / base.runs)
    return difference, (difference / error if error > 0 else None)


def _enough(metric: str, recent: Sequence[float], base: _Baseline, thresholds: Thresholds) -> bool:
    """Whether ``recent`` (newest first) shows a step over ``base``: the single test for one run."""
    if len(recent) == 1:
        return _single(metric, recent[0], base, thresholds)
    if recent[0] <= base.centre:
        return False
    difference, score = _shift_score(recent, base)
    if not _large(metric, difference, base.centre, recent[0], thresholds.change):
        return False
    return score is None or score > thresholds.shift


def find_shift(
    metric: str, value: float, previous: Sequence[float], thresholds: Thresholds
) -> dict[str, Any] | None:
    """The step this run completes the evidence of, or None.  ``previous`` newest first."""
    series = [value, *previous]
    ordered = sorted(previous)
    for m in range(2, thresholds.shift_runs + 1):
        if len(series) - m < MIN_BASELINE_RUNS:
            break
        recent, before = series[:m], series[m:]
        # Cheap first, with no sort: most runs are nowhere near the old median plus the
        # change.  ``before`` is ``previous`` less m - 1 runs, so its lower middle value
        # is at least the one of ``ordered`` at the same index.
        floor = ordered[(len(before) - 1) // 2]
        if value <= floor or median(recent) <= (1 + thresholds.change) * floor:
            continue
        centre = median(before)
        if value <= centre or median(recent) - centre <= thresholds.change * centre:
            continue
        base = _shift_baseline(before)
        if _enough(metric, recent[1:], base, thresholds):
            return None  # a step the runs before this one showed already: flagged then
        if _enough(metric, recent, base, thresholds):
            difference, score = _shift_score(recent, base)
            return {
                "runs": m,
                "median_before": base.centre,
                "sigma_before": base.sigma,
                "baseline_runs": base.runs,
                "median_recent": median(recent),
                "change": difference / base.centre if base.centre > 0 else None,
                "score": score,
            }
    return None


def compare_value(
    metric: str, value: float, previous: Sequence[float], thresholds: Thresholds
) -> dict[str, Any] | None:
    """One figure against its baseline (``previous``: the earlier runs' figures, newest
    first); None when the baseline is too short.

    ``median``, ``mad``, ``change`` and ``robust_score`` are the run's against all of
    ``previous``, whichever test flagged it; ``test`` says which did ("single" or
    "shift", None when neither), ``runs`` over how many runs, and ``shift`` the shift
    test's figures (the medians before and over the last ``runs`` runs) when it did."""
    if len(previous) < MIN_BASELINE_RUNS:
        return None
    base = _Baseline.of(previous)
    difference = value - base.centre
    single = _single(metric, value, base, thresholds)
    shift = None if single else find_shift(metric, value, previous, thresholds)
    return {
        "metric": metric,
        "value": value,
        "median": base.centre,
        "mad": base.sigma / MAD_SCALE,
        "baseline_runs": len(previous),
        "change": difference / base.centre if base.centre > 0 else None,
        "robust_score": difference / base.sigma if base.sigma > 0 else None,
        "regression": single or shift is not None,
        "test": "single" if single else ("shift" if shift else None),
        "runs": 1 if single else (shift["runs"] if shift else None),
        "shift": shift,
    }


def _figures(
    current: Mapping[str, Any],
    previous: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    thresholds: Thresholds,
    container: str | None,
) -> list[dict[str, Any]]:
    out = []
    for metric in metrics:
        value = current.get(metric)
        if not isinstance(value, (int, float)):
            continue
        history = [p[metric] for p in previous if isinstance(p.get(metric), (int, float))]
        figure = compare_value(metric, float(value), [float(v) for v in history], thresholds)
        if figure is not None:
            scope = "job" if container is None else "container"
            out.append({"scope": scope, "container": container, **figure})
    return out


def compare_run(
    current: Mapping[str, Any],
    previous: Sequence[Mapping[str, Any]],
    thresholds: Thresholds = Thresholds(),
) -> dict[str, Any]:
    """A run against the runs before it, newest first (the shift test reads their order).

    ``current`` and each of ``previous``: the job's figures under
    :data:`JOB_METRICS` and ``containers``: {name: {metric: value}}.  The answer lists
    every figure compared (the job's with ``container`` None), and how many are
    regressions."""
    figures = _figures(current, previous, JOB_METRICS, thresholds, None)
    for name, figures_now in sorted((current.get("containers") or {}).items()):
        before = [p["containers"][name] for p in previous if name in (p.get("containers") or {})]
        figures += _figures(figures_now, before, CONTAINER_METRICS, thresholds, name)
    return {
        "baseline_runs": len(previous),
        "thresholds": thresholds.answer(),
        "regressions": sum(1 for f in figures if f["regression"]),
        "figures": figures,
    }
