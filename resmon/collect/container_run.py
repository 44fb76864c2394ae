"""One container over a run: its series of each definition, and its memory peak range.

A container's figures can come from two places (its processes, or its cgroup's own
counters where its directories are its own) and its memory from three (RSS sum, PSS
sum, the cgroup's figure).  The run summary reports ONE definition per container for
the whole run, so each is kept as a series aligned with the samples the container
was seen in, for as long as it is still a candidate:

- memory: ``cgroup`` when the cgroup's figure was there at every sample the container
  was seen in (with any memory reading), else ``pss`` when its processes' PSS was,
  else ``rss``;
- CPU: ``cgroupfs`` when its kernel counter was read at every sample, else ``procfs``.

A candidate that misses a sample is dropped there (its memory freed).  A missing
value (no CPU rate, no memory reading) is NaN in a series, left out of statistics.

The memory peak is a range that must contain the true peak of the reported kind
(:func:`memory_peak`).
"""

from __future__ import annotations

import math
from array import array
from typing import TYPE_CHECKING, Any

from resmon.collect.samples import SOURCE_CGROUPFS, SOURCE_PROCFS, ContainerSample
from resmon.stats import empty_stat, summarize

if TYPE_CHECKING:
    from resmon.collect.tree_tracker import TreeFigures
NAN = math.nan
KIND_CGROUP, KIND_PSS, KIND_RSS = "cgroup", "pss", "rss"
MEMORY_KINDS = (KIND_CGROUP, KIND_PSS, KIND_RSS)  # most telling first
CPU_SOURCES = (SOURCE_CGROUPFS, SOURCE_PROCFS)


def _max_opt(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None or a >= b else b


def _sum_opt(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else a + b


def _value(v: float | None) -> float:
    return NAN if v is None else float(v)


def finite(values: array) -> list[float]:
    return [v for v in values if v == v]


def readings(c: ContainerSample) -> tuple[float | None, ...]:
    """(rss, pss, cgroup memory, procfs cores, cgroup cores, cgroup counter read) of a
    sample; a sample made without the separate figures (the ContainerSample fields a
    peer or an older caller leaves at their defaults) is read from its chosen figures."""
    if c.cpu_seconds_procfs is None:
        from_cgroup = c.source_memory == SOURCE_CGROUPFS
        cpu_cgroup = c.source_cpu == SOURCE_CGROUPFS
        return (
            None if from_cgroup else c.memory_bytes,
            c.memory_pss_bytes,
            c.memory_bytes if from_cgroup else None,
            None if cpu_cgroup else c.cpu_cores,
            c.cpu_cores if cpu_cgroup else None,
            cpu_cgroup,
        )
    return (
        c.memory_rss_bytes,
        c.memory_pss_bytes,
        c.memory_cgroup_bytes,
        c.cpu_cores_procfs,
        c.cpu_cores_cgroup,
        c.cpu_seconds_cgroup is not None,
    )


class ContainerRun:
    """A container's figures over the samples it was seen in."""

    __slots__ = (
        "capped",
        "cgroup_peak",
        "count",
        "cpu",
        "cpu_seconds",
        "cpu_throttled_seconds",
        "first",
        "hwm",
        "hwm_sum",
        "indices",
        "limit_cpu_cores",
        "limit_memory_bytes",
        "mem",
        "next",
        "oom_kills",
        "pss_estimate",
        "pss_read",
        "ru_maxrss",
        "throttled_periods_percent",
        "tree",
    )

    def __init__(self, index: int) -> None:
        # The samples it was seen in: first..next-1, or explicit once not contiguous.
        self.first = index
        self.next = index
        self.indices: array | None = None
        self.count = 0
        self.cpu: dict[str, array] = {s: array("d") for s in CPU_SOURCES}
        self.mem: dict[str, array] = {k: array("d") for k in MEMORY_KINDS}
        # Running totals, by source; "sample": each sample's choice (the old figure).
        self.cpu_seconds: dict[str, float] = {SOURCE_PROCFS: 0.0, SOURCE_CGROUPFS: 0.0}
        self.cpu_seconds["sample"] = 0.0
        self.capped: dict[str, int] = dict.fromkeys(CPU_SOURCES, 0)
        self.hwm: int | None = None
        self.hwm_sum: int | None = None
        self.pss_read: int | None = None
        self.pss_estimate: int | None = None
        self.cgroup_peak: int | None = None
        self.ru_maxrss: int | None = None
        # Wrapper mode's command container: what the fast tree tracker saw.
        self.tree: TreeFigures | None = None
        self.limit_cpu_cores: float | None = None
        self.limit_memory_bytes: int | None = None
        self.cpu_throttled_seconds: float | None = None
        self.throttled_periods_percent: float | None = None
        self.oom_kills: int | None = None

    # --- the samples ----------------------------------------------------------

    def add(self, c: ContainerSample, index: int) -> None:
        if index != self.next and self.indices is None:
            self.indices = array("l", range(self.first, self.next))
        if self.indices is not None:
            self.indices.append(index)
        self.next = index + 1
        self.count += 1
        rss, pss, cgroup, cores_procfs, cores_cgroup, cgroup_cpu = readings(c)
        mem, cpu = self.mem, self.cpu
        reading = rss is not None or cgroup is not None
        if KIND_CGROUP in mem and reading and cgroup is None:
            del mem[KIND_CGROUP]
        if KIND_PSS in mem and rss is not None and pss is None:
            del mem[KIND_PSS]
        for kind, value in ((KIND_RSS, rss), (KIND_PSS, pss), (KIND_CGROUP, cgroup)):
            if kind in mem:
                mem[kind].append(_value(value))
        if SOURCE_CGROUPFS in cpu and not cgroup_cpu:
            del cpu[SOURCE_CGROUPFS]
        cpu[SOURCE_PROCFS].append(_value(cores_procfs))
        if SOURCE_CGROUPFS in cpu:
            cpu[SOURCE_CGROUPFS].append(_value(cores_cgroup))
        self._add_totals(c)
        self._add_counters(c)

    def _add_totals(self, c: ContainerSample) -> None:
        totals = self.cpu_seconds
        # Running totals never decrease; keep the largest seen.
        totals["sample"] = max(totals["sample"], c.cpu_seconds)
        procfs_total = c.cpu_seconds_procfs
        if procfs_total is None:  # a sample without the separate totals
            source = SOURCE_CGROUPFS if c.source_cpu == SOURCE_CGROUPFS else SOURCE_PROCFS
            totals[source] = max(totals[source], c.cpu_seconds)
        else:
            totals[SOURCE_PROCFS] = max(totals[SOURCE_PROCFS], procfs_total)
            if c.cpu_seconds_cgroup is not None:
                totals[SOURCE_CGROUPFS] = max(totals[SOURCE_CGROUPFS], c.cpu_seconds_cgroup)
        if c.cpu_capped_procfs:
            self.capped[SOURCE_PROCFS] += 1
        if c.cpu_capped_cgroup:
            self.capped[SOURCE_CGROUPFS] += 1

    def _add_counters(self, c: ContainerSample) -> None:
        self.hwm = _max_opt(self.hwm, c.memory_hwm_bytes)
        self.hwm_sum = _max_opt(self.hwm_sum, c.memory_hwm_sum_bytes)
        self.pss_read = _max_opt(self.pss_read, c.memory_pss_read_bytes)
        self.pss_estimate = _max_opt(self.pss_estimate, c.memory_pss_estimate_bytes)
        self.cgroup_peak = _max_opt(self.cgroup_peak, c.memory_peak_bytes)
        if c.limit_cpu_cores is not None:
            self.limit_cpu_cores = c.limit_cpu_cores
        if c.limit_memory_bytes is not None:
            self.limit_memory_bytes = c.limit_memory_bytes
        if c.cpu_throttled_seconds is not None:
            self.cpu_throttled_seconds = c.cpu_throttled_seconds
        if c.throttled_periods_percent is not None:
            self.throttled_periods_percent = c.throttled_periods_percent
        if c.oom_kills is not None:
            self.oom_kills = max(self.oom_kills or 0, c.oom_kills)

    @property
    def memory_peak_bytes(self) -> int | None:
        """The cgroup's high-water mark where it rose during the run (the summary's
        ``memory_peak_bytes``, as before)."""
        return self.cgroup_peak

    # --- the run's one definition -----------------------------------------------

    def sample_indices(self) -> array | range:
        return self.indices if self.indices is not None else range(self.first, self.next)

    @property
    def memory_kind(self) -> str:
        mem = self.mem
        if KIND_CGROUP in mem and finite(mem[KIND_CGROUP]):
            return KIND_CGROUP
        if KIND_PSS in mem and finite(mem[KIND_PSS]):
            return KIND_PSS
        return KIND_RSS

    @property
    def cpu_source(self) -> str:
        cgroup = self.cpu.get(SOURCE_CGROUPFS)
        return SOURCE_CGROUPFS if cgroup is not None and self.count else SOURCE_PROCFS

    @property
    def memory_source(self) -> str:
        return SOURCE_CGROUPFS if self.memory_kind == KIND_CGROUP else SOURCE_PROCFS

    def cpu_series(self) -> array:
        return self.cpu[self.cpu_source]

    def memory_series(self) -> array:
        return self.mem[self.memory_kind]

    def total_cpu_seconds(self) -> float:
        return self.cpu_seconds[self.cpu_source]

    def memory_figures(self) -> dict[str, int]:
        """Every figure that goes into the memory peak, by name (absent: not measured)."""
        out: dict[str, int] = {}
        for kind in MEMORY_KINDS:
            values = finite(self.mem[kind]) if kind in self.mem else []
            if values:
                out[f"sampled_{kind}"] = round(max(values))
        tree = self.tree
        named = (
            ("sampled_pss_read", self.pss_read),
            ("sampled_pss_estimate", self.pss_estimate),
            ("largest_process_hwm", self.hwm),
            ("ru_maxrss", self.ru_maxrss),
            ("hwm_sum_alive_together", self.hwm_sum),
            ("cgroup_peak", self.cgroup_peak),
            ("tracked_rss", tree.rss_peak or None if tree else None),
            ("tracked_pss_read", tree.pss_read if tree else None),
            ("tracked_pss_estimate", tree.pss_estimate if tree else None),
            ("tracked_hwm_sum_alive_together", tree.hwm_sum or None if tree else None),
        )
        for name, value in named:
            if value is not None:
                out[name] = value
        return out

    def memory_peak(self) -> dict[str, Any]:
        return memory_peak(self.memory_kind, self.memory_figures())

    def summary(self, name: str) -> dict[str, Any]:
        peak = self.memory_peak()
        memory = summarize(finite(self.memory_series())) or empty_stat()
        memory["peak"] = float(peak["headline"])
        out: dict[str, Any] = {
            "name": name,
            "cpu_cores": summarize(finite(self.cpu_series())) or empty_stat(),
            "memory_bytes": memory,
            "cpu_seconds": round(self.total_cpu_seconds(), 3),
            "limit_cpu_cores": self.limit_cpu_cores,
            "limit_memory_bytes": self.limit_memory_bytes,
            "memory_kind": self.memory_kind,
            "memory_peak": peak,
            "cpu_source": self.cpu_source,
        }
        capped = self.capped[self.cpu_source]
        if capped:
            out["cpu_capped_samples"] = capped
        return out

    # --- a rename ------------------------------------------------------------------

    def absorb(self, other: ContainerRun) -> None:
        """Take ``other``'s figures (a container renamed into this one): the series are
        merged by sample, summed where both were seen in one sample."""
        mine, theirs = list(self.sample_indices()), list(other.sample_indices())
        merged = sorted(set(mine) | set(theirs))
        position = {index: i for i, index in enumerate(merged)}

        def combine(a: array | None, b: array | None) -> array | None:
            if a is None or b is None:
                return None  # a candidate either one had dropped
            out = array("d", [NAN]) * len(merged)
            for indices, values in ((mine, a), (theirs, b)):
                for index, value in zip(indices, values, strict=True):
                    i = position[index]
                    if value == value:
                        out[i] = value if out[i] != out[i] else out[i] + value
            return out

        for series, others in ((self.cpu, other.cpu), (self.mem, other.mem)):
            for key in list(series):
                combined = combine(series.get(key), others.get(key))
                if combined is None:
                    del series[key]
                else:
                    series[key] = combined
        self.first, self.next = merged[0], merged[-1] + 1
        contiguous = len(merged) == self.next - self.first
        self.indices = None if contiguous else array("l", merged)
        self.count = len(merged)
        for key, value in other.cpu_seconds.items():
            self.cpu_seconds[key] += value
        for key, value in other.capped.items():
            self.capped[key] += value
        self.hwm = _max_opt(self.hwm, other.hwm)
        self.hwm_sum = _sum_opt(self.hwm_sum, other.hwm_sum)
        self.pss_read = _max_opt(self.pss_read, other.pss_read)
        self.pss_estimate = _max_opt(self.pss_estimate, other.pss_estimate)
        self.tree = self.tree or other.tree
        self.cgroup_peak = _sum_opt(self.cgroup_peak, other.cgroup_peak)
        self.ru_maxrss = _max_opt(self.ru_maxrss, other.ru_maxrss)
        if self.limit_cpu_cores is None:
            self.limit_cpu_cores = other.limit_cpu_cores
        if self.limit_memory_bytes is None:
            self.limit_memory_bytes = other.limit_memory_bytes
        self.oom_kills = _sum_opt(self.oom_kills, other.oom_kills)


# The figures that are a reading of the whole kind at one instant (or a part of it):
# the peak is at least each.  A process's high-water mark and ru_maxrss are RSS: they
# bound an RSS peak from below, never a PSS one (a shared page is in each RSS whole).
_LOW = {
    KIND_RSS: (
        ("sampled", "sampled_rss"),
        ("process_hwm", "largest_process_hwm"),
        ("ru_maxrss", "ru_maxrss"),
        ("tracked", "tracked_rss"),
    ),
    KIND_PSS: (("sampled", "sampled_pss_read"), ("tracked", "tracked_pss_read")),
}
# Sums of high-water marks of processes alive together: no instant holds more RSS, and
# a PSS is never above its RSS.
_HIGH = ("hwm_sum_alive_together", "tracked_hwm_sum_alive_together")


def memory_peak(kind: str, figures: dict[str, int]) -> dict[str, Any]:
    """The memory peak of one kind as a range that must contain the true peak.

    ``cgroup`` with a high-water mark that rose during the run: the kernel's own
    figure, exact (headline = low = high).  Otherwise low = the largest figure of that
    kind read at one instant (``_LOW``: for ``pss`` only PSS actually read, summed
    over the processes read together), high = the larger of low and the sums of the
    high-water marks of processes alive together (``_HIGH``).  The headline is low,
    unless the kind is ``pss`` and an estimate lies inside the range above it (each
    process's last PSS reading scaled by its RSS since, every process read: the
    tracker's, else the samples'): then the estimate, with basis ``estimate``."""
    sampled = figures.get(f"sampled_{kind}", 0)
    cgroup_peak = figures.get("cgroup_peak")
    if kind == KIND_CGROUP and cgroup_peak is not None and cgroup_peak >= sampled:
        return {
            "headline": cgroup_peak,
            "low": cgroup_peak,
            "high": cgroup_peak,
            "kind": kind,
            "basis": "cgroup_peak",
            "figures": figures,
        }
    low, basis = 0, "sampled"
    for name, key in _LOW.get(kind, (("sampled", f"sampled_{kind}"),)):
        value = figures.get(key)
        if value is not None and value > low:
            low, basis = value, name
    high = max([low] + [figures[key] for key in _HIGH if key in figures])
    headline = low
    if kind == KIND_PSS:
        # The tracker's estimate counts only ticks where every process was read since
        # the tree last changed; without a tracker (sidecar mode) the samples' where
        # every process had been read (a never-read one counts at its RSS: not that).
        estimate = figures.get("tracked_pss_estimate")
        if estimate is None and "tracked_rss" not in figures:
            estimate = figures.get("sampled_pss_estimate")
        if estimate is not None and low < estimate <= high:
            headline, basis = estimate, "estimate"
    return {
        "headline": headline,
        "low": low,
        "high": high,
        "kind": kind,
        "basis": basis,
        "figures": figures,
    }
