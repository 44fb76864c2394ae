"""The live batch's wire format (``POST /api/v1/metrics/live``), checked.

The body (see :mod:`resmon.collect.live`): ``{"execution": {...as a push's...},
"run": {run_key, start_time, host, live_interval_seconds, interval_seconds, mode,
command_container}, "batch": {seq, samples: [{t, elapsed, host, job, containers}]}}``.
The execution is checked by the push's own validator; ``run`` and ``batch`` here.
What is unknown passes through (peers may add fields); what is known must be of its
type, so nothing stored can fail a read, a summary or a history later.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from resmon.schema import (
    MAX_CONTAINERS,
    MAX_NUMBER,
    PayloadError,
    parse_time,
    scope_too_long,
    validate_push,
)

MAX_BATCH_BYTES = 256 * 1024
MAX_SAMPLES = 5000
MAX_SEQ = 2**62
MAX_LIVE_INTERVAL = 86_400.0
_RUN_KEY = re.compile(r"[\x21-\x7e]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
HOST_FIELDS = ("cpu_percent", "mem_used_bytes", "mem_total_bytes")
JOB_FIELDS = ("cpu_cores", "memory_bytes", "cpu_seconds")
CONTAINER_FIELDS = (
    "cpu_cores",
    "memory_bytes",
    "cpu_seconds",
    "limit_cpu_cores",
    "limit_memory_bytes",
)


@dataclass(frozen=True)
class LiveBatch:
    execution: dict[str, Any]  # canonical, as a push's
    run: dict[str, Any]
    seq: int
    samples: list[dict[str, Any]]


def _number(value: Any, where: str, *, nullable: bool = True) -> None:
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PayloadError(f"{where} must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError(f"{where} must be finite")
    if value < 0 or value > MAX_NUMBER:
        raise PayloadError(f"{where} must be from 0 to 2^62")


def _text(value: Any, where: str, *, nullable: bool = True, limit: int = 255) -> None:
    if value is None and nullable:
        return
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{where} must be a non-empty string")
    if len(value) > limit or scope_too_long(value) or _CONTROL.search(value):
        raise PayloadError(f"{where} must be at most {limit} bytes without control characters")


def _object(value: Any, where: str, *, nullable: bool = False) -> dict:
    if value is None and nullable:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(f"{where} must be an object")
    return value


def _time(value: Any, where: str, *, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    try:
        parse_time(value)
    except (TypeError, ValueError, OverflowError):
        raise PayloadError(f"{where} must be an RFC 3339 time") from None


def _run(value: Any) -> dict[str, Any]:
    run = _object(value, "run")
    key = run.get("run_key")
    if not isinstance(key, str) or not _RUN_KEY.fullmatch(key):
        raise PayloadError("run.run_key must be 1 to 64 printable ASCII characters")
    _time(run.get("start_time"), "run.start_time", nullable=True)
    _text(run.get("host"), "run.host")
    _text(run.get("mode"), "run.mode", limit=32)
    _text(run.get("command_container"), "run.command_container")
    for name in ("live_interval_seconds", "interval_seconds"):
        _number(run.get(name), f"run.{name}")
        if run.get(name) is not None and not 0 < run[name] <= MAX_LIVE_INTERVAL:
            raise PayloadError(f"run.{name} must be above 0 and at most {MAX_LIVE_INTERVAL:g}")
    return run


def _sample(value: Any, where: str) -> dict[str, Any]:
    sample = _object(value, where)
    _time(sample.get("t"), f"{where}.t")
    _number(sample.get("elapsed"), f"{where}.elapsed")
    host = _object(sample.get("host"), f"{where}.host", nullable=True)
    for name in HOST_FIELDS:
        _number(host.get(name), f"{where}.host.{name}")
    job = _object(sample.get("job"), f"{where}.job", nullable=True)
    for name in JOB_FIELDS:
        _number(job.get(name), f"{where}.job.{name}")
    containers = _object(sample.get("containers"), f"{where}.containers", nullable=True)
    if len(containers) > MAX_CONTAINERS:
        raise PayloadError(f"{where}.containers has more than {MAX_CONTAINERS} entries")
    for name, figures in containers.items():
        _text(name, f"{where}.containers name", nullable=False)
        c = _object(figures, f"{where}.containers[{name!r}]")
        for field in CONTAINER_FIELDS:
            _number(c.get(field), f"{where}.containers[{name!r}].{field}")
        _text(c.get("memory_kind"), f"{where}.containers[{name!r}].memory_kind", limit=16)
    return sample


def validate_live_batch(obj: Any) -> LiveBatch:
    """A decoded batch body checked; :class:`~resmon.schema.PayloadError` says where not."""
    if not isinstance(obj, dict):
        raise PayloadError("payload must be a JSON object")
    # The execution (and the nesting depth of the whole body) as a push's.
    execution = validate_push(
        {
            "execution": obj.get("execution"),
            "run": obj.get("run"),
            "batch": obj.get("batch"),
            "run_summary": {},
        }
    ).execution
    run = _run(obj.get("run"))
    batch = _object(obj.get("batch"), "batch")
    seq = batch.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
        raise PayloadError("batch.seq must be a whole number from 0 to 2^62")
    samples = batch.get("samples")
    if not isinstance(samples, list) or not samples:
        raise PayloadError("batch.samples must be a non-empty list")
    if len(samples) > MAX_SAMPLES:
        raise PayloadError(f"batch.samples has more than {MAX_SAMPLES} entries")
    checked = [_sample(s, f"batch.samples[{i}]") for i, s in enumerate(samples)]
    return LiveBatch(execution=execution, run=run, seq=seq, samples=checked)
