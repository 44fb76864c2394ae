"""What the sampler remembers of each process between samples, and what the steps of
one sample (:meth:`resmon.collect.sampler.Sampler.sample`) hand each other."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from resmon import procfs
from resmon.collect.samples import ProcessSample
from resmon.procfs import CgroupInfo, PidStat

Key = tuple[int, int]  # (pid, starttime): one process for its whole life
Paths = tuple[str | None, ...]  # a cgroup path per hierarchy, in cgroupfs.HIERARCHIES order

# The groups that are no cgroup path: the wrapped command's tree, and resmon itself
# (``exclude_pids``), which belongs to no container and appears nowhere.
COMMAND_GROUP = "\0command"
EXCLUDED = "\0excluded"


class ProcessState:
    """What resmon remembers of one live process between samples."""

    __slots__ = (
        "cgroup",
        "children",
        "group",
        "own",
        "paths",
        "ppid",
        "rate_own",
        "sample",
        "stat",
    )

    def __init__(self, group: str, cgroup: CgroupInfo, st: PidStat, paths: Paths) -> None:
        self.group = group
        self.cgroup = cgroup
        # The cgroup path in each hierarchy, hashable, computed once per cgroup.
        self.paths = paths
        # The reading this state was made from: the same object at the next sample
        # means the process's stat line did not change (see Sampler.sample).
        self.stat = st
        self.ppid = st.ppid
        self.own = st.own_ticks
        self.children = st.children_ticks
        # Its own ticks at the last reading a CPU rate was taken at (its percent is the
        # growth since then): the same as ``own`` unless the last sample had no rate.
        self.rate_own = self.own
        # The ProcessSample last made for it, reused while nothing in it changes (see
        # Sampler.sample).
        self.sample: ProcessSample | None = None

    @property
    def total(self) -> int:
        return self.own + self.children


@dataclass(slots=True)
class SampleWork:
    """One sample in the making: what its steps hand each other."""

    timestamp: float
    clock: float
    elapsed: float | None
    # The span a CPU rate is taken over: since the last reading a rate was taken at
    # (a gap too short for a rate is merged into the next one); None: no rate this time.
    rate_elapsed: float | None
    uptime: float | None
    cpu: procfs.CpuTimes
    mem: procfs.MemInfo
    # A process not seen before that started at this tick or later was born in the
    # interval; None on the first sample, where every process is only a baseline.
    born_after: float | None
    # A process's CPU percent per tick of its own time; None without a rate.
    percent_per_tick: float | None
    # A process that started at this tick or later was born within the rate's span: its
    # percent is over the part it lived (None: no rate, or no /proc/uptime).
    rate_born_after: float | None
    # What an unchanged process's CPU percent is this time (None without an interval).
    idle_percent: float | None
    # The live processes; the readings of those not seen before; the processes left
    # to the accounting step (known ones that changed, then new ones).
    current: dict[Key, ProcessState] = field(default_factory=dict)
    new_stats: dict[Key, PidStat] = field(default_factory=dict)
    slow: list[Key] = field(default_factory=list)
    # Processes came or went since the previous sample.
    churn: bool = False
    # The procfs root's entries in the order their stat files were read.
    listing: list[str] = field(default_factory=list)
    # The processes whose children time grew in the interval, by how much (one born in
    # the interval: all of it).
    grown: dict[Key, int] = field(default_factory=dict)
    # Per group: its members, the ticks credited to it, and (in the set) whether one
    # of its members had no valid delta; then each group's container name.
    group_members: defaultdict[str, list[ProcessState]] = field(
        default_factory=lambda: defaultdict(list)
    )
    group_credit: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    invalid_groups: set[str] = field(default_factory=set)
    group_names: dict[str, str] = field(default_factory=dict)
    # Containers renamed this sample (old name -> new name).
    renamed: dict[str, str] = field(default_factory=dict)
    # The processes' samples and their states, in one order.
    processes: list[ProcessSample] = field(default_factory=list)
    process_states: list[ProcessState] = field(default_factory=list)
