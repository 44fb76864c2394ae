"""A realistic history for the page tests: several jobs in two organisations, runs
over two weeks with timelines, OOM kills and throttling, a lost run, a regression
flagged, and live batches for running runs.

    path = build_history(tmp_path / "metrics.db")
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from query_data import GiB, MiB, push_body, run_summary

from resmon.schema import format_time, validate_push
from resmon.server.live_wire import validate_live_batch
from resmon.store import alert_eval, alerts, baseline, events, live
from resmon.store import db as dbmod
from resmon.store.write import store_push
from resmon.tokens import push_token

# (org, repo, workflow, job, runs, base memory MiB, cores)
JOBS = (
    ("acme", "acme/widgets", "ci.yml", "build", 14, 700, 1.4),
    ("acme", "acme/widgets", "ci.yml", "test", 12, 420, 0.9),
    ("acme", "acme/gadgets", "release.yml", "package", 6, 1500, 1.8),
    ("acme", "acme/gadgets", "nightly.yml", "integration (postgres-16)", 9, 2200, 1.1),
    ("globex", "globex/api", "ci.yml", "build", 10, 600, 1.2),
    ("globex", "globex/api", "ci.yml", "lint", 2, 150, 0.3),
)
REGRESSED = ("acme", "acme/widgets", "ci.yml", "build")
LOST_JOB = ("acme", "acme/gadgets", "nightly.yml", "integration (postgres-16)")
OTHER_ORG = "globex"
TIMELINE_POINTS = 120
RULES = (
    {"name": "memory over the limit", "mem_threshold": "100%", "consecutive": 1},
    {
        "name": "CPU near the limit",
        "organization": "acme",
        "cpu_threshold": "90%",
        "consecutive": 2,
    },
    {
        "name": "globex memory",
        "organization": "globex",
        "mem_threshold": "3Gi",
        "consecutive": 3,
        "enabled": False,
    },
)


def _timeline(duration: float, cores: float, builder_mem: int, wave: float) -> list[dict]:
    """A compile-like shape: CPU in bursts, memory climbing then falling back."""
    points = []
    for i in range(TIMELINE_POINTS):
        f = i / (TIMELINE_POINTS - 1)
        cpu = cores * (0.55 + 0.45 * math.sin(f * 9 + wave) ** 2) * (0.3 if f > 0.92 else 1.0)
        mem = builder_mem * (0.35 + 0.65 * math.sin(f * math.pi * 0.9) ** 0.6)
        points.append(
            {
                "t": round(duration * f, 3),
                "cpu_percent": round(min(100.0, cpu / 2 * 100 + 8), 2),
                "mem_used_bytes": int(mem + 900 * MiB),
                "containers": {
                    "builder": {"cpu_cores": round(cpu, 4), "memory_bytes": int(mem)},
                    "db": {
                        "cpu_cores": round(0.1 + 0.05 * math.cos(f * 20), 4),
                        "memory_bytes": int(90 * MiB + 10 * MiB * f),
                    },
                },
            }
        )
    return points


def _summary(start: datetime, n: int, memory_mib: int, cores: float, heavy: bool) -> dict:
    duration = 300.0 + 40 * math.sin(n) + (120 if heavy else 0)
    builder_mem = int(memory_mib * MiB * (1 + 0.04 * math.sin(n * 1.7)) * (1.8 if heavy else 1))
    summary = run_summary(
        start=start,
        duration=duration,
        cpu_percent=70.0,
        mem_bytes=3 * GiB,
        builder_cores=cores * (1.6 if heavy else 1),
        builder_mem=builder_mem,
        cpu_seconds=cores * duration * 0.7,
    )
    builder = summary["containers"][0]
    builder["limit_memory_bytes"] = max(GiB, int(memory_mib * MiB * 1.5) // GiB * GiB)
    builder["top_processes"] = [
        {"pid": 4242, "name": "cc1plus", "peak_cpu_percent": 98.5, "peak_mem_rss_bytes": 300 * MiB},
        {"pid": 4250, "name": "ld", "peak_cpu_percent": 61.0, "peak_mem_rss_bytes": 410 * MiB},
        {"pid": 17, "name": "make", "peak_cpu_percent": 2.0, "peak_mem_rss_bytes": 8 * MiB},
    ]
    if n % 5 == 3:
        builder["cpu_throttled_seconds"] = 12.5
    if heavy:
        builder["oom_kills"] = 1
    summary["timeline"] = _timeline(duration, builder["cpu_cores"]["peak"], builder_mem, n)
    summary["job"] = {
        "scope": "containers",
        "containers": ["builder"],
        "cpu_cores": builder["cpu_cores"],
        "memory_bytes": builder["memory_bytes"],
        "memory_kind": "pss",
        "cpu_seconds": builder["cpu_seconds"],
        "limit_cpu_cores": 2.0,
        "limit_memory_bytes": builder["limit_memory_bytes"],
        "io": {
            "read_bytes": 310 * MiB + n * MiB,
            "write_bytes": 1200 * MiB,
            "sources": ["cgroupfs"],
        },
        "network": {"rx_bytes": 95 * MiB, "tx_bytes": 4 * MiB},
    }
    branch = "main" if n % 3 else ("feature/faster-link", "renovate/llvm-18")[n % 2]
    summary["context"] = {
        "ref": f"refs/heads/{branch}",
        "branch": branch,
        "sha": f"{(n * 2654435761) % 16**12:012x}{n:028x}",
        "event": "push" if n % 3 else "pull_request",
        "runner_name": f"runner-{n % 4}",
        "runner_labels": "self-hosted,linux,x64",
        "pod": f"runner-{n % 4}-7f9c",
        "namespace": "ci",
        "node": "node-b",
    }
    summary["command"] = {
        "name": "make",
        "container": "builder",
        "exit_code": 0,
        "left_running": {
            "count": 2,
            "killed": False,
            "cpu_seconds": 3.2,
            "processes": [{"pid": 5001, "name": "sccache"}, {"pid": 5002, "name": "gradle-daemon"}],
        }
        if heavy
        else {"count": 0},
    }
    return summary


def build_history(path: str | Path, now: datetime | None = None) -> str:
    """The database file at ``path`` with the jobs of :data:`JOBS`."""
    now = now or datetime.now(UTC).replace(microsecond=0)
    db = dbmod.open_database(str(path))
    dbmod.migrate(db)
    options = baseline.BaselineOptions()
    for rule in RULES:
        alerts.create_rule(rule)
    alert_eval.start_cursor()  # from the first run on
    for org, repo, workflow, job, runs, memory_mib, cores in JOBS:
        for n in range(runs):
            start = now - timedelta(days=runs - n, hours=2, minutes=7 * n)
            heavy = (org, repo, workflow, job) == REGRESSED and n == runs - 1
            summary = _summary(start, n, memory_mib, cores, heavy)
            body = push_body(str(1000 + n), summary, org=org, repo=repo, workflow=workflow, job=job)
            stored = store_push(validate_push(body), received_at=start + timedelta(minutes=9))
            baseline.save_flags(stored.id, baseline.compare_stored_run(stored.id, options))
    _lost_run(now)
    while alert_eval.step(lambda cursor: events.events_after(cursor, 500))[0]:
        pass
    db.close()
    return str(path)


def _lost_run(now: datetime) -> None:
    """A streamed run whose batches stopped an hour ago, made lost (its partial summary
    from the samples) as the server's check would."""
    start = now - timedelta(hours=1, minutes=2)
    key = new_run_key()
    for seq in range(4):
        body = live_batch(*LOST_JOB, "1500", run_key=key, seq=seq, start=start)
        batch = validate_live_batch(body)
        live.store_batch(
            batch.execution,
            batch.run,
            batch.seq,
            batch.samples,
            times=batch.times,
            now=start + timedelta(seconds=16 * (seq + 1)),
        )
    live.mark_lost(now=now)


# --- live batches --------------------------------------------------------------------


def live_batch(
    org: str,
    repo: str,
    workflow: str,
    job: str,
    run_id: str,
    *,
    run_key: str,
    seq: int,
    start: datetime,
    count: int = 8,
) -> dict[str, Any]:
    """A live batch as ``resmon collect`` sends it: ``count`` samples 2 s apart."""
    samples = []
    for k in range(count):
        i = seq * count + k
        t = start + timedelta(seconds=2 * i)
        cores = 0.8 + 0.6 * math.sin(i / 3) ** 2
        memory = int((300 + 8 * i) * MiB)
        samples.append(
            {
                "t": format_time(t),
                "elapsed": None if i == 0 else 2.0,
                "host": {
                    "cpu_percent": 35.0 + i % 20,
                    "mem_used_bytes": 3 * GiB,
                    "mem_total_bytes": 8 * GiB,
                },
                "job": {
                    "cpu_cores": None if i == 0 else cores,
                    "memory_bytes": memory,
                    "cpu_seconds": round(cores * 2 * i, 3),
                },
                "containers": {
                    "builder": {
                        "cpu_cores": None if i == 0 else cores,
                        "memory_bytes": memory,
                        "cpu_seconds": round(cores * 2 * i, 3),
                        "memory_kind": "pss",
                        "limit_cpu_cores": 2.0,
                        "limit_memory_bytes": 2 * GiB,
                    },
                },
            }
        )
    return {
        "execution": {
            "organization": org,
            "repository": repo,
            "workflow": workflow,
            "job": job,
            "run_id": run_id,
            "run_attempt": "1",
        },
        "run": {
            "run_key": run_key,
            "start_time": format_time(start),
            "host": "runner-7",
            "live_interval_seconds": 15,
            "interval_seconds": 2.0,
            "mode": "sidecar",
            "command_container": None,
        },
        "batch": {"seq": seq, "samples": samples},
    }


def new_run_key() -> str:
    return str(uuid.uuid4())


def batch_headers(body: dict[str, Any], hmac_key: str) -> dict[str, str]:
    e = body["execution"]
    token = push_token(hmac_key, e["organization"], e["repository"], e["workflow"], e["job"])
    return {
        "Authorization": f"Bearer {token}",
        "Idempotency-Key": f"{body['run']['run_key']}:{body['batch']['seq']}",
    }
