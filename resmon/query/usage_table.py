"""``resmon query usage``: asking for usage by period and showing it (table, JSON, CSV).

The read API's ``GET /api/v1/usage`` over HTTP, or :func:`resmon.store.usage.usage`
on a database file, through the same sources as every other query
(:mod:`resmon.query.client`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from resmon.query.formats import fmt_bytes
from resmon.query.layout import Column, fit_table
from resmon.query.render import to_csv, to_json

GROUPS = {
    "org": ("organization",),
    "repo": ("organization", "repository"),
    "workflow": ("organization", "repository", "workflow"),
    "job": ("organization", "repository", "workflow", "job"),
}
FIGURES = (
    "runs",
    "partial_runs",
    "cpu_hours",
    "gib_hours",
    "duration_hours",
    "memory_peak_max_bytes",
    "oom_kills",
    "cpu_throttled_seconds",
)


def ask_usage(source: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The usage answer from an HTTP or a database source."""
    from resmon.query.client import DatabaseSource

    if isinstance(source, DatabaseSource):
        from resmon.store import usage

        return source._call(
            usage.usage,
            params["by"],
            params["period"],
            params["granularity"],
            organization=params.get("organization"),
            repository=params.get("repository"),
        )
    return source._get("/api/v1/usage", params)


def _hours(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def usage_table(body: Mapping[str, Any], width: int) -> RenderableType:
    rows = body.get("rows") or []
    if not rows:
        return Text("No runs in this period.")
    fields = GROUPS.get(str(body.get("by")), GROUPS["job"])
    names = {
        "organization": "Org",
        "repository": "Repository",
        "workflow": "Workflow",
        "job": "Job",
    }
    columns = [
        Column(
            names[f],
            [r.get(f) for r in rows],
            "left",
            name=True,
            # With the repository shown, the organization is its first part.
            drop=3 if f == "organization" and len(fields) > 1 else 0,
        )
        for f in fields
    ]
    hour = body.get("granularity") == "hour"
    columns += [
        Column("Hour (UTC)" if hour else "Day (UTC)", [r.get("bucket") for r in rows], "left"),
        Column("Runs", [str(r.get("runs")) for r in rows]),
        Column("CPU-h", [_hours(r.get("cpu_hours")) for r in rows], style="bold"),
        Column("GiB-h", [_hours(r.get("gib_hours")) for r in rows], style="bold"),
        Column("Run h", [_hours(r.get("duration_hours")) for r in rows], drop=2, label="run hours"),
        Column("Peak mem", [fmt_bytes(r.get("memory_peak_max_bytes")) for r in rows], drop=1),
        Column("OOM", [str(r.get("oom_kills") or 0) for r in rows], drop=1, label="OOM kills"),
    ]
    totals = body.get("totals") or {}
    since = str(body.get("since") or "")[:16].replace("T", " ")
    return fit_table(
        columns,
        width,
        title=[f"Usage by {body.get('by')} per {body.get('granularity')}", f"since {since} UTC"],
        caption=[
            f"Total: {totals.get('runs', 0)} runs, {_hours(totals.get('cpu_hours'))} CPU-hours, "
            f"{_hours(totals.get('gib_hours'))} GiB-hours.",
            "CPU-h: the jobs' own CPU time in hours; GiB-h: each run's memory peak (GiB) x "
            "its duration (h).",
        ],
    )


def render_usage(body: Mapping[str, Any], output: str, console: Any) -> None:
    if output == "json":
        console.file.write(to_json(body) + "\n")
        return
    if output == "csv":
        fields = (*GROUPS.get(str(body.get("by")), GROUPS["job"]), "bucket", *FIGURES)
        console.file.write(to_csv(list(body.get("rows") or []), fields))
        return
    console.print(usage_table(body, console.width))
