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
from datetime import datetime
from typing import Any

from resmon.schema import (
    MAX_CONTAINERS,
    MAX_DEPTH,
    MAX_NUMBER,
    PayloadError,
    parse_time,
    scope_too_long,
    validate_push,
)
from resmon.schema import _too_deep as too_deep

MAX_BATCH_BYTES = 256 * 1024
MAX_SAMPLES = 5000
MAX_SEQ = 2**62
MAX_LIVE_INTERVAL = 86_400.0
_RUN_KEY = re.compile(r"[\x21-\x7e]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
HOST_FIELDS = ("cpu_percent", "mem_used_bytes", "mem_total_bytes")
# Disk I/O and network totals since the run's first reading (resmon.collect.io_run).
IO_FIELDS = ("io_read_bytes", "io_write_bytes", "net_rx_bytes", "net_tx_bytes")
JOB_FIELDS = ("cpu_cores", "memory_bytes", "cpu_seconds", *IO_FIELDS)
CONTAINER_FIELDS = (
    "cpu_cores",
    "memory_bytes",
    "cpu_seconds",
    "limit_cpu_cores",
    "limit_memory_bytes",
    *IO_FIELDS,
)
_JSON_NUMBERS = (int, float)
_SAMPLE_KEYS = frozenset(("t", "elapsed", "host", "job", "containers"))
_HOST_KEYS = frozenset(HOST_FIELDS)
_JOB_KEYS = frozenset(JOB_FIELDS)
_CONTAINER_KEYS = frozenset((*CONTAINER_FIELDS, "memory_kind"))
_SAMPLE_LEVEL = 4  # a sample's level in the body, as schema.validate_push counts them


@dataclass(frozen=True)
class LiveBatch:
    execution: dict[str, Any]  # canonical, as a push's
    run: dict[str, Any]
    seq: int
    samples: list[dict[str, Any]]
    times: list[datetime]  # the samples' times, aware UTC


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
    # The common case in one test: printable ASCII (no control characters, a byte
    # per character) within the limit.
    if type(value) is str and 0 < len(value) <= limit and value.isascii() and value.isprintable():
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


def _numbers(obj: dict[str, Any], fields: tuple[str, ...], where: str) -> None:
    for name in fields:
        value = obj.get(name)
        # The common case without a call: a finite JSON number in range (NaN and the
        # infinities fail the comparison and get _number's message).
        if value is None or (type(value) in _JSON_NUMBERS and 0 <= value <= MAX_NUMBER):
            continue
        _number(value, f"{where}.{name}")


def _sample(value: Any, where: str) -> tuple[dict[str, Any], datetime]:
    """A sample checked, and its time.  Every known field is a number or a string; a
    sample with only known fields needs no walk for the nesting depth."""
    sample = _object(value, where)
    t = sample.get("t")
    try:
        at = parse_time(t)
    except (TypeError, ValueError, OverflowError):
        raise PayloadError(f"{where}.t must be an RFC 3339 time") from None
    _numbers(sample, ("elapsed",), where)
    known = sample.keys() <= _SAMPLE_KEYS
    host = _object(sample.get("host"), f"{where}.host", nullable=True)
    _numbers(host, HOST_FIELDS, f"{where}.host")
    job = _object(sample.get("job"), f"{where}.job", nullable=True)
    _numbers(job, JOB_FIELDS, f"{where}.job")
    known = known and host.keys() <= _HOST_KEYS and job.keys() <= _JOB_KEYS
    containers = _object(sample.get("containers"), f"{where}.containers", nullable=True)
    if len(containers) > MAX_CONTAINERS:
        raise PayloadError(f"{where}.containers has more than {MAX_CONTAINERS} entries")
    for name, figures in containers.items():
        _text(name, f"{where}.containers name", nullable=False)
        c = _object(figures, f"{where}.containers[{name!r}]")
        _numbers(c, CONTAINER_FIELDS, f"{where}.containers[{name!r}]")
        _text(c.get("memory_kind"), f"{where}.containers[{name!r}].memory_kind", limit=16)
        known = known and c.keys() <= _CONTAINER_KEYS
    if not known and too_deep(sample, _SAMPLE_LEVEL):
        raise PayloadError(f"batch nests objects or lists deeper than {MAX_DEPTH} levels")
    return sample, at


def validate_live_batch(obj: Any) -> LiveBatch:
    """A decoded batch body checked; :class:`~resmon.schema.PayloadError` says where not."""
    if not isinstance(obj, dict):
        raise PayloadError("payload must be a JSON object")
    # The execution (and the nesting depth of the body but its samples, checked
    # by _sample) as a push's.
    batch = _object(obj.get("batch"), "batch")
    execution = validate_push(
        {
            "execution": obj.get("execution"),
            "run": obj.get("run"),
            "batch": {k: v for k, v in batch.items() if k != "samples"},
            "run_summary": {},
        }
    ).execution
    run = _run(obj.get("run"))
    seq = batch.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
        raise PayloadError("batch.seq must be a whole number from 0 to 2^62")
    samples = batch.get("samples")
    if not isinstance(samples, list) or not samples:
        raise PayloadError("batch.samples must be a non-empty list")
    if len(samples) > MAX_SAMPLES:
        raise PayloadError(f"batch.samples has more than {MAX_SAMPLES} entries")
    checked = [_sample(s, f"batch.samples[{i}]") for i, s in enumerate(samples)]
    return LiveBatch(
        execution=execution,
        run=run,
        seq=seq,
        samples=[s for s, _ in checked],
        times=[t for _, t in checked],
    )
