"""A child's CPU time counted once, whichever way its reap falls between two stat reads
of one sample (the parent read before the reap and the child gone; the child read
before the reap and the parent after), scripted exactly with ``Races``
(tests/fixtures/cpu_sampling.py)."""

from __future__ import annotations

import random

import pytest
from fixtures.cpu_sampling import TICK, Clock, Races, make
from hypothesis import given, settings
from hypothesis import strategies as st

A = "0::/groupA\n"
B = "0::/groupB\n"


# --- a child's time counted once, whichever way its reap falls between two reads --------


def _parent_and_child(tmp_path, monkeypatch, child_pid: int, child_group: str = A):
    fp, s = make(tmp_path)
    fp.add(10, "python", cgroup=A, starttime=1)
    fp.add(child_pid, "worker", ppid=10, cgroup=child_group, starttime=2)
    races = Races(monkeypatch, fp)
    clock = Clock(fp, s)
    clock.sample()
    clock.tick(0.1)
    fp.run(10, 2)
    fp.run(child_pid, 8)
    second = clock.sample()
    assert clock.total() == pytest.approx(0.10), second
    clock.tick(0.1)
    fp.run(child_pid, 5)
    return fp, clock, races


@pytest.mark.parametrize("child_group", [A, B])
def test_parent_read_before_the_reap_and_child_gone_counts_the_child_once(
    tmp_path, monkeypatch, child_group
):
    """Ordering (a): the parent's stat is read, then the child exits and is reaped, so
    its stat is gone when its turn comes; the parent's growth shows a sample later."""
    fp, clock, races = _parent_and_child(tmp_path, monkeypatch, 11, child_group)
    races.order = [1, 2, 10, 11]
    races.reap_before_reading(11, read=11)
    third = clock.sample()
    assert 11 not in {p.pid for p in third.processes}
    assert fp.processes[10].cutime == 13
    clock.tick(0.1)
    fp.run(10, 1)
    fourth = clock.sample()
    truth = (2 + 8 + 5 + 1) / TICK
    assert clock.total() == pytest.approx(truth)
    if child_group == B:
        # The child's group keeps what it was seen to use; the tail went to the parent's.
        assert fourth.containers["/groupA"].cpu_seconds == pytest.approx((2 + 5 + 1) / TICK)
    else:
        assert fourth.containers["/groupA"].cpu_seconds == pytest.approx(truth)
    clock.tick(0.1)
    clock.sample()
    assert clock.total() == pytest.approx(truth)


@pytest.mark.parametrize("zombie", [False, True])
def test_child_read_before_the_reap_and_parent_after_counts_the_child_once(
    tmp_path, monkeypatch, zombie
):
    """Ordering (b): the child (read first: a lower PID after wrap-around) is read alive
    or as a zombie, then reaped, then the parent is read with its cutime grown."""
    fp, clock, races = _parent_and_child(tmp_path, monkeypatch, 7)
    if zombie:
        fp.processes[7].state = "Z"
        fp.processes[7].rss = 0
    races.order = [1, 2, 7, 10]
    races.reap_before_reading(7, read=10)
    third = clock.sample()
    assert 7 in {p.pid for p in third.processes}  # read before its reap
    assert fp.processes[10].cutime == 13
    truth = (2 + 8 + 5) / TICK
    assert clock.total() == pytest.approx(truth)
    clock.tick(0.1)
    fp.run(10, 1)
    clock.sample()
    assert clock.total() == pytest.approx(truth + 1 / TICK)


def test_child_read_before_its_parent_and_still_there_is_not_taken(tmp_path, monkeypatch):
    """The parent's growth comes from a child never seen: a child read before the parent
    but still alive was not reaped, and keeps its time."""
    fp, clock, races = _parent_and_child(tmp_path, monkeypatch, 7)
    races.order = [1, 2, 7, 10]
    fp.add(12, "short", ppid=10, cgroup=A)
    fp.run(12, 20)
    fp.exit_and_reap(12)
    clock.sample()
    truth = (2 + 8 + 5 + 20) / TICK
    assert clock.total() == pytest.approx(truth)
    clock.tick(0.1)
    fp.run(7, 3)
    fp.exit_and_reap(7)
    clock.sample()
    assert clock.total() == pytest.approx(truth + 3 / TICK)


def test_parent_reaped_too_before_its_growth_was_seen(tmp_path, monkeypatch):
    """The parent read before it reaps the child; then the parent exits and its own
    parent reaps it: the child's tail reaches the grandparent through the parent."""
    fp, s = make(tmp_path)
    fp.add(9, "make", cgroup=A, starttime=1)
    fp.add(10, "sh", ppid=9, cgroup=A, starttime=1)
    fp.add(11, "cc1", ppid=10, cgroup=A, starttime=2)
    races = Races(monkeypatch, fp)
    clock = Clock(fp, s)
    clock.sample()
    clock.tick(0.1)
    fp.run(11, 9)
    clock.sample()
    clock.tick(0.1)
    fp.run(11, 4)
    races.order = [1, 2, 9, 10, 11]
    races.reap_before_reading(11, read=11)
    clock.sample()
    clock.tick(0.1)
    fp.run(10, 1)
    fp.exit_and_reap(10)
    clock.sample()
    assert fp.processes[9].cutime == 14
    assert clock.total() == pytest.approx(14 / TICK)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(5, 30))
def test_random_churn_with_reaps_between_reads_is_exact(tmp_path_factory, seed, steps):
    """Random fork/run/exit/reap, reads in a random order, and in a sample one reap of a
    process seen before falling between two of its stat reads (any two): every
    container's cpu_seconds never decreases, and the total is exactly the CPU run (every
    reaper is a visible ancestor here).  (Cascades of several such reaps inside one
    sample's reads are covered in part: see resmon.collect.cpu_credit.)"""
    rng = random.Random(seed)
    with pytest.MonkeyPatch.context() as monkeypatch:
        fp, s = make(tmp_path_factory.mktemp("races"))
        races = Races(monkeypatch, fp)
        groups = ["0::/g1\n", "0::/g2\n", "0::/g3\n"]
        next_pid = 10
        for cg in groups:
            fp.add(next_pid, "root", ppid=1, cgroup=cg)
            next_pid += 1
        clock = Clock(fp, s)
        clock.sample()
        seen = set(fp.processes)
        truth = 0
        last: dict[str, float] = {}
        for _ in range(steps):
            clock.tick(0.1)
            for _ in range(rng.randint(0, 8)):
                live = [p for p in fp.processes.values() if p.pid > 2]
                op = rng.random()
                if op < 0.35 or not live:
                    parent = rng.choice(live) if live else fp.processes[1]
                    cg = parent.cgroup if rng.random() < 0.9 else rng.choice(groups)
                    fp.add(next_pid, "p", ppid=parent.pid, cgroup=cg)
                    next_pid += 1
                elif op < 0.75:
                    ticks = rng.randint(0, 30)
                    fp.run(rng.choice(live).pid, ticks)
                    truth += ticks
                elif op < 0.85:
                    fp.exit_and_reap(rng.choice(live).pid)
                elif not races.before and seen.intersection(p.pid for p in live):
                    reaped = rng.choice(sorted(seen.intersection(p.pid for p in live)))
                    races.reap_before_reading(reaped, rng.choice(list(fp.processes)))
            pids = list(fp.processes)
            rng.shuffle(pids)
            races.order = pids
            if rng.random() < 0.7:
                sample = clock.sample()
                seen = set(fp.processes)
                for name, c in sample.containers.items():
                    assert c.cpu_seconds >= last.get(name, 0.0) - 1e-9, name
                    assert c.cpu_cores is None or c.cpu_cores >= 0
                    last[name] = c.cpu_seconds
            races.leftover()
        for _ in range(2):  # a reap of the last sample's reads shows in the next one
            clock.tick(0.1)
            sample = clock.sample()
            for name, c in sample.containers.items():
                last[name] = c.cpu_seconds
        assert sum(last.values()) == pytest.approx(truth / TICK)
