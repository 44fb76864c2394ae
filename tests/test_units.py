import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resmon.units import parse_cpu, parse_duration, parse_memory

CPU = {
    "500m": 0.5,
    "100m": 0.1,
    "2000m": 2.0,
    "1m": 0.001,
    "2": 2.0,
    "1.5": 1.5,
    " 2 ": 2.0,
    "1e3m": 1.0,
    "0.25": 0.25,
}
MEMORY = {
    "1Ki": 1024,
    "1Mi": 1048576,
    "1Gi": 1073741824,
    "1Ti": 1099511627776,
    "512Mi": 536870912,
    "2Gi": 2147483648,
    "1K": 1000,
    "1k": 1000,
    "1M": 1000000,
    "1G": 1000000000,
    "1T": 1000000000000,
    "1024": 1024,
    "1073741824": 1073741824,
    " 1Gi ": 1073741824,
    "1e3": 1000,
    "1Pi": 1024**5,
    "1Ei": 1024**6,
    "1P": 1000**5,
    "1E": 1000**6,
    "1.5Gi": 1610612736,
}


@pytest.mark.parametrize("text,cores", CPU.items())
def test_cpu_quantities(text, cores):
    assert parse_cpu(text) == pytest.approx(cores)


@pytest.mark.parametrize("text,size", MEMORY.items())
def test_memory_quantities(text, size):
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["", "abc", "1x", "-1", "1Gi2", "m", "1.2.3"])
def test_bad_quantities_name_the_value(text):
    with pytest.raises(ValueError, match="invalid"):
        parse_cpu(text)
    with pytest.raises(ValueError, match="invalid"):
        parse_memory(text)


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("2s", 2.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("1.5", 1.5),
        ("1h", 3600.0),
        ("10", 10.0),
        ("250us", 0.00025),
        ("1m", 60.0),
        ("0.5s", 0.5),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "2x", "1s2", "-1s", "nan", "inf", "2 s"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.text(max_size=30))
def test_parsers_never_raise_anything_but_valueerror(text):
    for parse in (parse_cpu, parse_memory, parse_duration):
        with contextlib.suppress(ValueError):
            parse(text)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["", "Ki", "Mi", "Gi", "k", "M"]))
def test_memory_roundtrip(n, suffix):
    factor = {"": 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "k": 1000, "M": 10**6}[suffix]
    assert parse_memory(f"{n}{suffix}") == n * factor
