"""Network per container: the byte counters of the network namespace it is in.

A network namespace's interfaces count every packet of every process in it, so a
container's network figures are its namespace's: ``/proc/PID/net/dev`` of one of its
processes, read once per namespace and sample however many processes and containers
share it.  A namespace is told apart by the /proc/PID/ns/net link (``net:[inode]``),
else, where that link needs a permission resmon lacks, by its net/dev file (each
namespace has its own).  Which process stands for a container is looked up again
only when processes come or go.

- Received and sent bytes are summed over the interfaces other than loopback
  (``rx_bytes``, ``tx_bytes``); loopback (``lo``) is counted apart
  (``loopback_rx_bytes``, ``loopback_tx_bytes``): traffic between two processes of
  one namespace, which never left it.
- Counters are taken from the namespace's first reading in the run, per interface:
  an interface that appears later (a veth plugged in) counts from zero, one that goes
  keeps what it counted, a counter that went backwards (an interface recreated under
  its name) counts from zero again.
- Containers that share a namespace (the containers of one Kubernetes pod, or a
  wrapped command and everything else in the machine's namespace) each report the
  namespace's figures, with the same ``namespace`` and the others in
  ``shared_with``; the job's figure counts each namespace once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from resmon import procfs
from resmon.collect.io_figures import NetFigures
from resmon.collect.sample_state import Key, SampleWork

log = logging.getLogger(__name__)

LOOPBACK = "lo"
# /proc/PID/stat states of a process that has exited (zombie, dead).
_GONE = frozenset({"Z", "X", "x"})


class _Namespace:
    __slots__ = ("interfaces", "totals")

    def __init__(self) -> None:
        self.interfaces: dict[str, procfs.NetDev] = {}
        # rx, tx, loopback rx, loopback tx since the first reading
        self.totals = [0, 0, 0, 0]


class NetworkCounters:
    """Per-namespace readings between samples, and which namespace each container is in."""

    def __init__(self, proc_path: str = "/proc") -> None:
        self.proc_path = proc_path
        self.enabled = True
        self._namespaces: dict[str, _Namespace] = {}
        # Container -> (the process that stands for it, its namespace's key).
        self._where: dict[str, tuple[Key, str]] = {}
        # Namespace key -> its label (the ns/net link where readable).
        self._labels: dict[str, str] = {}
        # Namespace key -> the pid its net/dev is read through this sample.
        self._readers: dict[str, int] = {}
        # (proc_path, resmon's own namespace under it, "" when it is not there).
        self._own: tuple[str, str] | None = None
        self.dev_reads = 0

    def rename(self, renamed: dict[str, str]) -> None:
        for old, new in renamed.items():
            if old in self._where:
                self._where.setdefault(new, self._where.pop(old))

    def update(
        self,
        work: SampleWork,
        containers: dict[str, list[str]],
        measured: Callable[[str], bool],
    ) -> dict[str, NetFigures]:
        """Read each measured container's namespace (once per namespace); its figures."""
        if not self.enabled:
            return {}
        where: dict[str, str] = {}
        for name, groups in containers.items():
            if not measured(name):
                continue
            ns = self._namespace_of(name, groups, work)
            if ns is not None:
                where[name] = ns
        figures: dict[str, NetFigures] = {}
        read: dict[str, NetFigures | None] = {}
        for name, ns in where.items():
            if ns not in read:
                read[ns] = self._read(ns, self._readers[ns], work.elapsed)
            got = read[ns]
            if got is not None:
                figures[name] = got
        for ns in [ns for ns in self._namespaces if ns not in read]:
            # Nobody measured is in it any more: forget it (a later reading starts afresh).
            del self._namespaces[ns]
            self._labels.pop(ns, None)
        return figures

    def _namespace_of(self, name: str, groups: list[str], work: SampleWork) -> str | None:
        known = self._where.get(name)
        if known is not None:
            state = work.current.get(known[0])
            if state is not None and state.stat.state not in _GONE:
                self._readers[known[1]] = known[0][0]
                return known[1]  # (a process does not change its namespace in practice)
        for group in groups:
            for state in work.group_members.get(group, ()):
                st = state.stat
                if st.state in _GONE:
                    continue  # a zombie has left its namespace: no net/dev to read
                found = procfs.net_namespace(st.pid, self.proc_path)
                if found is not None:
                    ns, self._labels[found[0]] = found
                    self._where[name] = ((st.pid, st.starttime), ns)
                    self._readers[ns] = st.pid
                    return ns
        if known is not None and self._own_namespace() == known[1]:
            # Its processes are gone or zombies (a wrapped command's last sample), and
            # resmon is in the same namespace: read its counters through resmon.
            self._readers[known[1]] = os.getpid()
            return known[1]
        self._where.pop(name, None)
        return None

    def _own_namespace(self) -> str | None:
        if self._own is None or self._own[0] != self.proc_path:
            found = procfs.net_namespace(os.getpid(), self.proc_path)
            self._own = (self.proc_path, found[0] if found is not None else "")
        return self._own[1] or None

    def _read(self, ns: str, pid: int, elapsed: float | None) -> NetFigures | None:
        interfaces = procfs.read_net_dev(pid, self.proc_path)
        self.dev_reads += 1
        if interfaces is None:
            return None
        state = self._namespaces.get(ns)
        first = state is None
        if state is None:
            state = self._namespaces[ns] = _Namespace()
        delta = [0, 0, 0, 0]
        before = state.interfaces
        for iface, now in interfaces.items():
            at = 2 if iface == LOOPBACK else 0
            prev = before.get(iface)
            if prev is None:
                if first:
                    continue  # the baseline
                d_rx, d_tx = now.rx_bytes, now.tx_bytes
            else:
                d_rx = now.rx_bytes - prev.rx_bytes
                d_tx = now.tx_bytes - prev.tx_bytes
                d_rx = now.rx_bytes if d_rx < 0 else d_rx
                d_tx = now.tx_bytes if d_tx < 0 else d_tx
            delta[at] += d_rx
            delta[at + 1] += d_tx
        state.interfaces = interfaces
        totals = state.totals
        for i in range(4):
            totals[i] += delta[i]
        rates: list[float | None] = [None if first or not elapsed else d / elapsed for d in delta]
        return NetFigures(self._labels.get(ns, ns), *totals, *rates)  # type: ignore[arg-type]
