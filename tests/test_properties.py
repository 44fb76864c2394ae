"""Property tests for every parser of outside input.

What tests/test_procfs.py and tests/test_units.py already cover (a stat line with
names from a small hostile alphabet, meminfo with noise lines, cgroup files built
from well-formed lines, quantity round trips, random short text) is not repeated
here; these add raw bytes, truncation, grammar-built inputs at the edges of the
number range, and the push payload.  The contract checked everywhere: a parser
either returns a well-formed value or raises its own documented error, never
anything else (an IndexError or OverflowError from a parser is a 500 on the
server or a crash of the collector).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import math

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from resmon import cgroupfs, procfs
from resmon.collect.containers import ConfigError, parse_limits, parse_process_map
from resmon.schema import (
    MAX_NUMBER,
    PayloadError,
    format_time,
    loads,
    parse_time,
    validate_push,
)
from resmon.tokens import bearer_from_header, canonical_repository
from resmon.units import parse_cpu, parse_duration, parse_memory

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- /proc/PID/stat -------------------------------------------------------------------

# The kernel's comm: up to 15 bytes of anything but NUL, newlines and ')' included,
# not necessarily UTF-8.  Beyond 15 bytes for good measure.
comm_bytes = st.binary(min_size=0, max_size=40).filter(lambda b: b"\0" not in b)


def stat_line_bytes(pid: int, name: bytes, numbers: list[int]) -> bytes:
    """A /proc/PID/stat line as the kernel writes it: 52 fields, the comm raw."""
    fields = [b"S"] + [str(n).encode() for n in numbers]
    fields += [b"0"] * (50 - len(fields))
    return str(pid).encode() + b" (" + name + b") " + b" ".join(fields) + b"\n"


@PROPS
@given(
    pid=st.integers(1, 2**22),
    name=comm_bytes,
    numbers=st.lists(st.integers(0, 2**63 - 1), min_size=22, max_size=22),
)
def test_stat_any_comm_bytes(pid, name, numbers):
    parsed = procfs.parse_stat(stat_line_bytes(pid, name, numbers))
    assert parsed.pid == pid
    assert parsed.name == name.decode("utf-8", "replace")
    # Field numbers from proc(5): ppid is 4, utime 14, rss 24 (numbers[0] is field 4).
    assert parsed.ppid == numbers[0]
    assert (parsed.utime, parsed.stime) == (numbers[10], numbers[11])
    assert parsed.rss_pages == numbers[20]


@PROPS
@given(
    name=comm_bytes,
    numbers=st.lists(st.integers(0, 2**40), min_size=22, max_size=22),
    cut=st.integers(0, 400),
)
def test_stat_truncated_is_a_value_or_valueerror(name, numbers, cut):
    """A read that raced the process's exit can return a short line."""
    line = stat_line_bytes(42, name, numbers)[:cut]
    try:
        parsed = procfs.parse_stat(line)
    except ValueError:
        return
    assert parsed.pid == 42


@PROPS
@given(data=st.binary(max_size=200), name=comm_bytes)
def test_read_pid_stat_never_raises_on_a_hostile_tree(tmp_path_factory, data, name):
    """Through the filesystem, as the sampler reads it: a value or None."""
    root = tmp_path_factory.mktemp("proc")
    (root / "7").mkdir()
    (root / "7" / "stat").write_bytes(data)
    (root / "8").mkdir()
    (root / "8" / "stat").write_bytes(stat_line_bytes(8, name, [1] * 22))
    assert procfs.read_pid_stat(7, str(root)) is None or isinstance(
        procfs.read_pid_stat(7, str(root)), procfs.PidStat
    )
    eight = procfs.read_pid_stat(8, str(root))
    assert eight is not None and eight.name == name.decode("utf-8", "replace")
    assert procfs.read_pid_stat(9, str(root)) is None  # vanished


# --- /proc/PID/status, statm, stat, meminfo, pressure --------------------------------


@PROPS
@given(st.binary(max_size=400))
def test_system_parsers_on_raw_bytes(data):
    try:
        mem = procfs.parse_meminfo(data)
    except ValueError:
        pass
    else:
        assert 0 <= mem.available_bytes <= mem.total_bytes or mem.total_bytes < 0
    try:
        cpu = procfs.parse_cpu_line(data)
    except ValueError:
        pass
    else:
        assert cpu.total >= cpu.busy or cpu.total < 0
    status = procfs.parse_status(data)
    assert isinstance(status.name, str)
    with contextlib.suppress(ValueError):
        procfs.parse_statm(data)
    for kind, pressure in procfs.parse_pressure(data).items():
        assert kind in ("some", "full") and isinstance(pressure.total_usec, int)


@PROPS
@given(
    total_kb=st.integers(0, 2**50),
    available_kb=st.integers(0, 2**50),
    sep=st.sampled_from([b" ", b"\t", b"   "]),
    unit=st.sampled_from([b" kB", b" KB", b" kb"]),
    crlf=st.booleans(),
)
def test_meminfo_spacing_and_line_endings(total_kb, available_kb, sep, unit, crlf):
    nl = b"\r\n" if crlf else b"\n"
    data = nl.join(
        [
            b"MemTotal:" + sep + str(total_kb).encode() + unit,
            b"MemFree:" + sep + b"1" + unit,
            b"MemAvailable:" + sep + str(available_kb).encode() + unit,
        ]
    )
    mem = procfs.parse_meminfo(data)
    assert mem.total_bytes == total_kb * 1024
    assert mem.available_bytes == min(available_kb, total_kb) * 1024


@PROPS
@given(st.binary(max_size=300))
def test_status_name_unescaping_never_raises(raw):
    raw = raw.replace(b"\n", b"")
    status = procfs.parse_status(b"Name:\t" + raw + b"\nVmRSS:\t 12 kB\n")
    assert status.vm_rss_bytes == 12 * 1024


# --- cgroup files ----------------------------------------------------------------------


@PROPS
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_pid_cgroup_on_anything(data):
    info = procfs.parse_cgroup(data)
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    named = {line.split(":", 2)[2].strip() for line in text.splitlines() if line.count(":") >= 2}
    assert info.path in named | {"", "/"}


@PROPS
@given(st.text(max_size=60))
@example("0 100000")
@example("-1 100000")
@example("100000 0")
@example("max")
@example("9" * 400 + " 1")
def test_cgroup_limit_files_on_anything(text):
    cores = cgroupfs.parse_cpu_max(text)
    assert cores is None or (cores > 0 and math.isfinite(cores))
    limit = cgroupfs.parse_memory_max(text)
    assert limit is None or 0 < limit < cgroupfs.UNLIMITED_THRESHOLD


@PROPS
@given(quota=st.integers(1, 2**40), period=st.integers(1, 2**30))
def test_cpu_max_roundtrip(quota, period):
    assert cgroupfs.parse_cpu_max(f"{quota} {period}\n") == pytest.approx(quota / period)


@PROPS
@given(
    st.dictionaries(
        st.sampled_from(["usage_usec", "nr_periods", "nr_throttled", "throttled_usec", "junk"]),
        st.one_of(st.integers(-(2**63), 2**64), st.text(max_size=10)),
    ),
    st.binary(max_size=100),
)
def test_cgroup_v2_directory_with_hostile_files(tmp_path_factory, keyed, garbage):
    """A container's cgroup directory full of junk gives Nones, never an exception."""
    root = tmp_path_factory.mktemp("cg")
    (root / "cgroup.controllers").write_text("cpu memory\n")
    d = root / "job"
    d.mkdir()
    (d / "cgroup.type").write_text("domain\n")
    (d / "cpu.stat").write_text("".join(f"{k} {v}\n" for k, v in keyed.items()))
    for name in ("cpu.max", "memory.current", "memory.max", "memory.events", "memory.pressure"):
        (d / name).write_bytes(garbage)
    fs = cgroupfs.CgroupFS(str(root))
    reading = cgroupfs.read_container(fs, {cgroupfs.V2: [str(d)]})
    value = keyed.get("usage_usec")
    if isinstance(value, int) and not isinstance(value, bool):
        assert reading.cpu_usage_usec == value
    for number in (reading.memory_bytes, reading.limit_memory_bytes, reading.oom_kills):
        assert number is None or isinstance(number, int)


# --- Kubernetes quantities, CGROUP_* configuration, durations ------------------------

mantissa = st.one_of(
    st.integers(0, 10**30).map(str),
    st.tuples(st.integers(0, 10**9), st.integers(0, 10**9)).map(lambda t: f"{t[0]}.{t[1]}"),
    st.integers(0, 10**9).map(lambda n: f".{n}"),
)
exponent = st.one_of(
    st.just(""),
    st.integers(-500, 500).map(lambda e: f"e{e}"),
    st.integers(-500, 500).map(lambda e: f"E{e:+d}"),
    st.integers(5, 6000).map(lambda n: "e" + "9" * n),
)
memory_suffix = st.sampled_from(
    ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "K", "M", "G", "T", "P", "E", "m"]
)


@PROPS
@given(m=mantissa, e=exponent, suffix=memory_suffix, pad=st.sampled_from(["", " ", "\t"]))
@example(m="1", e="e400", suffix="", pad="")
@example(m="0", e="e400", suffix="Ki", pad="")
def test_quantities_at_the_edges(m, e, suffix, pad):
    text = f"{pad}{m}{e}{suffix}{pad}"
    try:
        size = parse_memory(text)
    except ValueError as exc:
        assert "memory quantity" in str(exc)
    else:
        assert isinstance(size, int) and 0 <= size < 2**63
    cpu_suffix = "m" if suffix == "m" else ""
    try:
        cores = parse_cpu(f"{pad}{m}{e}{cpu_suffix}{pad}")
    except ValueError as exc:
        assert "CPU quantity" in str(exc)
    else:
        assert math.isfinite(cores) and cores >= 0


@PROPS
@given(millicores=st.integers(0, 10**9))
def test_millicores(millicores):
    assert parse_cpu(f"{millicores}m") == pytest.approx(millicores / 1000)


# What JSON on the wire can hold (orjson: 64-bit integers, finite floats).
wire_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# What a Python caller can pass: also huge ints, NaN and infinities.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@PROPS
@given(st.one_of(json_values, st.dictionaries(st.text(max_size=10), json_values, max_size=4)))
def test_cgroup_config_env_only_raises_config_error(obj):
    text = orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS) if _dumpable(obj) else b"{"
    for parse in (parse_limits, parse_process_map):
        with contextlib.suppress(ConfigError):
            parse(text.decode())


@PROPS
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=10),
        st.fixed_dictionaries(
            {},
            optional={
                "cpu": st.one_of(
                    mantissa.map(lambda m: m + "m"), st.floats(), st.integers(-(2**63), 2**63 - 1)
                ),
                "memory": st.one_of(
                    st.tuples(mantissa, exponent, memory_suffix).map("".join),
                    st.integers(-(2**63), 2**63 - 1),
                ),
            },
        ),
        max_size=3,
    )
)
def test_limits_quantities_only_raise_config_error(spec):
    try:
        limits = parse_limits(orjson.dumps(spec).decode())
    except ConfigError:
        return
    for limit in limits.values():
        assert limit.cpu_cores is None or limit.cpu_cores > 0
        assert limit.memory_bytes is None or limit.memory_bytes > 0


def _dumpable(obj) -> bool:
    try:
        orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return False
    return True


duration_unit = st.sampled_from(["ns", "us", "µs", "ms", "s", "m", "h"])
UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


@PROPS
@given(st.lists(st.tuples(st.integers(0, 10**6), duration_unit), min_size=1, max_size=5))
def test_go_durations_sum_their_parts(parts):
    text = "".join(f"{n}{unit}" for n, unit in parts)
    expected = sum(n * UNIT_SECONDS[unit] for n, unit in parts)
    assert parse_duration(text) == pytest.approx(expected)


@PROPS
@given(
    st.lists(
        st.one_of(
            duration_unit, st.from_regex(r"[0-9.eE+-]{1,8}", fullmatch=True), st.just("9" * 400)
        ),
        max_size=6,
    )
)
def test_durations_from_pieces_raise_only_valueerror(pieces):
    try:
        seconds = parse_duration("".join(pieces))
    except ValueError:
        return
    assert math.isfinite(seconds) and seconds >= 0


# --- bearer tokens ----------------------------------------------------------------------


@PROPS
@given(st.one_of(st.none(), st.text(max_size=80)))
def test_bearer_from_header(value):
    token = bearer_from_header(value)
    if token is not None:
        assert token == token.strip() and token
        assert value is not None and value.strip().lower().startswith("bearer")


# --- the push payload ----------------------------------------------------------------------

scope_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x7f"),
    max_size=30,
).filter(lambda s: not any(ord(c) < 0x20 for c in s))
number = st.one_of(
    st.integers(0, 2**53), st.floats(0, MAX_NUMBER, allow_nan=False, allow_infinity=False)
)
stat = st.fixed_dictionaries({k: number for k in ("peak", "p99", "p95", "p75", "p50", "avg")})
rfc3339 = st.datetimes(
    min_value=datetime.datetime(1970, 1, 1),
    max_value=datetime.datetime(2200, 1, 1),
    timezones=st.just(datetime.UTC),
).map(format_time)
process = st.fixed_dictionaries(
    {
        "pid": st.integers(0, 2**22),
        "name": st.text(max_size=15),
        "peak_cpu_percent": number,
        "peak_mem_rss_bytes": number,
    }
)
container = st.fixed_dictionaries(
    {"name": scope_text.filter(lambda s: s != ""), "cpu_cores": stat, "memory_bytes": stat},
    optional={
        "limit_cpu_cores": number,
        "limit_memory_bytes": number,
        "oom_kills": st.integers(0, 100),
    },
)
valid_payload = st.fixed_dictionaries(
    {
        "execution": st.fixed_dictionaries(
            {
                "organization": scope_text,
                "repository": scope_text,
                "workflow": scope_text,
                "job": scope_text,
                "run_id": scope_text.filter(lambda s: s.strip() != ""),
            },
            optional={"run_attempt": scope_text},
        ),
        "run_summary": st.fixed_dictionaries(
            {},
            optional={
                "start_time": rfc3339,
                "end_time": rfc3339,
                "duration_seconds": number,
                "sample_count": st.integers(0, 10**9),
                "cpu_total_percent": stat,
                "mem_used_bytes": stat,
                "mem_used_percent": stat,
                "top_cpu_processes": st.lists(process, max_size=3),
                "top_mem_processes": st.lists(process, max_size=3),
                "containers": st.lists(container, max_size=3),
                "extra_field_from_a_newer_peer": wire_json,
            },
        ),
    }
)


@PROPS
@given(valid_payload)
def test_valid_payloads_roundtrip(payload):
    body = orjson.dumps(payload)
    parsed = validate_push(loads(body))
    e = payload["execution"]
    assert parsed.scope == (
        e["organization"],
        canonical_repository(e["organization"], e["repository"]),
        e["workflow"],
        e["job"],
    )
    assert parsed.execution["run_id"] == e["run_id"]
    # The summary is kept as sent, unknown fields included, and survives storage's
    # JSON round trip unchanged.
    assert parsed.run_summary == payload["run_summary"]
    assert orjson.loads(orjson.dumps(parsed.run_summary)) == payload["run_summary"]
    # Validation is idempotent: a canonical payload validates to itself.
    again = validate_push({"execution": parsed.execution, "run_summary": parsed.run_summary})
    assert again == parsed


def _paths(obj, prefix=()):
    """Every (path) into a JSON tree, the root included."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _replace(obj, path, new):
    if not path:
        return new
    obj = copy.deepcopy(obj)
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return obj


hostile_leaf = st.one_of(
    json_values,
    st.sampled_from(
        ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59", "2026-01-01T00:00:00", ""]
    ),
    st.sampled_from([2**64, -1, 1e308, -0.0, 2.0**62 + 1]),
)


@PROPS
@given(payload=valid_payload, data=st.data(), new=hostile_leaf)
def test_any_corruption_raises_only_payload_error(payload, data, new):
    """Replace any node of a valid payload with any JSON value (a huge int, NaN, a
    list, an extreme time...): a validated payload or a PayloadError, nothing else."""
    path = data.draw(st.sampled_from(list(_paths(payload))))
    corrupted = _replace(payload, path, new)
    try:
        parsed = validate_push(corrupted)
    except PayloadError as exc:
        assert str(exc)
        return
    assert parsed.execution["run_id"].strip()


@PROPS
@given(st.binary(max_size=300))
def test_raw_bodies_raise_only_payload_error(body):
    with contextlib.suppress(PayloadError):
        validate_push(loads(body))


@PROPS
@given(
    st.datetimes(
        timezones=st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
            lambda minutes: datetime.timezone(datetime.timedelta(minutes=minutes))
        )
    )
)
def test_parse_time_any_aware_datetime(dt):
    # Offsets of whole minutes, as RFC 3339 writes them (no seconds, no DST folds).
    try:
        parsed = parse_time(dt.isoformat())
    except ValueError:
        # Only when the instant is outside what a UTC datetime can hold.
        assert dt.year in (1, 9999)
        return
    assert parsed == dt


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00.1234567891+14:00",
    ],
)
def test_times_outside_utc_range_are_valueerror(text):
    with pytest.raises(ValueError):
        parse_time(text)
    payload = {"execution": {"run_id": "1"}, "run_summary": {"start_time": text}}
    with pytest.raises(PayloadError, match="start_time"):
        validate_push(payload)


def test_huge_python_numbers_are_payload_errors():
    """validate_push is library API too: ints orjson never produces must not overflow."""
    for summary in ({"duration_seconds": 10**400}, {"sample_count": 10**400}):
        with pytest.raises(PayloadError, match="too large"):
            validate_push({"execution": {"run_id": "1"}, "run_summary": summary})
    with pytest.raises(PayloadError):
        validate_push({"execution": {"run_id": 10**5000}, "run_summary": {}})
