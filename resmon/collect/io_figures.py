"""A sample's disk I/O and network figures per container, as the sampler hands them on
(read by :mod:`resmon.collect.io_counters` and :mod:`resmon.collect.net_counters`,
carried by :class:`resmon.collect.samples.ContainerSample`)."""

from __future__ import annotations

from dataclasses import dataclass

IO_CGROUP, IO_BLKIO, IO_PROC = "cgroup", "blkio", "proc"
IO_SOURCES = (IO_CGROUP, IO_BLKIO, IO_PROC)


@dataclass(slots=True, frozen=True)
class IOTotals:
    """One source's figures for a container at one sample: running totals over the run,
    and the rates over the interval (None without an interval or a comparable reading)."""

    read_bytes: int
    write_bytes: int
    read_rate: float | None = None
    write_rate: float | None = None


@dataclass(slots=True, frozen=True)
class IOFigures:
    """A container's disk I/O at one sample: the processes' sum (None when none of its
    processes is measured) and its cgroup's counter with its source name (None where it
    has no readable directory of its own this sample)."""

    proc: IOTotals | None
    kernel: IOTotals | None = None
    kernel_source: str | None = None
    unreadable: int = 0

    @property
    def source(self) -> str:
        return self.kernel_source if self.kernel is not None and self.kernel_source else IO_PROC

    @property
    def chosen(self) -> IOTotals | None:
        return self.kernel if self.kernel is not None else self.proc


@dataclass(slots=True, frozen=True)
class NetFigures:
    """A container's network namespace at one sample: totals since its first reading in
    the run, rates over the interval (None without a comparable reading)."""

    namespace: str
    rx_bytes: int
    tx_bytes: int
    loopback_rx_bytes: int
    loopback_tx_bytes: int
    rx_rate: float | None = None
    tx_rate: float | None = None
    loopback_rx_rate: float | None = None
    loopback_tx_rate: float | None = None
