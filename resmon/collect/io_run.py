"""Disk I/O and network over a run: per container, and the job's.

Each container reports ONE disk I/O source for the whole run (as it does one memory
kind and one CPU source, :mod:`resmon.collect.container_run`): its cgroup's counter
(``cgroup`` for v2 io.stat, ``blkio`` for v1) when that was read at every sample the
container's I/O was measured in, else the sum over its processes (``proc``).  Totals
are bytes since the run's first reading; rates (bytes per second over each interval)
are summarised as stat objects (peak, p99, p95, p75, p50, avg).

The network figures are the container's network namespace's
(:mod:`resmon.collect.net_counters`); the job's count each namespace once, so the
containers of one pod, or a wrapped command in the machine's namespace, are not
counted twice.
"""

from __future__ import annotations

import math
from array import array
from typing import Any

from resmon.collect.io_figures import IO_PROC
from resmon.collect.samples import ContainerSample
from resmon.stats import empty_stat, summarize

NAN = math.nan
# The rate series of a container, by position.
_PROC_READ, _PROC_WRITE, _KERNEL_READ, _KERNEL_WRITE, _RX, _TX = range(6)


# Rates are kept as 4-byte floats (7 significant digits: plenty for bytes per second),
# half the memory of a long run's series.
_TYPECODE = "f"


def _finite(values: array | None) -> list[float]:
    return [v for v in values if v == v] if values is not None else []


def _stat(values: array | None) -> dict[str, float]:
    return summarize(_finite(values)) or empty_stat()


class IORun:
    """One container's disk I/O and network over the samples it was measured in."""

    __slots__ = (
        "first",
        "io_samples",
        "kernel",
        "kernel_samples",
        "kernel_source",
        "namespace",
        "net",
        "proc",
        "series",
        "shared_with",
        "unreadable",
    )

    def __init__(self, first: int) -> None:
        self.first = first  # the sample index its series start at
        # Per slot; the cgroup counter's only once read (dropped again when a sample
        # lacks it: the processes' sum is then the run's source), the network's once
        # a namespace is read.
        self.series: list[array | None] = [None] * 6
        self.io_samples = self.kernel_samples = 0
        self.kernel_source: str | None = None
        self.proc = (0, 0)
        self.kernel = (0, 0)
        self.unreadable = 0
        self.namespace: str | None = None
        # rx, tx, loopback rx, loopback tx
        self.net = (0, 0, 0, 0)
        self.shared_with: set[str] = set()

    def _put(self, slot: int, index: int, value: float | None) -> None:
        values = self.series[slot]
        if values is None:
            values = self.series[slot] = array(_TYPECODE)
        at = index - self.first
        if len(values) < at:
            values.extend([NAN] * (at - len(values)))
        values.append(NAN if value is None else float(value))

    def add(self, c: ContainerSample, index: int) -> None:
        io, net = c.io, c.net
        if io is not None and io.proc is not None:
            self.io_samples += 1
            self.proc = (io.proc.read_bytes, io.proc.write_bytes)
            self.unreadable = max(self.unreadable, io.unreadable)
            self._put(_PROC_READ, index, io.proc.read_rate)
            self._put(_PROC_WRITE, index, io.proc.write_rate)
            kernel = io.kernel
            if kernel is not None:
                self.kernel_samples += 1
                self.kernel_source = io.kernel_source
                self.kernel = (kernel.read_bytes, kernel.write_bytes)
            if kernel is not None and self.kernel_samples == self.io_samples:
                self._put(_KERNEL_READ, index, kernel.read_rate)
                self._put(_KERNEL_WRITE, index, kernel.write_rate)
            else:
                self.series[_KERNEL_READ] = self.series[_KERNEL_WRITE] = None
        if net is not None:
            self.namespace = net.namespace
            self.net = (net.rx_bytes, net.tx_bytes, net.loopback_rx_bytes, net.loopback_tx_bytes)
            self.shared_with.update(c.net_shared_with)
            self._put(_RX, index, net.rx_rate)
            self._put(_TX, index, net.tx_rate)

    @property
    def source(self) -> str:
        if self.io_samples and self.kernel_samples == self.io_samples and self.kernel_source:
            return self.kernel_source
        return IO_PROC

    def _io_slots(self) -> tuple[int, int]:
        return (
            (_PROC_READ, _PROC_WRITE) if self.source == IO_PROC else (_KERNEL_READ, _KERNEL_WRITE)
        )

    def io_totals(self) -> tuple[int, int]:
        return self.proc if self.source == IO_PROC else self.kernel

    def io_summary(self) -> dict[str, Any] | None:
        if not self.io_samples:
            return None
        read_slot, write_slot = self._io_slots()
        read, write = self.io_totals()
        out: dict[str, Any] = {
            "source": self.source,
            "read_bytes": read,
            "write_bytes": write,
            "read_bytes_per_second": _stat(self.series[read_slot]),
            "write_bytes_per_second": _stat(self.series[write_slot]),
        }
        if self.unreadable and self.source == IO_PROC:
            out["unreadable_processes"] = self.unreadable
        return out

    def net_summary(self) -> dict[str, Any] | None:
        if self.namespace is None:
            return None
        rx, tx, lo_rx, lo_tx = self.net
        out: dict[str, Any] = {
            "namespace": self.namespace,
            "rx_bytes": rx,
            "tx_bytes": tx,
            "loopback_rx_bytes": lo_rx,
            "loopback_tx_bytes": lo_tx,
            "rx_bytes_per_second": _stat(self.series[_RX]),
            "tx_bytes_per_second": _stat(self.series[_TX]),
        }
        if self.shared_with:
            out["shared_with"] = sorted(self.shared_with)
        return out

    def absorb(self, other: IORun) -> None:
        """A container renamed into this one: the processes' and kernel totals add up
        (each is its own since the run began), the series are summed by sample."""
        first = min(self.first, other.first)
        series: list[array | None] = []
        for mine, theirs in zip(self.series, other.series, strict=True):
            if mine is None and theirs is None:
                series.append(None)
                continue
            length = max(self.first + len(mine or ()), other.first + len(theirs or ())) - first
            out = array(_TYPECODE, [NAN]) * length
            for start, values in ((self.first, mine), (other.first, theirs)):
                for i, value in enumerate(values or ()):
                    at = start - first + i
                    if value == value:
                        out[at] = value if out[at] != out[at] else out[at] + value
            series.append(out)
        self.series, self.first = series, first
        self.proc = (self.proc[0] + other.proc[0], self.proc[1] + other.proc[1])
        self.kernel = (self.kernel[0] + other.kernel[0], self.kernel[1] + other.kernel[1])
        self.io_samples = max(self.io_samples, other.io_samples)
        self.kernel_samples = min(self.kernel_samples, other.kernel_samples)
        self.kernel_source = self.kernel_source or other.kernel_source
        self.unreadable += other.unreadable
        if self.namespace is None:
            self.namespace, self.net = other.namespace, other.net
        self.shared_with |= other.shared_with


def _sum_series(parts: list[tuple[int, array | None]], count: int) -> list[float]:
    """Per sample, the sum of the series that have a value there."""
    total = array("d", [NAN]) * count
    for first, values in parts:
        for i, value in enumerate(values or ()):
            at = first + i
            if value == value and 0 <= at < count:
                before = total[at]
                total[at] = value if before != before else before + value
    return _finite(total)


def job_io(runs: list[IORun], count: int) -> dict[str, Any] | None:
    """The job's disk I/O: its containers' totals and the per-sample sums of their
    rates, each container with its own source; None when none was measured."""
    measured = [run for run in runs if run.io_samples]
    if not measured:
        return None
    reads: list[tuple[int, array | None]] = []
    writes: list[tuple[int, array | None]] = []
    read = write = 0
    for run in measured:
        r, w = run.io_totals()
        read, write = read + r, write + w
        read_slot, write_slot = run._io_slots()
        reads.append((run.first, run.series[read_slot]))
        writes.append((run.first, run.series[write_slot]))
    return {
        "sources": sorted({run.source for run in measured}),
        "read_bytes": read,
        "write_bytes": write,
        "read_bytes_per_second": summarize(_sum_series(reads, count)) or empty_stat(),
        "write_bytes_per_second": summarize(_sum_series(writes, count)) or empty_stat(),
    }


def job_network(runs: list[IORun], count: int) -> dict[str, Any] | None:
    """The job's network: each network namespace of its containers counted once."""
    by_namespace: dict[str, IORun] = {}
    for run in runs:
        if run.namespace is not None:
            by_namespace.setdefault(run.namespace, run)
    if not by_namespace:
        return None
    chosen = list(by_namespace.values())
    return {
        "namespaces": len(chosen),
        "rx_bytes": sum(run.net[0] for run in chosen),
        "tx_bytes": sum(run.net[1] for run in chosen),
        "loopback_rx_bytes": sum(run.net[2] for run in chosen),
        "loopback_tx_bytes": sum(run.net[3] for run in chosen),
        "rx_bytes_per_second": summarize(
            _sum_series([(run.first, run.series[_RX]) for run in chosen], count)
        )
        or empty_stat(),
        "tx_bytes_per_second": summarize(
            _sum_series([(run.first, run.series[_TX]) for run in chosen], count)
        )
        or empty_stat(),
    }
