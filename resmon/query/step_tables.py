"""``resmon query show``'s run context lines and step table (schema version 11): which
branch and commit a run built, on which runner, pod and node, and its steps (the
``--step`` pushes merged into it, or a sidecar's ``--mark`` segments)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rich.table import Table

from resmon.query.formats import NONE, fmt_bytes, fmt_duration, to_datetime

SHORT_SHA = 12


def context_lines(run: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) lines of the run's context; none for a run without one."""
    lines = []
    branch = run.get("branch") or run.get("git_ref")
    commit = run.get("commit_sha")
    if branch or commit:
        text = str(branch or "")
        if commit:
            text += (" @ " if text else "") + str(commit)[:SHORT_SHA]
        if run.get("event_name"):
            text += f" ({run['event_name']})"
        lines.append(("Branch", text))
    if run.get("runner_name"):
        labels = f" [{run['runner_labels']}]" if run.get("runner_labels") else ""
        lines.append(("Runner", f"{run['runner_name']}{labels}"))
    pod = "/".join(str(run[k]) for k in ("pod_namespace", "pod_name") if run.get(k))
    if pod or run.get("node_name"):
        node = f" on node {run['node_name']}" if run.get("node_name") else ""
        lines.append(("Pod", f"{pod or NONE}{node}"))
    return lines


def _offset(start: Any, first: datetime | None) -> str:
    at = to_datetime(start)
    if at is None or first is None:
        return NONE
    seconds = (at - first).total_seconds()
    return "+" + (fmt_duration(seconds) if seconds >= 1 else "0s")


def steps_table(steps: list[Mapping[str, Any]]) -> Table:
    """One row per step: name, start (from the first step's), duration, CPU-s, memory
    peak, and the share of the run's CPU time each took."""
    table = Table(title="Steps", title_justify="left", expand=False)
    disk = any(s.get("disk_read_bytes") is not None for s in steps)
    net = any(s.get("net_rx_bytes") is not None for s in steps)
    headers = ["Step", "Start", "Duration", "CPU-s", "CPU share", "Memory peak"]
    headers += ["Disk r / w"] if disk else []
    headers += ["Net in / out"] if net else []
    for header in headers:
        table.add_column(header, justify="left" if header == "Step" else "right", no_wrap=True)
    starts = [to_datetime(s.get("start_time")) for s in steps]
    known = [s for s in starts if s is not None]
    first = min(known) if known else None
    total = sum(float(s.get("cpu_seconds") or 0.0) for s in steps)
    for step in steps:
        cpu = step.get("cpu_seconds")
        share = f"{100 * float(cpu) / total:.0f} %" if cpu is not None and total > 0 else NONE
        cells = [
            str(step.get("name") or NONE),
            _offset(step.get("start_time"), first),
            fmt_duration(step.get("duration_seconds")),
            f"{float(cpu):.2f}" if cpu is not None else NONE,
            share,
            fmt_bytes(step.get("memory_bytes_peak")),
        ]
        if disk:
            cells.append(
                f"{fmt_bytes(step.get('disk_read_bytes'))} / "
                f"{fmt_bytes(step.get('disk_write_bytes'))}"
            )
        if net:
            cells.append(
                f"{fmt_bytes(step.get('net_rx_bytes'))} / {fmt_bytes(step.get('net_tx_bytes'))}"
            )
        table.add_row(*cells)
    return table
