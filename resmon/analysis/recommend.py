"""One subject's recommendation (the job, or one of its containers), as an answer.

:func:`recommend` takes the subject's runs, oldest first, and says: the CPU request and
limit (or the advice to set no CPU limit, and why), the memory request and limit,
how sure it is (:func:`confidence`), what the runs had as limits and the difference,
the runs at risk (OOM-killed, throttled, peaked within 10 % of the memory limit), and
the backtest of resmon, CI Sizer and VPA on the same runs.  Fewer than
:data:`~resmon.analysis.backtest.MIN_RUNS` runs: no recommendation, and how many more
are needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from resmon.analysis.backtest import MIN_RUNS, replay_all
from resmon.analysis.formulas import Usage, cpu_values, memory_values, resmon
from resmon.analysis.robust import spread

# Within this share of its memory limit, a run's peak was close to an OOM kill.
NEAR_LIMIT = 0.10
# A CPU peak this many times the p95: short bursts, which a CPU limit would throttle.
BURSTY = 2.0
# Confidence: (level, at least this many runs, over at least this many days, spread at most).
CONFIDENCE_LEVELS = (("high", 20, 7.0, 0.25), ("medium", 8, 2.0, 0.5))


def span_days(runs: Sequence[Usage]) -> float:
    """Days from the first run's day to the last's, counting both (one day: 1)."""
    days = sorted(u.day for u in runs if u.day)
    if not days:
        return 0.0
    try:
        first, last = date.fromisoformat(days[0]), date.fromisoformat(days[-1])
    except ValueError:
        return 0.0
    return float((last - first).days + 1)


def confidence(runs: Sequence[Usage]) -> dict[str, Any]:
    """How far the recommendation can be trusted: from the number of runs, the span of
    days they cover and the spread of their memory peaks (robust CV)."""
    count = len(runs)
    days = span_days(runs)
    peaks = memory_values(runs)
    spread_value = spread(peaks) if peaks else 0.0
    level = "low"
    for name, least_runs, least_days, most_spread in CONFIDENCE_LEVELS:
        if count >= least_runs and days >= least_days and spread_value <= most_spread:
            level = name
            break
    reasons = []
    if count < CONFIDENCE_LEVELS[0][1]:
        reasons.append(f"{count} runs (high needs {CONFIDENCE_LEVELS[0][1]})")
    if days < CONFIDENCE_LEVELS[0][2]:
        reasons.append(f"{days:.0f} days (high needs {CONFIDENCE_LEVELS[0][2]:.0f})")
    if spread_value > CONFIDENCE_LEVELS[0][3]:
        reasons.append(f"memory peaks spread {spread_value:.0%}")
    return {
        "level": level,
        "runs": count,
        "span_days": days,
        "spread": round(spread_value, 4),
        "reasons": reasons,
    }


def risk(runs: Sequence[Usage]) -> dict[str, int]:
    near = 0
    for u in runs:
        limit, peak = u.limit_memory_bytes, u.memory_bytes_peak
        if limit and peak is not None and peak >= limit * (1 - NEAR_LIMIT):
            near += 1
    return {
        "oom_killed_runs": sum(1 for u in runs if u.oom_killed),
        "throttled_runs": sum(1 for u in runs if (u.cpu_throttled_seconds or 0) > 0),
        "near_memory_limit_runs": near,
    }


def cpu_limit_advice(runs: Sequence[Usage], at_risk: dict[str, int]) -> str | None:
    """Why no CPU limit should be set, or None when a limit is fine.  CPU is
    compressible: over its request a job slows down, it is never killed; a limit only
    throttles it, which bursty and throttled jobs pay for in duration."""
    if at_risk["throttled_runs"]:
        return (
            f"{at_risk['throttled_runs']} of {len(runs)} runs were throttled by their CPU "
            "limit: set the request only, CPU over it slows a job, never kills it"
        )
    bursts = [
        u.cpu_cores_peak / u.cpu_cores_p95
        for u in runs
        if u.cpu_cores_peak is not None and u.cpu_cores_p95
    ]
    if bursts and max(bursts) >= BURSTY:
        return (
            f"CPU comes in bursts (peak up to {max(bursts):.1f}x the p95): a limit would "
            "throttle them; set the request only"
        )
    return None


def _current(runs: Sequence[Usage]) -> dict[str, float | None]:
    last = runs[-1] if runs else Usage()
    return {"cpu_limit_cores": last.limit_cpu_cores, "memory_limit_bytes": last.limit_memory_bytes}


def _difference(value: float | None, current: float | None) -> float | None:
    return None if value is None or current is None else value - current


def recommend(runs: Sequence[Usage]) -> dict[str, Any]:
    """The recommendation for one subject from its runs, oldest first (see the module)."""
    runs = tuple(runs)
    at_risk = risk(runs)
    current = _current(runs)
    peaks = memory_values(runs)
    base: dict[str, Any] = {
        "runs": len(runs),
        "first_day": min((u.day for u in runs if u.day), default=None),
        "last_day": max((u.day for u in runs if u.day), default=None),
        "current": current,
        "risk": at_risk,
        "memory_peak_max_bytes": max(peaks) if peaks else None,
        "cpu_cores_p95_max": max(cpu_values(runs), default=None),
    }
    if len(runs) < MIN_RUNS:
        return {
            **base,
            "status": "insufficient_runs",
            "runs_needed": MIN_RUNS - len(runs),
            "message": f"{len(runs)} run{'s' if len(runs) != 1 else ''} stored: "
            f"{MIN_RUNS - len(runs)} more needed for a recommendation",
        }
    sizing = resmon(runs)
    no_limit = cpu_limit_advice(runs, at_risk)
    cpu_limit = None if no_limit else sizing.cpu_limit
    return {
        **base,
        "status": "ok",
        "runs_needed": 0,
        "cpu_request_cores": sizing.cpu_request,
        "cpu_limit_cores": cpu_limit,
        "cpu_limit_advice": "none" if no_limit else "set",
        "cpu_limit_reason": no_limit,
        # What a CPU limit would be if one must be set: the figure the backtest checks.
        "cpu_limit_if_set_cores": sizing.cpu_limit,
        "memory_request_bytes": sizing.memory_request,
        "memory_limit_bytes": sizing.memory_limit,
        "difference": {
            "cpu_limit_cores": _difference(sizing.cpu_limit, current["cpu_limit_cores"]),
            "memory_limit_bytes": _difference(sizing.memory_limit, current["memory_limit_bytes"]),
        },
        "confidence": confidence(runs),
        "backtest": {name: bt.answer() for name, bt in replay_all(runs).items()},
    }


def frees(answer: dict[str, Any]) -> dict[str, float | None]:
    """What following a recommendation would free against the current limits (negative:
    what it would add), in cores and bytes."""
    diff = answer.get("difference") or {}
    cores, memory = diff.get("cpu_limit_cores"), diff.get("memory_limit_bytes")
    return {
        "cpu_cores": None if cores is None else -cores,
        "memory_bytes": None if memory is None else -memory,
    }
