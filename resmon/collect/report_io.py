"""The Markdown report's disk I/O and network rows (:mod:`resmon.collect.report`).

Each figure says what it is: disk bytes name their source (the cgroup's ``io.stat``,
v1 ``blkio``, or the processes' /proc/PID/io), network bytes leave loopback out
(counted on its own line) and are the network namespace's, which containers sharing
it report alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from resmon.collect.human_units import format_bytes
from resmon.collect.report_charts import md_cell as _cell

IO_SOURCES = {
    "cgroup": "the cgroup's io.stat",
    "blkio": "the cgroup's blkio counters",
    "proc": "its processes' /proc/PID/io",
}


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _num(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _rate(stat: Any, key: str = "peak") -> str:
    value = _num(_map(stat).get(key))
    return "–" if value is None else f"{format_bytes(value)}/s"


def job_io_rows(job: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The job table's disk I/O and network rows (none where not measured)."""
    rows: list[tuple[str, str]] = []
    io = _map(job.get("io"))
    if io:
        sources = [s for s in io.get("sources") or [] if isinstance(s, str)]
        said = ", ".join(IO_SOURCES.get(s, _cell(s)) for s in sources)
        rows.append(
            (
                "disk read · written",
                f"{format_bytes(_num(io.get('read_bytes')))} · "
                f"**{format_bytes(_num(io.get('write_bytes')))}**"
                f" (peak {_rate(io.get('read_bytes_per_second'))} · "
                f"{_rate(io.get('write_bytes_per_second'))}; from {said or 'unknown'})",
            )
        )
    net = _map(job.get("network"))
    if net:
        count = _num(net.get("namespaces")) or 0
        rows.append(
            (
                "network received · sent",
                f"{format_bytes(_num(net.get('rx_bytes')))} · "
                f"{format_bytes(_num(net.get('tx_bytes')))}"
                f" (peak {_rate(net.get('rx_bytes_per_second'))} · "
                f"{_rate(net.get('tx_bytes_per_second'))}; loopback apart; all traffic of "
                f"{count:g} network namespace{'s' if count != 1 else ''})",
            )
        )
        rows.append(
            (
                "loopback received · sent",
                f"{format_bytes(_num(net.get('loopback_rx_bytes')))} · "
                f"{format_bytes(_num(net.get('loopback_tx_bytes')))}",
            )
        )
    return rows


def container_io_table(containers: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each measured container's disk I/O and network; nothing when none was measured."""
    measured = [c for c in containers if _map(c.get("io")) or _map(c.get("network"))]
    if not measured:
        return []
    lines = [
        "| container | disk read | disk written | write peak | disk source | "
        "net received | net sent | loopback | shares its network with |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for c in measured:
        io, net = _map(c.get("io")), _map(c.get("network"))
        shared = [_cell(s) for s in net.get("shared_with") or [] if isinstance(s, str)]
        source = str(io.get("source", "")) if io else ""
        if io.get("unreadable_processes"):
            source += f" ({io['unreadable_processes']} unreadable)"
        cells = [
            f"**{_cell(c.get('name', '?'))}**",
            format_bytes(_num(io.get("read_bytes"))) if io else "–",
            format_bytes(_num(io.get("write_bytes"))) if io else "–",
            _rate(io.get("write_bytes_per_second")) if io else "–",
            _cell(source) if io else "–",
            format_bytes(_num(net.get("rx_bytes"))) if net else "–",
            format_bytes(_num(net.get("tx_bytes"))) if net else "–",
            format_bytes(_num(net.get("loopback_rx_bytes"))) if net else "–",
            (", ".join(shared[:5]) + (f" and {len(shared) - 5} more" if len(shared) > 5 else ""))
            or "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "Disk bytes are what the container read from and wrote to storage (page-cache"
        " hits are not reads). Network bytes are the container's network namespace's, loopback"
        " apart: containers sharing a namespace show the same figures."
    )
    return [*lines, "", note, ""]
