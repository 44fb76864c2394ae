"""Run summaries for the query tests: valid wire-format payloads with known numbers.

Every figure is derived from a few inputs, so a test can say what a table or a
JSON row must show without copying numbers around.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from resmon.stats import summarize

GiB = 1024**3
MiB = 1024**2
ORG = "acme"
REPO = "acme/widgets"
WORKFLOW = "ci.yml"
JOB = "build"


def stat(values: list[float]) -> dict[str, float]:
    out = summarize(values)
    assert out is not None
    return out


def run_summary(
    *,
    start: datetime,
    duration: float = 200.0,
    cpu_percent: float = 40.0,
    mem_bytes: int = 2 * GiB,
    builder_cores: float = 1.5,
    builder_mem: int = 900 * MiB,
    cpu_seconds: float | None = 300.0,
) -> dict[str, Any]:
    """A run summary with two containers: ``builder`` (limits 2 cores / 1 GiB) and
    ``db`` (no limits).  Each series is ``x * k/20`` for k = 1..20, so the peak is
    ``x``, p95 ``x * 19/20`` and p50 ``x * 10/20``."""
    ramp = [k / 20 for k in range(1, 21)]
    summary: dict[str, Any] = {
        "start_time": start.isoformat().replace("+00:00", "Z"),
        "end_time": (start + timedelta(seconds=duration)).isoformat().replace("+00:00", "Z"),
        "duration_seconds": duration,
        "sample_count": 20,
        "cpu_total_percent": stat([cpu_percent * r for r in ramp]),
        "mem_used_bytes": stat([int(mem_bytes * r) for r in ramp]),
        "mem_used_percent": stat([50 * r for r in ramp]),
        "top_cpu_processes": [
            {
                "pid": 4242,
                "name": "cc1plus",
                "peak_cpu_percent": 98.5,
                "peak_mem_rss_bytes": 300 * MiB,
            },
            {"pid": 17, "name": "make", "peak_cpu_percent": 2.0, "peak_mem_rss_bytes": 8 * MiB},
        ],
        "top_mem_processes": [
            {
                "pid": 4242,
                "name": "cc1plus",
                "peak_cpu_percent": 98.5,
                "peak_mem_rss_bytes": 300 * MiB,
            },
        ],
        "containers": [
            {
                "name": "builder",
                "cpu_cores": stat([builder_cores * r for r in ramp]),
                "memory_bytes": stat([int(builder_mem * r) for r in ramp]),
                "limit_cpu_cores": 2.0,
                "limit_memory_bytes": GiB,
                "cpu_seconds": cpu_seconds,
            },
            {
                "name": "db",
                "cpu_cores": stat([0.2 * r for r in ramp]),
                "memory_bytes": stat([int(100 * MiB * r) for r in ramp]),
            },
        ],
    }
    if cpu_seconds is not None:
        summary["cpu_seconds"] = cpu_seconds
    return summary


def push_body(
    run_id: str,
    summary: dict[str, Any],
    *,
    org: str = ORG,
    repo: str = REPO,
    workflow: str = WORKFLOW,
    job: str = JOB,
) -> dict[str, Any]:
    return {
        "execution": {
            "organization": org,
            "repository": repo,
            "workflow": workflow,
            "job": job,
            "run_id": run_id,
        },
        "run_summary": summary,
    }


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


SLEEP_RSS = 1_400 * 1024  # what a `sleep` holds resident
SLEEP_PSS = 420 * 1024  # its share once libc's pages are counted once
HOST_MEM = int(1.28 * GiB)  # the runner's memory used, other jobs included


def wrapped_sleep_summary(*, start: datetime, job_block: bool = True) -> dict[str, Any]:
    """``resmon collect -- sleep 1`` on a busy runner: the machine at 100 % CPU and
    1.28 GiB used (another job's compiler), the command's container idle at
    1.4 MiB RSS.  With ``job_block`` the summary carries the ``job`` block of the
    collector that measures the job (PSS, a peak range); without it, it is what an
    older resmon pushed, and the job figures come from the ``command`` container."""
    flat = [1.0] * 4
    other = "/process_api/0081fb1baf75c823dae16c5af714bbf2"
    summary: dict[str, Any] = {
        "start_time": start.isoformat().replace("+00:00", "Z"),
        "end_time": (start + timedelta(seconds=1.02)).isoformat().replace("+00:00", "Z"),
        "duration_seconds": 1.02,
        "sample_count": 4,
        "cpu_total_percent": stat([100.0 * v for v in flat]),
        "mem_used_bytes": stat([HOST_MEM * v for v in flat]),
        "mem_used_percent": stat([64.0 * v for v in flat]),
        "top_cpu_processes": [
            {"pid": 9, "name": "cc1plus", "peak_cpu_percent": 99.0, "peak_mem_rss_bytes": GiB}
        ],
        "top_mem_processes": [],
        "containers": [
            {
                "name": other,
                "cpu_cores": stat([1.9 * v for v in flat]),
                "memory_bytes": stat([GiB * v for v in flat]),
                "cpu_seconds": 1.9,
            },
            {
                "name": "command",
                "cpu_cores": stat([0.0] * 4),
                "memory_bytes": stat([SLEEP_RSS] * 4),
                "cpu_seconds": 0.0,
            },
        ],
        "cpu_seconds": 0.001,
        "command": {
            "name": "sleep",
            "container": "command",
            "exit_code": 0,
            "rusage_cpu_seconds": 0.001,
        },
    }
    if job_block:
        summary["job"] = {
            "scope": "command",
            "containers": ["command"],
            "cpu_cores": stat([0.0, 0.0, 0.0, 0.01]),
            "cpu_seconds": 0.001,
            "memory_bytes": stat([SLEEP_PSS] * 4),
            "memory_kind": "pss",
            "memory_peak": {
                "headline": SLEEP_PSS,
                "low": SLEEP_PSS,
                "high": SLEEP_RSS,
                "basis": "sampled",
            },
            "limit_cpu_cores": None,
            "limit_memory_bytes": None,
        }
    return summary
