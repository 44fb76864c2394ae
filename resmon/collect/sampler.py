"""One sample from two readings: system, per process and per container figures.

Each call to :meth:`Sampler.sample` reads ``/proc/stat``, ``/proc/meminfo``,
``/proc/uptime`` and every ``/proc/PID/stat`` (plus ``/proc/PID/cgroup`` once per
process lifetime, and the containers' cgroupfs files where readable), and turns
the difference from the previous call into figures.

Groups and containers
---------------------
A process belongs, for its whole life (keyed by ``(pid, starttime)``), to one
*group*: its identifying cgroup path (see :func:`resmon.procfs.parse_cgroup`), or
in wrapper mode the command's tree (``command_pid`` and every process whose parent
chain reaches it when first seen).  A *container* is the groups that carry one
name: a group's name comes from ``CGROUP_PROCESS_MAP`` once a process with a mapped
name is seen in it (and stays), else from the path
(:func:`resmon.collect.containers.container_name_for_path`).  ``exclude_pids`` (resmon
itself) belong to no group and appear nowhere.

CPU accounting that survives process churn (DESIGN.md, "Short-lived processes")
-------------------------------------------------------------------------------
A process's *total* is utime+stime+cutime+cstime: its own time plus that of every
child it has reaped (the kernel adds a reaped child's whole total to its parent's
cutime+cstime).  Summing totals over a group's live processes would count every
short-lived child through its parent, but would drop when a process exits whose
reaper is outside the group, and would count twice a child seen alive and then
reaped.  So resmon credits each group with per-interval increments that are never
negative, with this rule (applied across all processes, whatever their group):

- a process alive at both readings is credited its own increase
  Δ(utime+stime) to its group, plus its children's increase Δ(cutime+cstime)
  *minus* the last observed totals of the processes it reaped in the interval
  (those were already credited, to their own groups, while they were seen),
  floored at zero;
- a process born in the interval (``starttime`` after the previous reading) is
  credited its whole total; one first seen that is older (the first sample, a
  read race) is only a baseline;
- a process that disappeared keeps its last observed total counted: nothing is
  taken back.  Who reaped it is its last known parent if that parent is still
  alive, else that parent's reaper, and so on (:mod:`resmon.collect.cpu_credit`).
  If the reaper is resmon, outside the groups, or unknown, the last observed
  total simply stays with the group (only the tail since the last reading is
  lost; in wrapper mode :meth:`Sampler.final_command_sample` restores it from the
  rusage of the wait).

So a group's ``cpu_seconds`` never goes backwards, never goes negative, and a
child reaped inside the measured processes is counted once (the min() floor also
covers a parent that ignores SIGCHLD, whose cutime never grows).  A group with no
reaper of its own (a container whose init is reaped by containerd-shim) keeps
everything it was seen to use.

Kernel counters
---------------
Where a container's cgroup directories are its own (no other visible process, no
nested directory of another container, not a hierarchy's root), the kernel's CPU
and memory counters replace the per-process credit and the RSS sum; the figure's
``source_cpu`` / ``source_memory`` says which was used.  Which directories qualify,
and how the counters are read, is in :mod:`resmon.collect.kernel_counters`.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field

from resmon import procfs
from resmon.cgroupfs import HIERARCHIES, V2, CgroupFS
from resmon.collect.containers import Limits, container_name_for_path
from resmon.collect.cpu_credit import MAX_PARENT_WALK, assign_reapers
from resmon.collect.kernel_counters import (
    NO_KERNEL_FIGURES,
    ContainerDirs,
    KernelCounters,
    KernelFigures,
    exclusive_dirs,
)
from resmon.collect.samples import (
    SOURCE_CGROUPFS,
    SOURCE_PROCFS,
    ContainerSample,
    ProcessSample,
    Sample,
    pressure_record,
)
from resmon.procfs import CLK_TCK, PAGE_SIZE, CgroupInfo, PidStat

log = logging.getLogger(__name__)

_COMMAND_GROUP = "\0command"
_EXCLUDED = "\0excluded"
_UNKNOWN_CGROUP = CgroupInfo(path="", unified=None, v1={})
# /proc/PID/stat states of a process that has exited: zombie, dead.
_DEAD_STATES = frozenset({"Z", "X", "x"})
# A stat line is at most ~700 bytes (52 numbers and a 64-byte name); one small read.
_STAT_READ_SIZE = 4096
_CGROUP_CACHE_SIZE = 4096


@dataclass
class SamplerConfig:
    proc_path: str = "/proc"
    cgroup_path: str = "/sys/fs/cgroup"
    process_map: dict[str, str] = field(default_factory=dict)
    limits: dict[str, Limits] = field(default_factory=dict)
    top_n: int = 5
    exclude_pids: frozenset[int] = frozenset()
    command_pid: int | None = None
    command_name: str = "command"
    # Read the containers' cgroupfs counters (off: procfs only, e.g. for comparisons).
    use_cgroupfs: bool = True


class _Proc:
    """What resmon remembers of one live process between samples."""

    __slots__ = (
        "cgroup",
        "children",
        "cpu_key",
        "group",
        "mem_key",
        "own",
        "paths",
        "ppid",
        "sample",
        "stat",
    )

    def __init__(
        self,
        group: str,
        cgroup: CgroupInfo,
        st: PidStat,
        paths: tuple[str | None, ...] | None = None,
    ) -> None:
        self.group = group
        self.cgroup = cgroup
        # The cgroup path in each hierarchy (HIERARCHIES order), hashable, computed once.
        self.paths = paths if paths is not None else _hierarchy_paths(cgroup)
        # The reading this state was made from: the same object at the next sample
        # means the process's stat line did not change (see Sampler.sample).
        self.stat = st
        self.ppid = st.ppid
        self.own = st.own_ticks
        self.children = st.children_ticks
        # The ProcessSample last made for it, reused while nothing in it changes, and
        # its top-N sort keys (see Sampler.sample).
        self.sample: ProcessSample | None = None
        self.mem_key: tuple[int, int, ProcessSample] | None = None
        self.cpu_key: tuple[float, int, ProcessSample] | None = None

    @property
    def total(self) -> int:
        return self.own + self.children


def _hierarchy_paths(info: CgroupInfo) -> tuple[str | None, ...]:
    return tuple(info.unified if h == V2 else info.v1.get(h) for h in HIERARCHIES)


@dataclass(slots=True)
class _Work:
    """One sample in the making: what the steps of :meth:`Sampler.sample` hand each other."""

    timestamp: float
    clock: float
    elapsed: float | None
    uptime: float | None
    cpu: procfs.CpuTimes
    mem: procfs.MemInfo
    # A process not seen before that started at this tick or later was born in the
    # interval; None on the first sample, where every process is only a baseline.
    born_after: float | None
    # A process's CPU percent per tick of its own time; None without an interval.
    percent_per_tick: float | None
    # What an unchanged process's CPU percent is this time (None without an interval).
    idle_percent: float | None
    # The live processes; the readings of those not seen before; the processes left
    # to the accounting step (known ones that changed, then new ones).
    current: dict[tuple[int, int], _Proc] = field(default_factory=dict)
    new_stats: dict[tuple[int, int], PidStat] = field(default_factory=dict)
    slow: list[tuple[int, int]] = field(default_factory=list)
    # Processes came or went since the previous sample.
    churn: bool = False
    # Per group: its members, the ticks credited to it, and (in the set) whether one
    # of its members had no valid delta; then each group's container name.
    group_members: defaultdict[str, list[_Proc]] = field(default_factory=lambda: defaultdict(list))
    group_credit: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    invalid_groups: set[str] = field(default_factory=set)
    group_names: dict[str, str] = field(default_factory=dict)
    # The processes' samples and their states, in one order.
    processes: list[ProcessSample] = field(default_factory=list)
    process_states: list[_Proc] = field(default_factory=list)
    # Sort keys for the top-N, built along so that no Python key function runs per
    # process: (-figure, pid, sample); pids are unique, so samples are never compared.
    mem_keys: list[tuple[int, int, ProcessSample]] = field(default_factory=list)
    cpu_keys: list[tuple[float, int, ProcessSample]] = field(default_factory=list)


class Sampler:
    """Reads /proc (and cgroupfs) and turns two readings into a :class:`Sample`."""

    def __init__(self, config: SamplerConfig) -> None:
        self.config = config
        self._cgroupfs = CgroupFS(config.cgroup_path) if config.use_cgroupfs else None
        self._procs: dict[tuple[int, int], _Proc] = {}
        # /proc entry name -> (its stat bytes, parsed, key) at the previous sample.
        self._raw: dict[str, tuple[bytes, PidStat, tuple[int, int]]] = {}
        # The distinct (group, cgroup paths) pairs of the live processes; they only
        # change when processes come or go.
        self._distinct: set[tuple[str, tuple[str | None, ...]]] | None = None
        # Each group's container name at the previous sample.
        self._group_names: dict[str, str] = {}
        # (group names, exclusive cgroup directories per container) of the last sample.
        self._dirs_cache: tuple[dict[str, str], ContainerDirs] | None = None
        # /proc/PID/cgroup content -> (parsed, paths per hierarchy), shared by processes.
        self._cgroups: dict[bytes | None, tuple[CgroupInfo, tuple[str | None, ...]]] = {}
        self._prev_cpu: procfs.CpuTimes | None = None
        self._first_cpu: procfs.CpuTimes | None = None
        self._prev_uptime: float | None = None
        self._prev_clock: float | None = None
        self._sampled = False
        self._path_names: dict[str, str] = {}
        self._cpu_seconds: dict[str, float] = {}
        self._kernel: dict[str, KernelCounters] = {}
        self._command_final: float | None = None
        self._map_prefixes = self._truncated_names(config.process_map)

    # --- public ------------------------------------------------------------

    def final_command_sample(self, rusage_cpu_seconds: float) -> None:
        """Wrapper mode: the command's exact CPU total (user+sys of the wait's rusage).

        Call it after reaping the command and before the last :meth:`sample`: that
        sample's command container gets ``cpu_seconds`` = max(what was counted,
        this total), so the tail since the last reading is not lost."""
        if self.config.command_pid is None:
            raise ValueError("final_command_sample needs command_pid (wrapper mode)")
        self._command_final = float(rusage_cpu_seconds)

    def sample(self, now: float | None = None) -> Sample:
        """Read the system again and turn the difference from the previous reading into
        figures, in steps: the processes' stat lines, groups for the new ones, CPU
        credit, container names, the containers, the system-wide figures."""
        work = self._begin(now)
        self._read_processes(work)
        self._place_new_processes(work)
        self._account_cpu(work)
        self._name_containers(work)
        containers = self._containers(work)
        cpu_total_percent, cpu_seconds_total = self._system_cpu(work.cpu)
        top_cpu, top_mem = self._top_processes(work)
        system_pressure = procfs.read_system_pressure(self.config.proc_path)

        self._procs = work.current
        self._prev_cpu = work.cpu
        self._prev_uptime = work.uptime
        self._prev_clock = work.clock
        self._sampled = True
        mem = work.mem
        return Sample(
            timestamp=work.timestamp,
            elapsed=work.elapsed,
            cpu_total_percent=cpu_total_percent,
            mem_total_bytes=mem.total_bytes,
            mem_used_bytes=mem.used_bytes,
            mem_used_percent=mem.used_bytes / mem.total_bytes * 100.0 if mem.total_bytes else 0.0,
            cpu_seconds_total=cpu_seconds_total,
            top_cpu=top_cpu,
            top_mem=top_mem,
            processes=work.processes,
            containers=containers,
            command_container=self._command_container(),
            pressure=pressure_record(system_pressure) if system_pressure else None,
        )

    # --- the steps of a sample ----------------------------------------------

    def _begin(self, now: float | None) -> _Work:
        """The clocks and the system-wide files."""
        proc_path = self.config.proc_path
        timestamp = time.time() if now is None else now
        clock = time.monotonic() if now is None else now
        elapsed = None if self._prev_clock is None else clock - self._prev_clock
        if elapsed is not None and elapsed <= 0:
            elapsed = None
        # Uptime first: a process not seen before that started after the previous
        # uptime reading was born in the interval.
        uptime = procfs.read_uptime(proc_path)
        cpu = procfs.read_cpu_times(proc_path)
        mem = procfs.read_meminfo(proc_path)
        born_after: float | None = None
        if self._sampled:
            # Without /proc/uptime, a process not seen before is taken as new: after the
            # first sample nearly all are, and missing a newborn's time would undercount.
            born_after = self._prev_uptime * CLK_TCK - 1 if self._prev_uptime is not None else 0
        percent_per_tick = 100.0 / CLK_TCK / elapsed if elapsed is not None else None
        return _Work(
            timestamp=timestamp,
            clock=clock,
            elapsed=elapsed,
            uptime=uptime,
            cpu=cpu,
            mem=mem,
            born_after=born_after,
            percent_per_tick=percent_per_tick,
            idle_percent=0.0 if percent_per_tick is not None else None,
        )

    def _read_processes(self, work: _Work) -> None:
        """Read every /proc/PID/stat, and count in the processes that did not change.

        This is the cost that grows with the process count, so it is one file per
        process, opened relative to the procfs root and read in one call; and a process
        whose stat bytes did not change since the previous sample (most processes in a
        job sleep) is neither parsed nor looked at again: same bytes, same figures
        (starttime is among them, so a reused PID never matches), the same state and
        ProcessSample, nothing to credit.  The others are left to the next steps."""
        proc_path = self.config.proc_path
        prev, raw_prev = self._procs, self._raw
        raw_now: dict[str, tuple[bytes, PidStat, tuple[int, int]]] = {}
        current, new_stats, slow = work.current, work.new_stats, work.slow
        group_members, processes, states = work.group_members, work.processes, work.process_states
        mem_keys, cpu_keys, idle_percent = work.mem_keys, work.cpu_keys, work.idle_percent
        open_, read, close = os.open, os.read, os.close
        parse = procfs.parse_stat
        dir_fd = open_(proc_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for name in os.listdir(proc_path):
                if not (name.isdigit() and name.isascii()):  # see procfs.list_pids
                    continue
                try:
                    fd = open_(name + "/stat", os.O_RDONLY, dir_fd=dir_fd)
                except OSError as exc:
                    # Vanished between listdir and open (or not ours to read): skipped.
                    if not isinstance(exc, FileNotFoundError):
                        log.debug("cannot read %s/%s/stat: %s", proc_path, name, exc)
                    continue
                try:
                    data = read(fd, _STAT_READ_SIZE)
                except OSError:
                    continue  # ESRCH: exited mid-read
                finally:
                    close(fd)
                cached = raw_prev.get(name)
                if cached is not None and cached[0] == data:
                    raw_now[name] = cached
                    st, key = cached[1], cached[2]
                    state = prev.get(key)
                    if state is not None and state.stat is st:
                        current[key] = state
                        group = state.group
                        if group == _EXCLUDED:
                            continue
                        reuse = state.sample
                        if reuse is None or reuse.cpu_percent != idle_percent:
                            slow.append(key)
                            continue
                        group_members[group].append(state)
                        processes.append(reuse)
                        states.append(state)
                        mem_keys.append(state.mem_key)  # type: ignore[arg-type]
                        if idle_percent is not None:
                            cpu_keys.append(state.cpu_key)  # type: ignore[arg-type]
                        continue
                else:
                    if not data:
                        continue
                    if len(data) == _STAT_READ_SIZE:  # never seen; read the whole line
                        data = procfs.read_bytes(f"{proc_path}/{name}/stat")
                    try:
                        st = parse(data)
                    except (ValueError, IndexError):
                        log.debug("unparseable %s/%s/stat: %r", proc_path, name, data[:200])
                        continue
                    key = (int(name), st.starttime)
                    raw_now[name] = (data, st, key)
                    state = prev.get(key)
                if state is None:
                    new_stats[key] = st
                else:
                    current[key] = _Proc(state.group, state.cgroup, st, state.paths)
                    slow.append(key)
        finally:
            close(dir_fd)
        self._raw = raw_now

    def _place_new_processes(self, work: _Work) -> None:
        """Put each process not seen before in its group, for its whole life."""
        prev, current, new_stats = self._procs, work.current, work.new_stats
        if new_stats:
            # New processes last: the command-tree walk then knows every older process.
            stats = {key: state.stat for key, state in current.items()}
            stats.update(new_stats)
            by_pid = {key[0]: key for key in stats}
            for key, st in new_stats.items():
                current[key] = self._new_proc(key, st, stats, by_pid, prev, current)
                work.slow.append(key)
        work.churn = bool(new_stats) or len(current) != len(prev)
        if work.churn:
            self._distinct = None

    def _account_cpu(self, work: _Work) -> None:
        """Credit each process that changed or is new to its group (the rule in the
        module docstring), and make its ProcessSample and top-N sort keys."""
        prev, current = self._procs, work.current
        absorbed = assign_reapers(prev, current) if work.churn and prev else {}
        born_after, percent_per_tick = work.born_after, work.percent_per_tick
        group_members, group_credit = work.group_members, work.group_credit
        invalid_groups, processes, states = work.invalid_groups, work.processes, work.process_states
        mem_keys, cpu_keys = work.mem_keys, work.cpu_keys
        # Groups keep their names from one sample to the next (almost always).
        names_before = self._group_names
        for key in work.slow:
            state = current[key]
            group = state.group
            if group == _EXCLUDED:
                continue
            st = state.stat
            group_members[group].append(state)
            old = prev.get(key)
            own_ticks: int | None
            if old is state:
                own_ticks, credit, valid = 0, 0, True
            elif old is not None:
                own_ticks = max(0, st.own_ticks - old.own)
                children = max(0, st.children_ticks - old.children)
                credit = own_ticks + children - absorbed.get(key, 0)
                valid = True
            elif born_after is not None and st.starttime >= born_after:
                own_ticks = st.own_ticks
                credit = st.total_ticks
                valid = True
            else:
                own_ticks, credit, valid = None, 0, False
            if credit:
                group_credit[group] += credit
            if not valid:
                invalid_groups.add(group)
            pid = st.pid
            rss_bytes = st.rss_pages * PAGE_SIZE
            cpu_percent = (
                own_ticks * percent_per_tick
                if percent_per_tick is not None and own_ticks is not None
                else None
            )
            # (A ProcessSample handed out is never changed afterwards: an unchanged
            # process shares it with the previous Sample.)
            sample = state.sample = ProcessSample(
                pid,
                st.name,
                cpu_percent,
                rss_bytes,
                names_before.get(group, ""),
                st.ppid,
                st.num_threads,
            )
            state.mem_key = (-rss_bytes, pid, sample)
            state.cpu_key = (-cpu_percent, pid, sample) if cpu_percent is not None else None
            processes.append(sample)
            states.append(state)
            mem_keys.append(state.mem_key)
            if cpu_percent is not None:
                cpu_keys.append(state.cpu_key)  # type: ignore[arg-type]

    def _name_containers(self, work: _Work) -> None:
        """Name every group; the processes of a group with a new name get renamed samples."""
        names_before = self._group_names
        group_names = work.group_names = self._group_names = self._name_groups(work.group_members)
        if not any(names_before.get(g) != name for g, name in group_names.items()):
            return
        processes, process_states = work.processes, work.process_states
        for index, (p, state) in enumerate(zip(processes, process_states, strict=True)):
            name = group_names[state.group]
            if p.container == name:
                continue
            # A group with a new name: a renamed copy, so that a previous Sample
            # holding the same ProcessSample is not changed under its holder.
            renamed = processes[index] = state.sample = dataclasses.replace(p, container=name)
            state.mem_key = (-renamed.rss_bytes, renamed.pid, renamed)
            state.cpu_key = (
                (-renamed.cpu_percent, renamed.pid, renamed)
                if renamed.cpu_percent is not None
                else None
            )
        work.mem_keys = [state.mem_key for state in process_states]  # type: ignore[misc]
        work.cpu_keys = [state.cpu_key for state in process_states if state.cpu_key is not None]

    def _system_cpu(self, cpu: procfs.CpuTimes) -> tuple[float | None, float]:
        """The machine's busy percent over the interval, and its busy CPU seconds so far."""
        cpu_total_percent = None
        if self._prev_cpu is not None:
            d_total = cpu.total - self._prev_cpu.total
            d_busy = cpu.busy - self._prev_cpu.busy
            if d_total > 0:
                cpu_total_percent = min(100.0, max(0.0, d_busy / d_total * 100.0))
        if self._first_cpu is None:
            self._first_cpu = cpu
        return cpu_total_percent, max(0, cpu.busy - self._first_cpu.busy) / CLK_TCK

    def _top_processes(self, work: _Work) -> tuple[list[ProcessSample], list[ProcessSample]]:
        """The top N by CPU (then pid) and by RSS (then pid); nsmallest is
        sorted()[:top_n] without sorting a thousand processes."""
        top_n = max(0, self.config.top_n)
        top_cpu = [k[2] for k in heapq.nsmallest(top_n, work.cpu_keys)]
        top_mem = [k[2] for k in heapq.nsmallest(top_n, work.mem_keys)]
        return top_cpu, top_mem

    def _command_container(self) -> str | None:
        """Wrapper mode: the name of the command's container."""
        cfg = self.config
        return cfg.command_name if cfg.command_pid is not None else None

    # --- internals ---------------------------------------------------------

    @staticmethod
    def _truncated_names(process_map: dict[str, str]) -> dict[str, str]:
        # The kernel's comm is at most 15 characters: "resource-collector" shows as
        # "resource-collec"; let the full name in the map match it.
        return {name[:15]: container for name, container in process_map.items() if len(name) > 15}

    def _new_proc(
        self,
        key: tuple[int, int],
        st: PidStat,
        stats: dict[tuple[int, int], PidStat],
        by_pid: dict[int, tuple[int, int]],
        prev: dict[tuple[int, int], _Proc],
        current: dict[tuple[int, int], _Proc],
    ) -> _Proc:
        cfg = self.config
        # resmon's own cgroup is read too: a cgroup holding resmon is not a container's own.
        data = procfs.read_pid_cgroup_bytes(st.pid, cfg.proc_path)
        # Processes of one container share one parsed CgroupInfo (and its paths tuple):
        # parsed once, and a thousand processes do not hold a thousand copies.
        cached = self._cgroups.get(data)
        if cached is None:
            cgroup = procfs.parse_cgroup(data) if data is not None else _UNKNOWN_CGROUP
            cached = (cgroup, _hierarchy_paths(cgroup))
            if len(self._cgroups) >= _CGROUP_CACHE_SIZE:
                self._cgroups.clear()  # many distinct cgroups over a long run: start afresh
            self._cgroups[data] = cached
        cgroup, paths = cached
        if st.pid in cfg.exclude_pids:
            return _Proc(_EXCLUDED, cgroup, st, paths)
        group = cgroup.path
        if cfg.command_pid is not None and self._in_command_tree(st, stats, by_pid, prev, current):
            group = _COMMAND_GROUP
        return _Proc(group, cgroup, st, paths)

    def _in_command_tree(
        self,
        st: PidStat,
        stats: dict[tuple[int, int], PidStat],
        by_pid: dict[int, tuple[int, int]],
        prev: dict[tuple[int, int], _Proc],
        current: dict[tuple[int, int], _Proc],
    ) -> bool:
        """Whether a newly seen process descends from the command (membership is then sticky)."""
        command_pid = self.config.command_pid
        exclude = self.config.exclude_pids
        pid = st.pid
        for _ in range(MAX_PARENT_WALK):
            if pid == command_pid:
                return True
            if pid in exclude or pid <= 1:
                return False
            key = by_pid.get(pid)
            if key is None:
                return False
            if pid != st.pid:
                known = prev.get(key) or current.get(key)
                if known is not None:
                    return known.group == _COMMAND_GROUP
            pid = stats[key].ppid
        return False

    def _name_groups(self, group_members: dict[str, list[_Proc]]) -> dict[str, str]:
        cfg = self.config
        names: dict[str, str] = {}
        for group, members in group_members.items():
            if group == _COMMAND_GROUP:
                names[group] = cfg.command_name
                continue
            if group not in self._path_names and (cfg.process_map or self._map_prefixes):
                for state in members:
                    st = state.stat
                    container = cfg.process_map.get(st.name) or self._map_prefixes.get(st.name)
                    if container:
                        self._path_names[group] = container
                        log.debug(
                            "cgroup %s is container %s (process %s)", group, container, st.name
                        )
                        break
            names[group] = self._path_names.get(group) or container_name_for_path(group)
        return names

    def _containers(self, work: _Work) -> dict[str, ContainerSample]:
        """Each container's figures (a container is the groups that carry one name)."""
        by_container: dict[str, list[str]] = {}
        for group, name in work.group_names.items():
            by_container.setdefault(name, []).append(group)
        command = self._command_container()
        if command is not None:
            by_container.setdefault(command, [])
        fs = self._cgroupfs
        dirs_by_container = self._container_dirs(fs, work) if fs is not None else {}
        return {
            name: self._container(name, groups, work, dirs_by_container.get(name))
            for name, groups in by_container.items()
        }

    def _container_dirs(self, fs: CgroupFS, work: _Work) -> ContainerDirs:
        """The containers' own cgroup directories; they only change when processes come
        or go (self._distinct is reset then) or a group gets a new name."""
        cached = self._dirs_cache
        if cached is not None and self._distinct is not None and cached[0] == work.group_names:
            return cached[1]
        if self._distinct is None:
            # Processes of one container mostly share their paths: look at each pair once.
            self._distinct = {(state.group, state.paths) for state in work.current.values()}
        dirs = exclusive_dirs(fs, work.group_names, self._distinct, _EXCLUDED)
        self._dirs_cache = (dict(work.group_names), dirs)
        return dirs

    def _container(
        self, name: str, groups: list[str], work: _Work, dirs: dict[str, list[str]] | None
    ) -> ContainerSample:
        """One container: the sums over its processes, replaced by its kernel counters
        where it has directories of its own, and its limits."""
        members = [m for g in groups for m in work.group_members.get(g, [])]
        elapsed = work.elapsed
        credit = sum(work.group_credit.get(g, 0) for g in groups) / CLK_TCK
        valid = elapsed is not None and work.invalid_groups.isdisjoint(groups)
        source_cpu = source_memory = SOURCE_PROCFS
        memory: int | None = sum(state.stat.rss_pages for state in members) * PAGE_SIZE
        if not memory and all(state.stat.state in _DEAD_STATES for state in members):
            # Only zombies (or nobody): a zombie has no RSS, so 0 would be a false
            # reading (the wrapped command read as a zombie in the last sample would
            # pull a short run's p50 down).  No memory reading; its CPU still counts.
            memory = None
        kernel = self._kernel_figures(name, dirs, elapsed)
        if kernel.cpu_seconds is not None:
            credit, valid, source_cpu = kernel.cpu_seconds, True, SOURCE_CGROUPFS
        if kernel.memory_bytes is not None:
            memory, source_memory = kernel.memory_bytes, SOURCE_CGROUPFS
        credit, cumulative = self._count_cpu_seconds(name, credit)
        limit_cpu, limit_mem = self._limits(name, kernel)
        cpu_cores = credit / elapsed if valid and elapsed else None
        return ContainerSample(
            name=name,
            cpu_cores=cpu_cores,
            memory_bytes=memory,
            process_count=len(members),
            cpu_seconds=cumulative,
            cpu_percent_of_limit=(
                cpu_cores / limit_cpu * 100.0 if cpu_cores is not None and limit_cpu else None
            ),
            memory_percent_of_limit=(
                memory / limit_mem * 100.0 if limit_mem and memory is not None else None
            ),
            limit_cpu_cores=limit_cpu,
            limit_memory_bytes=limit_mem,
            memory_peak_bytes=kernel.memory_peak_bytes,
            cpu_throttled_seconds=kernel.cpu_throttled_seconds,
            throttled_periods_percent=kernel.throttled_periods_percent,
            oom_kills=kernel.oom_kills,
            source_cpu=source_cpu,
            source_memory=source_memory,
            pressure=kernel.pressure,
        )

    def _kernel_figures(
        self, name: str, dirs: dict[str, list[str]] | None, elapsed: float | None
    ) -> KernelFigures:
        if dirs:
            counters = self._kernel.setdefault(name, KernelCounters())
            return counters.read(self._cgroupfs, dirs, elapsed)  # type: ignore[arg-type]
        if name in self._kernel:
            self._kernel[name].forget()
        return NO_KERNEL_FIGURES

    def _count_cpu_seconds(self, name: str, credit: float) -> tuple[float, float]:
        """Add this interval's CPU seconds to the container's total: the interval's and
        the total, both raised in wrapper mode to the wait's rusage total (the tail
        since the last reading) in the command container's last sample."""
        cumulative = self._cpu_seconds.get(name, 0.0) + credit
        if name == self._command_container() and self._command_final is not None:
            if self._command_final > cumulative:
                credit += self._command_final - cumulative
                cumulative = self._command_final
            self._command_final = None
        self._cpu_seconds[name] = cumulative
        return credit, cumulative

    def _limits(self, name: str, kernel: KernelFigures) -> tuple[float | None, int | None]:
        """The container's CPU and memory limits: CGROUP_LIMITS where it sets them, else
        the cgroup's own."""
        limit_cpu, limit_mem = kernel.limit_cpu_cores, kernel.limit_memory_bytes
        configured = self.config.limits.get(name)
        if configured is not None:
            if configured.cpu_cores is not None:
                limit_cpu = configured.cpu_cores
            if configured.memory_bytes is not None:
                limit_mem = configured.memory_bytes
        return limit_cpu, limit_mem
