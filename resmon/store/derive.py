"""Columns of a stored run derived from its payload, shared by a push and the migrations.

A push (:func:`resmon.store.write.store_push`) and the backfills of older databases
(:mod:`resmon.store.migrations`: version 2's columns and container rows, version 4's
scoped idempotency keys and wrapped step, version 5's job figures) must derive them the
same way, or a run stored by one would not be found as a duplicate of the same run stored
by the other.  Pure: no database here, so the migrations depend on this module and not on
the write path.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from resmon.schema import parse_time
from resmon.stats import STAT_KEYS
from resmon.store.io_columns import io_columns
from resmon.store.job_figures import job_columns
from resmon.store.run_context import context_columns
from resmon.store.values import bigint as _int
from resmon.store.values import name as _name
from resmon.store.values import number as _num
from resmon.tokens import canonical_repository


@dataclass
class Derived:
    """Columns derived from one payload: what both a push and the v2 backfill store."""

    repository: str
    columns: dict[str, Any]
    containers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def run_key(self) -> str:
        return self.columns["run_key"]


def sha256_hex(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def _naive_utc(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_time(value).replace(tzinfo=None)
    except ValueError:
        return None


def scoped_idempotency_key(
    organization: str, repository: str, workflow: str, job: str, key: str | None
) -> str | None:
    """SHA-256 of (scope, idempotency key), or None without a key: keys are unique per
    scope, so one scope's key never collides with, nor reveals, another scope's.

    One hashed column rather than a unique index over the five columns: four scope
    strings of up to 255 characters each can exceed PostgreSQL's B-tree entry limit
    (2,704 bytes), and the write path looks the row up by one value either way.
    ``repository`` is the canonical ``org/repo`` spelling, as stored.
    """
    if not key:
        return None
    return sha256_hex("\0".join(("key-v1", organization, repository, workflow, job, key)))


def command_columns(run_summary: Any) -> dict[str, str | None]:
    """Which wrapped step a run was, from its summary's ``command`` object:
    ``command_container`` (``resmon collect --name``, ``command`` by default) and
    ``command_name`` (the command's base name).  Both None for a sidecar run and for
    a peer's summary without ``command`` (the Go collector sends none).

    The summary's ``command`` is not checked on a push (a peer may send anything
    there), so nothing in it can fail a write: what is not a string is left out."""
    command = run_summary.get("command") if isinstance(run_summary, dict) else None
    if not isinstance(command, dict):
        return {"command_container": None, "command_name": None}
    return {
        "command_container": _name(command.get("container")),
        "command_name": _name(command.get("name")),
    }


def command_columns_of_text(payload_text: Any) -> dict[str, str | None]:
    """:func:`command_columns` of a stored payload (JSON text), for a backfill.

    A payload whose text has no ``"command"`` key is not parsed: a stored summary
    may be megabytes, and the key is written as is by every writer of stored
    payloads (orjson here, Go's encoding/json in the receiver's databases).  One
    that is no JSON object gives None for both."""
    if not isinstance(payload_text, str) or '"command"' not in payload_text:
        return command_columns(None)
    try:
        summary = orjson.loads(payload_text)
    except orjson.JSONDecodeError:
        summary = None
    return command_columns(summary)


def _stat(summary: dict[str, Any], name: str, key: str) -> Any:
    stat = summary.get(name)
    return stat.get(key) if isinstance(stat, dict) else None


def derive(execution: dict[str, Any], run_summary: dict[str, Any], body_sha256: str) -> Derived:
    """Indexed columns and container rows from a canonical execution and a run summary."""
    org, repo = str(execution.get("organization", "")), str(execution.get("repository", ""))
    repo = canonical_repository(org, repo)
    workflow, job = str(execution.get("workflow", "")), str(execution.get("job", ""))
    run_id = str(execution.get("run_id", ""))
    run_attempt = str(execution.get("run_attempt") or "")
    start = _naive_utc(run_summary.get("start_time"))
    # Normalised, so "…Z" and "…+00:00" of the same instant are one run.
    start_key = start.isoformat() if start else f"body:{body_sha256}"
    run_key = sha256_hex(
        "\0".join(("v1", org, repo, workflow, job, run_id, run_attempt, start_key))
    )
    columns: dict[str, Any] = {
        "organization": org,
        "workflow": workflow,
        "job": job,
        "run_id": run_id,
        "run_attempt": run_attempt,
        "body_sha256": body_sha256,
        "run_key": run_key,
        "start_time": start,
        "end_time": _naive_utc(run_summary.get("end_time")),
        "duration_seconds": _num(run_summary.get("duration_seconds")),
        "sample_count": _int(run_summary.get("sample_count")),
        "cpu_seconds": _num(run_summary.get("cpu_seconds")),
        "cpu_percent_peak": _num(_stat(run_summary, "cpu_total_percent", "peak")),
        "cpu_percent_p95": _num(_stat(run_summary, "cpu_total_percent", "p95")),
        "mem_bytes_peak": _int(_stat(run_summary, "mem_used_bytes", "peak")),
        "mem_bytes_p95": _int(_stat(run_summary, "mem_used_bytes", "p95")),
        **command_columns(run_summary),
        **job_columns(run_summary),
        **context_columns(run_summary),
        **io_columns(run_summary),
    }
    containers = []
    for c in run_summary.get("containers") or ():
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            continue
        row: dict[str, Any] = {"name": c["name"][:255]}
        for key in STAT_KEYS:
            row[f"cpu_cores_{key}"] = _num(_stat(c, "cpu_cores", key))
            memory = _stat(c, "memory_bytes", key)
            row[f"memory_bytes_{key}"] = _num(memory) if key == "avg" else _int(memory)
        row["cpu_seconds"] = _num(c.get("cpu_seconds"))
        row["limit_cpu_cores"] = _num(c.get("limit_cpu_cores"))
        row["limit_memory_bytes"] = _int(c.get("limit_memory_bytes"))
        row["cpu_throttled_seconds"] = _num(c.get("cpu_throttled_seconds"))
        row["oom_kills"] = _int(c.get("oom_kills"))
        containers.append(row)
    return Derived(repository=repo, columns=columns, containers=containers)


def derive_legacy(
    org: str, repo: str, workflow: str, job: str, run_id: str, payload_text: Any
) -> Derived:
    """:func:`derive` for a row of a version-1 database (scope columns + payload text)."""
    try:
        summary = orjson.loads(payload_text) if payload_text else {}
    except orjson.JSONDecodeError:
        summary = {}
    if not isinstance(summary, dict):
        summary = {}
    execution = {
        "organization": org or "",
        "repository": canonical_repository(org or "", repo or ""),
        "workflow": workflow or "",
        "job": job or "",
        "run_id": run_id or "",
    }
    canonical = {"execution": execution, "run_summary": summary}
    digest = sha256_hex(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS))
    return derive(execution, summary, digest)
