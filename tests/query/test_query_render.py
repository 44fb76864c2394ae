"""Rendering of query answers: units, colours, tables at a fixed width, JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from resmon.query import formats, render
from resmon.schema import format_time

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def console(**kwargs) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    kwargs.setdefault("width", 100)
    return Console(file=out, highlight=False, **kwargs), out


def shown(kind: str, body, output: str = "table", scope: str = "job", **kwargs) -> str:
    c, out = console(**kwargs)
    render.render(kind, body, output, c, now=NOW, scope=scope)
    return out.getvalue()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "–"),
        (0, "0 B"),
        (999, "999 B"),
        (1536, "1.50 KiB"),
        (64 * 1024**2, "64.0 MiB"),
        (512 * 1024**2, "512 MiB"),
        (1000 * 1024**2, "0.98 GiB"),
        (3 * 1024**3 // 2, "1.50 GiB"),
        (2 * 1024**4, "2.00 TiB"),
    ],
)
def test_bytes(value, text):
    assert formats.fmt_bytes(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "–"),
        (0.25, "250ms"),
        (4.26, "4.3s"),
        (42, "42s"),
        (200, "3m 20s"),
        (3725, "1h 02m"),
        (2 * 86400 + 4 * 3600 + 59, "2d 4h"),
    ],
)
def test_duration(seconds, text):
    assert formats.fmt_duration(seconds) == text


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=2), "just now"),
        (timedelta(seconds=45), "45s ago"),
        (timedelta(minutes=12, seconds=30), "12m ago"),
        (timedelta(hours=2, minutes=59), "2h ago"),
        (timedelta(days=3, hours=1), "3d ago"),
        (timedelta(days=45), "2026-10-06"),
        (timedelta(minutes=-5), "2026-11-20 12:05"),
    ],
)
def test_relative_times(delta, text):
    assert formats.fmt_ago(format_time(NOW - delta), NOW) == text


def test_cores_and_percent():
    assert formats.fmt_cores(1.456) == "1.46"
    assert formats.fmt_percent(89.6) == "90%"
    assert formats.percent_of(1.5, 2.0) == 75.0
    assert formats.percent_of(1.5, None) is None
    assert formats.percent_of(1.5, 0) is None


@pytest.mark.parametrize(
    ("percent", "style"),
    [(10, "green"), (69.9, "green"), (70, "yellow"), (90, "yellow"), (90.1, "bold red")],
)
def test_limit_colours(percent, style):
    assert formats.percent_style(percent) == style


def test_sparkline_spans_the_data_range():
    assert formats.sparkline([1, 2, 4, 8]) == "▁▂▄█"
    # 75 % -> 82 %: a rise from the bottom row to the top, not four full blocks.
    assert formats.sparkline([75, 77, 80, 82]) == "▁▃▆█"
    assert formats.value_span([75, None, 82], formats.fmt_percent) == "75%..82%"
    assert formats.sparkline([5, 5, 5]) == "▄▄▄"  # flat stays flat, not a zig-zag
    assert formats.sparkline([0, None, 0]) == "▄ ▄"
    assert formats.sparkline([]) == ""
    assert formats.value_span([None], formats.fmt_percent) == "–"


RUN = {
    "id": 7,
    "organization": "acme",
    "repository": "acme/widgets",
    "workflow": "ci.yml",
    "job": "build",
    "run_id": "1234",
    "run_attempt": "2",
    "received_at": "2026-11-20T10:00:00Z",
    "start_time": "2026-11-20T09:56:40Z",
    "end_time": "2026-11-20T10:00:00Z",
    "duration_seconds": 200.0,
    "sample_count": 100,
    "cpu_seconds": 310.0,
    "cpu_percent_p95": 81.0,
    "cpu_percent_peak": 97.5,
    "mem_bytes_p95": 3 * 1024**3,
    "mem_bytes_peak": 4 * 1024**3,
    # The job's own figures: the runner container's (the host's above include others).
    "job_scope": "command",
    "job_cpu_cores_p95": 0.9,
    "job_cpu_cores_peak": 1.4,
    "job_cpu_seconds": 150.0,
    "job_memory_bytes_p95": 700 * 1024**2,
    "job_memory_bytes_peak": 900 * 1024**2,
    "job_memory_kind": "pss",
    "job_memory_peak_low_bytes": 900 * 1024**2,
    "job_memory_peak_high_bytes": 1100 * 1024**2,
    "job_limit_cpu_cores": 2.0,
    "job_limit_memory_bytes": 1024**3,
    "containers": [
        {
            "name": "runner",
            "cpu_cores_p50": 0.5,
            "cpu_cores_p95": 1.2,  # 60 % of 2 cores: green
            "cpu_cores_peak": 1.9,  # 95 %: red
            "limit_cpu_cores": 2.0,
            "memory_bytes_p50": 256 * 1024**2,
            "memory_bytes_p95": 800 * 1024**2,  # 78 % of 1 GiB: yellow
            "memory_bytes_peak": 1000 * 1024**2,
            "limit_memory_bytes": 1024**3,
            "oom_kills": 1,
        },
        {
            "name": "postgres",
            "cpu_cores_p50": 0.1,
            "cpu_cores_p95": 0.2,
            "cpu_cores_peak": 0.3,
            "memory_bytes_p50": 50 * 1024**2,
            "memory_bytes_p95": 60 * 1024**2,
            "memory_bytes_peak": 70 * 1024**2,
        },
    ],
    "payload": {
        "cpu_total_percent": {"p50": 40.0, "p95": 81.0, "peak": 97.5},
        "mem_used_bytes": {"p50": 1024**3, "p95": 3 * 1024**3, "peak": 4 * 1024**3},
        "top_cpu_processes": [
            {
                "pid": 4242,
                "name": "cc1plus",
                "peak_cpu_percent": 99.0,
                "peak_mem_rss_bytes": 300 * 1024**2,
            }
        ],
        "top_mem_processes": [
            {
                "pid": 77,
                "name": "a) (b",
                "peak_cpu_percent": 3.0,
                "peak_mem_rss_bytes": 900 * 1024**2,
            }
        ],
    },
}


def test_show_table_reads_at_a_glance():
    text = shown("run", RUN)
    assert "7 · run id 1234 (attempt 2)" in text
    assert "acme/widgets · ci.yml · build" in text
    assert "3m 20s, 100 samples" in text
    assert "40% / 81% / 98%" in text  # system CPU p50 / p95 / peak
    assert "1.00 GiB / 3.00 GiB / 4.00 GiB" in text
    assert re.search(r"^Job CPU\s+p95 0.90, peak 1.40 cores, 2m 30s CPU time\s*$", text, re.M)
    assert re.search(
        r"^Job memory\s+p95 700 MiB, peak 900 MiB pss \(within 900 MiB..1.07 GiB\)\s*$", text, re.M
    )
    runner = next(line for line in text.splitlines() if line.lstrip().startswith("runner"))
    for cell in (
        "0.50",
        "1.20 60%",
        "1.90 95%",
        "2.00",
        "256 MiB",
        "800 MiB 78%",
        "0.98 GiB 98%",
        "1.00 GiB",
    ):
        assert cell in runner, (cell, runner)
    assert "runner: 1 OOM kill" in text
    postgres = next(line for line in text.splitlines() if line.lstrip().startswith("postgres"))
    assert "%" not in postgres  # no limit, no percent
    assert "cc1plus" in text and "a) (b" in text and "900 MiB" in text
    assert all(len(line) <= 100 for line in text.splitlines())


def test_show_table_narrow_keeps_p95_and_peak():
    text = shown("run", RUN, width=80)
    header = next(line for line in text.splitlines() if line.split()[:1] == ["Container"])
    assert "CPU p50" not in header and "CPU p95" in header and "limit" in header
    assert "not shown at 80 columns: CPU p50, Mem p50 (-o json has all)" in text
    runner = next(line for line in text.splitlines() if line.lstrip().startswith("runner"))
    assert "1.90 95%" in runner and "0.98 GiB 98%" in runner
    assert all(len(line) <= 80 for line in text.splitlines())


def test_colours_mark_percent_of_limit(monkeypatch):
    monkeypatch.delenv("NO_COLOR")
    text = shown("run", RUN, force_terminal=True, color_system="standard")
    # green 60 %, yellow 78 %, red 95 %
    assert "\x1b[32m60%" in text
    assert "\x1b[33m78%" in text
    assert "\x1b[1;31m95%" in text


def test_no_color_and_no_terminal_give_plain_text(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    coloured_terminal = shown("run", RUN, force_terminal=True)
    assert not re.search(r"\x1b\[(?:\d+;)*3[0-7]m", coloured_terminal)  # no colour under NO_COLOR
    assert "1.90 95%" in ANSI.sub("", coloured_terminal)
    monkeypatch.delenv("NO_COLOR")
    plain = shown("run", RUN)  # a file, not a terminal
    assert not ANSI.search(plain)
    assert "1.90 95%" in plain


def test_make_console_widens_when_piped(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    c = render.make_console(file=io.StringIO())
    assert c.width == render.PIPE_WIDTH
    monkeypatch.setenv("COLUMNS", "90")
    assert render.make_console(file=io.StringIO()).width == 90


def test_runs_table():
    body = {
        "repository": "acme/widgets",
        "workflow": "ci.yml",
        "job": "build",
        "truncated": True,
        "runs": [{k: v for k, v in RUN.items() if k not in ("containers", "payload")}],
    }
    # By default the job's own figures: cores, CPU time, memory with its kind.
    text = shown("runs", body)
    row = next(line for line in text.splitlines() if line.lstrip().startswith("7 "))
    for cell in ("1234 #2", "2h ago", "3m 20s", "100", "0.90", "1.40", "2m 30s", "700 MiB"):
        assert cell in row, (cell, row)
    assert "900 MiB pss" in row and "%" not in row and "GiB" not in row
    caption = " ".join(line.strip() for line in text.splitlines())
    assert "job: its own processes" in caption and "--scope host: the whole machine" in caption
    # --scope host: the machine's, and the table says so.
    text = shown("runs", body, scope="host")
    row = next(line for line in text.splitlines() if line.lstrip().startswith("7 "))
    for cell in ("1234 #2", "2h ago", "3m 20s", "100", "81%", "98%", "3.00 GiB", "4.00 GiB"):
        assert cell in row, (cell, row)
    assert "pss" not in row and "2m 30s" not in row
    assert "host (whole machine)" in text
    assert "newest 1 shown" in text
    assert "No runs of acme/widgets" in shown("runs", {**body, "runs": []})


def test_trend_table_has_sparklines_oldest_first():
    points = [
        {"id": i, "run_id": str(i), "received_at": f"2026-11-{15 + i}T10:00:00Z", "duration_seconds": 60.0 * i,
         "cpu_percent_p95": 10.0 * i, "cpu_percent_peak": 12.0 * i, "mem_bytes_p95": i * 1024**3,
         "mem_bytes_peak": i * 1024**3 + 1}
        for i in (1, 2, 4)
    ]  # fmt: skip
    body = {
        "repository": "acme/widgets",
        "workflow": "ci.yml",
        "job": "build",
        "by": "run",
        "container": None,
        "points": points,
    }
    text = shown("trend", body, scope="host")
    assert "host (whole machine)" in text
    assert "CPU p95  ▁▃█ 10%..40%" in text  # from the smallest to the largest
    assert "Mem peak ▁▃█ 1.00 GiB..4.00 GiB" in text
    assert "span min..max" in text
    header = next(line for line in text.splitlines() if line.split()[:1] == ["ID"])
    assert header.split().count("trend") == 2  # the bar columns say what they are
    lines = [line for line in text.splitlines() if re.match(r"\s+[124]\s", line)]
    assert [line.split()[0] for line in lines] == ["1", "2", "4"]
    assert "40%" in lines[-1] and "4.00 GiB" in lines[-1] and "█" in lines[-1]


def test_trend_per_day_for_a_container_shows_limits():
    body = {
        "repository": "acme/widgets", "workflow": "ci.yml", "job": "build", "by": "day", "container": "runner",
        "points": [{"day": "2026-11-19", "runs": 3, "duration_seconds": 100.0, "cpu_cores_p95": 1.0,
                    "cpu_cores_peak": 1.8, "memory_bytes_p95": 512 * 1024**2, "memory_bytes_peak": 600 * 1024**2,
                    "limit_cpu_cores": 2.0, "limit_memory_bytes": 1024**3}],
    }  # fmt: skip
    text = shown("trend", body)
    assert "container runner" in text and "per day" in text
    row = next(line for line in text.splitlines() if "2026-11-19" in line)
    for cell in ("3", "1m 40s", "1.00 50%", "1.80 90%", "512 MiB 50%", "600 MiB 59%"):
        assert cell in row, (cell, row)


def test_jobs_and_top_tables():
    job = {
        "organization": "acme", "repository": "acme/widgets", "workflow": "ci.yml", "job": "build",
        "run_count": 12, "last_id": 7, "last_run_id": "1234", "last_received_at": "2026-11-20T09:00:00Z",
        "last_duration_seconds": 200.0, "last_cpu_percent_p95": 81.0, "last_mem_bytes_peak": 4 * 1024**3,
    }  # fmt: skip
    text = shown("jobs", {"jobs": [job]}, scope="host")
    row = next(line for line in text.splitlines() if "acme/widgets" in line)
    for cell in ("ci.yml", "build", "12", "3h ago", "3m 20s", "81%", "4.00 GiB"):
        assert cell in row
    assert "host (whole machine)" in text
    mine = {**job, "last_job_cpu_cores_p95": 0.02, "last_job_cpu_seconds": 0.5,
            "last_job_memory_bytes_peak": 3 * 1024**2, "last_job_memory_kind": "rss"}  # fmt: skip
    row = next(line for line in shown("jobs", {"jobs": [mine]}).splitlines() if "build" in line)
    for cell in ("12", "3h ago", "3m 20s", "0.02", "500ms", "3.00 MiB rss"):
        assert cell in row, (cell, row)
    assert "81%" not in row and "GiB" not in row
    assert "No jobs stored yet" in shown("jobs", {"jobs": []})

    top = {
        "metric": "memory", "since": "2026-11-13T12:00:00Z",
        "jobs": [{**{k: job[k] for k in ("organization", "repository", "workflow", "job")}, "runs": 12,
                  "mem_bytes_peak_max": 4 * 1024**3, "duration_seconds_avg": 200.0, "cpu_percent_p95_avg": 50.0}],
    }  # fmt: skip
    text = shown("top", top)
    assert "Top jobs by memory since 2026-11-13 12:00 UTC" in text
    row = next(line for line in text.splitlines() if "acme/widgets" in line)
    assert row.split()[0] == "1" and "4.00 GiB" in row and "12" in row
    # Ranked by memory, the peak is the ranking column and is not repeated.
    assert text.count("Mem peak") == 1 and row.count("4.00 GiB") == 1
    by_host_cpu = shown("top", {**top, "metric": "cpu"})  # an answer without scope: the host's
    assert "CPU p95" in by_host_cpu and by_host_cpu.count("Mem peak") == 1
    assert "(host: the whole machine)" in by_host_cpu

    # The job's own figures: ranked by the job's CPU time, its memory with its kind.
    top["jobs"][0].update(job_cpu_seconds_total=4000.0, job_cpu_cores_p95_avg=1.25,
                          job_memory_bytes_peak_max=900 * 1024**2, job_memory_kind="mixed")  # fmt: skip
    text = shown("top", {**top, "metric": "cpu", "scope": "job"})
    assert "Top jobs by cpu since 2026-11-13 12:00 UTC (the job's own figures)" in text
    row = next(line for line in text.splitlines() if "acme/widgets" in line)
    for cell in ("1h 06m", "1.25", "900 MiB mixed"):
        assert cell in row, (cell, row)
    assert "4.00 GiB" not in row and "50%" not in row


def test_json_is_the_body_with_raw_numbers():
    out = shown("run", RUN, "json")
    assert json.loads(out) == RUN


def test_csv_carries_raw_numbers_and_api_names():
    out = shown("run", RUN, "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["name"] for r in rows] == ["runner", "postgres"]
    assert rows[0]["id"] == "7" and rows[0]["run_id"] == "1234"
    assert float(rows[0]["cpu_cores_peak"]) == 1.9
    assert int(rows[0]["memory_bytes_peak"]) == 1000 * 1024**2
    assert rows[1]["limit_cpu_cores"] == ""  # missing is empty, not "None" or "–"
    runs = shown("runs", {"runs": [RUN]}, "csv")
    header = runs.splitlines()[0].split(",")
    assert (
        header[:2] == ["id", "organization"] and "run_id" in header and "mem_bytes_peak" in header
    )


def test_a_go_collector_run_with_little_in_it_still_renders():
    """The Go collector sends no CPU time, limits or attempt; a v1 row may have no
    start time.  Every missing figure is a dash, never "None" or an error."""
    bare = {
        "id": 3, "organization": "o", "repository": "o/r", "workflow": "w", "job": "j", "run_id": "9",
        "run_attempt": "", "received_at": "2026-11-20T11:00:00Z", "start_time": None, "end_time": None,
        "duration_seconds": None, "sample_count": None, "cpu_seconds": None, "cpu_percent_p95": None,
        "cpu_percent_peak": None, "mem_bytes_p95": None, "mem_bytes_peak": None, "containers": [], "payload": {},
    }  # fmt: skip
    text = shown("run", bare)
    assert "3 · run id 9" in text and "1h ago" in text
    assert "No per-container statistics" in text
    assert "None" not in text
    assert "–" in shown("runs", {"runs": [bare]})
    assert "None" not in shown("runs", {"runs": [bare]}) + shown("runs", {"runs": [bare]}, "csv")


def test_csv_rounds_each_figure_to_its_precision():
    """Means and sums carry float noise; CSV writes bytes whole, cores to 4 decimals,
    percent to 2, seconds to 3.  JSON keeps the API's numbers as they are."""
    row = {
        "organization": "acme", "repository": "acme/widgets", "workflow": "ci.yml", "job": "build",
        "runs": 3, "cpu_seconds_total": 0.1 + 0.2, "cpu_percent_p95_avg": 100 / 3,
        "mem_bytes_peak_max": 4 * 1024**3, "mem_bytes_p95_avg": 627464.5000000001,
        "duration_seconds_avg": 200.00000000000003, "duration_seconds_total": 600.0,
    }  # fmt: skip
    top = {"metric": "cpu", "since": "2026-11-13T12:00:00Z", "jobs": [row]}
    (line,) = list(csv.DictReader(io.StringIO(shown("top", top, "csv"))))
    assert line["mem_bytes_p95_avg"] == "627465"
    assert line["mem_bytes_peak_max"] == str(4 * 1024**3)
    assert line["cpu_percent_p95_avg"] == "33.33"
    assert line["cpu_seconds_total"] == "0.3"
    assert line["duration_seconds_avg"] == "200.0" and line["runs"] == "3"
    assert (
        json.loads(shown("top", top, "json"))["jobs"][0]["mem_bytes_p95_avg"] == 627464.5000000001
    )

    noisy = {**RUN["containers"][0], "cpu_cores_avg": 0.1 + 0.2, "memory_bytes_avg": 1e6 / 3}
    (line,) = list(csv.DictReader(io.StringIO(shown("run", {**RUN, "containers": [noisy]}, "csv"))))
    assert line["cpu_cores_avg"] == "0.3" and line["memory_bytes_avg"] == "333333"
    assert line["cpu_cores_peak"] == "1.9" and line["limit_cpu_cores"] == "2.0"
    assert line["cpu_throttled_seconds"] == ""  # missing stays empty


def test_two_wrapped_steps_of_one_job_are_two_rows_told_apart():
    """`resmon collect --name compile -- make`, then `--name unit-tests -- make` in one
    job: same job, same run id, same figures; the Step column tells them apart."""
    plain = {k: v for k, v in RUN.items() if k not in ("containers", "payload")}
    runs = [
        {**plain, "id": 8, "command_container": "unit-tests", "command_name": "make"},
        {**plain, "id": 7, "command_container": "compile", "command_name": "make"},
        {**plain, "id": 6, "command_container": "command", "command_name": "pytest"},
    ]
    body = {"repository": "acme/widgets", "workflow": "ci.yml", "job": "build", "runs": runs}
    text = shown("runs", body)
    rows = {line.split()[0]: line for line in text.splitlines() if re.match(r"\s*[678]\s", line)}
    assert "Step" in text
    assert "unit-tests" in rows["8"] and "compile" in rows["7"]
    assert "pytest" in rows["6"]  # the default container name says nothing: the command does
    assert rows["8"].replace("unit-tests", "") != rows["7"].replace("compile", "")

    # A sidecar run (the Go collector's too) has no wrapped command: no Step column.
    assert "Step" not in shown("runs", {**body, "runs": [plain]})

    assert "Step" not in shown("run", RUN)  # no wrapped command in this summary
    command = {"name": "make", "container": "compile", "exit_code": 0}
    view = shown("run", {**RUN, "payload": {**RUN["payload"], "command": command}})
    assert re.search(r"^Step\s+compile \(ran make\)", view, re.M), view

    rows = list(csv.DictReader(io.StringIO(shown("runs", body, "csv"))))
    assert [(r["command_container"], r["command_name"]) for r in rows] == [
        ("unit-tests", "make"),
        ("compile", "make"),
        ("command", "pytest"),
    ]
    assert (
        csv.DictReader(io.StringIO(shown("runs", {"runs": [plain]}, "csv"))).__next__()[
            "command_name"
        ]
        == ""
    )
