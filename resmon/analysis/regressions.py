"""Is a run a regression?  Its figures against the job's baseline: the median and MAD
of the job's previous runs in the window.

A figure is a regression when it is both

- **robustly unusual**: ``x - median > mad_threshold x 1.4826 x MAD`` (1.4826 x MAD
  estimates the standard deviation, and one outlier among the previous runs does
  not move it), and
- **large**: ``x - median > change_threshold x median``, and more than the figure's
  :data:`MIN_CHANGE` (a job going from 0.01 to 0.02 cores doubled, and nobody cares).

Only increases are regressions (a job that got lighter is not flagged).  Figures
compared: the job's CPU-seconds, CPU p95 (cores), memory peak (bytes) and duration,
and each container's CPU-seconds, CPU p95 and memory peak.  Fewer than
:data:`MIN_BASELINE_RUNS` previous runs with a figure: no comparison of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resmon.analysis.robust import MAD_SCALE, mad, median

MIN_BASELINE_RUNS = 5
DEFAULT_MAD_THRESHOLD = 3.5
DEFAULT_CHANGE_THRESHOLD = 0.20
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

    def answer(self) -> dict[str, float]:
        return {"mad": self.mad, "change": self.change}


def compare_value(
    metric: str, value: float, previous: Sequence[float], thresholds: Thresholds
) -> dict[str, Any] | None:
    """One figure against its baseline; None when the baseline is too short."""
    if len(previous) < MIN_BASELINE_RUNS:
        return None
    centre = median(previous)
    deviation = mad(previous, centre)
    difference = value - centre
    change = difference / centre if centre > 0 else None
    robust = MAD_SCALE * deviation
    score = difference / robust if robust > 0 else None
    unusual = difference > thresholds.mad * robust
    large = (
        difference > MIN_CHANGE.get(metric, 0.0)
        and difference > thresholds.change * centre
        and (centre > 0 or value > 0)
    )
    return {
        "metric": metric,
        "value": value,
        "median": centre,
        "mad": deviation,
        "baseline_runs": len(previous),
        "change": change,
        "robust_score": score,
        "regression": bool(unusual and large),
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
    """A run against the runs before it (newest first or not: order does not matter).

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
