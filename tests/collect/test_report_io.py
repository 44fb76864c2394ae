"""The Markdown report's disk I/O and network: the job's rows and a table per measured
container, each figure said what it is; a summary without them (older resmon's, the
Go collector's) renders as before."""

from __future__ import annotations

from resmon.collect.report import render_markdown

MiB = 1024 * 1024
STAT = {"peak": 100.0 * MiB, "p99": 90.0, "p95": 80.0, "p75": 1.0, "p50": 1.0, "avg": 2.0}
IO = {
    "read_bytes": 4096,
    "write_bytes": 200 * MiB,
    "read_bytes_per_second": STAT,
    "write_bytes_per_second": STAT,
}
NET = {
    "rx_bytes": 3 * MiB,
    "tx_bytes": MiB,
    "loopback_rx_bytes": 100 * MiB,
    "loopback_tx_bytes": 100 * MiB,
    "rx_bytes_per_second": STAT,
    "tx_bytes_per_second": STAT,
}
EMPTY = {"peak": 0.0, "p99": 0.0, "p95": 0.0, "p75": 0.0, "p50": 0.0, "avg": 0.0}


def _summary(with_io: bool) -> dict:
    job = {
        "scope": "containers",
        "containers": ["app", "sidecar"],
        "cpu_cores": EMPTY,
        "cpu_seconds": 1.0,
        "memory_bytes": EMPTY,
    }
    containers = [
        {"name": "app", "cpu_cores": EMPTY, "memory_bytes": EMPTY, "cpu_seconds": 1.0},
        {"name": "sidecar", "cpu_cores": EMPTY, "memory_bytes": EMPTY, "cpu_seconds": 0.0},
    ]
    if with_io:
        job["io"] = dict(IO, sources=["cgroup", "proc"])
        job["network"] = dict(NET, namespaces=1)
        containers[0]["io"] = dict(IO, source="cgroup")
        containers[0]["network"] = dict(NET, namespace="net:[1]", shared_with=["sidecar"])
        containers[1]["io"] = dict(IO, source="proc", unreadable_processes=2)
        containers[1]["network"] = dict(NET, namespace="net:[1]", shared_with=["app"])
    return {
        "duration_seconds": 10.0,
        "sample_count": 10,
        "cpu_total_percent": EMPTY,
        "mem_used_bytes": EMPTY,
        "mem_used_percent": EMPTY,
        "containers": containers,
        "job": job,
    }


def test_the_report_says_each_io_figure_and_its_source():
    text = render_markdown(_summary(True))
    (disk,) = [line for line in text.splitlines() if line.startswith("| disk read")]
    assert "**200.0 MiB**" in disk and "the cgroup's io.stat" in disk
    assert "its processes' /proc/PID/io" in disk and "peak 100.0 MiB/s" in disk
    (net,) = [line for line in text.splitlines() if line.startswith("| network received")]
    assert "3.0 MiB · 1.0 MiB" in net and "loopback apart" in net
    assert "1 network namespace)" in net
    (lo,) = [line for line in text.splitlines() if line.startswith("| loopback")]
    assert "100.0 MiB · 100.0 MiB" in lo
    (app,) = [line for line in text.splitlines() if line.startswith("| **app** | 4.0 KiB")]
    assert "| cgroup |" in app and "| sidecar |" in app
    (side,) = [line for line in text.splitlines() if line.startswith("| **sidecar** | 4.0 KiB")]
    assert "proc (2 unreadable)" in side
    assert "containers sharing a namespace show the same figures" in text


def test_a_summary_without_io_renders_as_before():
    text = render_markdown(_summary(False))
    assert "disk read" not in text and "network received" not in text
    assert "disk source" not in text
