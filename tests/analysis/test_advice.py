"""The advice's pure parts: the formulas, the replay without look-ahead, the confidence,
and the regression test of one figure."""

from __future__ import annotations

import pytest

from resmon.analysis import formulas
from resmon.analysis.backtest import replay
from resmon.analysis.formulas import GIB, MIB, Sizing, Usage, ci_sizer, resmon, vpa
from resmon.analysis.recommend import confidence, recommend
from resmon.analysis.regressions import Thresholds, compare_run, compare_value


def runs(peaks_mib, cpu=1.0, days=None):
    return [
        Usage(
            cpu_cores_p95=cpu,
            cpu_cores_peak=cpu * 1.2,
            memory_bytes_peak=p * MIB,
            day=(days[n] if days else f"2026-01-{n % 28 + 1:02d}"),
        )
        for n, p in enumerate(peaks_mib)
    ]


def test_the_replay_never_shows_a_method_the_run_it_is_checked_on():
    history = runs([100, 110, 120, 130, 140, 150])
    seen: list[int] = []

    def spy(given):
        assert isinstance(given, tuple)  # a method cannot add to the history
        seen.append(len(given))
        return Sizing(1.0, 1.0, None, max(u.memory_bytes_peak for u in given))

    result = replay(history, spy)
    assert seen == [3, 4, 5]  # runs 1..k for k = 3, 4, 5; each checked on run k+1
    # Every next run is higher than all before it: none fits a max-of-the-past sizing.
    assert result.steps == 3 and result.memory_checked == 3 and result.memory_fits == 0


def test_a_future_run_changes_no_earlier_recommendation():
    history = runs([500, 520, 510, 530, 515, 525, 505])
    changed = [*history[:5], Usage(memory_bytes_peak=50 * GIB, cpu_cores_p95=64.0), history[6]]
    for k in range(3, 6):
        assert resmon(history[:k]) == resmon(changed[:k])
    # ... and the backtest of run 6 fails only in the changed history.
    assert replay(history, resmon).memory_fit_rate == 1.0
    assert replay(changed, resmon).memory_fits == replay(history, resmon).memory_fits - 1


def test_ci_sizer_takes_the_last_five_runs_and_a_tiered_margin():
    history = runs([2000, 100, 100, 100, 100, 100])  # the 2000 MiB run is 6 runs back
    sizing = ci_sizer(history)
    assert sizing.memory_limit == pytest.approx(130 * MIB)  # 100 MiB + 30 % (under 1 GiB)
    assert formulas.ci_sizer_memory_margin(2 * GIB) == 0.20
    assert formulas.ci_sizer_memory_margin(8 * GIB) == 0.10
    assert sizing.cpu_request == pytest.approx(1.2)


def test_vpa_target_and_upper_bound():
    history = runs([100] * 9 + [200], cpu=1.0, days=[f"2026-01-{d:02d}" for d in range(1, 11)])
    sizing = vpa(history)
    # 10 daily peaks: P90 (index 8) = 100, P95 (index 8) = 100.
    assert sizing.memory_request == pytest.approx(115 * MIB)
    assert sizing.memory_limit == pytest.approx(formulas.round_bytes(100 * MIB * 1.15 * 1.1))
    assert sizing.cpu_request == pytest.approx(1.15)


def test_vpa_memory_counts_one_peak_a_day():
    assert formulas.daily_peaks(runs([100, 300, 200], days=["d1", "d1", "d2"])) == [
        300 * MIB,
        200 * MIB,
    ]


def test_resmon_never_recommends_memory_below_the_largest_peak_and_covers_an_oom_kill():
    history = runs([100, 100, 400, 100, 100])
    assert resmon(history).memory_limit >= 400 * MIB
    killed = [
        *history,
        Usage(memory_bytes_peak=512 * MIB, limit_memory_bytes=512 * MIB, oom_killed=True),
    ]
    assert resmon(killed).memory_limit >= 512 * MIB * 1.25


def test_fewer_than_three_runs_give_no_recommendation():
    answer = recommend(runs([100, 110]))
    assert answer["status"] == "insufficient_runs" and answer["runs_needed"] == 1
    assert "1 more needed" in answer["message"]


def test_confidence_grows_with_runs_days_and_a_small_spread():
    many = runs(
        [1000 + (n % 3) for n in range(25)], days=[f"2026-01-{n + 1:02d}" for n in range(25)]
    )
    assert confidence(many)["level"] == "high"
    assert confidence(many[:10])["level"] == "medium"
    one_day = runs([1000] * 25, days=["2026-01-01"] * 25)
    assert confidence(one_day)["level"] == "low"
    noisy = runs([500, 1500] * 13, days=[f"2026-01-{n % 28 + 1:02d}" for n in range(26)])
    assert confidence(noisy)["level"] != "high"


def test_bursty_or_throttled_cpu_gets_no_cpu_limit():
    bursty = [Usage(cpu_cores_p95=0.5, cpu_cores_peak=3.0, memory_bytes_peak=MIB * 100)] * 5
    answer = recommend(bursty)
    assert answer["cpu_limit_advice"] == "none" and answer["cpu_limit_cores"] is None
    assert "bursts" in answer["cpu_limit_reason"]
    throttled = [Usage(cpu_cores_p95=1, cpu_cores_peak=1.1, cpu_throttled_seconds=4.0)] * 4
    assert "throttled" in recommend(throttled)["cpu_limit_reason"]


def test_a_regression_must_be_both_unusual_and_large():
    steady = [1000.0] * 10
    assert compare_value("cpu_seconds", 1300.0, steady, Thresholds())["regression"]
    assert not compare_value("cpu_seconds", 1100.0, steady, Thresholds())["regression"]  # small
    noisy = [600.0, 1400.0] * 5
    assert not compare_value("cpu_seconds", 1500.0, noisy, Thresholds())["regression"]
    # Under a figure's smallest change that counts: 0.01 -> 0.04 cores is not a regression.
    assert not compare_value("cpu_cores_p95", 0.04, [0.01] * 6, Thresholds())["regression"]
    assert compare_value("cpu_seconds", 1.0, [1.0] * 4, Thresholds()) is None  # too few
    # A lighter run is never a regression.
    assert not compare_value("cpu_seconds", 100.0, steady, Thresholds())["regression"]


def test_a_runs_comparison_covers_the_job_and_its_containers():
    previous = [
        {"memory_bytes_peak": 100.0 * MIB, "containers": {"db": {"memory_bytes_peak": 50.0 * MIB}}}
        for _ in range(6)
    ]
    current = {
        "memory_bytes_peak": 300.0 * MIB,
        "containers": {"db": {"memory_bytes_peak": 50.0 * MIB}, "new": {"cpu_seconds": 9.0}},
    }
    answer = compare_run(current, previous)
    assert answer["regressions"] == 1
    assert [(f["scope"], f["container"], f["regression"]) for f in answer["figures"]] == [
        ("job", None, True),
        ("container", "db", False),
    ]
