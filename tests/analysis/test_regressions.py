"""The push-time regression tests on their own: the single run's and the shift's (a step
that stays, flagged once, at the run where the evidence becomes enough)."""

from __future__ import annotations

import random

import pytest

from resmon.analysis.regressions import Thresholds, compare_run, compare_value, find_shift
from resmon.analysis.robust import median_sd, qn_scale

MIB = 1024 * 1024
# A job whose memory peak spreads +-20 % (MiB), oldest first.
DEFAULT = Thresholds()
SPREAD = [800, 1400, 1000, 1200, 900, 1300, 1100, 1050, 1150, 950]


def verdicts(history, pushed, metric="memory_bytes_peak", thresholds=DEFAULT):
    """Each pushed value's comparison against everything before it, newest first."""
    runs, out = list(history), []
    for value in pushed:
        out.append(compare_value(metric, value * MIB, [v * MIB for v in runs[::-1]], thresholds))
        runs.append(value)
    return out


def test_a_step_that_stays_is_flagged_once_where_the_evidence_is_enough():
    first, second, third, fourth = verdicts(SPREAD, [1700, 1700, 1700, 1700])
    # +58 %, but 3.4 robust standard deviations: not enough for one run alone (3.5) ...
    assert not first["regression"] and first["test"] is None and first["runs"] is None
    assert first["robust_score"] == pytest.approx(3.37, abs=0.01)
    # ... and two such runs are: the shift test flags the second, over 2 runs.
    assert second["regression"] and second["test"] == "shift" and second["runs"] == 2
    shift = second["shift"]
    assert shift["runs"] == 2 and shift["baseline_runs"] == len(SPREAD)
    assert shift["median_before"] == 1075 * MIB and shift["median_recent"] == 1700 * MIB
    assert shift["change"] == pytest.approx(1700 / 1075 - 1)
    assert shift["score"] > Thresholds().shift
    # The figure's own fields stay the run against all the runs before it.
    assert second["median"] == 1100 * MIB and second["baseline_runs"] == len(SPREAD) + 1
    # The same step is not flagged again at the runs after it.
    assert not third["regression"] and not fourth["regression"]


def test_a_run_flagged_alone_is_single_and_its_step_not_flagged_again_by_the_shift():
    single, after = verdicts([1000] * 8 + [1010, 990], [1500, 1500])
    assert single["regression"] and (single["test"], single["runs"]) == ("single", 1)
    assert single["shift"] is None
    # The second run at the new level: still over the median, so the single test flags
    # it too (as it did before the shift test); the shift test adds nothing.
    assert after["test"] == "single"
    previous = [v * MIB for v in [1500, 990, 1010] + [1000] * 8]
    assert find_shift("memory_bytes_peak", 1500 * MIB, previous, Thresholds()) is None


def test_a_run_back_at_the_old_level_is_not_flagged_after_a_short_excursion():
    # Two high runs the shift test did not find enough, then an ordinary one: the
    # median of the last three is still high, but this run is not a regression.
    for pushed in ([1500, 1450, 1000], [1450, 1500, 1075]):
        *_, last = verdicts(SPREAD, pushed)
        assert not last["regression"]


def test_the_shift_needs_the_relative_change_and_a_baseline_before_it():
    # A tight job: +15 % is many standard deviations but under the 20 % asked for.
    tight = [1000, 1002, 998, 1001, 999, 1000, 1003, 997]
    assert not any(v["regression"] for v in verdicts(tight, [1150] * 5))
    # Five runs before the last m are needed: 6 earlier runs allow m = 2 only.
    five = [1900.0, 800.0, 1400.0, 1000.0, 1200.0, 900.0]
    lenient = Thresholds(shift=2.0)
    assert find_shift("cpu_seconds", 1900.0, five, lenient)["runs"] == 2
    assert find_shift("cpu_seconds", 1900.0, five[:5], lenient) is None
    # shift_runs below 2: no shift test.
    off = Thresholds(shift_runs=1)
    assert not any(v["regression"] for v in verdicts(SPREAD, [1700] * 4, thresholds=off))


def test_a_lighter_step_and_noise_are_not_regressions():
    assert not any(v["regression"] for v in verdicts(SPREAD, [600] * 5))
    rng = random.Random(3)
    history = [1000 * rng.gauss(1, 0.1) for _ in range(20)]
    pushed = [1000 * rng.gauss(1, 0.1) for _ in range(40)]
    flags = [v["regression"] for v in verdicts(history, pushed)]
    assert sum(flags) <= 1


def test_the_order_of_the_previous_runs_matters_newest_first():
    previous = [1700 * MIB] + [v * MIB for v in SPREAD[::-1]]
    assert compare_value("memory_bytes_peak", 1700 * MIB, previous, Thresholds())["regression"]
    # The same runs with the high one oldest: no step just before this run.
    reordered = previous[1:] + previous[:1]
    assert not compare_value("memory_bytes_peak", 1700 * MIB, reordered, Thresholds())["regression"]


def test_a_runs_comparison_answers_the_thresholds_and_each_figures_test():
    previous = [{"memory_bytes_peak": v * MIB, "containers": {}} for v in [1700, *SPREAD[::-1]]]
    answer = compare_run({"memory_bytes_peak": 1700 * MIB}, previous)
    assert answer["thresholds"] == {"mad": 3.5, "change": 0.2, "shift": 3.0, "shift_runs": 5}
    (figure,) = answer["figures"]
    assert answer["regressions"] == 1 and (figure["test"], figure["runs"]) == ("shift", 2)


def test_qn_and_the_spread_of_a_median():
    assert qn_scale([1.0]) == 0.0 and qn_scale([5.0] * 12) == 0.0
    rng = random.Random(1)
    for n in (5, 8, 15, 16):  # about unbiased, small samples too
        draws = [qn_scale([rng.gauss(0, 2) for _ in range(n)]) for _ in range(3000)]
        assert sum(draws) / len(draws) == pytest.approx(2.0, rel=0.06), n
    assert median_sd(1) == 1.0 and median_sd(2) == pytest.approx(2**-0.5, abs=0.001)
    assert median_sd(100) == pytest.approx(0.12533)
    with pytest.raises(ValueError):
        median_sd(0)
