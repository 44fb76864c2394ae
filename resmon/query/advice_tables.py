"""The tables of ``resmon query recommend`` (one job, ``--all``) and ``regressions``.

Each takes the read API's answer and the console's width and fits it with
:func:`resmon.query.layout.fit_table`: optional columns go first at 80 columns,
then names are shortened in the middle.  JSON and CSV (:func:`recommend_rows`,
:data:`FLEET_FIELDS`, :func:`regression_rows`) carry the raw numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from resmon.query.formats import NONE, fmt_ago, fmt_bytes, fmt_cores
from resmon.query.layout import Column, fit_table, heading, scope_units
from resmon.query.run_states import counted_caption, partial_count

METHOD_NAMES = {"resmon": "resmon", "ci_sizer": "CI Sizer", "vpa": "VPA"}
METRIC_NAMES = {
    "memory_bytes_peak": "memory peak",
    "cpu_seconds": "CPU time",
    "cpu_cores_p95": "CPU p95",
    "duration_seconds": "duration",
}


def _rate(value: Any) -> str:
    return NONE if value is None else f"{value:.0%}" if value < 1 else "100%"


def _signed_bytes(value: Any) -> str:
    if value is None:
        return NONE
    return ("+" if value > 0 else "-" if value < 0 else "") + fmt_bytes(abs(value))


def _signed_cores(value: Any) -> str:
    if value is None:
        return NONE
    return f"{value:+.2f}"


def _subjects(body: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    job = body.get("job_recommendation") or {}
    return [("(job)", job), *((str(c.get("name")), c) for c in body.get("containers") or [])]


def _cpu_limit(rec: Mapping[str, Any]) -> str:
    if rec.get("status") != "ok":
        return NONE
    if rec.get("cpu_limit_advice") == "none":
        return "none"
    return fmt_cores(rec.get("cpu_limit_cores"))


def _fit(rec: Mapping[str, Any], method: str) -> str:
    return _rate(((rec.get("backtest") or {}).get(method) or {}).get("memory_fit_rate"))


def recommend_view(body: Mapping[str, Any], width: int) -> RenderableType:
    """One job's recommendation: a row for the job and one per container, the backtest
    of the job's memory by each method, and the notes (reasons, runs still needed)."""
    subjects = _subjects(body)
    ok = [rec for _, rec in subjects]
    current = [rec.get("current") or {} for rec in ok]
    columns = [
        Column("For", [name for name, _ in subjects], "left", name=True),
        Column("Runs", [str(rec.get("runs", 0)) for rec in ok], drop=3),
        Column("Conf.", [(rec.get("confidence") or {}).get("level", NONE) for rec in ok], drop=4),
        Column("CPU req", [fmt_cores(rec.get("cpu_request_cores")) for rec in ok]),
        Column("CPU lim", [_cpu_limit(rec) for rec in ok]),
        Column("Mem", [fmt_bytes(rec.get("memory_limit_bytes")) for rec in ok]),
        Column("Now", [fmt_bytes(c.get("memory_limit_bytes")) for c in current], drop=2),
        Column(
            "Δ mem",
            [_signed_bytes((r.get("difference") or {}).get("memory_limit_bytes")) for r in ok],
            drop=2,
        ),
        Column("Peak", [fmt_bytes(rec.get("memory_peak_max_bytes")) for rec in ok], drop=1),
        Column("Fit", [_fit(rec, "resmon") for rec in ok], drop=5, label="Fit (resmon)"),
    ]
    title = scope_units(body, "Recommendation for")
    caption = [
        "CPU in cores; Mem is the memory request and limit (equal), never below the Peak; "
        "Now the last run's limit; Fit: the runs resmon's memory limit would have held"
    ]
    parts: list[RenderableType] = [fit_table(columns, width, title=title, caption=caption)]
    parts.extend(_backtest(body, width))
    for name, rec in subjects:
        if rec.get("status") != "ok":
            parts.append(heading([f"{name}:", str(rec.get("message", ""))], width, style=""))
        elif rec.get("cpu_limit_reason"):
            parts.append(
                heading([f"{name}: no CPU limit:", str(rec["cpu_limit_reason"])], width, style="")
            )
    return Group(*parts)


def _backtest(body: Mapping[str, Any], width: int) -> list[RenderableType]:
    job = body.get("job_recommendation") or {}
    backtest = job.get("backtest") or {}
    if not backtest:
        return []
    rows = [(METHOD_NAMES.get(m, m), b) for m, b in backtest.items()]
    columns = [
        Column("Method", [name for name, _ in rows], "left"),
        Column("Mem fit", [_rate(b.get("memory_fit_rate")) for _, b in rows]),
        Column("Mem waste", [fmt_bytes(b.get("memory_waste_bytes")) for _, b in rows]),
        Column("CPU fit", [_rate(b.get("cpu_fit_rate")) for _, b in rows], drop=1),
        Column("CPU waste", [fmt_cores(b.get("cpu_waste_cores")) for _, b in rows], drop=1),
        Column("Runs checked", [str(b.get("steps", 0)) for _, b in rows], drop=2),
    ]
    title = ["Backtest of the job's runs:", "each sized from the runs before it"]
    return [Text(""), fit_table(columns, width, title=title)]


def fleet_table(body: Mapping[str, Any], width: int) -> RenderableType:
    jobs = body.get("jobs") or []
    if not jobs:
        return Text("No runs in this period: nothing to recommend.")
    risk = [
        f"{j.get('oom_killed_runs', 0)}/{j.get('throttled_runs', 0)}/"
        f"{j.get('near_memory_limit_runs', 0)}"
        for j in jobs
    ]
    columns = [
        Column("Repository", [j.get("repository") for j in jobs], "left", name=True),
        Column("Workflow", [j.get("workflow") for j in jobs], "left", name=True),
        Column("Job", [j.get("job") for j in jobs], "left", name=True),
        Column("Runs", [partial_count(j) for j in jobs], drop=3),
        Column("Conf.", [j.get("confidence") or NONE for j in jobs], drop=4),
        Column("Mem", [fmt_bytes(j.get("memory_limit_bytes")) for j in jobs]),
        Column("Now", [fmt_bytes(j.get("current_memory_limit_bytes")) for j in jobs], drop=2),
        Column("Frees", [_signed_bytes(j.get("frees_memory_bytes")) for j in jobs]),
        Column("Frees CPU", [_signed_cores(j.get("frees_cpu_cores")) for j in jobs], drop=1),
        Column("Risk", risk, label="Risk (OOM/throttled/near)"),
    ]
    by = "what they would free" if body.get("by") == "free" else "risk"
    caption = [
        "Mem: recommended memory limit; Now: the last run's; Frees: Now minus Mem "
        "(negative: it needs more); Risk: runs OOM-killed / throttled / within 10 % "
        "of their memory limit"
    ]
    caption.extend(counted_caption(jobs))
    if body.get("truncated"):
        caption.append(f"first {len(jobs)} shown; use --limit for more")
    return fit_table(columns, width, title=[f"{len(jobs)} jobs by {by}"], caption=caption)


def _figure_text(f: Mapping[str, Any]) -> str:
    name = METRIC_NAMES.get(str(f.get("metric")), str(f.get("metric")))
    fmt = fmt_bytes if "bytes" in str(f.get("metric")) else _plain
    where = f"{f['container']}: " if f.get("container") else ""
    change = f.get("change")
    percent = f" {change:+.0%}" if isinstance(change, (int, float)) else ""
    how = f", shift over {f.get('runs')} runs" if f.get("test") == "shift" else ""
    return f"{where}{name}{percent} ({fmt(f.get('value'))} vs {fmt(f.get('median'))}{how})"


def _plain(value: Any) -> str:
    return NONE if value is None else f"{value:.2f}" if value < 10 else f"{value:.0f}"


def regressions_table(
    body: Mapping[str, Any], width: int, now: datetime | None = None
) -> RenderableType:
    runs = body.get("runs") or []
    if not runs:
        return Text("No runs flagged as regressions in this period.")
    columns = [
        Column("ID", [str(r.get("id")) for r in runs]),
        Column("Repository", [r.get("repository") for r in runs], "left", name=True),
        Column("Workflow", [r.get("workflow") for r in runs], "left", name=True, drop=2),
        Column("Job", [r.get("job") for r in runs], "left", name=True),
        Column("Run", [r.get("run_id") for r in runs], "left", name=True, drop=1),
        Column("Received", [fmt_ago(r.get("received_at"), now) for r in runs], drop=3),
        Column(
            "Regressions",
            ["; ".join(_figure_text(f) for f in r.get("regressions") or []) for r in runs],
            "left",
            name=True,
        ),
    ]
    caption = [
        "each figure against the median of the job's earlier runs when it was pushed; "
        "shift over n runs: a step that stayed, the median of the last n runs against "
        "the runs before them"
    ]
    if body.get("truncated"):
        caption.append(f"newest {len(runs)} shown; use --limit or --since for others")
    return fit_table(columns, width, title=[f"{len(runs)} runs flagged"], caption=caption)


# --- CSV rows --------------------------------------------------------------------

RECOMMEND_FIELDS = (
    "subject",
    "status",
    "runs",
    "runs_needed",
    "confidence",
    "cpu_request_cores",
    "cpu_limit_cores",
    "cpu_limit_advice",
    "cpu_limit_if_set_cores",
    "memory_request_bytes",
    "memory_limit_bytes",
    "memory_peak_max_bytes",
    "current_cpu_limit_cores",
    "current_memory_limit_bytes",
    *(f"{m}_{k}" for m in METHOD_NAMES for k in ("memory_fit_rate", "memory_waste_bytes")),
    *(f"{m}_{k}" for m in METHOD_NAMES for k in ("cpu_fit_rate", "cpu_waste_cores")),
)


def recommend_rows(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One CSV row per subject: ``job`` and then each container by name."""
    rows = []
    for name, rec in _subjects(body):
        row = {k: rec.get(k) for k in RECOMMEND_FIELDS}
        row["subject"] = "job" if name == "(job)" else name
        row["confidence"] = (rec.get("confidence") or {}).get("level")
        for key, value in (rec.get("current") or {}).items():
            row[f"current_{key}"] = value
        for method, figures in (rec.get("backtest") or {}).items():
            for key, value in figures.items():
                row[f"{method}_{key}"] = value
        rows.append(row)
    return rows


REGRESSION_FIELDS = (
    "id",
    "organization",
    "repository",
    "workflow",
    "job",
    "run_id",
    "received_at",
    "container",
    "metric",
    "value",
    "median",
    "mad",
    "change",
    "baseline_runs",
    # Which test flagged it (single, shift) and over how many runs: last, so scripts
    # reading the earlier columns by position keep working.
    "test",
    "runs",
)


def regression_rows(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One CSV row per flagged figure, with its run."""
    return [
        {**{k: r.get(k) for k in REGRESSION_FIELDS[:7]}, **f}
        for r in body.get("runs") or []
        for f in r.get("regressions") or []
    ]
