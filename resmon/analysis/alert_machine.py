"""Alert states as a pure state machine: thresholds, breaches, consecutive counts.

An alert rule watches a job (or its containers) against a CPU and a memory threshold.
Each observation -- a live sample of a running job, or a finished run -- is a breach,
not a breach, or nothing (no figure, or a percent threshold without a known limit:
the counts stay as they were).  A dimension (CPU, memory) starts alerting after
``consecutive`` breaches in a row and recovers after ``consecutive`` observations in
a row that are not breaches; the two dimensions make the state:

    normal -> cpu_alert | mem_alert -> both_alert -> ... -> normal

No I/O here: :mod:`resmon.store.alert_eval` reads the events and stores the states.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from resmon.units import parse_cpu, parse_memory

NORMAL, CPU_ALERT, MEM_ALERT, BOTH_ALERT = "normal", "cpu_alert", "mem_alert", "both_alert"
STATES = (NORMAL, CPU_ALERT, MEM_ALERT, BOTH_ALERT)
PERCENT, CORES, BYTES = "percent", "cores", "bytes"
MAX_CONSECUTIVE = 1000
MAX_PERCENT = 10_000.0

_CORES_WORD = re.compile(r"\s*(cores?|cpus?)\s*$", re.IGNORECASE)


class ThresholdError(ValueError):
    """A threshold that cannot be read; the message says how to write one."""


@dataclass(frozen=True)
class Threshold:
    """``kind`` percent (of the limit), cores (CPU) or bytes (memory), and its value."""

    kind: str
    value: float

    def text(self) -> str:
        """The threshold as a user writes it: ``90%``, ``2 cores``, ``3.5Gi``."""
        if self.kind == PERCENT:
            return f"{_number(self.value)}%"
        if self.kind == CORES:
            return f"{_number(self.value)} cores"
        return _bytes_text(int(self.value))


def _number(value: float) -> str:
    """The shortest text that reads back as ``value`` (``2``, ``87.5``)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _bytes_text(value: int) -> str:
    """The shortest exact Kubernetes quantity of ``value`` bytes (up to 3 decimals)."""
    for suffix, size in (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20)):
        if value >= size and (value * 1000) % size == 0:
            return f"{_number(round(value / size, 3))}{suffix}"
    for suffix, size in (("E", 10**18), ("P", 10**15), ("T", 10**12), ("G", 10**9), ("M", 10**6)):
        if value >= size and value % size == 0:
            return f"{value // size}{suffix}"
    if value >= 1024 and value % 1024 == 0:
        return f"{value // 1024}Ki"
    return str(value)


def _percent(text: str, what: str) -> Threshold:
    try:
        value = float(text[:-1].strip())
    except ValueError:
        raise ThresholdError(f"{what} {text!r} is not a percent: use e.g. 90%") from None
    if not (math.isfinite(value) and 0 < value <= MAX_PERCENT):
        raise ThresholdError(f"{what} must be above 0% and at most {MAX_PERCENT:g}%")
    return Threshold(PERCENT, value)


def parse_cpu_threshold(text: str) -> Threshold:
    """``90%`` of the CPU limit, or cores: ``2``, ``1.5 cores``, ``500m``."""
    s = str(text).strip()
    if s.endswith("%"):
        return _percent(s, "cpu_threshold")
    try:
        cores = parse_cpu(_CORES_WORD.sub("", s))
    except ValueError:
        raise ThresholdError(
            f"cpu_threshold {text!r} is neither a percent of the limit (90%) nor cores "
            "(2, 1.5 cores, 500m)"
        ) from None
    if not 0 < cores <= 100_000:
        raise ThresholdError("cpu_threshold in cores must be above 0 and at most 100000")
    return Threshold(CORES, cores)


def parse_mem_threshold(text: str) -> Threshold:
    """``90%`` of the memory limit, or bytes as a Kubernetes quantity: ``3.5Gi``, ``512Mi``
    (``GiB``/``MiB`` spellings are taken too)."""
    s = str(text).strip()
    if s.endswith("%"):
        return _percent(s, "mem_threshold")
    quantity = s[:-1] if s[-2:] in ("iB", "ib") else s
    try:
        size = parse_memory(quantity.strip())
    except ValueError:
        raise ThresholdError(
            f"mem_threshold {text!r} is neither a percent of the limit (90%) nor a size "
            "(3.5Gi, 512Mi, 2G)"
        ) from None
    if not 0 < size < 2**62:
        raise ThresholdError("mem_threshold as a size must be above 0 bytes")
    return Threshold(BYTES, float(size))


def breach(value: float | None, limit: float | None, threshold: Threshold | None) -> bool | None:
    """Whether ``value`` is at or over ``threshold``; None when it cannot be told (no
    threshold, no figure, or a percent threshold without a limit)."""
    if threshold is None or value is None or not math.isfinite(value):
        return None
    if threshold.kind == PERCENT:
        if limit is None or not math.isfinite(limit) or limit <= 0:
            return None
        return value >= limit * threshold.value / 100.0
    return value >= threshold.value


@dataclass(frozen=True)
class Counters:
    """One target's state: whether each dimension alerts, its consecutive breaches, and
    its consecutive observations without one (counted while it alerts)."""

    cpu_alert: bool = False
    mem_alert: bool = False
    cpu_breaches: int = 0
    mem_breaches: int = 0
    cpu_clear: int = 0
    mem_clear: int = 0

    @property
    def state(self) -> str:
        return state_of(self.cpu_alert, self.mem_alert)


def state_of(cpu_alert: bool, mem_alert: bool) -> str:
    if cpu_alert and mem_alert:
        return BOTH_ALERT
    if cpu_alert:
        return CPU_ALERT
    return MEM_ALERT if mem_alert else NORMAL


def _step(alerting: bool, breaches: int, clear: int, hit: bool | None, n: int):
    if hit is None:
        return alerting, breaches, clear
    if hit:
        breaches, clear = breaches + 1, 0
        if not alerting and breaches >= n:
            alerting = True
    else:
        breaches = 0
        clear = clear + 1 if alerting else 0
        if alerting and clear >= n:
            alerting, clear = False, 0
    return alerting, min(breaches, 2**31 - 1), min(clear, 2**31 - 1)


def observe(
    before: Counters, cpu_hit: bool | None, mem_hit: bool | None, consecutive: int
) -> Counters:
    """The counters after one observation; ``consecutive`` breaches in a row start a
    dimension's alert, as many observations without one in a row end it."""
    n = max(1, int(consecutive))
    cpu = _step(before.cpu_alert, before.cpu_breaches, before.cpu_clear, cpu_hit, n)
    mem = _step(before.mem_alert, before.mem_breaches, before.mem_clear, mem_hit, n)
    return replace(
        before,
        cpu_alert=cpu[0],
        cpu_breaches=cpu[1],
        cpu_clear=cpu[2],
        mem_alert=mem[0],
        mem_breaches=mem[1],
        mem_clear=mem[2],
    )
