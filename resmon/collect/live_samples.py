"""What a live batch carries per sample, and the bounded buffer the samples wait in.

A live sample is compact: the host's figures, the job's (the sum over the job's
containers: wrapper mode the command's container, sidecar mode all of them) and each
container's, as the wire contract of ``POST /api/v1/metrics/live`` has them (see
:mod:`resmon.collect.live`).  It is made on the sampling thread from the
:class:`~resmon.collect.samples.Sample` just taken, so the buffer never holds a
Sample's process lists.

Memory per container: the most telling figure there is (the cgroup's own, else the
PSS sum, else the RSS sum), and once a container's figure has gone down that list
it stays there for the run, so the server never sees one container's series jump
between definitions (the run summary keeps one definition per container for the same
reason); ``memory_kind`` says which one each value is.

Disk I/O and network: a measured container's totals since the run's first reading
(``io_read_bytes``, ``io_write_bytes``, ``net_rx_bytes``, ``net_tx_bytes``, without
loopback), and the job's sums (each network namespace once); rates are the
differences between samples.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

from resmon.collect.container_run import KIND_CGROUP, KIND_PSS, KIND_RSS, readings
from resmon.collect.records import format_time
from resmon.collect.samples import ContainerSample, Sample

# Most telling first; a container only ever moves down this list.
_MEMORY_KINDS = (KIND_CGROUP, KIND_PSS, KIND_RSS)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


class SampleCompactor:
    """Samples in, live samples (plain dicts) out; keeps what spans samples: each
    container's memory kind and the job's CPU seconds per container."""

    def __init__(self) -> None:
        self._kinds: dict[str, int] = {}  # container -> index in _MEMORY_KINDS
        # The job's containers' running CPU totals, the gone ones included, so the job's
        # cpu_seconds never goes down when a container's processes all exit (sidecar).
        self._job_seconds: dict[str, float] = {}

    def compact(self, sample: Sample) -> dict[str, Any]:
        for old, new in sample.renamed.items():
            # The sampler carries the old name's totals over to the new one.
            self._job_seconds.pop(old, None)
            if old in self._kinds and new not in self._kinds:
                self._kinds[new] = self._kinds.pop(old)
        job_name = sample.command_container
        containers: dict[str, dict[str, Any]] = {}
        cores: list[float] = []
        memory: list[int] = []
        job_io: dict[str, int] = {}
        namespaces: set[str] = set()
        for name, c in sample.containers.items():
            kind, value = self._memory(name, c)
            containers[name] = {
                "cpu_cores": _round(c.cpu_cores, 4),
                "memory_bytes": value,
                "cpu_seconds": round(c.cpu_seconds, 3),
                "memory_kind": kind,
                "limit_cpu_cores": c.limit_cpu_cores,
                "limit_memory_bytes": c.limit_memory_bytes,
            }
            io = _io_figures(c)
            if io:
                containers[name].update(io)
            if job_name is not None and name != job_name:
                continue
            # Disk per container; network per namespace (each counted once).
            net_counted = c.net is None or c.net.namespace in namespaces
            for key, total in io.items():
                if key.startswith("io_") or not net_counted:
                    job_io[key] = job_io.get(key, 0) + total
            if c.net is not None:
                namespaces.add(c.net.namespace)
            self._job_seconds[name] = c.cpu_seconds
            if c.cpu_cores is not None:
                cores.append(c.cpu_cores)
            if value is not None:
                memory.append(value)
        return {
            "t": format_time(datetime.fromtimestamp(sample.timestamp, UTC)),
            "elapsed": _round(sample.elapsed, 3),
            "host": {
                "cpu_percent": _round(sample.cpu_total_percent, 2),
                "mem_used_bytes": sample.mem_used_bytes,
                "mem_total_bytes": sample.mem_total_bytes,
            },
            "job": {
                "cpu_cores": round(sum(cores), 4) if cores else None,
                "memory_bytes": sum(memory) if memory else None,
                "cpu_seconds": round(sum(self._job_seconds.values()), 3),
                **job_io,
            },
            "containers": containers,
        }

    def _memory(self, name: str, c: ContainerSample) -> tuple[str, int | None]:
        rss, pss, cgroup = readings(c)[:3]
        figures = (cgroup, pss, rss)
        start = self._kinds.get(name, 0)
        for i in range(start, len(_MEMORY_KINDS)):
            value = figures[i]
            if value is not None:
                self._kinds[name] = i
                return _MEMORY_KINDS[i], int(value)
        # No memory reading this sample (only zombies): no value, the kind unchanged.
        return _MEMORY_KINDS[start], None


def _io_figures(c: ContainerSample) -> dict[str, int]:
    """A measured container's disk I/O (its source this sample) and network namespace's
    totals since the run's first reading; nothing where not measured."""
    out: dict[str, int] = {}
    chosen = c.io.chosen if c.io is not None else None
    if chosen is not None:
        out["io_read_bytes"] = chosen.read_bytes
        out["io_write_bytes"] = chosen.write_bytes
    if c.net is not None:
        out["net_rx_bytes"] = c.net.rx_bytes
        out["net_tx_bytes"] = c.net.tx_bytes
    return out


class LiveBuffer:
    """Live samples waiting for the sender, at most ``cap``: when full, the oldest goes
    (counted in ``dropped``).  The sampling thread appends, the sender takes; both under
    one lock held for a deque operation, never for I/O."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.dropped = 0
        self._items: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()

    def append(self, item: dict[str, Any]) -> bool:
        """Add one; True when that dropped the oldest."""
        with self._lock:
            self._items.append(item)
            if len(self._items) <= self.cap:
                return False
            self._items.popleft()
            self.dropped += 1
            return True

    def take(self, n: int) -> list[dict[str, Any]]:
        """Up to ``n`` of the oldest, removed."""
        with self._lock:
            count = min(n, len(self._items))
            return [self._items.popleft() for _ in range(count)]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
