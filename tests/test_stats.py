from hypothesis import given
from hypothesis import strategies as st

from resmon.stats import Series, percentile, summarize


def test_contract_vector_1_to_20():
    assert summarize(range(1, 21)) == {
        "peak": 20,
        "p99": 19,
        "p95": 19,
        "p75": 15,
        "p50": 10,
        "avg": 10.5,
    }


def test_no_values_no_summary():
    assert summarize([]) is None
    assert Series().summary() is None


def test_one_value_is_every_statistic():
    assert set(summarize([3.5]).values()) == {3.5}


def test_order_does_not_matter():
    assert summarize([5, 1, 4, 2, 3]) == summarize([1, 2, 3, 4, 5])


def test_series_is_compact_and_summarises():
    s = Series()
    for v in range(1, 21):
        s.add(float(v))
    assert len(s) == 20
    assert s.values.itemsize == 8
    assert s.summary()["p75"] == 15.0


@given(st.lists(st.floats(min_value=0, max_value=1e12), min_size=1))
def test_statistics_are_ordered(values):
    s = summarize(values)
    assert s["p50"] <= s["p75"] <= s["p95"] <= s["p99"] <= s["peak"] == max(values)
    assert min(values) <= s["avg"] * (1 + 1e-12) and s["avg"] <= max(values) * (1 + 1e-12)
    assert percentile(sorted(values), 0.0) == min(values)
