"""The rich tables ``resmon query`` prints for people, one per kind of answer.

Each takes the read API's response body and returns something a console prints:
a table, a group of them (``show``), or a sentence when there is nothing to show.
A percent of a container's limit is coloured (green below 70 %, yellow to 90 %,
red above) next to the figure; colour is only ever an extra, so a table reads the
same piped into a file or under ``NO_COLOR``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from resmon.query.formats import (
    NONE,
    fmt_ago,
    fmt_bytes,
    fmt_cores,
    fmt_duration,
    fmt_percent,
    fmt_time,
    percent_of,
    percent_style,
    sparkline,
    to_datetime,
    value_span,
)

WIDE = 96  # columns from which `show` has room for p50 too


def with_limit(text: str, value: float | None, limit: float | None) -> Text:
    """``0.85 (85%)`` with the percent coloured by how close it is to the limit."""
    cell = Text(text)
    percent = percent_of(value, limit)
    if percent is not None:
        cell.append(" ")
        cell.append(f"{percent:.0f}%", style=percent_style(percent))
    return cell


def _table(title: str | None = None, caption: str | None = None) -> Table:
    return Table(
        title=title,
        caption=caption,
        box=box.SIMPLE_HEAD,
        title_justify="left",
        caption_justify="left",
        pad_edge=False,
        collapse_padding=True,
        header_style="bold",
    )


def _scope(row: Mapping[str, Any]) -> str:
    return f"{row.get('repository', '')} · {row.get('workflow', '')} · {row.get('job', '')}"


def jobs_table(body: Mapping[str, Any], now: datetime | None = None) -> Table | Text:
    jobs = body.get("jobs") or []
    if not jobs:
        return Text("No jobs stored yet: push a run with `resmon collect`.")
    table = _table(f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}")
    for name in ("Repository", "Workflow", "Job"):
        table.add_column(name, overflow="fold", min_width=len(name))
    table.add_column("Runs", justify="right", no_wrap=True)
    table.add_column("Last run", justify="right", no_wrap=True)
    table.add_column("Duration", justify="right", no_wrap=True)
    table.add_column("CPU p95", justify="right", no_wrap=True)
    table.add_column("Mem peak", justify="right", no_wrap=True)
    for j in jobs:
        table.add_row(
            j.get("repository"),
            j.get("workflow"),
            j.get("job"),
            str(j.get("run_count", 0)),
            fmt_ago(j.get("last_received_at"), now),
            fmt_duration(j.get("last_duration_seconds")),
            fmt_percent(j.get("last_cpu_percent_p95")),
            fmt_bytes(j.get("last_mem_bytes_peak")),
        )
    return table


def runs_table(body: Mapping[str, Any], now: datetime | None = None) -> Table | Text:
    runs = body.get("runs") or []
    if not runs:
        return Text(f"No runs of {_scope(body)} in this period.")
    caption = None
    if body.get("truncated"):
        caption = f"newest {len(runs)} shown; use --limit or --since/--until for others"
    table = _table(f"Runs of {_scope(body)}", caption)
    table.add_column("ID", justify="right", no_wrap=True)
    table.add_column("Run", overflow="fold")
    table.add_column("Received", justify="right", no_wrap=True)
    table.add_column("Duration", justify="right", no_wrap=True)
    table.add_column("Samples", justify="right", no_wrap=True)
    table.add_column("CPU p95", justify="right", no_wrap=True)
    table.add_column("CPU peak", justify="right", no_wrap=True)
    table.add_column("Mem p95", justify="right", no_wrap=True)
    table.add_column("Mem peak", justify="right", no_wrap=True)
    for r in runs:
        run = str(r.get("run_id", ""))
        if r.get("run_attempt"):
            run += f" #{r['run_attempt']}"
        table.add_row(
            str(r.get("id")),
            run,
            fmt_ago(r.get("received_at"), now),
            fmt_duration(r.get("duration_seconds")),
            NONE if r.get("sample_count") is None else str(r["sample_count"]),
            fmt_percent(r.get("cpu_percent_p95")),
            fmt_percent(r.get("cpu_percent_peak")),
            fmt_bytes(r.get("mem_bytes_p95")),
            fmt_bytes(r.get("mem_bytes_peak")),
        )
    return table


def _stat_line(stat: Any, fmt: Any) -> str:
    if not isinstance(stat, Mapping):
        return NONE
    return " / ".join(fmt(stat.get(k)) for k in ("p50", "p95", "peak"))


def run_view(run: Mapping[str, Any], now: datetime | None = None, width: int = 100) -> Group:
    """``resmon query show``: the run, then one row per container, then top processes.

    Narrower than ``WIDE`` columns, the p50 columns go (p95 and peak are what a
    limit is sized from) rather than every cell wrapping."""
    summary = run.get("payload") if isinstance(run.get("payload"), Mapping) else {}
    parts: list[Any] = [_run_head(run, summary, now)]
    containers = run.get("containers") or []
    if containers:
        parts.append(_containers_table(containers, wide=width >= WIDE))
        # Below the table rather than a column: the row is already as wide as a terminal.
        parts.extend(_container_notes(containers))
    else:
        parts.append(Text("\nNo per-container statistics in this run."))
    parts.extend(_process_tables(summary))
    return Group(*parts)


def _run_head(run: Mapping[str, Any], summary: Mapping[str, Any], now: datetime | None) -> Table:
    """The run's own figures, one per line: which run, when, how long, system CPU and memory."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    attempt = f" (attempt {run['run_attempt']})" if run.get("run_attempt") else ""
    head.add_row("Run", f"{run.get('id')} · run id {run.get('run_id')}{attempt}")
    head.add_row("Job", _scope(run))
    head.add_row(
        "Received", f"{fmt_time(run.get('received_at'))} ({fmt_ago(run.get('received_at'), now)})"
    )
    if run.get("start_time"):
        head.add_row("Started", fmt_time(run.get("start_time")))
    head.add_row(
        "Duration",
        f"{fmt_duration(run.get('duration_seconds'))}, {run.get('sample_count') or 0} samples",
    )
    head.add_row("", "p50 / p95 / peak")
    head.add_row("System CPU", _stat_line(summary.get("cpu_total_percent"), fmt_percent))
    head.add_row("Memory used", _stat_line(summary.get("mem_used_bytes"), fmt_bytes))
    if run.get("cpu_seconds") is not None:
        head.add_row("CPU time", fmt_duration(run.get("cpu_seconds")))
    return head


def _containers_table(containers: list[Mapping[str, Any]], *, wide: bool) -> Table:
    table = _table("Containers (percent of limit where known)")
    table.add_column("Container", overflow="fold", min_width=9)
    for name in (
        ("CPU p50", "CPU p95", "CPU peak", "limit") if wide else ("CPU p95", "CPU peak", "limit")
    ):
        table.add_column(name, justify="right", no_wrap=True)
    for name in (
        ("Mem p50", "Mem p95", "Mem peak", "limit") if wide else ("Mem p95", "Mem peak", "limit")
    ):
        table.add_column(name, justify="right", no_wrap=True)
    for c in containers:
        cpu_limit, mem_limit = c.get("limit_cpu_cores"), c.get("limit_memory_bytes")
        cells: list[Any] = [c.get("name")]
        # p50 plain: the percent that matters for sizing is p95's and the peak's.
        if wide:
            cells.append(fmt_cores(c.get("cpu_cores_p50")))
        for key in ("cpu_cores_p95", "cpu_cores_peak"):
            cells.append(with_limit(fmt_cores(c.get(key)), c.get(key), cpu_limit))
        cells.append(fmt_cores(cpu_limit))
        if wide:
            cells.append(fmt_bytes(c.get("memory_bytes_p50")))
        for key in ("memory_bytes_p95", "memory_bytes_peak"):
            cells.append(with_limit(fmt_bytes(c.get(key)), c.get(key), mem_limit))
        cells.append(fmt_bytes(mem_limit))
        table.add_row(*cells)
    return table


def _container_notes(containers: list[Mapping[str, Any]]) -> list[Text]:
    """One red line per container that was OOM-killed or CPU-throttled."""
    notes = []
    for c in containers:
        note = []
        if c.get("oom_kills"):
            n = c["oom_kills"]
            note.append(f"{n} OOM kill{'s' if n != 1 else ''}")
        if c.get("cpu_throttled_seconds"):
            note.append(f"CPU throttled for {fmt_duration(c['cpu_throttled_seconds'])}")
        if note:
            notes.append(Text(f"{c.get('name')}: {', '.join(note)}", style="red"))
    return notes


def _process_tables(summary: Mapping[str, Any]) -> list[Table]:
    """The top five processes by CPU and by memory, where the run summary has them."""
    tables = []
    for key, title in (
        ("top_cpu_processes", "Top processes by CPU"),
        ("top_mem_processes", "Top processes by memory"),
    ):
        procs = summary.get(key) or []
        if not procs:
            continue
        table = _table(title)
        table.add_column("PID", justify="right", no_wrap=True)
        table.add_column("Process", overflow="fold")
        table.add_column("Peak CPU", justify="right", no_wrap=True)
        table.add_column("Peak RSS", justify="right", no_wrap=True)
        for p in procs[:5]:
            table.add_row(
                str(p.get("pid", "")),
                str(p.get("name", "")),
                fmt_percent(p.get("peak_cpu_percent")),
                fmt_bytes(p.get("peak_mem_rss_bytes")),
            )
        tables.append(table)
    return tables


def trend_table(body: Mapping[str, Any], now: datetime | None = None) -> Table | Text:
    points = body.get("points") or []
    container = body.get("container")
    what = f"container {container} of {_scope(body)}" if container else _scope(body)
    if not points:
        return Text(f"No runs of {what} in this period.")
    by_day = body.get("by") == "day"
    if container:
        cpu_keys, mem_keys = (
            ("cpu_cores_p95", "cpu_cores_peak"),
            ("memory_bytes_p95", "memory_bytes_peak"),
        )
        cpu_fmt: Any = fmt_cores
    else:
        cpu_keys, mem_keys = (
            ("cpu_percent_p95", "cpu_percent_peak"),
            ("mem_bytes_p95", "mem_bytes_peak"),
        )
        cpu_fmt = fmt_percent
    cpu_values = [p.get(cpu_keys[0]) for p in points]
    mem_values = [p.get(mem_keys[1]) for p in points]
    cpu_spark, mem_spark = sparkline(cpu_values), sparkline(mem_values)
    caption = (
        f"CPU p95  {cpu_spark} {value_span(cpu_values, cpu_fmt)}\n"
        f"Mem peak {mem_spark} {value_span(mem_values, fmt_bytes)}\n"
        "oldest → newest; sparklines and trend bars span min..max (not from 0)"
    )
    per = "per day" if by_day else "per run"
    table = _table(f"Trend of {what}, {per}", caption)
    if by_day:
        table.add_column("Day")
        table.add_column("Runs", justify="right", no_wrap=True)
    else:
        table.add_column("ID", justify="right", no_wrap=True)
        table.add_column("Run", overflow="fold")
        table.add_column("Received", justify="right", no_wrap=True)
    table.add_column("Duration", justify="right", no_wrap=True)
    table.add_column("CPU p95", justify="right", no_wrap=True)
    table.add_column("trend", no_wrap=True)
    table.add_column("CPU peak", justify="right", no_wrap=True)
    table.add_column("Mem p95", justify="right", no_wrap=True)
    table.add_column("Mem peak", justify="right", no_wrap=True)
    table.add_column("trend", no_wrap=True)
    for point, cpu_bar, mem_bar in zip(points, cpu_spark, mem_spark, strict=True):
        cpu_limit = point.get("limit_cpu_cores") if container else None
        mem_limit = point.get("limit_memory_bytes") if container else None
        lead = (
            [str(point.get("day")), str(point.get("runs", ""))]
            if by_day
            else [
                str(point.get("id")),
                str(point.get("run_id", "")),
                fmt_ago(point.get("received_at"), now),
            ]
        )
        table.add_row(
            *lead,
            fmt_duration(point.get("duration_seconds")),
            with_limit(cpu_fmt(point.get(cpu_keys[0])), point.get(cpu_keys[0]), cpu_limit),
            cpu_bar,
            with_limit(cpu_fmt(point.get(cpu_keys[1])), point.get(cpu_keys[1]), cpu_limit),
            with_limit(fmt_bytes(point.get(mem_keys[0])), point.get(mem_keys[0]), mem_limit),
            with_limit(fmt_bytes(point.get(mem_keys[1])), point.get(mem_keys[1]), mem_limit),
            mem_bar,
        )
    return table


TOP_METRICS = {
    # metric -> (the field jobs are ranked by, its column title)
    "cpu": ("cpu_seconds_total", "CPU time"),
    "memory": ("mem_bytes_peak_max", "Mem peak"),
    "duration": ("duration_seconds_total", "Total time"),
}


def top_table(body: Mapping[str, Any]) -> Table | Text:
    rows = body.get("jobs") or []
    metric = body.get("metric", "cpu")
    if not rows:
        return Text("No runs in this period.")
    key, title = TOP_METRICS.get(metric, TOP_METRICS["cpu"])
    since = to_datetime(body.get("since"))
    period = f" since {since.strftime('%Y-%m-%d %H:%M')} UTC" if since else ""
    table = _table(f"Top jobs by {metric}{period}")
    table.add_column("#", justify="right", no_wrap=True)
    for name in ("Repository", "Workflow", "Job"):
        table.add_column(name, overflow="fold", min_width=len(name))
    table.add_column("Runs", justify="right", no_wrap=True)
    table.add_column(title, justify="right", style="bold", no_wrap=True)
    table.add_column("Avg time", justify="right", no_wrap=True)
    table.add_column("CPU p95", justify="right", no_wrap=True)
    # Ranked by memory, the ranking column is already the memory peak.
    by_memory = key == "mem_bytes_peak_max"
    if not by_memory:
        table.add_column("Mem peak", justify="right", no_wrap=True)
    for rank, r in enumerate(rows, 1):
        fmt = fmt_bytes if by_memory else fmt_duration
        cells = [
            str(rank),
            r.get("repository"),
            r.get("workflow"),
            r.get("job"),
            str(r.get("runs", 0)),
            fmt(r.get(key)),
            fmt_duration(r.get("duration_seconds_avg")),
            fmt_percent(r.get("cpu_percent_p95_avg")),
        ]
        if not by_memory:
            cells.append(fmt_bytes(r.get("mem_bytes_peak_max")))
        table.add_row(*cells)
    return table
