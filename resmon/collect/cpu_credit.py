"""Who reaped the processes that disappeared: the reaper part of the CPU accounting rule.

A process's children time (cutime+cstime) grows by the whole total of each child it
reaps.  The sampler credits a live process with that growth *minus* the last
observed totals of the processes it reaped, which were already credited to their
own groups while they were seen (the whole rule is in :mod:`resmon.collect.sampler`);
:func:`assign_reapers` says, for one interval, how many ticks each live process
reaped.
"""

from __future__ import annotations

from resmon.collect.sample_state import Key, ProcessState

# Longest parent chain followed: a loop in stale parent links cannot hang a sample.
MAX_PARENT_WALK = 256


def assign_reapers(
    prev: dict[Key, ProcessState], current: dict[Key, ProcessState]
) -> dict[Key, int]:
    """Ticks of disappeared processes that live processes reaped in the interval.

    A disappeared process whose last known parent is alive was reaped by it (if
    the parent's cutime+cstime grew by at least its last observed total; if not,
    say the parent ignores SIGCHLD, nobody absorbed it and nothing is taken).  If
    the parent is gone too, the child was reaped either by that parent before it
    died (so by the parent's reaper, in turn) or, orphaned, by a subreaper or
    init: both are live ancestors, so the nearest live ancestor whose children
    time grew enough takes it.  Direct children are placed first.
    """
    capacity: dict[Key, int] = {}
    for key, old in prev.items():
        now = current.get(key)
        if now is not None:
            capacity[key] = max(0, now.children - old.children)
    prev_by_pid = {key[0]: key for key in prev}
    pending: list[tuple[int, int, list[Key]]] = []
    for key, gone in prev.items():
        if key in current or gone.total == 0:
            continue
        hops, ancestors = 0, []
        node = gone
        for _ in range(MAX_PARENT_WALK):
            parent = prev_by_pid.get(node.ppid)
            if parent is None or parent == key:
                break
            if parent in capacity:
                ancestors.append(parent)
                if hops == 0:
                    break  # a live parent is the reaper; no one else is
            elif not ancestors:
                hops += 1
            node = prev[parent]
        if ancestors:
            pending.append((hops, gone.total, ancestors))
    absorbed: dict[Key, int] = {}
    for _hops, total, ancestors in sorted(pending, key=lambda item: (item[0], -item[1])):
        for reaper in ancestors:
            if capacity[reaper] >= total:
                capacity[reaper] -= total
                absorbed[reaper] = absorbed.get(reaper, 0) + total
                break
    return absorbed
