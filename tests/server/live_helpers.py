"""Helpers for the live-run tests: batch bodies as ``resmon collect`` sends them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from resmon.schema import format_time
from resmon.tokens import push_token

READ = "read-token-0123456789"
KEY = "hmac-key-current"
EXECUTION = {
    "organization": "my-org",
    "repository": "my-org/my-repo",
    "workflow": "ci.yml",
    "job": "build",
    "run_id": "77",
    "run_attempt": "1",
}
START = datetime(2026, 11, 30, 9, 0, 0, tzinfo=UTC)


def sample(i: int, *, start: datetime = START, cores: float = 1.0, step: float = 2.0) -> dict:
    """The i-th sample of a run busy on ``cores`` cores, one every ``step`` seconds."""
    seconds = round(cores * step * i, 3)
    return {
        "t": format_time(start + timedelta(seconds=step * i)),
        "elapsed": None if i == 0 else step,
        "host": {"cpu_percent": 40.0 + i, "mem_used_bytes": 1000 + i, "mem_total_bytes": 4000},
        "job": {
            "cpu_cores": None if i == 0 else cores,
            "memory_bytes": 100 + i,
            "cpu_seconds": seconds,
        },
        "containers": {
            "command": {
                "cpu_cores": None if i == 0 else cores,
                "memory_bytes": 100 + i,
                "cpu_seconds": seconds,
                "memory_kind": "pss",
                "limit_cpu_cores": 2.0,
                "limit_memory_bytes": None,
            }
        },
    }


def batch_body(
    run_key: str, seq: int, samples: list[dict], *, execution: dict | None = None, **run: Any
) -> dict:
    return {
        "execution": dict(execution or EXECUTION),
        "run": {
            "run_key": run_key,
            "start_time": format_time(START),
            "host": "runner-1",
            "live_interval_seconds": 15,
            "interval_seconds": 2.0,
            "mode": "wrapper",
            "command_container": "command",
            **run,
        },
        "batch": {"seq": seq, "samples": samples},
    }


def new_run_key() -> str:
    return str(uuid.uuid4())


def token_for(execution: dict | None = None, key: str = KEY) -> str:
    e = execution or EXECUTION
    return push_token(key, e["organization"], e["repository"], e["workflow"], e["job"])


def push_headers(body: dict, key: str = KEY) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token_for(body['execution'], key)}"}
    if "batch" in body and isinstance(body.get("run"), dict):
        headers["Idempotency-Key"] = f"{body['run']['run_key']}:{body['batch']['seq']}"
    return headers


def final_payload(run_key: str, samples: list[dict], **summary: Any) -> dict:
    """The final push of the same run: start time = the first sample's."""
    last = samples[-1]
    run_summary = {
        "start_time": samples[0]["t"],
        "end_time": last["t"],
        "duration_seconds": 2.0 * (len(samples) - 1),
        "sample_count": len(samples),
        "cpu_total_percent": {k: 50.0 for k in ("peak", "p99", "p95", "p75", "p50", "avg")},
        "containers": [
            {
                "name": "command",
                "cpu_cores": {k: 1.0 for k in ("peak", "p99", "p95", "p75", "p50", "avg")},
                "memory_bytes": {k: 100.0 for k in ("peak", "p99", "p95", "p75", "p50", "avg")},
                "cpu_seconds": last["job"]["cpu_seconds"],
            }
        ],
        "cpu_seconds": last["job"]["cpu_seconds"],
        "collector": {"run_key": run_key, "host": "runner-1"},
        **summary,
    }
    return {"execution": dict(EXECUTION), "run_summary": run_summary}
