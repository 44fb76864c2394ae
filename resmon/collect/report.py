"""Reports of a finished run: the JSON summary file and the Markdown job summary.

Both are pure functions of the run summary dict (what ``resmon collect`` prints and
pushes), so a stored summary renders the same report as the live run did.  The
Markdown goes to ``$GITHUB_STEP_SUMMARY`` (GitHub and Forgejo show it on the run
page) or ``--markdown-file``; its charts are Mermaid ``xychart-beta`` blocks, which
those pages render themselves: no image service sees the data.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

# Mermaid draws every point; more than this makes a chart slow and no clearer.
CHART_POINTS = 100
# One line per container; xychart has no legend, so the order is spelled out below it.
CHART_LINES = 6


def write_summary_file(path: str | os.PathLike[str], summary: Mapping[str, Any]) -> None:
    """Write the summary as pretty JSON, atomically (a reader never sees half a file)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    try:
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def append_markdown(path: str | os.PathLike[str], text: str) -> None:
    """Append a section: GITHUB_STEP_SUMMARY is shared by every step of the job."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


# --- formatting --------------------------------------------------------------


def _cell(text: Any) -> str:
    """Table-cell text: process and container names come from the job and may hold anything."""
    s = str(text)
    for a, b in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"), ("`", "\\`")):
        s = s.replace(a, b)
    return " ".join(s.split())


def _label(text: Any) -> str:
    # Mermaid quoted strings cannot contain a double quote.
    return str(text).replace('"', "'").replace("\n", " ")


def format_bytes(value: float | None) -> str:
    if value is None:
        return "–"
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_cores(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h {m}m {s}s"
    return f"{m}m {s}s" if m else f"{s}s"


def _of_limit(value: float | None, limit: float | None) -> str:
    if value is None or not limit:
        return ""
    return f" ({value / limit * 100:.0f}%)"


def _stat(obj: Mapping[str, Any] | None, key: str) -> float | None:
    if not isinstance(obj, Mapping):
        return None
    value = obj.get(key)
    return value if isinstance(value, (int, float)) else None


# --- the Markdown section ----------------------------------------------------


def render_markdown(summary: Mapping[str, Any], execution: Mapping[str, Any] | None = None) -> str:
    """The job-summary section for one run."""
    lines: list[str] = []
    title = "Resource usage"
    command = summary.get("command")
    if isinstance(command, Mapping) and command.get("name"):
        title += f": {_cell(command['name'])}"
    lines += [f"### {title}", ""]
    lines.append(_headline(summary, execution))
    lines.append("")
    containers = [c for c in summary.get("containers") or [] if isinstance(c, Mapping)]
    if isinstance(command, Mapping) and command.get("container"):
        # Wrapper mode: the wrapped command is what the reader came for; it goes first.
        containers.sort(key=lambda c: c.get("name") != command["container"])
    if containers:
        lines += _container_table(containers)
        lines += _container_notes(containers)
    lines += _system_table(summary)
    lines += _process_tables(summary)
    lines += _charts(summary)
    return "\n".join(lines).rstrip("\n") + "\n\n"


def _headline(summary: Mapping[str, Any], execution: Mapping[str, Any] | None) -> str:
    parts = []
    if execution:
        scope = "/".join(
            str(execution[k]) for k in ("repository", "workflow", "job") if execution.get(k)
        )
        if scope:
            parts.append(f"**{_cell(scope)}**")
        if execution.get("run_id"):
            attempt = execution.get("run_attempt")
            parts.append(
                f"run {_cell(execution['run_id'])}"
                + (f" attempt {_cell(attempt)}" if attempt else "")
            )
    parts.append(f"{format_duration(summary.get('duration_seconds'))}")
    collector = summary.get("collector") if isinstance(summary.get("collector"), Mapping) else {}
    interval = collector.get("interval_seconds")
    samples = summary.get("sample_count")
    if samples is not None:
        parts.append(f"{samples} samples" + (f" every {interval:g}s" if interval else ""))
    if isinstance(summary.get("cpu_seconds"), (int, float)):
        parts.append(f"{summary['cpu_seconds']:.1f} CPU-seconds")
    command = summary.get("command")
    if isinstance(command, Mapping) and command.get("exit_code") is not None:
        parts.append(f"exit code {command['exit_code']}")
    start, end = summary.get("start_time"), summary.get("end_time")
    if start and end:
        parts.append(f"{_cell(start)} → {_cell(end)}")
    return " · ".join(parts)


def _container_table(containers: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "| container | CPU p50 | CPU p95 | CPU peak | CPU limit | memory p50 | memory p95 | memory peak | memory limit | CPU-seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in containers:
        cpu, mem = c.get("cpu_cores"), c.get("memory_bytes")
        cpu_limit, mem_limit = c.get("limit_cpu_cores"), c.get("limit_memory_bytes")
        cpu_peak, mem_peak = _stat(cpu, "peak"), _stat(mem, "peak")
        cells = [
            f"**{_cell(c.get('name', '?'))}**",
            format_cores(_stat(cpu, "p50")),
            format_cores(_stat(cpu, "p95")) + _of_limit(_stat(cpu, "p95"), cpu_limit),
            format_cores(cpu_peak) + _of_limit(cpu_peak, cpu_limit),
            format_cores(cpu_limit) if cpu_limit else "none",
            format_bytes(_stat(mem, "p50")),
            format_bytes(_stat(mem, "p95")) + _of_limit(_stat(mem, "p95"), mem_limit),
            format_bytes(mem_peak) + _of_limit(mem_peak, mem_limit),
            format_bytes(mem_limit) if mem_limit else "none",
            f"{c['cpu_seconds']:.1f}" if isinstance(c.get("cpu_seconds"), (int, float)) else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "CPU in cores (1.00 = one core busy); percentages are of the limit.", ""]
    return lines


def _container_notes(containers: Sequence[Mapping[str, Any]]) -> list[str]:
    notes = []
    for c in containers:
        found = []
        throttled = c.get("cpu_throttled_seconds")
        if isinstance(throttled, (int, float)) and throttled > 0:
            pct = c.get("throttled_periods_percent")
            found.append(
                f"CPU throttled for {throttled:.1f} s"
                + (f" ({pct:.0f}% of periods)" if isinstance(pct, (int, float)) else "")
            )
        oom = c.get("oom_kills")
        if isinstance(oom, int) and oom > 0:
            found.append(f"{oom} OOM kill{'s' if oom != 1 else ''}")
        if found:
            notes.append(f"- ⚠️ **{_cell(c.get('name', '?'))}**: " + ", ".join(found))
    return [*notes, ""] if notes else []


def _system_table(summary: Mapping[str, Any]) -> list[str]:
    cpu, mem, mem_pct = (
        summary.get("cpu_total_percent"),
        summary.get("mem_used_bytes"),
        summary.get("mem_used_percent"),
    )
    if not any(isinstance(x, Mapping) for x in (cpu, mem)):
        return []

    def pct(v: float | None) -> str:
        return "–" if v is None else f"{v:.1f}%"

    lines = ["| system | p50 | p95 | peak | avg |", "| --- | ---: | ---: | ---: | ---: |"]
    lines.append(
        "| CPU busy | "
        + " | ".join(pct(_stat(cpu, k)) for k in ("p50", "p95", "peak", "avg"))
        + " |"
    )
    lines.append(
        "| memory used | "
        + " | ".join(
            format_bytes(_stat(mem, k))
            + (f" ({_stat(mem_pct, k):.0f}%)" if _stat(mem_pct, k) is not None else "")
            for k in ("p50", "p95", "peak", "avg")
        )
        + " |"
    )
    return [*lines, ""]


def _process_tables(summary: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for key, title in (
        ("top_cpu_processes", "Top processes by CPU"),
        ("top_mem_processes", "Top processes by memory"),
    ):
        procs = [p for p in summary.get(key) or [] if isinstance(p, Mapping)]
        if not procs:
            continue
        lines += [
            f"<details><summary>{title}</summary>",
            "",
            "| pid | process | peak CPU (100% = one core) | peak RSS |",
            "| ---: | --- | ---: | ---: |",
        ]
        for p in procs:
            cpu = p.get("peak_cpu_percent")
            lines.append(
                f"| {_cell(p.get('pid', ''))} | {_cell(p.get('name', ''))} | "
                f"{'–' if cpu is None else f'{cpu:.1f}%'} | {format_bytes(p.get('peak_mem_rss_bytes'))} |"
            )
        lines += ["", "</details>", ""]
    return lines


def _downsample(points: Sequence[Mapping[str, Any]], n: int) -> list[Mapping[str, Any]]:
    if len(points) <= n:
        return list(points)
    step = (len(points) - 1) / (n - 1)
    return [points[round(i * step)] for i in range(n)]


def _series(values: Sequence[float | None]) -> str:
    # A missing value (no CPU delta on the first sample) is drawn as 0: xychart has no gaps.
    return "[" + ", ".join(f"{(v or 0):.3f}".rstrip("0").rstrip(".") for v in values) + "]"


def _chart(
    title: str, y_label: str, x_max: float, lines: list[tuple[str, list[float | None]]]
) -> list[str]:
    top = max((v or 0 for _, vs in lines for v in vs), default=0) or 1
    out = [
        "```mermaid",
        "xychart-beta",
        f'    title "{_label(title)}"',
        f'    x-axis "seconds since start" 0 --> {max(x_max, 1):.0f}',
        f'    y-axis "{_label(y_label)}" 0 --> {top * 1.1:.3g}',
    ]
    out += [f"    line {_series(vs)}" for _, vs in lines]
    out.append("```")
    if len(lines) > 1:
        out.append(
            "Lines, in order: "
            + ", ".join(f"{i + 1}. {_cell(name)}" for i, (name, _) in enumerate(lines))
        )
    return [*out, ""]


def _charts(summary: Mapping[str, Any]) -> list[str]:
    timeline = [p for p in summary.get("timeline") or [] if isinstance(p, Mapping)]
    if len(timeline) < 2:
        return []
    points = _downsample(timeline, CHART_POINTS)
    x_max = float(points[-1].get("t") or 0)
    names: list[str] = []
    for c in summary.get("containers") or []:
        if isinstance(c, Mapping) and c.get("name"):
            names.append(str(c["name"]))
    seen = {n for p in points for n in (p.get("containers") or {})}
    names = [n for n in names if n in seen] or sorted(seen)
    peak = {
        n: max(((p.get("containers") or {}).get(n, {}).get("cpu_cores") or 0) for p in points)
        for n in names
    }
    command = summary.get("command")
    first = command.get("container") if isinstance(command, Mapping) else None
    # The busiest containers get a line (the wrapped command's always, and first).
    chosen = set(sorted(names, key=lambda n: (n != first, -peak[n]))[:CHART_LINES])
    names = sorted((n for n in names if n in chosen), key=lambda n: n != first)

    def per_container(field: str, scale: float = 1.0) -> list[tuple[str, list[float | None]]]:
        out = []
        for n in names:
            vals = []
            for p in points:
                v = (p.get("containers") or {}).get(n, {}).get(field)
                vals.append(None if v is None else v / scale)
            out.append((n, vals))
        return out

    lines = ["#### Over time", ""]
    if names:
        lines += _chart("CPU (cores)", "cores", x_max, per_container("cpu_cores"))
        lines += _chart("Memory (MiB)", "MiB", x_max, per_container("memory_bytes", 1024 * 1024))
    else:
        lines += _chart(
            "System CPU busy (%)",
            "percent",
            x_max,
            [("system", [p.get("cpu_percent") for p in points])],
        )
        lines += _chart(
            "System memory used (MiB)",
            "MiB",
            x_max,
            [("system", [(p.get("mem_used_bytes") or 0) / 1048576 for p in points])],
        )
    return lines
