"""The memory peak range is sound for the kind it reports (issue 12's accuracy table).

- ``pss``: ``low`` is only PSS actually read (summed over the processes read
  together), never an RSS high-water mark or ru_maxrss less a guessed shared part;
- ``high`` holds the processes the samples never saw: the tree tracker's sum of the
  high-water marks of processes alive together;
- a forked 300 MiB parent is 300 MiB of PSS even when its children's PSS was not yet
  read at a sample (their estimate is their RSS, 1,200 MiB in all: not a bound).

Accumulator-level fixtures (ContainerSamples as the sampler makes them) and a scripted
/proc tree for the sampler's part.
"""

from __future__ import annotations

from collect.test_memory_peaks import Clock, make, run
from collect.test_memory_summary import container, sample

from resmon.collect.accumulator import RunAccumulator
from resmon.collect.container_run import memory_peak
from resmon.collect.samples import ProcessSample
from resmon.collect.tree_tracker import TreeFigures
from resmon.procfs import PAGE_SIZE as PAGE

MIB = 1 << 20
A = "0::/groupA\n"


def wrapped(samples: list[dict], maxrss: int | None = None, tree: TreeFigures | None = None):
    """A wrapper-mode run of the command container "job" from per-sample figures."""
    acc = RunAccumulator()
    proc = ProcessSample(30, "sh", 1.0, MIB, container="job")
    for t, figures in enumerate(samples):
        acc.add(
            sample(float(t), [container("job", 0.5, **figures)], [proc], command_container="job")
        )
    if tree is not None:
        acc.command_tree(tree)
    acc.command_rusage(1.0, maxrss)
    summary = acc.run_summary()
    assert summary is not None
    box = next(c for c in summary["containers"] if c["name"] == "job")
    return box, summary["job"]


def test_pss_low_is_pss_read_never_ru_maxrss_or_a_high_water_mark():
    """procs-1000 at 1 s: a python wrapper (12.5 MiB RSS, 7 MiB PSS), a shell and short
    awks; the true PSS peak 9.3 MiB, ru_maxrss 12.5 MiB.  The old low, ru_maxrss less
    the smallest shared part seen (11.3), was above the truth."""
    rows = [
        dict(mem=14 * MIB, seconds=1.0, memory_rss_bytes=14 * MIB, memory_pss_bytes=8 * MIB,
             memory_pss_read_bytes=8 * MIB, memory_pss_estimate_bytes=8 * MIB, memory_hwm_bytes=13 * MIB,
             memory_hwm_sum_bytes=15 * MIB),
        dict(mem=15 * MIB, seconds=2.0, memory_rss_bytes=15 * MIB, memory_pss_bytes=9 * MIB,
             memory_pss_read_bytes=3 * MIB, memory_pss_estimate_bytes=9 * MIB, memory_hwm_bytes=13 * MIB,
             memory_hwm_sum_bytes=16 * MIB),
    ]  # fmt: skip
    box, job = wrapped(rows, maxrss=12 * MIB + MIB // 2)
    peak = box["memory_peak"]
    assert peak["kind"] == "pss"
    assert peak["low"] == 8 * MIB  # the PSS read at one sample, not 12.5 MiB of RSS
    assert peak["low"] <= 9.3 * MIB <= peak["high"]
    assert peak["figures"]["ru_maxrss"] == 12 * MIB + MIB // 2  # kept, as a figure
    assert "ru_maxrss_pss" not in peak["figures"]
    assert "largest_process_hwm_pss" not in peak["figures"]
    # Without a tracker the sampled estimate is the headline, said to be one.
    assert peak["headline"] == 9 * MIB and peak["basis"] == "estimate"
    assert box["memory_bytes"]["peak"] == 9 * MIB
    assert job["memory_peak"] == {k: peak[k] for k in ("headline", "low", "high", "basis")}


def test_rss_low_keeps_the_rss_high_water_marks():
    rows = [dict(mem=20 * MIB, seconds=1.0, memory_rss_bytes=20 * MIB,
                 memory_hwm_bytes=30 * MIB, memory_hwm_sum_bytes=40 * MIB)]  # fmt: skip
    box, _ = wrapped(rows, maxrss=35 * MIB)
    peak = box["memory_peak"]
    assert peak["kind"] == "rss"
    assert (peak["low"], peak["basis"], peak["high"]) == (35 * MIB, "ru_maxrss", 40 * MIB)


def test_high_holds_processes_only_the_tracker_saw():
    """pip-wheel at 5 s: the samples saw pip alone (155 MiB); compilers ran between them.
    The tracker's sum of the high-water marks of processes alive together (251 MiB of
    RSS at the true peak) is the high, and its PSS read at one tick the low."""
    rows = [
        dict(mem=150 * MIB, seconds=1.0, memory_rss_bytes=150 * MIB, memory_pss_bytes=140 * MIB,
             memory_pss_read_bytes=140 * MIB, memory_hwm_bytes=155 * MIB,
             memory_hwm_sum_bytes=155 * MIB),
    ]  # fmt: skip
    before, _ = wrapped(rows, maxrss=155 * MIB)
    assert before["memory_peak"]["high"] == 155 * MIB  # the old collapse: 227 MiB outside
    tree = TreeFigures(rss_peak=245 * MIB, hwm_sum=280 * MIB, pss_read=220 * MIB,
                       pss_estimate=225 * MIB, ticks=100)  # fmt: skip
    box, job = wrapped(rows, maxrss=155 * MIB, tree=tree)
    peak = box["memory_peak"]
    assert peak["kind"] == "pss"
    assert peak["low"] == 220 * MIB and peak["high"] == 280 * MIB
    assert peak["low"] <= 227.1 * MIB <= peak["high"]
    assert peak["headline"] == 225 * MIB and peak["basis"] == "estimate"
    assert peak["figures"]["tracked_hwm_sum_alive_together"] == 280 * MIB
    assert peak["figures"]["tracked_rss"] == 245 * MIB
    assert job["memory_peak"]["high"] == 280 * MIB
    # The same run as RSS: the tracker's summed RSS at one tick is a low.
    rss_rows = [{k: v for k, v in rows[0].items() if "pss" not in k}]
    rss_box, _ = wrapped(rss_rows, maxrss=155 * MIB, tree=tree)
    rss_peak = rss_box["memory_peak"]
    assert rss_peak["kind"] == "rss" and rss_peak["basis"] == "tracked"
    assert (rss_peak["low"], rss_peak["high"]) == (245 * MIB, 280 * MIB)


def test_an_estimate_outside_the_range_is_not_the_headline():
    figures = {"sampled_pss": 1200, "sampled_pss_read": 300, "hwm_sum_alive_together": 1200}
    peak = memory_peak("pss", figures)
    # The sampled series counts a never-read process at its RSS: never the headline.
    assert (peak["headline"], peak["basis"]) == (300, "sampled")
    peak = memory_peak("pss", figures | {"sampled_pss_estimate": 1300})
    assert (peak["headline"], peak["basis"]) == (300, "sampled")  # above high: no
    peak = memory_peak("pss", figures | {"sampled_pss_estimate": 320})
    assert (peak["headline"], peak["basis"]) == (320, "estimate")
    # With a tracker, its estimate (every process read since the tree changed) is the
    # one that counts.
    figures |= {"tracked_rss": 1000, "tracked_pss_read": 310, "tracked_pss_estimate": 330}
    peak = memory_peak("pss", figures | {"sampled_pss_estimate": 320})
    assert (peak["headline"], peak["basis"], peak["low"]) == (330, "estimate", 310)


def test_forked_parent_unread_children_are_not_the_pss_peak(tmp_path):
    """fork-300MiB at 1 s: the 3 children were not read at the sample after the fork
    (one read a sample here): the sampled PSS series estimates each at its RSS (1,200
    MiB in all), an upper figure; the range's low is the PSS read, the headline 300 MiB
    of PSS, not the RSS-sized estimate."""
    fp, s = make(tmp_path)
    s._containers.memory.budget_seconds = 0.0  # one PSS read a sample
    clock = Clock(fp, s)
    acc = RunAccumulator()
    fp.add(10, "python", cgroup=A, rss=300 * MIB // PAGE)
    clock.memory[10] = (300 * MIB, 300 * MIB)
    acc.add(clock.sample())
    clock.tick()
    for pid in (11, 12, 13):
        fp.add(pid, "python", ppid=10, cgroup=A, rss=300 * MIB // PAGE)
    for pid in (10, 11, 12, 13):
        clock.memory[pid] = (300 * MIB, 75 * MIB)
    forked = clock.sample()
    acc.add(forked)
    a = forked.containers["/groupA"]
    assert a.memory_pss_bytes is not None and a.memory_pss_bytes >= 900 * MIB
    assert a.memory_pss_read_bytes == 75 * MIB  # the one read, no estimate
    c = run(acc, "/groupA")
    peak = c["memory_peak"]
    assert peak["kind"] == "pss"
    assert peak["low"] == 300 * MIB  # the parent alone, read at the first sample
    assert peak["low"] <= 300 * MIB <= peak["high"]
    assert peak["high"] == 1200 * MIB
    # The children were never read: no clean estimate, the headline is the PSS read.
    assert peak["headline"] == 300 * MIB and peak["basis"] == "sampled"
    assert c["memory_bytes"]["peak"] == 300 * MIB
    assert "sampled_pss_estimate" in peak["figures"]  # the first sample's, 300 MiB
    assert peak["figures"]["sampled_pss_estimate"] == 300 * MIB
    acc.command_container = "/groupA"
    acc.command_tree(TreeFigures(rss_peak=1200 * MIB, hwm_sum=1200 * MIB, pss_read=300 * MIB,
                                 pss_estimate=300 * MIB, ticks=40))  # fmt: skip
    tracked = run(acc, "/groupA")["memory_peak"]
    assert tracked["kind"] == "pss"
    assert tracked["headline"] == 300 * MIB and tracked["basis"] in ("sampled", "tracked")
    assert tracked["low"] <= 300 * MIB <= tracked["high"]
