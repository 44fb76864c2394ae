"""Every `resmon query` table at 80, 120 and 200 columns, with the long names real CI
systems have: no name is ever split across lines, and every table fits the width.

A name may be shortened in the middle (``/process_api/233b…/4fca91``): then its start
and its end still appear, together, on one line.  Nothing is cut at its end by rich
(``Last r…``), and the figures a table keeps are whole.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

import pytest
from rich.cells import cell_len
from rich.console import Console

from resmon.query import render
from resmon.query.formats import middle_ellipsis

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
WIDTHS = (80, 120, 200)
GiB, MiB = 1024**3, 1024**2

ORG = "platform-engineering"
SCOPES = [
    {
        "organization": ORG,
        "repository": f"{ORG}/integration-test-harness",
        "workflow": "Nightly Integration / Postgres",  # a workflow's name may have spaces
        "job": "integration tests (postgres-16, ubuntu-24.04)",
    },
    {
        "organization": ORG,
        "repository": f"{ORG}/payments-service-monorepo",
        "workflow": ".forgejo/workflows/release-candidate.yml",
        "job": "build-and-publish-container-images",
    },
    {
        "organization": "acme",
        "repository": "acme/widgets",
        "workflow": "ci.yml",
        "job": "build",
    },
]
SCOPE = SCOPES[0]
CONTAINERS = [
    "/process_api/233b463a0f1e4c5d9e8f7a6b5c4d3e2f/4fca91d2e3b4a5c6d7e8f90123456789",
    "/system.slice/docker-4fca91d2e3b4a5c6d7e8f90123456789abcdef0123456789abcd.scope",
    "integration-postgres-service-container",
    "unit-tests-with-coverage",
    "runner",
]
STEPS = ["unit-tests-with-coverage-and-junit-report", "compile", "lint"]
PROCESSES = ["x86_64-linux-gnu-gcc-12", "java-language-server-worker", "cc1plus"]


# The job's own figures, as wide as they get: two-digit cores, a memory kind.
JOB_FIGURES = {
    "job_scope": "command",
    "job_cpu_cores_p95": 11.25,
    "job_cpu_cores_peak": 15.75,
    "job_cpu_seconds": 12345.6,
    "job_memory_bytes_p95": 900 * MiB,
    "job_memory_bytes_peak": 1000 * MiB,
    "job_memory_kind": "cgroup",
    "job_limit_cpu_cores": 16.0,
    "job_limit_memory_bytes": 2 * GiB,
}


def run_row(i: int, step: str | None = None) -> dict:
    row = {
        **SCOPE,
        "id": 1234560 + i,
        "run_id": str(9000049 + i),
        "run_attempt": str(i % 3 + 1),
        "received_at": f"2026-11-{10 + i:02d}T10:00:00Z",
        "start_time": f"2026-11-{10 + i:02d}T09:49:33Z",
        "end_time": f"2026-11-{10 + i:02d}T10:00:00Z",
        "duration_seconds": 627.4 + i,
        "sample_count": 1254,
        "cpu_seconds": 1234.5,
        "cpu_percent_p95": 75.0 + i,
        "cpu_percent_peak": 97.5,
        "mem_bytes_p95": 3 * GiB,
        "mem_bytes_peak": 4 * GiB + i * 100 * MiB,
        **JOB_FIGURES,
        "job_memory_bytes_peak": 1000 * MiB + i * 10 * MiB,
    }
    if step:
        row["command_container"], row["command_name"] = step, "make"
    return row


def container(name: str) -> dict:
    return {
        "name": name,
        "cpu_cores_p50": 0.5,
        "cpu_cores_p95": 1.2,
        "cpu_cores_peak": 1.9,
        "limit_cpu_cores": 2.0,
        "memory_bytes_p50": 256 * MiB,
        "memory_bytes_p95": 800 * MiB,
        "memory_bytes_peak": 1000 * MiB,
        "limit_memory_bytes": GiB,
        "oom_kills": 1 if name == "runner" else None,
    }


def process(pid: int, name: str) -> dict:
    return {"pid": pid, "name": name, "peak_cpu_percent": 99.0, "peak_mem_rss_bytes": 300 * MiB}


JOBS = {
    "jobs": [
        {
            **s,
            "run_count": 1523,
            "last_id": 1234567,
            "last_run_id": "9000049",
            "last_received_at": "2026-11-20T09:00:00Z",
            "last_duration_seconds": 627.4,
            "last_cpu_percent_p95": 81.0,
            "last_mem_bytes_peak": 4 * GiB,
            **{f"last_{k}": v for k, v in JOB_FIGURES.items()},
        }
        for s in SCOPES
    ]
}
RUNS = {**SCOPE, "truncated": True, "runs": [run_row(i, STEPS[i % 3]) for i in range(6)]}
RUN = {
    **run_row(0),
    "containers": [container(n) for n in CONTAINERS],
    "payload": {
        "cpu_total_percent": {"p50": 40.0, "p95": 81.0, "peak": 97.5},
        "mem_used_bytes": {"p50": GiB, "p95": 3 * GiB, "peak": 4 * GiB},
        "top_cpu_processes": [process(4242123 + i, n) for i, n in enumerate(PROCESSES)],
        "top_mem_processes": [process(77, PROCESSES[1])],
        "command": {"name": "make", "container": STEPS[0], "exit_code": 0},
    },
}
TREND = {
    **SCOPE,
    "by": "run",
    "container": CONTAINERS[0],
    "points": [
        {
            "id": 1234560 + i,
            "run_id": str(9000049 + i),
            "received_at": f"2026-11-{10 + i:02d}T10:00:00Z",
            "duration_seconds": 600.0 + i,
            "cpu_cores_p95": 1.0 + i / 10,
            "cpu_cores_peak": 1.5,
            "memory_bytes_p95": 3 * GiB,
            "memory_bytes_peak": 3 * GiB + i * 100 * MiB,
            "limit_cpu_cores": 2.0,
            "limit_memory_bytes": 8 * GiB,
            "command_container": STEPS[i % 2],
            "command_name": "make",
        }
        for i in range(8)
    ],
}
JOB_TREND = {
    **TREND,
    "container": None,
    "points": [
        {**p, **JOB_FIGURES, "cpu_percent_p95": 81.0, "mem_bytes_peak": 4 * GiB}
        for p in TREND["points"]
    ],
}
TOP = {
    "metric": "cpu",
    "scope": "job",
    "since": "2026-11-13T12:00:00Z",
    "jobs": [
        {
            **s,
            "runs": 1523,
            "cpu_seconds_total": 123456.0,
            "cpu_percent_p95_avg": 50.0,
            "mem_bytes_peak_max": 4 * GiB,
            "duration_seconds_avg": 600.0,
            "job_cpu_seconds_total": 1234567.0,
            "job_cpu_cores_p95_avg": 11.25,
            "job_memory_bytes_peak_max": 1000 * MiB,
            "job_memory_kind": "mixed",
        }
        for s in SCOPES
    ],
}

SCOPE_NAMES = [SCOPE["repository"], SCOPE["workflow"], SCOPE["job"]]
ALL_SCOPE_NAMES = [s[k] for s in SCOPES for k in ("repository", "workflow", "job")]
# (kind, body, the names it shows and how many lines each is on at least)
CASES = {
    "jobs": ("jobs", JOBS, {n: 1 for n in ALL_SCOPE_NAMES}),
    "runs": (
        "runs",
        RUNS,
        {
            **{n: 1 for n in SCOPE_NAMES},
            **{STEPS[0]: 2, STEPS[1]: 2, STEPS[2]: 2},
            **{f"{9000049 + i} #{i % 3 + 1}": 1 for i in range(6)},
        },
    ),
    "show": (
        "run",
        RUN,
        {
            **{n: 1 for n in SCOPE_NAMES},
            "9000049": 1,
            STEPS[0]: 1,
            **{n: 1 for n in CONTAINERS},
            **{n: 1 for n in PROCESSES},
        },
    ),
    "trend": (
        "trend",
        TREND,
        {
            **{n: 1 for n in SCOPE_NAMES},
            CONTAINERS[0]: 1,
            STEPS[0]: 4,
            STEPS[1]: 4,
            **{str(9000049 + i): 1 for i in range(8)},
        },
    ),
    "top": ("top", TOP, {n: 1 for n in ALL_SCOPE_NAMES}),
    "trend-job": (
        "trend",
        JOB_TREND,
        {**{n: 1 for n in SCOPE_NAMES}, **{str(9000049 + i): 1 for i in range(8)}},
    ),
    "top-host": ("top", {**TOP, "scope": "host"}, {n: 1 for n in ALL_SCOPE_NAMES}),
}
# Each table of jobs, runs and a trend in both scopes: the job's and the host's.
for _name in ("jobs", "runs", "trend-job"):
    CASES[f"{_name}@host"] = CASES[_name]


def table_text(kind: str, body: dict, width: int, scope: str = "job") -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, highlight=False)
    render.render(kind, body, "table", console, now=NOW, scope=scope)
    return out.getvalue()


def case_text(case: str, width: int) -> str:
    kind, body, _ = CASES[case]
    return table_text(kind, body, width, "host" if case.endswith("@host") else "job")


def shortened_form(name: str, line: str) -> str | None:
    """The middle-shortened form of ``name`` on ``line`` (a start of it, ``…``, an end
    of it, at least three characters each), or None."""
    for mark in re.finditer("…", line):
        left, right = line[: mark.start()], line[mark.end() :]
        head = next((k for k in range(len(name) - 1, 2, -1) if left.endswith(name[:k])), 0)
        tail = next((k for k in range(len(name) - 1, 2, -1) if right.startswith(name[-k:])), 0)
        if head and tail and head + tail < len(name):
            return f"{name[:head]}…{name[-tail:]}"
    return None


def lines_showing(name: str, lines: list[str]) -> list[str]:
    """The lines on which ``name`` appears whole or shortened in the middle."""
    return [line for line in lines if name in line or shortened_form(name, line)]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_no_name_is_split_and_the_table_fits(case, width):
    names = CASES[case][2]
    text = case_text(case, width)
    lines = text.splitlines()
    print(f"--- {case} at {width} columns ---\n{text}")  # shown with pytest -s
    assert max(cell_len(line) for line in lines) <= width
    for name, at_least in names.items():
        on = lines_showing(name, lines)
        assert len(on) >= at_least, (name, width, text)
    # rich never had to cut a cell at its end (a header or a figure): only the middle
    # of a name is ever left out.
    assert not [line for line in lines if re.search(r"…(\s|$)", line)], text


@pytest.mark.parametrize("case", sorted(CASES))
def test_at_200_columns_every_name_is_whole(case):
    names = CASES[case][2]
    text = case_text(case, 200)
    assert "…" not in text
    for name, at_least in names.items():
        assert sum(name in line for line in text.splitlines()) >= at_least, name


def test_80_columns_leave_out_optional_columns_before_cutting_names():
    """`show` at 80 columns: p50 and the limits go (and the note says so) before a
    container's name is cut; the figures sized from (p95, peak, with percents) stay."""
    short = {**RUN, "containers": [container("runner"), container("postgres")]}
    text = table_text("run", short, 80)
    assert "…" not in text
    header = next(line for line in text.splitlines() if line.split()[:1] == ["Container"])
    assert header.split() == ["Container", "CPU", "p95", "CPU", "peak", "limit"] + [
        "Mem",
        "p95",
        "Mem",
        "peak",
        "limit",
    ]
    assert "not shown at 80 columns: CPU p50, Mem p50 (-o json has all)" in text

    text = table_text("run", RUN, 80)
    assert "not shown at 80 columns: CPU p50, CPU limit, Mem p50, Mem limit" in " ".join(
        text.splitlines()
    )
    path = CONTAINERS[0]
    (row,) = [line for line in text.splitlines() if shortened_form(path, line)]
    cut = shortened_form(path, row)
    assert cut is not None and cut.startswith("/process_api/233b") and cut.endswith("456789")
    for cell in ("1.20 60%", "1.90 95%", "800 MiB 78%", "0.98 GiB 98%"):
        assert cell in row, (cell, row)


@pytest.mark.parametrize("width", (80, 200))
def test_runs_keep_the_step_and_the_peaks(width):
    """The job's figures by default (cores, CPU time, memory with its kind), the host's
    with --scope host, each saying whose they are, at 80 and 200 columns."""
    text = table_text("runs", RUNS, width)
    rows = [line for line in text.splitlines() if re.match(r"\s*12345\d\d\s", line)]
    assert len(rows) == 6
    for row in rows:
        assert re.search(r"\b90000[45]\d #\d\b", row)
        assert "15.75" in row and re.search(r"\d[\d.]* [MG]iB cgroup", row) and "%" not in row
    assert sum(STEPS[1] in row for row in rows) == 2  # the two steps are two rows, told apart
    assert ("not shown at 80 columns:" in text) == (width == 80)
    assert "job: its own processes" in " ".join(text.splitlines())
    if width == 200:
        assert "11.25" in rows[0] and "3h 25m" in rows[0]  # p95 and CPU time

    text = table_text("runs", RUNS, width, scope="host")
    rows = [line for line in text.splitlines() if re.match(r"\s*12345\d\d\s", line)]
    for row in rows:
        assert "98%" in row and "GiB" in row and "cgroup" not in row
    assert "host (whole machine)" in " ".join(text.splitlines())


def test_a_name_wider_than_the_terminal_is_cut_in_the_middle_in_a_title():
    body = {**RUNS, "job": "j" * 60 + "-the-end-of-a-very-long-job-name-" + "k" * 40}
    text = table_text("runs", body, 80)
    title = text.splitlines()[:3]
    assert any(middle_ellipsis(body["job"], 80) in line for line in title), title
    assert max(cell_len(line) for line in text.splitlines()) <= 80


def test_middle_ellipsis_keeps_start_and_end():
    path = CONTAINERS[0]
    assert middle_ellipsis(path, 25) == "/process_api/233…23456789"
    assert middle_ellipsis("short", 25) == "short"
    assert (
        middle_ellipsis("日本語のジョブ名前テスト", 9) == "日本…スト"
    )  # wide characters count two
    assert cell_len(middle_ellipsis("日本語のジョブ名前テスト", 10)) <= 10


def test_a_long_trend_keeps_its_sparkline_on_one_line():
    """1,000 points (the trend's limit): the caption's sparkline keeps the newest that
    fit, scaled over all of them, and says it starts later (``…``)."""
    point = TREND["points"][0]
    points = [{**point, "id": i, "cpu_cores_p95": 1.0 + (i % 50) / 50} for i in range(1000)]
    text = table_text("trend", {**TREND, "points": points}, 80)
    (spark,) = [line for line in text.splitlines() if line.startswith("CPU p95  ")]
    assert cell_len(spark) <= 80 and spark.startswith("CPU p95  …") and spark.endswith("1.00..1.98")
    assert max(cell_len(line) for line in text.splitlines()) <= 80
