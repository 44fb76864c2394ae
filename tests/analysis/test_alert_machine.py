"""The alert state machine on sequences of observations: breach, breach, alert,
recover, for CPU, memory and both; thresholds as users write them."""

from __future__ import annotations

import pytest

from resmon.analysis import alert_machine as m


def run(sequence, n=3):
    """The state after each (cpu_hit, mem_hit) observation."""
    c = m.Counters()
    out = []
    for cpu, mem in sequence:
        c = m.observe(c, cpu, mem, n)
        out.append(c.state)
    return out, c


B, OK, NONE = True, False, None


def test_cpu_breach_breach_alert_then_recover():
    states, c = run([(B, NONE)] * 3 + [(OK, NONE)] * 3)
    assert states == ["normal", "normal", "cpu_alert", "cpu_alert", "cpu_alert", "normal"]
    assert c == m.Counters()


def test_memory_breach_breach_alert_then_recover():
    states, _ = run([(NONE, B)] * 3 + [(NONE, OK)] * 3)
    assert states == ["normal", "normal", "mem_alert", "mem_alert", "mem_alert", "normal"]


def test_both_alert_and_each_recovers_on_its_own():
    seq = [(B, B)] * 3 + [(OK, B)] * 3 + [(OK, OK)] * 3
    states, _ = run(seq)
    assert states == (
        ["normal", "normal", "both_alert"]
        + ["both_alert", "both_alert", "mem_alert"]
        + ["mem_alert", "mem_alert", "normal"]
    )


def test_cpu_then_memory_makes_both():
    states, _ = run([(B, OK), (B, OK), (B, B), (B, B), (B, B)])
    assert states == ["normal", "normal", "cpu_alert", "cpu_alert", "both_alert"]


def test_a_gap_resets_the_count_and_a_breach_resets_the_recovery():
    states, c = run([(B, NONE), (B, NONE), (OK, NONE), (B, NONE), (B, NONE)])
    assert states == ["normal"] * 5 and c.cpu_breaches == 2
    states, c = run([(B, NONE)] * 3 + [(OK, NONE), (OK, NONE), (B, NONE), (OK, NONE), (OK, NONE)])
    assert states[-1] == "cpu_alert" and c.cpu_clear == 2


def test_no_figure_leaves_the_counts_alone():
    states, c = run([(B, NONE), (NONE, NONE), (B, NONE), (NONE, NONE), (B, NONE)])
    assert states[-1] == "cpu_alert" and c.cpu_breaches == 3


def test_one_observation_is_enough_with_consecutive_1():
    states, _ = run([(B, B), (OK, OK)], n=1)
    assert states == ["both_alert", "normal"]


def test_breach_against_a_percent_of_the_limit_or_an_absolute_figure():
    pct = m.parse_mem_threshold("90%")
    assert m.breach(3.6e9, 4e9, pct) is True
    assert m.breach(3.5e9, 4e9, pct) is False
    assert m.breach(3.6e9, None, pct) is None  # no limit: cannot tell
    assert m.breach(None, 4e9, pct) is None
    assert m.breach(1.0, 1.0, None) is None
    cores = m.parse_cpu_threshold("2 cores")
    assert (cores.kind, cores.value) == ("cores", 2.0)
    assert m.breach(2.0, None, cores) is True and m.breach(1.9, 8, cores) is False


@pytest.mark.parametrize(
    ("text", "kind", "value", "shown"),
    [
        ("90%", "percent", 90.0, "90%"),
        (" 87.5 % ", "percent", 87.5, "87.5%"),
        ("3.5Gi", "bytes", 3.5 * 2**30, "3.5Gi"),
        ("3.5GiB", "bytes", 3.5 * 2**30, "3.5Gi"),
        ("512Mi", "bytes", 512 * 2**20, "512Mi"),
        ("2G", "bytes", 2e9, "2G"),
        ("1000", "bytes", 1000.0, "1000"),
    ],
)
def test_memory_thresholds(text, kind, value, shown):
    t = m.parse_mem_threshold(text)
    assert (t.kind, t.value, t.text()) == (kind, value, shown)
    assert m.parse_mem_threshold(t.text()) == t


@pytest.mark.parametrize(
    ("text", "value"), [("2", 2.0), ("1.5 cores", 1.5), ("500m", 0.5), ("1 core", 1.0)]
)
def test_cpu_thresholds(text, value):
    t = m.parse_cpu_threshold(text)
    assert (t.kind, t.value) == ("cores", value)
    assert m.parse_cpu_threshold(t.text()) == t


@pytest.mark.parametrize(
    "text", ["", "%", "0%", "-5%", "nan%", "inf%", "20000%", "lots", "0", "-1", "1e400"]
)
def test_bad_thresholds_say_how_to_write_one(text):
    for parse in (m.parse_cpu_threshold, m.parse_mem_threshold):
        with pytest.raises(m.ThresholdError) as err:
            parse(text)
        assert "threshold" in str(err.value)


@pytest.mark.parametrize("text", ["12345.25 cores", "99.125%", "1234.5Gi", "1.125Mi"])
def test_thresholds_read_back_exactly(text):
    parse = m.parse_cpu_threshold if "cores" in text else m.parse_mem_threshold
    t = parse(text)
    assert t.text() == text and parse(t.text()) == t
