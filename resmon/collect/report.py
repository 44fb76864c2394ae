"""Reports of a finished run: the JSON summary file and the Markdown job summary.

Both are pure functions of the run summary dict (what ``resmon collect`` prints and
pushes), so a stored summary renders the same report as the live run did.  The
Markdown goes to ``$GITHUB_STEP_SUMMARY`` (GitHub and Forgejo show it on the run
page) or ``--markdown-file``; its charts are Mermaid ``xychart-beta`` blocks, which
those pages render themselves: no image service sees the data.

What the figures are, in the order a reader needs them:

- the job first (the summary's ``job`` block): wrapper mode, the wrapped command's
  process tree (orphans included); sidecar mode, the job's containers.  CPU p95 and
  peak in cores, CPU-seconds, and the memory peak with its kind (PSS: shared pages
  counted once; RSS; cgroup: the kernel's own count) and the range that must hold
  the true peak, with the figure the headline is;
- the budgets checked at the end (``budgets``, from ``--budget``);
- what the command left running when it exited (``command.left_running``);
- each container, with the kind its memory figures are;
- the host (whole machine): /proc/stat's CPU busy and MemTotal - MemAvailable,
  which include every other job and service on the machine.

A summary without these fields (an older resmon, the Go collector) renders what
it has.  The charts are drawn by :mod:`resmon.collect.report_charts`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from resmon.collect.budgets import markdown_lines
from resmon.collect.human_units import format_bytes, format_cores, format_duration
from resmon.collect.report_charts import (
    JOB_COLOURS,
    OTHERS_COLOUR,
    charts,
    job_containers,
)
from resmon.collect.report_charts import md_cell as _cell
from resmon.collect.report_io import container_io_table, job_io_rows
from resmon.collect.report_steps import context_line, steps_lines

__all__ = [
    "JOB_COLOURS",
    "OTHERS_COLOUR",
    "append_markdown",
    "format_bytes",
    "job_containers",
    "render_markdown",
    "write_summary_file",
]


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


def _of_limit(value: float | None, limit: float | None) -> str:
    if value is None or not limit:
        return ""
    return f" ({value / limit * 100:.0f}%)"


def _stat(obj: Mapping[str, Any] | None, key: str) -> float | None:
    if not isinstance(obj, Mapping):
        return None
    value = obj.get(key)
    return value if isinstance(value, (int, float)) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# What a memory figure is, by the summary's memory_kind.
MEMORY_KINDS = {"pss": "PSS", "rss": "RSS", "cgroup": "cgroup", "mixed": "mixed"}
# Which figure a memory peak's headline is, by its basis.
PEAK_BASES = {
    "sampled": "the largest sampled total",
    "process_hwm": "one process's high-water mark (VmHWM)",
    "ru_maxrss": "the wait's ru_maxrss",
    "cgroup_peak": "the cgroup's own peak",
    "tracked": "the tree tracker's reading between samples",
    "estimate": "an estimate (each process's PSS read, scaled by its RSS since)",
}


def _kind(value: Any) -> str:
    return MEMORY_KINDS.get(str(value), _cell(value)) if value else ""


# --- the Markdown section ----------------------------------------------------


def render_markdown(summary: Mapping[str, Any], execution: Mapping[str, Any] | None = None) -> str:
    """The job-summary section for one run."""
    lines: list[str] = []
    title = "Resource usage"
    command = _mapping(summary.get("command"))
    if command.get("name"):
        title += f": {_cell(command['name'])}"
    lines += [f"### {title}", ""]
    lines.append(_headline(summary, execution))
    lines.append("")
    if (context := context_line(summary)) is not None:
        lines += [context, ""]
    lines += _job_table(summary)
    lines += steps_lines(summary)
    lines += _budgets(summary)
    lines += _left_running(command)
    containers = [c for c in summary.get("containers") or [] if isinstance(c, Mapping)]
    if command.get("container"):
        # Wrapper mode: the wrapped command is what the reader came for; it goes first.
        containers.sort(key=lambda c: c.get("name") != command["container"])
    mine, others = _split_containers(summary, containers)
    if mine:
        lines += _container_table(mine)
        lines += container_io_table(mine)
    lines += _container_notes(containers)
    if others:
        lines += [
            f"<details><summary>Other containers on the host ({len(others)})</summary>",
            "",
            *_container_table(others),
            "</details>",
            "",
        ]
    lines += _system_table(summary)
    lines += _process_tables(summary)
    lines += charts(summary)
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
    interval = _mapping(summary.get("collector")).get("interval_seconds")
    samples = summary.get("sample_count")
    if samples is not None:
        parts.append(f"{samples} samples" + (f" every {interval:g}s" if interval else ""))
    # With a job block the CPU-seconds are in the job's table, said whose they are.
    if not isinstance(summary.get("job"), Mapping) and isinstance(
        summary.get("cpu_seconds"), (int, float)
    ):
        parts.append(f"{summary['cpu_seconds']:.1f} CPU-seconds")
    command = _mapping(summary.get("command"))
    if command.get("exit_code") is not None:
        parts.append(f"exit code {_cell(command['exit_code'])}")
    start, end = summary.get("start_time"), summary.get("end_time")
    if start and end:
        parts.append(f"{_cell(start)} → {_cell(end)}")
    return " · ".join(parts)


def _job_table(summary: Mapping[str, Any]) -> list[str]:
    """The job's own figures, each said what it is."""
    job = summary.get("job")
    if not isinstance(job, Mapping):
        return []
    names = [str(n) for n in job.get("containers") or []]
    if job.get("scope") == "command":
        whose = "the wrapped command's process tree"
    else:
        whose = "its containers: " + ", ".join(_cell(n) for n in names) if names else "none seen"
    cpu, mem = _mapping(job.get("cpu_cores")), _mapping(job.get("memory_bytes"))
    cpu_limit, mem_limit = job.get("limit_cpu_cores"), job.get("limit_memory_bytes")
    p95, peak = _stat(cpu, "p95"), _stat(cpu, "peak")
    rows = [
        (
            "CPU p95 · peak (cores)",
            f"{format_cores(p95)}{_of_limit(p95, cpu_limit)} · "
            f"**{format_cores(peak)}**{_of_limit(peak, cpu_limit)}"
            + (f" of {format_cores(cpu_limit)}" if cpu_limit else ""),
        ),
    ]
    if isinstance(job.get("cpu_seconds"), (int, float)):
        rows.append(("CPU time", f"**{job['cpu_seconds']:.1f} CPU-seconds**"))
    rows += _memory_rows(job, mem, mem_limit)
    rows += job_io_rows(job)
    lines = [f"| **job**: {whose} | |", "| --- | --- |"]
    lines += [f"| {label} | {value} |" for label, value in rows]
    return [*lines, ""]


def _budgets(summary: Mapping[str, Any]) -> list[str]:
    """The budgets checked before the push (``--budget``), one line each."""
    results = [r for r in summary.get("budgets") or [] if isinstance(r, Mapping)]
    if not results:
        return []
    return ["**Budgets**", "", *markdown_lines(results), ""]


def _memory_rows(
    job: Mapping[str, Any], mem: Mapping[str, Any], limit: float | None
) -> list[tuple[str, str]]:
    kind = _kind(job.get("memory_kind"))
    label = f"memory peak ({kind})" if kind else "memory peak"
    peak = _mapping(job.get("memory_peak"))
    headline = _stat(peak, "headline")
    if headline is None:
        headline = _stat(mem, "peak")
    value = f"**{format_bytes(headline)}**{_of_limit(headline, limit)}"
    if limit:
        value += f" of {format_bytes(limit)}"
    low, high = _stat(peak, "low"), _stat(peak, "high")
    if low is not None and high is not None:
        value += f"; the true peak is {format_bytes(low)} .. {format_bytes(high)}"
    basis = PEAK_BASES.get(str(peak.get("basis")))
    if basis:
        value += f" (headline: {basis})"
    rows = [(label, value)]
    p95 = _stat(mem, "p95")
    if p95 is not None:
        rows.append((f"memory p95 ({kind})" if kind else "memory p95", format_bytes(p95)))
    return rows


def _left_running(command: Mapping[str, Any]) -> list[str]:
    left = command.get("left_running")
    if not isinstance(left, Mapping) or not left.get("count"):
        return []
    count = left["count"]
    procs = [p for p in left.get("processes") or [] if isinstance(p, Mapping)]
    named = ", ".join(_left_process(p) for p in procs[:8])
    more = count - min(len(procs), 8)
    if more > 0:
        named += f" and {more} more"
    cpu = left.get("cpu_seconds")
    counted = (
        f"; their {cpu:.1f} CPU-seconds until then are in the job's CPU time"
        if isinstance(cpu, (int, float))
        else ""
    )
    fate = (
        "ended by --kill-left-running"
        if left.get("killed")
        else "not ended (--kill-left-running ends them)"
    )
    plural = "es" if count != 1 else ""
    return [
        f"- ⚠️ **left running** when the command exited: {count} process{plural}: "
        f"{named}{counted}; {fate}",
        "",
    ]


def _split_containers(
    summary: Mapping[str, Any], containers: list[Mapping[str, Any]]
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The job's containers, and the rest of the machine's (folded away): by the job
    block's list, else the wrapped command's container; an older summary keeps all."""
    job = summary.get("job")
    if isinstance(job, Mapping) and isinstance(job.get("containers"), list):
        names = {str(n) for n in job["containers"]}
    else:
        command = _mapping(summary.get("command"))
        if not command.get("container"):
            return containers, []
        names = {str(command["container"])}
    mine = [c for c in containers if str(c.get("name")) in names]
    if not mine:
        return containers, []
    return mine, [c for c in containers if str(c.get("name")) not in names]


def _left_process(p: Mapping[str, Any]) -> str:
    cpu = p.get("cpu_seconds")
    spent = f", {cpu:.2f} CPU-s" if isinstance(cpu, (int, float)) and cpu > 0 else ""
    return f"{_cell(p.get('name', '?'))} (pid {_cell(p.get('pid', '?'))}{spent})"


def _container_table(containers: Sequence[Mapping[str, Any]]) -> list[str]:
    kinds = any(c.get("memory_kind") for c in containers)
    lines = [
        "| container | CPU p50 | CPU p95 | CPU peak | CPU limit | "
        + ("memory is | " if kinds else "")
        + "memory p50 | memory p95 | memory peak | memory limit | CPU-seconds |",
        "| --- | ---: | ---: | ---: | ---: | "
        + ("--- | " if kinds else "")
        + "---: | ---: | ---: | ---: | ---: |",
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
            *([_kind(c.get("memory_kind")) or "–"] if kinds else []),
            format_bytes(_stat(mem, "p50")),
            format_bytes(_stat(mem, "p95")) + _of_limit(_stat(mem, "p95"), mem_limit),
            format_bytes(mem_peak) + _of_limit(mem_peak, mem_limit),
            format_bytes(mem_limit) if mem_limit else "none",
            f"{c['cpu_seconds']:.1f}" if isinstance(c.get("cpu_seconds"), (int, float)) else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    note = "CPU in cores (1.00 = one core busy); percentages are of the limit."
    if kinds:
        note += (
            " Memory is PSS (shared pages counted once), RSS, or the cgroup's own count"
            " (page cache included)."
        )
    return [*lines, "", note, ""]


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

    # The machine's figures (every job and service on it), not the job's.
    lines = [
        "| host (whole machine) | p50 | p95 | peak | avg |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
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
    """The top processes: the job's own where they carry their container (a summary
    from before that listed the whole machine's, and says so)."""
    lines: list[str] = []
    for key, by in (("top_cpu_processes", "CPU"), ("top_mem_processes", "memory")):
        procs = [p for p in summary.get(key) or [] if isinstance(p, Mapping)]
        if not procs:
            continue
        own = all("container" in p for p in procs)
        title = f"The job's top processes by {by}" if own else f"Top processes by {by} (host)"
        lines += [
            f"<details><summary>{title}</summary>",
            "",
            "| pid | process | "
            + ("container | " if own else "")
            + "peak CPU (100% = one core) | peak RSS |",
            "| ---: | --- | " + ("--- | " if own else "") + "---: | ---: |",
        ]
        for p in procs:
            cpu = p.get("peak_cpu_percent")
            cells = [
                _cell(p.get("pid", "")),
                _cell(p.get("name", "")),
                *([_cell(p.get("container", ""))] if own else []),
                "–" if not isinstance(cpu, (int, float)) else f"{cpu:.1f}%",
                format_bytes(_stat(p, "peak_mem_rss_bytes")),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "</details>", ""]
    return lines
