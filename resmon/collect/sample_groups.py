"""Which group each process belongs to, and which container each group is.

A process belongs, for its whole life (keyed by ``(pid, starttime)``), to one
*group*: its identifying cgroup path (see :func:`resmon.procfs.parse_cgroup`), or
in wrapper mode the command's tree (``command_pid`` and every process whose parent
chain reaches it when first seen, or reaches resmon through another process than the
command: resmon is the tree's child subreaper, so an orphan of the tree, a daemon or
an immediate double fork, is reparented to it; see :mod:`resmon.collect.reaper`).
A *container* is the groups that carry one name: a group's name comes from
``CGROUP_PROCESS_MAP`` once a process with a mapped name is seen in it (and stays),
else from the path (:func:`resmon.collect.containers.container_name_for_path`).  ``exclude_pids`` (resmon
itself) belong to no group and appear nowhere.
"""

from __future__ import annotations

import logging

from resmon import procfs
from resmon.cgroupfs import HIERARCHIES, V2
from resmon.collect.containers import container_name_for_path
from resmon.collect.cpu_credit import MAX_PARENT_WALK
from resmon.collect.sample_state import (
    COMMAND_GROUP,
    EXCLUDED,
    Key,
    Paths,
    ProcessState,
    SampleWork,
)
from resmon.procfs import CgroupInfo, PidStat

# The sampler's logger: diagnostics name it, whichever of its modules logs.
log = logging.getLogger("resmon.collect.sampler")

_UNKNOWN_CGROUP = CgroupInfo(path="", unified=None, v1={})
_CGROUP_CACHE_SIZE = 4096


def _hierarchy_paths(info: CgroupInfo) -> Paths:
    return tuple(info.unified if h == V2 else info.v1.get(h) for h in HIERARCHIES)


class Grouping:
    """Places each process not seen before in its group, and names the groups."""

    def __init__(
        self,
        proc_path: str,
        process_map: dict[str, str],
        exclude_pids: frozenset[int],
        command_pid: int | None,
        command_name: str,
    ) -> None:
        self.proc_path = proc_path
        self.process_map = process_map
        self.exclude_pids = exclude_pids
        self.command_pid = command_pid
        self.command_name = command_name
        self._map_prefixes = self._truncated_names(process_map)
        # /proc/PID/cgroup content -> (parsed, paths per hierarchy), shared by processes.
        self._cgroups: dict[bytes | None, tuple[CgroupInfo, Paths]] = {}
        # Groups named by a mapped process seen in them (for good).
        self._path_names: dict[str, str] = {}

    def place_new(self, work: SampleWork, prev: dict[Key, ProcessState]) -> None:
        """Give each process not seen before (``work.new_stats``) its state and group,
        and leave it to the accounting step."""
        current, new_stats = work.current, work.new_stats
        if not new_stats:
            return
        # New processes last: the command-tree walk then knows every older process.
        stats = {key: state.stat for key, state in current.items()}
        stats.update(new_stats)
        by_pid = {key[0]: key for key in stats}
        for key, st in new_stats.items():
            current[key] = self._new_state(st, stats, by_pid, prev, current)
            work.slow.append(key)

    def names(self, group_members: dict[str, list[ProcessState]]) -> dict[str, str]:
        """Each group's container name."""
        names: dict[str, str] = {}
        process_map = self.process_map
        for group, members in group_members.items():
            if group == COMMAND_GROUP:
                names[group] = self.command_name
                continue
            if group not in self._path_names and (process_map or self._map_prefixes):
                for state in members:
                    st = state.stat
                    container = process_map.get(st.name) or self._map_prefixes.get(st.name)
                    if container:
                        self._path_names[group] = container
                        log.debug(
                            "cgroup %s is container %s (process %s)", group, container, st.name
                        )
                        break
            names[group] = self._path_names.get(group) or container_name_for_path(group)
        return names

    @staticmethod
    def _truncated_names(process_map: dict[str, str]) -> dict[str, str]:
        # The kernel's comm is at most 15 characters: "resource-collector" shows as
        # "resource-collec"; let the full name in the map match it.
        return {name[:15]: container for name, container in process_map.items() if len(name) > 15}

    def _new_state(
        self,
        st: PidStat,
        stats: dict[Key, PidStat],
        by_pid: dict[int, Key],
        prev: dict[Key, ProcessState],
        current: dict[Key, ProcessState],
    ) -> ProcessState:
        # resmon's own cgroup is read too: a cgroup holding resmon is not a container's own.
        data = procfs.read_pid_cgroup_bytes(st.pid, self.proc_path)
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
        if st.pid in self.exclude_pids:
            return ProcessState(EXCLUDED, cgroup, st, paths)
        group = cgroup.path
        if self.command_pid is not None and self._in_command_tree(st, stats, by_pid, prev, current):
            group = COMMAND_GROUP
        return ProcessState(group, cgroup, st, paths)

    def _in_command_tree(
        self,
        st: PidStat,
        stats: dict[Key, PidStat],
        by_pid: dict[int, Key],
        prev: dict[Key, ProcessState],
        current: dict[Key, ProcessState],
    ) -> bool:
        """Whether a newly seen process descends from the command (membership is then sticky).

        resmon (``exclude_pids``) starts nothing but the command, and is its tree's child
        subreaper: any other process whose chain reaches resmon is an orphan of the tree.
        """
        command_pid = self.command_pid
        exclude = self.exclude_pids
        pid = st.pid
        for _ in range(MAX_PARENT_WALK):
            if pid == command_pid:
                return True
            if pid in exclude:
                return pid != st.pid
            if pid <= 1:
                return False
            key = by_pid.get(pid)
            if key is None:
                return False
            if pid != st.pid:
                known = prev.get(key) or current.get(key)
                if known is not None:
                    return known.group == COMMAND_GROUP
            pid = stats[key].ppid
        return False
