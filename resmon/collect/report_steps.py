"""The Markdown report's run context line and step table: which branch and commit the
run built, on which runner, pod and node (``context``), and its steps (``steps``: the
segments ``resmon collect --mark`` marked in a sidecar's run, or the steps of a run the
server merged from ``--step`` pushes), each with its start on the run's timeline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resmon.collect.human_units import format_bytes, format_duration
from resmon.collect.report_charts import md_cell as _cell
from resmon.schema import parse_time

SHORT_SHA = 12


def context_line(summary: Mapping[str, Any]) -> str | None:
    """``branch feature/x @ 0123456789ab (push) · runner r1 [linux] · pod ci/p on node n``."""
    context = summary.get("context")
    if not isinstance(context, Mapping):
        return None
    parts = []
    branch = context.get("branch") or context.get("ref")
    if branch or context.get("sha"):
        text = f"branch {_cell(branch)}" if branch else "commit"
        if context.get("sha"):
            text += f" @ {_cell(str(context['sha'])[:SHORT_SHA])}"
        if context.get("event"):
            text += f" ({_cell(context['event'])})"
        parts.append(text)
    if context.get("runner_name"):
        labels = f" [{_cell(context['runner_labels'])}]" if context.get("runner_labels") else ""
        parts.append(f"runner {_cell(context['runner_name'])}{labels}")
    pod = "/".join(str(context[k]) for k in ("namespace", "pod") if context.get(k))
    if pod or context.get("node"):
        node = f" on node {_cell(context['node'])}" if context.get("node") else ""
        parts.append(f"pod {_cell(pod) or '?'}{node}")
    return " · ".join(parts) or None


def _seconds(value: Any) -> float | None:
    try:
        return parse_time(value).timestamp()
    except (TypeError, ValueError):
        return None


def _pair(step: Mapping[str, Any], first: str, second: str) -> str:
    values = [step.get(first), step.get(second)]
    if all(v is None for v in values):
        return ""
    return " / ".join(format_bytes(v) if isinstance(v, (int, float)) else "–" for v in values)


def steps_lines(summary: Mapping[str, Any]) -> list[str]:
    """A table of the run's steps: name, start (from the run's start), duration,
    CPU-seconds and memory peak; nothing without steps."""
    steps = [s for s in summary.get("steps") or () if isinstance(s, Mapping)]
    if not steps:
        return []
    origin = _seconds(summary.get("start_time"))
    marked = any(s.get("source") == "mark" for s in steps)
    disk = any(s.get("disk_read_bytes") is not None for s in steps)
    net = any(s.get("net_rx_bytes") is not None for s in steps)
    lines = [
        "| step | start | duration | CPU-s | memory peak |"
        + (" disk read / written |" if disk else "")
        + (" network in / out |" if net else ""),
        "| --- | ---: | ---: | ---: | ---: |"
        + (" ---: |" if disk else "")
        + (" ---: |" if net else ""),
    ]
    for step in steps:
        start = _seconds(step.get("start_time"))
        offset = (
            f"+{format_duration(max(0.0, start - origin))}" if None not in (start, origin) else ""
        )
        cpu = step.get("cpu_seconds")
        peak = step.get("memory_bytes_peak")
        lines.append(
            f"| {_cell(step.get('name'))} | {offset} | "
            f"{format_duration(step.get('duration_seconds'))} | "
            f"{f'{cpu:.2f}' if isinstance(cpu, (int, float)) else ''} | "
            f"{format_bytes(peak) if isinstance(peak, (int, float)) else ''} |"
            + (f" {_pair(step, 'disk_read_bytes', 'disk_write_bytes')} |" if disk else "")
            + (f" {_pair(step, 'net_rx_bytes', 'net_tx_bytes')} |" if net else "")
        )
    note = (
        "Steps marked with `resmon collect --mark` (each ends where the next starts)."
        if marked
        else "Steps pushed with `resmon collect --step`, merged into this run."
    )
    return [*lines, "", note, ""]
