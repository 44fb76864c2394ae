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
