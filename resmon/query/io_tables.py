"""``resmon query show``'s disk I/O and network: the job's lines and a table per container.

Read from the run's summary (the ``io`` and ``network`` blocks of its job and its
containers, :mod:`resmon.collect.io_run`), so a run pushed before schema version 12
or by the Go collector simply shows none.  Each figure says what it is: disk bytes
their source (the cgroup's io.stat, v1 blkio, the processes' /proc/PID/io), network
bytes without loopback (shown apart), a namespace's whole traffic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import RenderableType

from resmon.query.formats import NONE, fmt_bytes
from resmon.query.layout import Column, fit_table


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _num(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _rate(stat: Any, key: str = "peak") -> str:
    value = _num(_map(stat).get(key))
    return NONE if value is None else f"{fmt_bytes(value)}/s"


def io_lines(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The job's disk I/O and network lines (none where the run has no figures)."""
    job = _map(summary.get("job"))
    lines: list[tuple[str, str]] = []
    io = _map(job.get("io"))
    if io:
        sources = [str(s) for s in io.get("sources") or [] if isinstance(s, str)]
        lines.append(
            (
                "Job disk",
                f"read {fmt_bytes(_num(io.get('read_bytes')))}, "
                f"written {fmt_bytes(_num(io.get('write_bytes')))}, "
                f"peak {_rate(io.get('read_bytes_per_second'))} / "
                f"{_rate(io.get('write_bytes_per_second'))}"
                + (f" ({', '.join(sources)})" if sources else ""),
            )
        )
    net = _map(job.get("network"))
    if net:
        lines.append(
            (
                "Job network",
                f"received {fmt_bytes(_num(net.get('rx_bytes')))}, "
                f"sent {fmt_bytes(_num(net.get('tx_bytes')))}, "
                f"loopback {fmt_bytes(_num(net.get('loopback_rx_bytes')))}",
            )
        )
    return lines


def io_table(summary: Mapping[str, Any], width: int) -> RenderableType | None:
    """Each container's disk I/O and network, or None when none was measured."""
    containers = [
        c
        for c in summary.get("containers") or []
        if isinstance(c, Mapping) and (_map(c.get("io")) or _map(c.get("network")))
    ]
    if not containers:
        return None

    def cells(block: str, key: str) -> list[str]:
        return [fmt_bytes(_num(_map(c.get(block)).get(key))) for c in containers]

    columns = [
        Column("Container", [c.get("name") for c in containers], "left", name=True),
        Column("Read", cells("io", "read_bytes")),
        Column("Written", cells("io", "write_bytes")),
        Column(
            "Write peak",
            [_rate(_map(c.get("io")).get("write_bytes_per_second")) for c in containers],
            drop=2,
        ),
        Column("Source", [str(_map(c.get("io")).get("source", NONE)) for c in containers], "left"),
        Column("Received", cells("network", "rx_bytes")),
        Column("Sent", cells("network", "tx_bytes")),
        Column("Loopback", cells("network", "loopback_rx_bytes"), drop=1),
    ]
    return fit_table(
        columns,
        width,
        title=["Disk and network (network: the container's namespace, loopback apart)"],
    )
