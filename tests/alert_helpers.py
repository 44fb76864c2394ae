"""Payloads and batches for the alert tests: a run whose job and container reach a
given share of their limits, and a live batch with a given sample."""

from __future__ import annotations

import copy
from typing import Any

from server_proc import sample_payload

GIB = 2**30
MEM_LIMIT = 2 * GIB
CPU_LIMIT = 2.0


def run_payload(run_id: str, mem_share: float, cpu_share: float = 0.1, **scope: Any) -> dict:
    """A pushed run whose container (and so the job) peaks at ``mem_share`` of its 2 GiB
    memory limit, with a CPU p95 of ``cpu_share`` of its 2 cores."""
    payload = sample_payload(
        run_id, start_time=f"2026-01-02T03:{int(run_id) % 60:02d}:05Z", **scope
    )
    container = copy.deepcopy(payload["run_summary"]["containers"][0])
    peak = int(mem_share * MEM_LIMIT)
    container["memory_bytes"] = {k: peak for k in ("peak", "p99", "p95", "p75", "p50", "avg")}
    cores = cpu_share * CPU_LIMIT
    container["cpu_cores"] = {k: cores for k in ("peak", "p99", "p95", "p75", "p50", "avg")}
    container["limit_memory_bytes"] = MEM_LIMIT
    container["limit_cpu_cores"] = CPU_LIMIT
    payload["run_summary"]["containers"] = [container]
    return payload


def live_body(
    run_key: str, seq: int, *, cpu_share: float, mem_share: float, t: str, **scope: Any
) -> dict[str, Any]:
    """A live batch of one sample: the runner container at the given shares of its limits."""
    execution = sample_payload("live-1", **scope)["execution"]
    cores, memory = cpu_share * CPU_LIMIT, int(mem_share * MEM_LIMIT)
    return {
        "execution": execution,
        "run": {
            "run_key": run_key,
            "start_time": "2026-01-02T03:04:05Z",
            "host": "runner-1",
            "live_interval_seconds": 1.0,
        },
        "batch": {
            "seq": seq,
            "samples": [
                {
                    "t": t,
                    "elapsed": 1.0,
                    "host": {"cpu_percent": 10.0, "mem_used_bytes": 1, "mem_total_bytes": 2},
                    "job": {"cpu_cores": cores, "memory_bytes": memory, "cpu_seconds": 1.0},
                    "containers": {
                        "runner": {
                            "cpu_cores": cores,
                            "memory_bytes": memory,
                            "cpu_seconds": 1.0,
                            "memory_kind": "cgroup",
                            "limit_cpu_cores": CPU_LIMIT,
                            "limit_memory_bytes": MEM_LIMIT,
                        }
                    },
                }
            ],
        },
    }
