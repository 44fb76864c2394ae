"""The rich tables ``resmon query`` prints for people, one per kind of answer.

Each takes the read API's response body and the console's width and returns
something a console prints: a titled table, a group of them (``show``), or a
sentence when there is nothing to show.  Every table fits the width without
breaking a name across lines (:mod:`resmon.query.layout`): optional columns go
first, then long names are shortened in the middle.

A percent of a container's limit is coloured (green below 70 %, yellow to 90 %,
red above) next to the figure; colour is only ever an extra, so a table reads the
same piped into a file or under ``NO_COLOR``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from resmon.query import run_states
from resmon.query.formats import (
    ELLIPSIS,
    NONE,
    fmt_ago,
    fmt_bytes,
    fmt_cores,
    fmt_duration,
    fmt_percent,
    fmt_time,
    middle_ellipsis,
    percent_of,
    percent_style,
    sparkline,
    to_datetime,
    value_span,
)
from resmon.query.io_tables import io_lines, io_table
from resmon.query.layout import Column, fit_table, heading, scope_units
from resmon.query.scopes import CAPTIONS, DEFAULT_SCOPE, figures, memory_text
from resmon.query.step_tables import context_lines, steps_table

DEFAULT_WIDTH = 100
# The container a wrapped command's processes are in unless `collect --name` says otherwise.
DEFAULT_COMMAND_CONTAINER = "command"


def with_limit(text: str, value: float | None, limit: float | None) -> Text:
    """``0.85 (85%)`` with the percent coloured by how close it is to the limit."""
    cell = Text(text)
    percent = percent_of(value, limit)
    if percent is not None:
        cell.append(" ")
        cell.append(f"{percent:.0f}%", style=percent_style(percent))
    return cell


def _scope(row: Mapping[str, Any]) -> str:
    return f"{row.get('repository', '')} · {row.get('workflow', '')} · {row.get('job', '')}"


def step_name(row: Mapping[str, Any]) -> str:
    """Which wrapped step a run was: ``resmon collect --name``'s container name, else
    the command's base name; empty for a sidecar run (no command).

    A whole run has them in its summary's ``command``; a row of ``runs`` or of a
    per-run trend as ``command_container`` and ``command_name``, where the server's
    answer includes them."""
    payload = row.get("payload")
    command = payload.get("command") if isinstance(payload, Mapping) else None
    if isinstance(command, Mapping):
        container, name = command.get("container"), command.get("name")
    else:
        container, name = row.get("command_container"), row.get("command_name")
    if container and container != DEFAULT_COMMAND_CONTAINER:
        return str(container)
    return str(name or container or "")


def _run_label(row: Mapping[str, Any]) -> str:
    run = str(row.get("run_id", ""))
    if row.get("run_attempt"):
        run += f" #{row['run_attempt']}"
    return run


def jobs_table(
    body: Mapping[str, Any],
    now: datetime | None = None,
    width: int = DEFAULT_WIDTH,
    scope: str = DEFAULT_SCOPE,
) -> RenderableType:
    """Every job and its last run's figures: the job's own, or the host's (``scope``)."""
    jobs = body.get("jobs") or []
    if not jobs:
        return Text("No jobs stored yet: push a run with `resmon collect`.")
    f = figures(scope, "last_")
    columns = [
        Column("Repository", [j.get("repository") for j in jobs], "left", name=True),
        Column("Workflow", [j.get("workflow") for j in jobs], "left", name=True),
        Column("Job", [j.get("job") for j in jobs], "left", name=True),
        Column("Runs", [str(j.get("run_count", 0)) for j in jobs], drop=2),
        Column(
            "Last run",
            [run_states.tagged(fmt_ago(j.get("last_received_at"), now), j, "last_") for j in jobs],
            drop=3,
        ),
        Column("Duration", [fmt_duration(j.get("last_duration_seconds")) for j in jobs], drop=1),
        Column("CPU p95", [f.fmt_cpu(j.get(f.cpu_p95)) for j in jobs]),
        _cpu_time_column(jobs, f.cpu_seconds, drop=4),
        Column("Mem peak", [memory_text(j, f.mem_peak, f.kind) for j in jobs]),
    ]
    caption = [CAPTIONS[scope], *run_states.caption(jobs, "last_")]
    if body.get("truncated"):
        caption.append(f"first {len(jobs)} shown; narrow the list with --org or --repo")
    title = f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}"
    return fit_table([c for c in columns if c is not None], width, title=[title], caption=caption)


def _cpu_time_column(rows: list[Mapping[str, Any]], key: str | None, drop: int) -> Column | None:
    """The job's CPU time, in the job's scope (the host has none of its own)."""
    if key is None:
        return None
    return Column("CPU time", [fmt_duration(r.get(key)) for r in rows], drop=drop)


def runs_table(
    body: Mapping[str, Any],
    now: datetime | None = None,
    width: int = DEFAULT_WIDTH,
    scope: str = DEFAULT_SCOPE,
) -> RenderableType:
    """The runs of one job with the job's own figures, or the host's (``scope``)."""
    runs = body.get("runs") or []
    if not runs:
        return heading([*scope_units(body, "No runs of"), "in this period."], width, style="")
    f = figures(scope)
    caption = [CAPTIONS[scope], *run_states.caption(runs)]
    if body.get("truncated"):
        caption.append(f"newest {len(runs)} shown; use --limit or --since/--until for others")
    steps = [step_name(r) for r in runs]
    columns = [
        run_states.id_column(runs),
        Column("Run", [_run_label(r) for r in runs], "left", name=True),
        Column("Step", steps, "left", name=True) if any(steps) else None,
        # The branch each run built, unless the list is of one branch (--branch).
        Column("Branch", [r.get("branch") or "" for r in runs], "left", name=True, drop=6)
        if not body.get("branch") and any(r.get("branch") for r in runs)
        else None,
        Column("Received", [fmt_ago(r.get("received_at"), now) for r in runs], drop=2),
        Column("Duration", [fmt_duration(r.get("duration_seconds")) for r in runs]),
        Column("Samples", [_count(r.get("sample_count")) for r in runs], drop=1),
        Column("CPU p95", [f.fmt_cpu(r.get(f.cpu_p95)) for r in runs], drop=4),
        Column("CPU peak", [f.fmt_cpu(r.get(f.cpu_peak)) for r in runs]),
        _cpu_time_column(runs, f.cpu_seconds, drop=5),
        Column("Mem p95", [fmt_bytes(r.get(f.mem_p95)) for r in runs], drop=3),
        Column("Mem peak", [memory_text(r, f.mem_peak, f.kind) for r in runs]),
        # The job's disk writes, where its runs measured them (schema version 12).
        Column("Written", [fmt_bytes(r.get("job_io_write_bytes")) for r in runs], drop=7)
        if any(r.get("job_io_write_bytes") is not None for r in runs)
        else None,
    ]
    return fit_table(
        [c for c in columns if c is not None],
        width,
        title=scope_units(body, "Runs of"),
        caption=caption,
    )


def _count(value: Any) -> str:
    return NONE if value is None else str(value)


def _stat_line(stat: Any, fmt: Any) -> str:
    if not isinstance(stat, Mapping):
        return NONE
    return " / ".join(fmt(stat.get(k)) for k in ("p50", "p95", "peak"))


def run_view(
    run: Mapping[str, Any], now: datetime | None = None, width: int = DEFAULT_WIDTH
) -> Group:
    """``resmon query show``: the run, then one row per container, then top processes.

    Where the width is short, the p50 columns go first, then the limit columns (p95
    and peak, each with its percent of the limit, are what a limit is sized from),
    then long container names are shortened in the middle."""
    summary = run.get("payload") if isinstance(run.get("payload"), Mapping) else {}
    parts: list[Any] = [_run_head(run, summary, now, width)]
    containers = run.get("containers") or []
    if containers:
        parts.append(Text(""))
        parts.append(_containers_table(containers, width))
        # Below the table rather than a column: the row is already as wide as a terminal.
        parts.extend(_container_notes(containers, width))
    elif run.get("state") == "running":
        parts.append(Text("\nNo figures until it finishes: resmon query live shows it now."))
    else:
        parts.append(Text("\nNo per-container statistics in this run."))
    if (io := io_table(summary, width)) is not None:
        parts.append(Text(""))
        parts.append(io)
    if run.get("steps"):
        parts.append(Text(""))
        parts.append(steps_table(run["steps"]))
    parts.extend(_process_tables(summary, width))
    return Group(*parts)


def _run_head(
    run: Mapping[str, Any], summary: Mapping[str, Any], now: datetime | None, width: int
) -> Table:
    """The run's own figures, one per line: which run, when, how long, system (host)
    CPU and memory, the job's own CPU and memory.  Each value stays on its line; a scope too long for one line takes three."""
    labels_width = len("Memory used")
    room = max(1, width - labels_width - 2)
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True, min_width=labels_width)
    head.add_column(no_wrap=True, overflow="ellipsis")

    def row(label: str, value: str) -> None:
        head.add_row(label, middle_ellipsis(value, room))

    attempt = f" (attempt {run['run_attempt']})" if run.get("run_attempt") else ""
    row("Run", f"{run.get('id')} · run id {run.get('run_id')}{attempt}")
    state = run_states.state_line(run, now)
    if state and cell_len(state) > room and " up to " in state:
        # Two lines rather than a time cut in the middle.
        head_text, tail = state.split(" up to ", 1)
        row("State", head_text)
        row("", f"up to {tail}")
    elif state:
        row("State", state)
    if run.get("host"):
        row("Host", str(run["host"]))
    for label, value in context_lines(run):
        row(label, value)
    if cell_len(_scope(run)) <= room:
        row("Job", _scope(run))
    else:
        for label, key in (("Repository", "repository"), ("Workflow", "workflow"), ("Job", "job")):
            row(label, str(run.get(key, "")))
    if step_name(run):
        command = summary.get("command") or {}
        ran = command.get("name")
        row("Step", step_name(run) + (f" (ran {ran})" if ran and ran != step_name(run) else ""))
    row("Received", f"{fmt_time(run.get('received_at'))} ({fmt_ago(run.get('received_at'), now)})")
    if run.get("start_time"):
        row("Started", fmt_time(run.get("start_time")))
    samples = run.get("sample_count") or 0
    row("Duration", f"{fmt_duration(run.get('duration_seconds'))}, {samples} samples")
    row("", "p50 / p95 / peak")
    row("System CPU", _stat_line(summary.get("cpu_total_percent"), fmt_percent))
    row("Memory used", _stat_line(summary.get("mem_used_bytes"), fmt_bytes))
    if run.get("cpu_seconds") is not None:
        row("CPU time", fmt_duration(run.get("cpu_seconds")))
    for label, value in _job_lines(run):
        row(label, value)
    for label, value in io_lines(summary):
        row(label, value)
    return head


def _job_lines(run: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The job's own figures (the lines above are the host's, the whole machine)."""
    if run.get("job_scope") is None and run.get("job_memory_bytes_peak") is None:
        return []
    cpu = (
        f"p95 {fmt_cores(run.get('job_cpu_cores_p95'))}, "
        f"peak {fmt_cores(run.get('job_cpu_cores_peak'))} cores, "
        f"{fmt_duration(run.get('job_cpu_seconds'))} CPU time"
    )
    memory = (
        f"p95 {fmt_bytes(run.get('job_memory_bytes_p95'))}, "
        f"peak {memory_text(run, 'job_memory_bytes_peak', 'job_memory_kind')}"
    )
    low, high = run.get("job_memory_peak_low_bytes"), run.get("job_memory_peak_high_bytes")
    if low is not None and high is not None:
        memory += f" (within {fmt_bytes(low)}..{fmt_bytes(high)})"
    return [("Job CPU", cpu), ("Job memory", memory)]


def _containers_table(containers: list[Mapping[str, Any]], width: int) -> RenderableType:
    def figures(key: str, fmt: Callable[[Any], str], limit_key: str | None) -> list[Any]:
        if (
            limit_key is None
        ):  # p50 plain: the percent that matters for sizing is p95's and the peak's
            return [fmt(c.get(key)) for c in containers]
        return [with_limit(fmt(c.get(key)), c.get(key), c.get(limit_key)) for c in containers]

    cpu_limit, mem_limit = "limit_cpu_cores", "limit_memory_bytes"
    columns = [
        Column("Container", [c.get("name") for c in containers], "left", name=True),
        Column("CPU p50", figures("cpu_cores_p50", fmt_cores, None), drop=1),
        Column("CPU p95", figures("cpu_cores_p95", fmt_cores, cpu_limit)),
        Column("CPU peak", figures("cpu_cores_peak", fmt_cores, cpu_limit)),
        Column("limit", figures(cpu_limit, fmt_cores, None), drop=2, label="CPU limit"),
        Column("Mem p50", figures("memory_bytes_p50", fmt_bytes, None), drop=1),
        Column("Mem p95", figures("memory_bytes_p95", fmt_bytes, mem_limit)),
        Column("Mem peak", figures("memory_bytes_peak", fmt_bytes, mem_limit)),
        Column("limit", figures(mem_limit, fmt_bytes, None), drop=2, label="Mem limit"),
    ]
    return fit_table(columns, width, title=["Containers (percent of limit where known)"])


def _container_notes(containers: list[Mapping[str, Any]], width: int) -> list[Text]:
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
            notes.append(heading([f"{c.get('name')}:", ", ".join(note)], width, style="red"))
    return notes


def _process_tables(summary: Mapping[str, Any], width: int) -> list[RenderableType]:
    """The top five processes by CPU and by memory, where the run summary has them."""
    tables: list[RenderableType] = []
    for key, title in (
        ("top_cpu_processes", "Top processes by CPU"),
        ("top_mem_processes", "Top processes by memory"),
    ):
        procs = (summary.get(key) or [])[:5]
        if not procs:
            continue
        columns = [
            Column("PID", [str(p.get("pid", "")) for p in procs]),
            Column("Process", [str(p.get("name", "")) for p in procs], "left", name=True),
            Column("Peak CPU", [fmt_percent(p.get("peak_cpu_percent")) for p in procs]),
            Column("Peak RSS", [fmt_bytes(p.get("peak_mem_rss_bytes")) for p in procs]),
        ]
        tables.append(Text(""))
        tables.append(fit_table(columns, width, title=[title]))
    return tables


def _spark_line(label: str, values: list[Any], fmt: Callable[[Any], str], width: int) -> str:
    """``CPU p95 ▁▃▆█ 75%..82%``; only the newest points when they are more than fit."""
    span = value_span(values, fmt)
    room = max(1, width - cell_len(label) - cell_len(span) - 3)
    spark = sparkline(values)
    if len(spark) > room:
        # Scaled over every point, then cut: the bars keep their meaning.
        spark = ELLIPSIS + spark[-(room - 1) :]
    return f"{label} {spark} {span}"


def trend_table(
    body: Mapping[str, Any],
    now: datetime | None = None,
    width: int = DEFAULT_WIDTH,
    scope: str = DEFAULT_SCOPE,
) -> RenderableType:
    """p95 and peak per run or day: a container's, else the job's own or the host's."""
    points = body.get("points") or []
    container = body.get("container")
    what = ["container", f"{container}", "of"] if container else []
    if not points:
        units = ["No runs of", *what, *scope_units(body, tail=" in this period.")]
        return heading(units, width, style="")
    by_day = body.get("by") == "day"
    kind_key: str | None = None
    if container:
        cpu_keys = ("cpu_cores_p95", "cpu_cores_peak")
        mem_keys = ("memory_bytes_p95", "memory_bytes_peak")
        cpu_fmt: Callable[[Any], str] = fmt_cores
        cpu_limits = [p.get("limit_cpu_cores") for p in points]
        mem_limits = [p.get("limit_memory_bytes") for p in points]
    else:
        f = figures(scope)
        cpu_keys, mem_keys, cpu_fmt, kind_key = (
            (f.cpu_p95, f.cpu_peak),
            (f.mem_p95, f.mem_peak),
            f.fmt_cpu,
            f.kind,
        )
        cpu_limits = [p.get(f.cpu_limit) if f.cpu_limit else None for p in points]
        mem_limits = [p.get(f.mem_limit) if f.mem_limit else None for p in points]
    # The bars chart CPU p95 (steady load) and the memory peak (what a limit must hold).
    cpu_values = [p.get(cpu_keys[0]) for p in points]
    mem_values = [p.get(mem_keys[1]) for p in points]

    def figure(key: str, fmt: Callable[[Any], str], limits: list[Any]) -> list[Text]:
        return [
            with_limit(fmt(p.get(key)), p.get(key), lim)
            for p, lim in zip(points, limits, strict=True)
        ]

    mem_peaks = [
        with_limit(memory_text(p, mem_keys[1], kind_key), p.get(mem_keys[1]), lim)
        for p, lim in zip(points, mem_limits, strict=True)
    ]

    columns = [
        *_trend_lead(points, by_day, now),
        Column("Duration", [fmt_duration(p.get("duration_seconds")) for p in points], drop=1),
        Column("CPU p95", figure(cpu_keys[0], cpu_fmt, cpu_limits)),
        Column("trend", list(sparkline(cpu_values)), "left", drop=3, label="CPU p95 trend"),
        Column("CPU peak", figure(cpu_keys[1], cpu_fmt, cpu_limits)),
        Column("Mem p95", figure(mem_keys[0], fmt_bytes, mem_limits), drop=4),
        Column("Mem peak", mem_peaks),
        Column("trend", list(sparkline(mem_values)), "left", drop=3, label="Mem peak trend"),
    ]
    caption = [
        _spark_line("CPU p95 ", cpu_values, cpu_fmt, width),
        _spark_line("Mem peak", mem_values, fmt_bytes, width),
        "oldest → newest; sparklines and trend bars span min..max (not from 0)",
    ]
    if not container:
        caption.append(CAPTIONS[scope])
    if any(p.get("partial") or p.get("partial_runs") for p in points):
        caption.append("lost: a run whose batches stopped, figures from its streamed samples")
    per = "per day" if by_day else "per run"
    title = ["Trend of", *what, *scope_units(body, tail=f", {per}")]
    return fit_table([c for c in columns if c is not None], width, title=title, caption=caption)


def _trend_lead(
    points: list[Mapping[str, Any]], by_day: bool, now: datetime | None
) -> list[Column | None]:
    """A trend's first columns: the day and its runs (lost ones counted), or the run
    (tagged when lost), its step and when it was received."""
    if by_day:
        return [
            Column("Day", [str(p.get("day")) for p in points], "left"),
            Column("Runs", [run_states.partial_count(p) for p in points]),
        ]
    steps = [step_name(p) for p in points]
    return [
        run_states.id_column(points),
        Column("Run", [_run_label(p) for p in points], "left", name=True),
        Column("Step", steps, "left", name=True) if any(steps) else None,
        Column("Received", [fmt_ago(p.get("received_at"), now) for p in points], drop=2),
    ]


TOP_METRICS = {
    # (scope, metric) -> (the field jobs are ranked by, its column title)
    ("job", "cpu"): ("job_cpu_seconds_total", "CPU time"),
    ("job", "memory"): ("job_memory_bytes_peak_max", "Mem peak"),
    ("host", "cpu"): ("cpu_percent_p95_avg", "CPU p95"),
    ("host", "memory"): ("mem_bytes_peak_max", "Mem peak"),
    ("job", "duration"): ("duration_seconds_total", "Total time"),
    ("host", "duration"): ("duration_seconds_total", "Total time"),
}
# Per scope, the figures every row shows beside the ranking: (field, title, drop rank).
TOP_FIGURES = {
    "job": (
        ("job_cpu_seconds_total", "CPU time", 4),
        ("job_cpu_cores_p95_avg", "CPU p95", 3),
        ("job_memory_bytes_peak_max", "Mem peak", 3),
    ),
    "host": (("cpu_percent_p95_avg", "CPU p95", 3), ("mem_bytes_peak_max", "Mem peak", 3)),
}


TOP_LABELS = {"job": "(the job's own figures)", "host": "(host: the whole machine)"}


def _top_cell(row: Mapping[str, Any], key: str) -> str:
    if key == "job_memory_bytes_peak_max":
        return memory_text(row, key, "job_memory_kind")
    if "bytes" in key:
        return fmt_bytes(row.get(key))
    if "percent" in key:
        return fmt_percent(row.get(key))
    if "cores" in key:
        return fmt_cores(row.get(key))
    return fmt_duration(row.get(key))


def top_table(body: Mapping[str, Any], width: int = DEFAULT_WIDTH) -> RenderableType:
    """Jobs ranked by the job's own figures, or the host's, as the answer says (an
    answer without ``scope``, from a server before job figures, is the host's)."""
    rows = body.get("jobs") or []
    metric = body.get("metric", "cpu")
    scope = "job" if body.get("scope") == "job" else "host"
    if not rows:
        return Text("No runs in this period.")
    key, title = TOP_METRICS.get((scope, metric), TOP_METRICS[(scope, "cpu")])
    since = to_datetime(body.get("since"))
    period = f" since {since.strftime('%Y-%m-%d %H:%M')} UTC" if since else ""
    columns = [
        Column("#", [str(rank) for rank in range(1, len(rows) + 1)]),
        Column("Repository", [r.get("repository") for r in rows], "left", name=True),
        Column("Workflow", [r.get("workflow") for r in rows], "left", name=True),
        Column("Job", [r.get("job") for r in rows], "left", name=True),
        Column("Runs", [run_states.partial_count(r) for r in rows], drop=2),
        Column(title, [_top_cell(r, key) for r in rows], style="bold"),
        Column("Avg time", [fmt_duration(r.get("duration_seconds_avg")) for r in rows], drop=1),
        *(
            Column(header, [_top_cell(r, field) for r in rows], drop=drop)
            for field, header, drop in TOP_FIGURES[scope]
            # The ranking column is already this figure.
            if field != key
        ),
    ]
    return fit_table(
        columns,
        width,
        title=[f"Top jobs by {metric}{period}", TOP_LABELS[scope]],
        caption=[CAPTIONS[scope], *run_states.counted_caption(rows)],
    )
