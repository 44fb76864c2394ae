"""``resmon query show``'s disk I/O and network lines and table, read from the run's
summary; a run without them (the Go collector's, older resmon's) shows none."""

from __future__ import annotations

import copy
import io

from rich.console import Console
from test_query_render import NOW, RUN

from resmon.query import render

MiB = 1024**2
STAT = {
    "peak": 80.0 * MiB,
    "p99": 70.0 * MiB,
    "p95": 60.0 * MiB,
    "p75": 1.0,
    "p50": 1.0,
    "avg": 2.0,
}


def _shown(body, width: int = 120) -> str:
    out = io.StringIO()
    render.render("run", body, "table", Console(file=out, width=width, highlight=False), now=NOW)
    return out.getvalue()


def _with_io() -> dict:
    run = copy.deepcopy(RUN)
    payload = run["payload"]
    payload["job"] = {
        "io": {
            "sources": ["proc"],
            "read_bytes": 4096,
            "write_bytes": 200 * MiB,
            "read_bytes_per_second": STAT,
            "write_bytes_per_second": STAT,
        },
        "network": {
            "namespaces": 1,
            "rx_bytes": 3 * MiB,
            "tx_bytes": MiB,
            "loopback_rx_bytes": 100 * MiB,
            "loopback_tx_bytes": 100 * MiB,
            "rx_bytes_per_second": STAT,
            "tx_bytes_per_second": STAT,
        },
    }
    payload["containers"] = [
        {
            "name": "runner",
            "io": dict(payload["job"]["io"], source="proc"),
            "network": dict(payload["job"]["network"], namespace="net:[1]", shared_with=["db"]),
        },
        {"name": "db", "network": dict(payload["job"]["network"], namespace="net:[1]")},
    ]
    return run


def test_show_has_the_jobs_disk_and_network_and_a_table_per_container():
    text = _shown(_with_io())
    assert "Job disk" in text and "written 200 MiB" in text and "(proc)" in text
    assert "Job network" in text and "received 3.00 MiB" in text and "loopback 100 MiB" in text
    assert "Disk and network" in text
    (runner,) = [line for line in text.splitlines() if "runner" in line and "200 MiB" in line]
    assert "proc" in runner and "100 MiB" in runner
    (db,) = [line for line in text.splitlines() if line.strip("│ ").startswith("db")]
    assert "3.00 MiB" in db


def test_show_without_io_figures_shows_none():
    text = _shown(RUN)
    assert "Job disk" not in text and "Disk and network" not in text


def test_show_keeps_within_a_narrow_width():
    text = _shown(_with_io(), width=80)
    assert max(len(line) for line in text.splitlines()) <= 80


def test_runs_show_the_disk_written_where_measured():
    out = io.StringIO()
    body = {
        "organization": "acme",
        "repository": "acme/widgets",
        "workflow": "ci.yml",
        "job": "build",
        "runs": [
            dict(RUN, id=2, run_id="2", job_io_write_bytes=200 * MiB),
            dict(RUN, id=1, run_id="1", job_io_write_bytes=None),
        ],
    }
    render.render("runs", body, "table", Console(file=out, width=160, highlight=False), now=NOW)
    text = out.getvalue()
    assert "Written" in text and "200 MiB" in text
    out = io.StringIO()
    body["runs"] = [dict(RUN, id=1, run_id="1")]
    render.render("runs", body, "table", Console(file=out, width=160, highlight=False), now=NOW)
    assert "Written" not in out.getvalue()
