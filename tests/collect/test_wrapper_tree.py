"""The command's tree with resmon as its subreaper, on scripted /proc trees.

An orphan of the tree is reparented to resmon (not init): the sampler keeps it in the
command's container even when it is first seen after its parent exited (an
immediate double fork), and at the command's exit the tree below resmon is what
was left running.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.fakeproc import PF_KTHREAD, FakeProc

from resmon import procfs
from resmon.collect.reaper import LISTED, LeftRunning, Reaper, TreeProcess, descendants
from resmon.collect.sampler import Sampler, SamplerConfig

TICK = procfs.CLK_TCK
A = "0::/groupA\n"
RESMON, COMMAND = 29, 30


def fake(tmp_path: Path) -> FakeProc:
    fp = FakeProc(tmp_path / "proc")
    fp.add(1, "init", ppid=0, cgroup="0::/\n", starttime=1)
    fp.add(2, "kthreadd", ppid=0, cgroup="0::/\n", rss=0, flags=PF_KTHREAD, starttime=1)
    fp.add(RESMON, "resmon", ppid=1, cgroup=A)
    fp.add(COMMAND, "sh", ppid=RESMON, cgroup=A)
    return fp


def sampler(tmp_path: Path, fp: FakeProc) -> Sampler:
    return Sampler(
        SamplerConfig(
            proc_path=str(fp.root),
            cgroup_path=str(tmp_path / "no-cgroupfs"),
            exclude_pids=frozenset({RESMON}),
            command_pid=COMMAND,
            command_name="cmd",
        )
    )


def names(sample, container: str) -> set[str]:
    return {p.name for p in sample.processes if p.container == container}


def test_an_orphan_first_seen_below_resmon_is_the_commands(tmp_path):
    """`(sleep 5 &)`: the subshell exits before any sample sees it; the sleep is first
    seen as resmon's child, and it is the command's, not the cgroup's."""
    fp = fake(tmp_path)
    fp.add(40, "neighbour", ppid=1, cgroup=A)
    s = sampler(tmp_path, fp)
    fp.write(TICK)
    first = s.sample(now=1000.0)
    assert names(first, "cmd") == {"sh"} and names(first, "/groupA") == {"neighbour"}
    fp.advance(1.0, TICK)
    fp.add(50, "sleep", ppid=RESMON, cgroup=A)  # double-forked: reparented to resmon
    fp.add(51, "awk", ppid=50, cgroup=A, utime=40)  # and a child of it
    fp.add(60, "cron-job", ppid=1, cgroup=A)  # an orphan of someone else: init's
    fp.write(TICK)
    second = s.sample(now=1001.0)
    assert names(second, "cmd") == {"sh", "sleep", "awk"}
    assert names(second, "/groupA") == {"neighbour", "cron-job"}
    assert second.containers["cmd"].cpu_seconds == pytest.approx(0.4)
    # resmon itself is in no container.
    assert all(p.pid != RESMON for p in second.processes)


def test_an_orphan_seen_in_the_tree_before_stays_after_reparenting(tmp_path):
    fp = fake(tmp_path)
    fp.add(31, "sh", ppid=COMMAND, cgroup=A)
    fp.add(32, "daemon", ppid=31, cgroup=A)
    s = sampler(tmp_path, fp)
    fp.write(TICK)
    assert names(s.sample(now=1000.0), "cmd") == {"sh", "daemon"}
    fp.advance(1.0, TICK)
    fp.processes.pop(31)
    fp.processes[32].ppid = RESMON
    fp.run(32, 50)
    fp.write(TICK)
    second = s.sample(now=1001.0)
    assert names(second, "cmd") == {"sh", "daemon"}
    assert second.containers["cmd"].cpu_seconds == pytest.approx(0.5)


def test_without_a_command_a_child_of_an_excluded_pid_is_not_moved(tmp_path):
    """Sidecar mode: nothing is the command's; resmon's children keep their cgroup."""
    fp = fake(tmp_path)
    fp.add(50, "sleep", ppid=RESMON, cgroup=A)
    s = Sampler(
        SamplerConfig(
            proc_path=str(fp.root),
            cgroup_path=str(tmp_path / "no-cgroupfs"),
            exclude_pids=frozenset({RESMON}),
        )
    )
    fp.write(TICK)
    assert names(s.sample(now=1000.0), "/groupA") == {"sh", "sleep"}


def tree_at_exit(tmp_path: Path) -> FakeProc:
    """The command is a zombie; its children were reparented to resmon."""
    fp = fake(tmp_path)
    fp.processes[COMMAND].state = "Z"
    fp.add(50, "sleep", ppid=RESMON, cgroup=A, starttime=500)
    fp.add(51, "awk", ppid=50, cgroup=A, utime=150, stime=10, cutime=20, cstime=0)
    fp.add(52, "cc1", ppid=RESMON, cgroup=A, utime=30, state="Z")
    fp.add(53, "python", ppid=51, cgroup=A, utime=7)
    fp.add(60, "other", ppid=1, cgroup=A, utime=999)
    fp.write(TICK)
    return fp


def test_descendants_are_the_tree_below_resmon(tmp_path):
    fp = tree_at_exit(tmp_path)
    found = descendants(RESMON, str(fp.root), skip=(COMMAND,))
    assert [(p.pid, p.name, p.zombie) for p in found] == [
        (50, "sleep", False),
        (51, "awk", False),
        (52, "cc1", True),
        (53, "python", False),
    ]
    awk = found[1]
    assert (
        awk.cpu_seconds == pytest.approx(180 / TICK) and awk.starttime == fp.processes[51].starttime
    )
    # Without the skip, the command (a zombie) is one of them.
    assert COMMAND in {p.pid for p in descendants(RESMON, str(fp.root))}


def test_at_command_exit_counts_every_orphan_and_returns_those_running(tmp_path):
    fp = tree_at_exit(tmp_path)
    reaper = Reaper(COMMAND, str(fp.root), my_pid=RESMON)
    reaper.orphans_cpu_seconds = 0.25  # reaped earlier in the run
    left = reaper.at_command_exit()
    assert [p.pid for p in left.processes] == [50, 51, 53]  # the zombie cc1 is not running
    # Every process of the tree counts, the zombie's final times too.
    assert reaper.orphans_cpu_seconds == pytest.approx(0.25 + (180 + 30 + 7) / TICK)
    out = left.summary()
    assert out["count"] == 3 and out["killed"] is False
    assert out["cpu_seconds"] == pytest.approx((180 + 7) / TICK)
    assert out["processes"][0] == {"pid": 51, "name": "awk", "cpu_seconds": 1.8}


def test_at_command_exit_takes_the_sampled_tree_when_resmon_is_no_subreaper(tmp_path):
    """Orphans that went to init are found by the pids the last sample placed."""
    fp = fake(tmp_path)
    fp.add(50, "sleep", ppid=1, cgroup=A)
    fp.write(TICK)
    reaper = Reaper(COMMAND, str(fp.root), my_pid=RESMON)
    assert reaper.at_command_exit().processes == []
    left = reaper.at_command_exit(also=[50, COMMAND, 77])  # 77 is gone
    assert [p.name for p in left.processes] == ["sleep"]


def test_left_running_lists_the_busiest_and_counts_them_all():
    processes = [TreeProcess(100 + i, i, f"w{i}", float(i), False) for i in range(LISTED + 5)]
    left = LeftRunning(processes)
    out = left.summary()
    assert out["count"] == LISTED + 5 and len(out["processes"]) == LISTED
    assert out["processes"][0]["name"] == f"w{LISTED + 4}"
    assert out["cpu_seconds"] == pytest.approx(sum(range(LISTED + 5)))
    assert left.names().endswith(" and 17 more") and left.names().startswith("w0 (pid 100), ")
