"""The wire format: the push payload and the run summary, as plain dicts.

Shared by the collector (which builds payloads) and the server (which validates
them).  Only orjson is imported here: the collector path stays light.

The contract is the Forgejo runner resource collector's (docs/architecture.md): extra
fields are allowed and kept, and none of ours is required from a peer.  What is
checked is what would otherwise corrupt storage or queries: types, finiteness,
sign and size of numbers, and control characters in scope fields.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from resmon.stats import STAT_KEYS
from resmon.tokens import canonical_repository

EXECUTION_FIELDS = ("organization", "repository", "workflow", "job", "run_id")
STAT_FIELDS = ("cpu_total_percent", "mem_used_bytes", "mem_used_percent")
CONTAINER_STAT_FIELDS = ("cpu_cores", "memory_bytes")
PROCESS_LISTS = ("top_cpu_processes", "top_mem_processes")

# Bytes of UTF-8 in one scope field: PostgreSQL refuses a B-tree entry over 2,704
# bytes, and the scope index holds all four fields (255 four-byte characters each
# made 4,112 bytes: a 5xx the collector would retry forever).
MAX_SCOPE_LEN = 255
# Large enough for any byte count or CPU-second total a real run produces,
# small enough to fit a signed 64-bit column and a float exactly enough.
MAX_NUMBER = 2.0**62
MAX_CONTAINERS = 1000
MAX_PROCESSES = 1000
# Objects and lists inside objects and lists, counted from the payload itself: a
# run summary needs five.  orjson parses up to 1024 levels but serialises only
# 254, and the server serialises every payload it stores, so deeper ones must be
# refused before anything writes them.
MAX_DEPTH = 64
# A container's fields checked as numbers beside its stats: the limits and counters.
_NUMERIC_CONTAINER_FIELDS = ("limit_", "cpu_seconds", "cpu_throttled", "throttled_", "oom_")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FRACTION = re.compile(r"\.(\d+)")


class PayloadError(ValueError):
    """A payload that does not meet the wire contract; the message says where."""


@dataclass(frozen=True)
class PushPayload:
    """A validated push: the execution scope (canonical strings) and the run summary."""

    execution: dict[str, Any]
    run_summary: dict[str, Any]

    @property
    def scope(self) -> tuple[str, str, str, str]:
        e = self.execution
        return e["organization"], e["repository"], e["workflow"], e["job"]


def loads(body: bytes | str) -> Any:
    """Parse JSON; a ``PayloadError('invalid JSON payload')`` on anything orjson rejects."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise PayloadError("invalid JSON payload") from None


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def parse_time(value: str) -> datetime:
    """An RFC 3339 time (Go writes up to nanoseconds) as an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        raise ValueError("not a time")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python takes at most microseconds: cut Go's nanoseconds to six digits.
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError("time without a zone offset")
    try:
        return dt.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before datetime.min in UTC
        raise ValueError("time out of range") from None


def format_time(dt: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as Go's time.Time marshals (to the microsecond)."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def scope_too_long(value: str) -> bool:
    """Whether a scope field is over :data:`MAX_SCOPE_LEN` bytes of UTF-8."""
    return len(value) > MAX_SCOPE_LEN or len(value.encode("utf-8", "surrogatepass")) > MAX_SCOPE_LEN


def _scope_string(value: Any, where: str, *, required: bool) -> str:
    if value is None:
        value = ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PayloadError(f"{where} must be a string")
    try:
        value = str(value)
    except ValueError:  # an int of more digits than Python converts to text
        raise PayloadError(f"{where} is longer than {MAX_SCOPE_LEN} bytes") from None
    if required and not value.strip():
        raise PayloadError(f"{where} is required")
    if scope_too_long(value):
        raise PayloadError(f"{where} is longer than {MAX_SCOPE_LEN} bytes (UTF-8)")
    if _CONTROL.search(value):
        raise PayloadError(f"{where} contains control characters")
    return value


def _number(value: Any, where: str, *, integer: bool = False) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PayloadError(f"{where} must be a number")
    if integer and not isinstance(value, int) and not float(value).is_integer():
        raise PayloadError(f"{where} must be a whole number")
    # Only floats can be infinite or NaN (math.isfinite overflows on a huge int).
    if isinstance(value, float) and not math.isfinite(value):
        raise PayloadError(f"{where} must be finite")
    if value < 0:
        raise PayloadError(f"{where} must not be negative")
    if value > MAX_NUMBER:
        raise PayloadError(f"{where} is too large")
    return value


def _plain_number(value: Any) -> bool:
    """Whether ``value`` passes :func:`_number` (not ``integer``) at a glance: a finite
    float or an int (not a bool) in 0..MAX_NUMBER.  NaN and the infinities fail the
    comparison.  The common case of a push, checked before any message is made."""
    kind = type(value)
    return (kind is float or kind is int) and 0 <= value <= MAX_NUMBER


def _stat(value: Any, where: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise PayloadError(f"{where} must be an object with {', '.join(STAT_KEYS)}")
    for key in STAT_KEYS:
        if key in value and not _plain_number(value[key]):
            _number(value[key], f"{where}.{key}")


def _object(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise PayloadError(f"{where} must be an object")
    return value


def _list(value: Any, where: str, limit: int) -> list:
    if not isinstance(value, list):
        raise PayloadError(f"{where} must be a list")
    if len(value) > limit:
        raise PayloadError(f"{where} has more than {limit} entries")
    return value


def validate_run_summary(summary: Any, where: str = "run_summary") -> dict:
    """Check the known fields of a run summary; unknown ones pass through."""
    summary = _object(summary, where)
    for key in ("start_time", "end_time"):
        if summary.get(key) is not None:
            try:
                parse_time(summary[key])
            except (TypeError, ValueError):
                raise PayloadError(f"{where}.{key} must be an RFC 3339 time") from None
    for key in ("duration_seconds", "cpu_seconds"):
        if summary.get(key) is not None:
            _number(summary[key], f"{where}.{key}")
    if summary.get("sample_count") is not None:
        _number(summary["sample_count"], f"{where}.sample_count", integer=True)
    for key in STAT_FIELDS:
        _stat(summary.get(key), f"{where}.{key}")
    for key in PROCESS_LISTS:
        if summary.get(key) is None:
            continue
        for i, proc in enumerate(_list(summary[key], f"{where}.{key}", MAX_PROCESSES)):
            p = _object(proc, f"{where}.{key}[{i}]")
            pid = p.get("pid")
            if pid is not None and not (type(pid) is int and _plain_number(pid)):
                _number(pid, f"{where}.{key}[{i}].pid", integer=True)
            if p.get("name") is not None and not isinstance(p["name"], str):
                raise PayloadError(f"{where}.{key}[{i}].name must be a string")
            for field in ("peak_cpu_percent", "peak_mem_rss_bytes"):
                value = p.get(field)
                if value is not None and not _plain_number(value):
                    _number(value, f"{where}.{key}[{i}].{field}")
    if summary.get("containers") is not None:
        for i, c in enumerate(_list(summary["containers"], f"{where}.containers", MAX_CONTAINERS)):
            c = _object(c, f"{where}.containers[{i}]")
            name = c.get("name")
            if not isinstance(name, str) or not name or len(name) > MAX_SCOPE_LEN:
                raise PayloadError(f"{where}.containers[{i}].name must be a non-empty string")
            if _CONTROL.search(name):
                raise PayloadError(f"{where}.containers[{i}].name contains control characters")
            for key in CONTAINER_STAT_FIELDS:
                _stat(c.get(key), f"{where}.containers[{i}].{key}")
            for key, value in c.items():
                if value is None or _plain_number(value):
                    continue
                if key.startswith(_NUMERIC_CONTAINER_FIELDS):
                    _number(value, f"{where}.containers[{i}].{key}")
    _context_and_step(summary, where)
    return summary


# resmon's additive fields of a run summary (a peer sends none): the run's context
# (resmon.execution.context_from_env) and, for one step of a job pushed on its own
# (``resmon collect --step NAME``), the step it was; the server merges the steps of
# one run id and attempt into one run (resmon.store.steps), so the name must be usable.
MAX_STEPS = 1000


def _context_and_step(summary: dict, where: str) -> None:
    context = summary.get("context")
    if context is not None:
        for key, value in _object(context, f"{where}.context").items():
            if value is not None and not isinstance(value, str):
                raise PayloadError(f"{where}.context.{key} must be a string")
    step = summary.get("step")
    if step is not None:
        name = _object(step, f"{where}.step").get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_SCOPE_LEN:
            raise PayloadError(f"{where}.step.name must be a non-empty string of at most 255")
        if _CONTROL.search(name):
            raise PayloadError(f"{where}.step.name contains control characters")
        if summary.get("start_time") is None:
            raise PayloadError(f"{where}.start_time is required with step")
    if summary.get("steps") is not None:
        for i, item in enumerate(_list(summary["steps"], f"{where}.steps", MAX_STEPS)):
            _object(item, f"{where}.steps[{i}]")


def _too_deep(value: Any, depth: int) -> bool:
    """Whether objects and lists nest more than ``MAX_DEPTH`` levels, ``value`` (a dict
    or a list) being at level ``depth``.  Recursion stops at ``MAX_DEPTH``, so a
    payload nesting a thousand levels costs at most that many frames."""
    if depth > MAX_DEPTH:
        return True
    for child in value.values() if type(value) is dict else value:
        kind = type(child)
        if (kind is dict or kind is list) and _too_deep(child, depth + 1):
            return True
    return False


def validate_push(obj: Any) -> PushPayload:
    """Validate a decoded push body; returns canonical execution scope and the summary."""
    if not isinstance(obj, dict):
        raise PayloadError("payload must be a JSON object")
    for key, value in obj.items():
        if isinstance(value, (dict, list)) and _too_deep(value, 2):
            raise PayloadError(f"{key} nests objects or lists deeper than {MAX_DEPTH} levels")
    execution = _object(obj.get("execution"), "execution")
    canonical = dict(execution)
    for key in ("organization", "repository", "workflow", "job"):
        canonical[key] = _scope_string(execution.get(key), f"execution.{key}", required=False)
    canonical["run_id"] = _scope_string(execution.get("run_id"), "execution.run_id", required=True)
    if execution.get("run_attempt") is not None:
        canonical["run_attempt"] = _scope_string(
            execution["run_attempt"], "execution.run_attempt", required=False
        )
    canonical["repository"] = canonical_repository(
        canonical["organization"], canonical["repository"]
    )
    summary = validate_run_summary(obj.get("run_summary"))
    return PushPayload(execution=canonical, run_summary=summary)


def push_payload(execution: dict[str, Any], run_summary: dict[str, Any]) -> dict[str, Any]:
    """The body the collector POSTs: ``{"execution": ..., "run_summary": ...}``."""
    return {"execution": execution, "run_summary": run_summary}
