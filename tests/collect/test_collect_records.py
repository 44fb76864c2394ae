"""Record formatting and payload fitting in the collector, on plain dicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson

from resmon import schema
from resmon.collect.push import fit_summary
from resmon.collect.records import format_record, format_time


def test_json_record_is_one_line_with_time_level_msg():
    line = format_record(
        {"time": "2026-01-01T00:00:00Z", "level": "INFO", "msg": "run_summary", "a": 1}, "json"
    )
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert orjson.loads(line) == {
        "time": "2026-01-01T00:00:00Z",
        "level": "INFO",
        "msg": "run_summary",
        "a": 1,
    }


def test_text_record_flattens_containers_by_name_and_quotes_spaces():
    record = {
        "time": "t",
        "level": "INFO",
        "msg": "metrics_collected",
        "cpu_total_percent": 12.5,
        "mem_used_bytes": 1024.0,
        "containers": [
            {"name": "runner", "cpu_cores": 1.25, "memory_bytes": 5, "limit_cpu_cores": None}
        ],
        "top_cpu_processes": [{"pid": 7, "name": "a b", "cpu_percent": 99.0, "rss_bytes": 1048576}],
        "timeline": [{}, {}],
        "pressure": {"cpu": {}},
    }
    line = format_record(record, "text").decode()
    assert line == (
        "time=t level=INFO msg=metrics_collected cpu_total_percent=12.5 mem_used_bytes=1024 "
        "containers.runner.cpu_cores=1.25 containers.runner.memory_bytes=5 "
        'top_cpu_processes="a b[7]:99.0%/1.0MiB" timeline_points=2\n'
    )


def test_fit_summary_thins_the_timeline_then_drops_it():
    point = {
        "t": 0.0,
        "cpu_percent": 1.0,
        "containers": {f"c{i}": {"cpu_cores": 0.5, "memory_bytes": 10**9} for i in range(20)},
    }
    summary = {"sample_count": 300, "timeline": [dict(point, t=float(i)) for i in range(300)]}
    full = len(orjson.dumps(summary))
    assert fit_summary(summary, full) is summary
    fitted = fit_summary(summary, full // 3)
    assert len(orjson.dumps(fitted)) <= full // 3
    assert 2 < len(fitted["timeline"]) < 300
    assert fitted["timeline"][0]["t"] == 0.0 and fitted["timeline"][-1]["t"] == 299.0
    assert len(summary["timeline"]) == 300  # the printed summary is left whole
    assert "timeline" not in fit_summary(summary, 100)


def test_text_go_process_lists_are_written_as_slog_writes_a_list_of_maps():
    record = {
        "msg": "metrics_collected",
        "top_cpu": [{"pid": 7, "name": 'a="b"', "cpu_percent": 2.0}],
        "top_memory": [],
        "cgroups": {"x": {"cpu": {"used_cores": 0.5}}},
    }
    line = format_record(record, "text").decode()
    assert line == (
        'msg=metrics_collected top_cpu="[map[cpu_percent:2 name:a=\\"b\\" pid:7]]" '
        "top_memory=[] cgroups.x.cpu.used_cores=0.5\n"
    )


def test_the_collectors_times_are_the_wires():
    # records.format_time keeps resmon.schema out of a sampling sidecar; same text.
    for dt in (
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        datetime(2026, 6, 30, 23, 59, 59, 999, tzinfo=timezone(timedelta(hours=-7))),
        datetime.fromtimestamp(1_790_000_000.25, UTC),
    ):
        assert format_time(dt) == schema.format_time(dt)
