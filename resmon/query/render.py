"""How ``resmon query`` shows history: rich tables for people, JSON and CSV for scripts.

Every renderer takes the read API's response body (the same dicts whether they came
over HTTP or straight from a database through :mod:`resmon.store.history`), so a script
switching from ``--output json`` to the HTTP API sees the same field names.

Tables use human units (MiB/GiB, cores to two decimals, ``3m 20s``, ``2h ago``) and
colour a percent of a container's limit (green below 70 %, yellow to 90 %, red
above).  Colour is only ever an extra: the numbers are in the text, so a table
reads the same piped into a file or under ``NO_COLOR`` (rich honours it).
JSON and CSV carry the raw numbers, never the formatted ones.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from resmon.schema import parse_time

OUTPUTS = ("table", "json", "csv")
PIPE_WIDTH = 160
WIDE = 96  # columns from which `show` has room for p50 too
NONE = "–"
SPARKS = "▁▂▃▄▅▆▇█"
WARN_PERCENT = 70.0
ALERT_PERCENT = 90.0

# --- units -------------------------------------------------------------------


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def fmt_bytes(value: float | None) -> str:
    """Binary units with three significant digits: ``512 B``, ``64.0 MiB``, ``1.50 GiB``."""
    if _missing(value):
        return NONE
    n = float(value)  # type: ignore[arg-type]
    if abs(n) < 1000:
        return f"{n:.0f} B"
    unit = "B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024
        # Up a unit from 1000 on: "0.98 GiB" reads better than "1000 MiB".
        if abs(n) < 1000 or unit == "PiB":
            break
    if abs(n) < 10:
        return f"{n:.2f} {unit}"
    if abs(n) < 100:
        return f"{n:.1f} {unit}"
    return f"{n:.0f} {unit}"


def fmt_cores(value: float | None) -> str:
    return NONE if _missing(value) else f"{value:.2f}"


def fmt_percent(value: float | None) -> str:
    return NONE if _missing(value) else f"{value:.0f}%"


def fmt_duration(seconds: float | None) -> str:
    """``850ms``, ``42s``, ``3m 20s``, ``2h 05m``, ``3d 4h``."""
    if _missing(seconds):
        return NONE
    s = float(seconds)  # type: ignore[arg-type]
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 10:
        return f"{s:.1f}s"
    total = int(round(s))
    if total < 60:
        return f"{total}s"
    minutes, sec = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def to_datetime(value: Any) -> datetime | None:
    """An aware UTC datetime from an API time string (or a datetime), else None."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def fmt_ago(value: Any, now: datetime | None = None) -> str:
    """``just now``, ``45s ago``, ``12m ago``, ``2h ago``, ``3d ago``; a date past 30 days."""
    when = to_datetime(value)
    if when is None:
        return NONE
    now = now or datetime.now(UTC)
    seconds = (now - when).total_seconds()
    if seconds < -60:
        return when.strftime("%Y-%m-%d %H:%M")  # clock skew: say when, not "in 3m"
    if seconds < 5:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)}s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)}m ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h ago"
    if seconds < 30 * 86400:
        return f"{int(seconds // 86400)}d ago"
    return when.strftime("%Y-%m-%d")


def fmt_time(value: Any) -> str:
    when = to_datetime(value)
    return NONE if when is None else when.strftime("%Y-%m-%d %H:%M:%S UTC")


def percent_of(value: float | None, limit: float | None) -> float | None:
    if _missing(value) or _missing(limit) or not limit:
        return None
    return float(value) / float(limit) * 100.0  # type: ignore[arg-type]


def percent_style(percent: float | None) -> str:
    if percent is None:
        return ""
    if percent < WARN_PERCENT:
        return "green"
    if percent <= ALERT_PERCENT:
        return "yellow"
    return "bold red"


def with_limit(text: str, value: float | None, limit: float | None) -> Text:
    """``0.85 (85%)`` with the percent coloured by how close it is to the limit."""
    cell = Text(text)
    percent = percent_of(value, limit)
    if percent is not None:
        cell.append(" ")
        cell.append(f"{percent:.0f}%", style=percent_style(percent))
    return cell


def sparkline(values: Sequence[float | None]) -> str:
    """One block per value, scaled from 0 to the largest (so small changes look small)."""
    present = [float(v) for v in values if not _missing(v)]
    top = max(present, default=0.0)
    out = []
    for v in values:
        if _missing(v):
            out.append(" ")
        elif top <= 0:
            out.append(SPARKS[0])
        else:
            out.append(SPARKS[min(len(SPARKS) - 1, int(float(v) / top * (len(SPARKS) - 1) + 0.5))])  # type: ignore[arg-type]
    return "".join(out)


# --- JSON and CSV ------------------------------------------------------------


def to_json(body: Any) -> str:
    """The API body as indented JSON (raw numbers, RFC 3339 times)."""
    return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()


def to_csv(rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> str:
    """Rows as CSV with a header; raw numbers, empty cells for missing values."""
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
    return out.getvalue()


JOB_FIELDS = (
    "organization",
    "repository",
    "workflow",
    "job",
    "run_count",
    "last_id",
    "last_run_id",
    "last_received_at",
    "last_duration_seconds",
    "last_cpu_seconds",
    "last_cpu_percent_p95",
    "last_cpu_percent_peak",
    "last_mem_bytes_p95",
    "last_mem_bytes_peak",
)
RUN_FIELDS = (
    "id",
    "organization",
    "repository",
    "workflow",
    "job",
    "run_id",
    "run_attempt",
    "received_at",
    "start_time",
    "end_time",
    "duration_seconds",
    "sample_count",
    "cpu_seconds",
    "cpu_percent_p95",
    "cpu_percent_peak",
    "mem_bytes_p95",
    "mem_bytes_peak",
)
CONTAINER_FIELDS = (
    "name",
    "cpu_cores_p50",
    "cpu_cores_p95",
    "cpu_cores_peak",
    "cpu_cores_avg",
    "limit_cpu_cores",
    "memory_bytes_p50",
    "memory_bytes_p95",
    "memory_bytes_peak",
    "memory_bytes_avg",
    "limit_memory_bytes",
    "cpu_seconds",
    "cpu_throttled_seconds",
    "oom_kills",
)
TREND_RUN_FIELDS = ("id", "run_id", "received_at", "duration_seconds")
TREND_DAY_FIELDS = ("day", "runs", "duration_seconds")
JOB_TREND_METRICS = ("cpu_percent_p95", "cpu_percent_peak", "mem_bytes_p95", "mem_bytes_peak")
CONTAINER_TREND_METRICS = (
    "cpu_cores_p95",
    "cpu_cores_peak",
    "memory_bytes_p95",
    "memory_bytes_peak",
    "limit_cpu_cores",
    "limit_memory_bytes",
)
TOP_FIELDS = (
    "organization",
    "repository",
    "workflow",
    "job",
    "runs",
    "cpu_seconds_total",
    "cpu_percent_p95_avg",
    "mem_bytes_peak_max",
    "mem_bytes_p95_avg",
    "duration_seconds_total",
    "duration_seconds_avg",
)


def trend_fields(trend: Mapping[str, Any]) -> tuple[str, ...]:
    base = TREND_DAY_FIELDS if trend.get("by") == "day" else TREND_RUN_FIELDS
    metrics = CONTAINER_TREND_METRICS if trend.get("container") else JOB_TREND_METRICS
    return base + metrics


def show_csv(run: Mapping[str, Any]) -> str:
    """One CSV row per container, each carrying the run's id and scope."""
    scope = {
        k: run.get(k) for k in ("id", "organization", "repository", "workflow", "job", "run_id")
    }
    rows = [{**scope, **c} for c in run.get("containers") or ()]
    fields = ("id", "organization", "repository", "workflow", "job", "run_id") + CONTAINER_FIELDS
    return to_csv(rows, fields)


# --- tables ------------------------------------------------------------------


def make_console(**kwargs: Any) -> Console:
    """The console ``resmon query`` prints to: no syntax highlighting of numbers (the
    colours mean something here), and rich's own terminal / NO_COLOR detection."""
    kwargs.setdefault("highlight", False)
    console = Console(**kwargs)
    if "width" not in kwargs and not console.is_terminal and not os.environ.get("COLUMNS"):
        # Piped or redirected: rich would assume 80 columns and wrap the wider tables;
        # a file has no width, so let rows be as long as their content.
        console.width = PIPE_WIDTH
    return console


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
    parts: list[Any] = [head]

    containers = run.get("containers") or []
    if containers:
        table = _table("Containers (percent of limit where known)")
        wide = width >= WIDE
        table.add_column("Container", overflow="fold", min_width=9)
        for name in (
            ("CPU p50", "CPU p95", "CPU peak", "limit")
            if wide
            else ("CPU p95", "CPU peak", "limit")
        ):
            table.add_column(name, justify="right", no_wrap=True)
        for name in (
            ("Mem p50", "Mem p95", "Mem peak", "limit")
            if wide
            else ("Mem p95", "Mem peak", "limit")
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
        parts.append(table)
        # Below the table rather than a column: the row is already as wide as a terminal.
        for c in containers:
            note = []
            if c.get("oom_kills"):
                n = c["oom_kills"]
                note.append(f"{n} OOM kill{'s' if n != 1 else ''}")
            if c.get("cpu_throttled_seconds"):
                note.append(f"CPU throttled for {fmt_duration(c['cpu_throttled_seconds'])}")
            if note:
                parts.append(Text(f"{c.get('name')}: {', '.join(note)}", style="red"))
    else:
        parts.append(Text("\nNo per-container statistics in this run."))

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
        parts.append(table)
    return Group(*parts)


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
        cpu_fmt = fmt_cores
    else:
        cpu_keys, mem_keys = (
            ("cpu_percent_p95", "cpu_percent_peak"),
            ("mem_bytes_p95", "mem_bytes_peak"),
        )
        cpu_fmt = fmt_percent
    cpu_spark = sparkline([p.get(cpu_keys[0]) for p in points])
    mem_spark = sparkline([p.get(mem_keys[1]) for p in points])
    caption = f"oldest → newest   CPU p95 {cpu_spark}   Mem peak {mem_spark}"
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
    table.add_column("CPU peak", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("Mem p95", justify="right", no_wrap=True)
    table.add_column("Mem peak", justify="right", no_wrap=True)
    table.add_column("", no_wrap=True)
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
            with_limit(cpu_fmt(point.get(cpu_keys[1])), point.get(cpu_keys[1]), cpu_limit),
            cpu_bar,
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


# --- one entry point per command ---------------------------------------------


def render(
    kind: str, body: Any, output: str, console: Console, now: datetime | None = None
) -> None:
    """Print ``body`` (an API response of ``kind``: jobs, runs, run, trend, top) as
    ``output`` (table, json, csv) on ``console``."""
    if output == "json":
        # Straight to the file: rich would wrap long lines and interpret markup.
        console.file.write(to_json(body) + "\n")
        return
    if output == "csv":
        if kind == "jobs":
            text = to_csv(body.get("jobs") or [], JOB_FIELDS)
        elif kind == "runs":
            text = to_csv(body.get("runs") or [], RUN_FIELDS)
        elif kind == "run":
            text = show_csv(body)
        elif kind == "trend":
            text = to_csv(body.get("points") or [], trend_fields(body))
        elif kind == "top":
            text = to_csv(body.get("jobs") or [], TOP_FIELDS)
        else:
            raise ValueError(f"unknown kind {kind!r}")
        console.file.write(text)
        return
    if kind == "jobs":
        console.print(jobs_table(body, now))
    elif kind == "runs":
        console.print(runs_table(body, now))
    elif kind == "run":
        console.print(run_view(body, now, console.width))
    elif kind == "trend":
        console.print(trend_table(body, now))
    elif kind == "top":
        console.print(top_table(body))
    else:
        raise ValueError(f"unknown kind {kind!r}")
