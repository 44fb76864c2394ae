"""One sample from two readings: system, per process and per container figures.

Each call to :meth:`Sampler.sample` reads ``/proc/stat``, ``/proc/meminfo``,
``/proc/uptime`` and every ``/proc/PID/stat`` (plus ``/proc/PID/cgroup`` once per
process lifetime, and the containers' cgroupfs files where readable), and turns
the difference from the previous call into figures.

Groups and containers
---------------------
A process belongs, for its whole life, to one *group* (its cgroup path, or in
wrapper mode the command's tree), and a *container* is the groups that carry one
name (:mod:`resmon.collect.sample_groups`).  A group that gets a new name (its
``CGROUP_PROCESS_MAP`` process is seen) carries it for the whole run: the sample
says ``renamed`` old name -> new name, when no group carries the old name any more,
and the run's figures under the old name are moved to the new one.

CPU accounting that survives process churn
------------------------------------------
A process's *total* is utime+stime+cutime+cstime: its own time plus that of every
child it has reaped (the kernel adds a reaped child's whole total to its parent's
cutime+cstime).  Summing totals over a group's live processes would count every
short-lived child through its parent, but would drop when a process exits whose
reaper is outside the group, and would count twice a child seen alive and then
reaped.  So resmon credits each group with per-interval increments that are never
negative, with this rule (applied across all processes, whatever their group):

- a process alive at both readings is credited its own increase
  Δ(utime+stime) to its group, plus its children's increase Δ(cutime+cstime)
  *minus* the last observed totals of the processes it reaped (those were already
  credited, to their own groups, while they were seen); what it takes back is at
  most that increase, so the credit is never negative;
- a process born in the interval (``starttime`` after the previous reading) is
  credited its whole total (its children's part, too, may take back a child seen
  before); one first seen that is older (the first sample, a read race) is only a
  baseline;
- a process that disappeared keeps its last observed total counted: nothing is
  taken back from its group.  Who reaped it is its last known parent if that parent
  is still alive, else that parent's reaper, and so on; the reaper's growth takes
  back its last observed total (:mod:`resmon.collect.cpu_credit`).  If the reaper
  is resmon, outside the groups, or unknown, the last observed total simply stays
  with the group (only the tail since the last reading is lost; in wrapper mode
  :meth:`Sampler.final_command_sample` restores it from the rusage of the wait).

One sample's stat files are read one after the other, so a reap can fall between a
parent's read and its child's.  :class:`resmon.collect.cpu_credit.ReapLedger` keeps
what that leaves open: a disappeared process no growth matched yet stays pending
for a few samples (with its ancestors), since its reaper's growth shows only at the
reaper's next reading; and a child read before the parent that reaped it (the
parent's growth already there while the child is still in the readings) is matched
at once and remembered, so its disappearance later takes nothing more.

So a group's ``cpu_seconds`` never goes backwards, never goes negative, and a
child reaped inside the measured processes is counted once, whichever way its reap
falls between two reads (a parent that ignores SIGCHLD, whose cutime never grows,
takes nothing back).  A group with no reaper of its own (a container whose init is
reaped by containerd-shim) keeps everything it was seen to use.

Rates
-----
Cumulative CPU counts every credit at once; a *rate* (a container's cores, a
process's percent, the machine's busy percent) is taken over the span since the
last rated reading, and only when that span is at least ``MIN_RATE_TICKS`` clock
ticks: a shorter gap (a sample right after the command exits, say) gives no rate
(``rate_elapsed`` None, process percents None) and its time is merged into the next
rate.  A process's percent is its own time since the last rated reading over that
span, or, for a process born within it, over the part it lived (uptime minus its
``starttime``, at least ``MIN_RATE_TICKS``): a compiler that ran 0.2 s flat out is
100 %, not its share of a 5 s interval.

Kernel counters
---------------
Where a container's cgroup directories are its own (no other visible process, no
nested directory of another container, not a hierarchy's root), the kernel's CPU
and memory counters replace the per-process credit and the RSS sum; the figure's
``source_cpu`` / ``source_memory`` says which was used.  Which directories qualify,
and how the counters are read, is in :mod:`resmon.collect.kernel_counters`; the
containers' figures are put together in :mod:`resmon.collect.sample_containers`.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import os
import time
from dataclasses import dataclass, field

from resmon import procfs
from resmon.cgroupfs import CgroupFS
from resmon.collect.containers import Limits
from resmon.collect.cpu_credit import ReapLedger
from resmon.collect.sample_containers import ContainerFigures
from resmon.collect.sample_groups import Grouping
from resmon.collect.sample_state import EXCLUDED, Key, ProcessState, SampleWork
from resmon.collect.samples import ProcessSample, Sample, pressure_record
from resmon.procfs import CLK_TCK, PAGE_SIZE, PidStat

log = logging.getLogger(__name__)

# A stat line is at most ~700 bytes (52 numbers and a 64-byte name); one small read.
_STAT_READ_SIZE = 4096

# The shortest span a CPU rate is taken over, in clock ticks.  utime and stime grow in
# whole ticks, charged to whoever runs when the tick fires, so a rate over n ticks is
# off by up to one tick per process and per CPU: over 2-3 ms (a sample right after the
# command exits, or a signal) one tick reads as several cores.  Over 5 ticks (50 ms at
# CLK_TCK 100; the shortest --interval is 100 ms) the error is a fifth of a tick's
# worth; a shorter gap gives no rate and is merged into the next one.
MIN_RATE_TICKS = 5
MIN_RATE_SECONDS = MIN_RATE_TICKS / CLK_TCK


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


class Sampler:
    """Reads /proc (and cgroupfs) and turns two readings into a :class:`Sample`."""

    def __init__(self, config: SamplerConfig) -> None:
        self.config = config
        self._procs: dict[Key, ProcessState] = {}
        # /proc entry name -> (the hash of its stat bytes, parsed, key) at the previous
        # sample: a hash, not the ~300 bytes, since a sidecar keeps one per process on
        # the machine (64 bits: a changed line that hashes the same is a 2**-64 chance).
        self._raw: dict[str, tuple[int, PidStat, Key]] = {}
        # Each group's container name at the previous sample.
        self._group_names: dict[str, str] = {}
        self._first_cpu: procfs.CpuTimes | None = None
        self._prev_uptime: float | None = None
        self._prev_clock: float | None = None
        # The last reading a CPU rate was taken at (or the first reading): its clock,
        # uptime and system CPU times; rates span from there.
        self._rated_clock: float | None = None
        self._rated_uptime: float | None = None
        self._rated_cpu: procfs.CpuTimes | None = None
        self._sampled = False
        self._ledger = ReapLedger(config.proc_path)
        # The last name of every group seen (a group can be absent for a while).
        self._known_names: dict[str, str] = {}
        self._grouping = Grouping(
            config.proc_path,
            config.process_map,
            config.exclude_pids,
            config.command_pid,
            config.command_name,
        )
        self._containers = ContainerFigures(
            CgroupFS(config.cgroup_path) if config.use_cgroupfs else None,
            config.limits,
            self._command_container(),
            proc_path=config.proc_path,
        )

    # --- public ------------------------------------------------------------

    def final_command_sample(self, rusage_cpu_seconds: float) -> None:
        """Wrapper mode: the command's exact CPU total (user+sys of the wait's rusage).

        Call it after reaping the command and before the last :meth:`sample`: that
        sample's command container gets ``cpu_seconds`` = max(what was counted,
        this total), so the tail since the last reading is not lost."""
        if self.config.command_pid is None:
            raise ValueError("final_command_sample needs command_pid (wrapper mode)")
        self._containers.command_final(float(rusage_cpu_seconds))

    def sample(self, now: float | None = None) -> Sample:
        """Read the system again and turn the difference from the previous reading into
        figures, in steps: the processes' stat lines, groups for the new ones, CPU
        credit, container names, the containers, the system-wide figures."""
        work = self._begin(now)
        self._read_processes(work)
        self._place_new_processes(work)
        self._account_cpu(work)
        self._name_containers(work)
        containers = self._containers.make(work)
        cpu_total_percent, cpu_seconds_total = self._system_cpu(work)
        top_cpu, top_mem = self._top_processes(work)
        system_pressure = procfs.read_system_pressure(self.config.proc_path)

        self._procs = work.current
        self._prev_uptime = work.uptime
        self._prev_clock = work.clock
        if work.rate_elapsed is not None or not self._sampled:
            self._rated_clock, self._rated_uptime = work.clock, work.uptime
            self._rated_cpu = work.cpu
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
            renamed=work.renamed,
        )

    # --- the steps of a sample ----------------------------------------------

    def _begin(self, now: float | None) -> SampleWork:
        """The clocks and the system-wide files, and whether this sample gives rates."""
        proc_path = self.config.proc_path
        timestamp = time.time() if now is None else now
        clock = time.monotonic() if now is None else now
        elapsed = None if self._prev_clock is None else clock - self._prev_clock
        if elapsed is not None and elapsed <= 0:
            elapsed = None
        # A rate spans from the last rated reading, and needs MIN_RATE_TICKS of it.
        rate_elapsed = None
        if elapsed is not None and self._rated_clock is not None:
            rate_elapsed = clock - self._rated_clock
            if rate_elapsed < MIN_RATE_SECONDS:
                rate_elapsed = None
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
        percent_per_tick = rate_born_after = None
        if rate_elapsed is not None:
            percent_per_tick = 100.0 / CLK_TCK / rate_elapsed
            if uptime is not None and self._rated_uptime is not None:
                rate_born_after = self._rated_uptime * CLK_TCK - 1
        return SampleWork(
            timestamp=timestamp,
            clock=clock,
            elapsed=elapsed,
            rate_elapsed=rate_elapsed,
            uptime=uptime,
            cpu=cpu,
            mem=mem,
            born_after=born_after,
            percent_per_tick=percent_per_tick,
            rate_born_after=rate_born_after,
            idle_percent=0.0 if percent_per_tick is not None else None,
        )

    def _read_processes(self, work: SampleWork) -> None:
        """Read every /proc/PID/stat, and count in the processes that did not change.

        This is the cost that grows with the process count, so it is one file per
        process, opened relative to the procfs root and read in one call; and a process
        whose stat bytes did not change since the previous sample (most processes in a
        job sleep) is neither parsed nor looked at again: same bytes, same figures
        (starttime is among them, so a reused PID never matches), the same state and
        ProcessSample, nothing to credit.  The others are left to the next steps."""
        proc_path = self.config.proc_path
        prev, raw_prev = self._procs, self._raw
        raw_now: dict[str, tuple[int, PidStat, Key]] = {}
        current, new_stats, slow = work.current, work.new_stats, work.slow
        group_members, processes, states = work.group_members, work.processes, work.process_states
        idle_percent = work.idle_percent
        open_, read, close = os.open, os.read, os.close
        parse = procfs.parse_stat
        dir_fd = open_(proc_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            work.listing = listing = os.listdir(proc_path)
            for name in listing:
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
                digest = hash(data)
                if cached is not None and cached[0] == digest:
                    raw_now[name] = cached
                    st, key = cached[1], cached[2]
                    state = prev.get(key)
                    if state is not None and state.stat is st:
                        current[key] = state
                        group = state.group
                        if group == EXCLUDED:
                            continue
                        reuse = state.sample
                        if reuse is None or reuse.cpu_percent != idle_percent:
                            slow.append(key)
                            continue
                        group_members[group].append(state)
                        processes.append(reuse)
                        states.append(state)
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
                    key = (st.pid, st.starttime)  # the pid field is the entry's name
                    raw_now[name] = (digest, st, key)
                    state = prev.get(key)
                if state is None:
                    new_stats[key] = st
                else:
                    current[key] = ProcessState(state.group, state.cgroup, st, state.paths)
                    slow.append(key)
        finally:
            close(dir_fd)
        self._raw = raw_now

    def _place_new_processes(self, work: SampleWork) -> None:
        """Put each process not seen before in its group, for its whole life."""
        self._grouping.place_new(work, self._procs)
        work.churn = bool(work.new_stats) or len(work.current) != len(self._procs)
        if work.churn:
            self._containers.processes_changed()

    def _account_cpu(self, work: SampleWork) -> None:
        """Credit each process that changed or is new to its group (the rule in the
        module docstring), and make its ProcessSample."""
        prev, current = self._procs, work.current
        born_after, percent_per_tick = work.born_after, work.percent_per_tick
        rated = percent_per_tick is not None
        rate_born_after = work.rate_born_after
        group_members, group_credit, grown = work.group_members, work.group_credit, work.grown
        invalid_groups, processes, states = work.invalid_groups, work.processes, work.process_states
        # Groups keep their names from one sample to the next (almost always).
        names_before = self._group_names
        for key in work.slow:
            state = current[key]
            group = state.group
            st = state.stat
            old = prev.get(key)
            # own_ticks: the growth of its own time since the last rated reading.
            own_ticks: int | None
            if old is state:
                own_ticks, credit, valid = state.own - state.rate_own, 0, True
                if rated:
                    state.rate_own = state.own
            elif old is not None:
                own_ticks = st.own_ticks
                credit = max(0, own_ticks - old.own)
                children = st.children_ticks - old.children
                if children > 0:
                    grown[key] = children
                    credit += children
                own_ticks = max(0, own_ticks - old.rate_own)
                if not rated:
                    state.rate_own = old.rate_own
                valid = True
            elif born_after is not None and st.starttime >= born_after:
                own_ticks = st.own_ticks
                credit = st.total_ticks
                if credit != own_ticks:  # it reaped children already: some may have been seen
                    grown[key] = credit - own_ticks
                valid = True
                if not rated:
                    state.rate_own = 0
            else:
                own_ticks, credit, valid = None, 0, False
            if group == EXCLUDED:
                continue
            group_members[group].append(state)
            if credit:
                group_credit[group] += credit
            if not valid:
                invalid_groups.add(group)
            pid = st.pid
            rss_bytes = st.rss_pages * PAGE_SIZE
            cpu_percent: float | None = None
            if rated and own_ticks is not None:
                if rate_born_after is not None and st.starttime >= rate_born_after:
                    cpu_percent = own_ticks * self._lived_percent_per_tick(work, st.starttime)
                else:
                    cpu_percent = own_ticks * percent_per_tick  # type: ignore[operator]
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
            processes.append(sample)
            states.append(state)
        self._ledger.take_back(prev, work)

    @staticmethod
    def _lived_percent_per_tick(work: SampleWork, starttime: int) -> float:
        """A process born within the rate's span: percent per tick over the part of the
        span it lived (at least MIN_RATE_SECONDS, at most the span)."""
        span = work.rate_elapsed
        assert span is not None and work.uptime is not None
        lived = work.uptime - starttime / CLK_TCK
        return 100.0 / CLK_TCK / max(MIN_RATE_SECONDS, min(lived, span))

    def _name_containers(self, work: SampleWork) -> None:
        """Name every group; the processes of a group with a new name get renamed samples."""
        names_before = self._group_names
        group_names = self._grouping.names(work.group_members)
        work.group_names = self._group_names = group_names
        if not any(names_before.get(g) != name for g, name in group_names.items()):
            return
        self._note_renames(work)
        processes, process_states = work.processes, work.process_states
        for index, (p, state) in enumerate(zip(processes, process_states, strict=True)):
            name = group_names[state.group]
            if p.container == name:
                continue
            # A group with a new name: a renamed copy, so that a previous Sample
            # holding the same ProcessSample is not changed under its holder.
            processes[index] = state.sample = dataclasses.replace(p, container=name)

    def _note_renames(self, work: SampleWork) -> None:
        """A group that carries a new name (it got its mapped name) renames its container
        for the whole run: ``old -> new`` when no group carries the old name any more."""
        known = self._known_names
        carried = set(work.group_names.values())
        for group, name in work.group_names.items():
            old = known.get(group)
            if old is not None and old != name and old not in carried:
                work.renamed[old] = name
                log.debug("container %s is now %s", old, name)
        known.update(work.group_names)

    def _system_cpu(self, work: SampleWork) -> tuple[float | None, float]:
        """The machine's busy percent over the rate's span, and its busy CPU seconds so far."""
        cpu = work.cpu
        cpu_total_percent = None
        if self._rated_cpu is not None and work.rate_elapsed is not None:
            d_total = cpu.total - self._rated_cpu.total
            d_busy = cpu.busy - self._rated_cpu.busy
            if d_total > 0:
                cpu_total_percent = min(100.0, max(0.0, d_busy / d_total * 100.0))
        if self._first_cpu is None:
            self._first_cpu = cpu
        return cpu_total_percent, max(0, cpu.busy - self._first_cpu.busy) / CLK_TCK

    def _top_processes(self, work: SampleWork) -> tuple[list[ProcessSample], list[ProcessSample]]:
        """The top N by CPU (then pid) and by RSS (then pid); nsmallest is
        sorted()[:top_n] without sorting a thousand processes.

        The sort keys ``(-figure, pid, sample)`` are made one at a time as nsmallest
        takes them (pids are unique: samples are never compared), not kept per process:
        a sidecar would hold two tuples and two numbers for every process of the
        machine, about 0.2 MiB at a thousand processes."""
        top_n = max(0, self.config.top_n)
        processes = work.processes
        cpu_keys = ((-p.cpu_percent, p.pid, p) for p in processes if p.cpu_percent is not None)
        top_cpu = [k[2] for k in heapq.nsmallest(top_n, cpu_keys)]
        mem_keys = ((-p.rss_bytes, p.pid, p) for p in processes)
        top_mem = [k[2] for k in heapq.nsmallest(top_n, mem_keys)]
        return top_cpu, top_mem

    def _command_container(self) -> str | None:
        """Wrapper mode: the name of the command's container."""
        cfg = self.config
        return cfg.command_name if cfg.command_pid is not None else None
