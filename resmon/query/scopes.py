"""Whose figures a ``resmon query`` table shows: the job's own (the default) or the host's.

Every row of the read API carries both: the job's (``job_*``: CPU in cores, CPU
seconds, memory in bytes with its kind) and the host's, the whole machine the job
ran on (``cpu_percent_*``, ``mem_bytes_*``: CPU percent of all its CPUs, memory
used by everything on it, other jobs included).  :func:`figures` names the fields
and units of one scope; a table says which scope it shows in its caption.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from resmon.query.formats import NONE, fmt_bytes, fmt_cores, fmt_percent

SCOPES = ("job", "host")
DEFAULT_SCOPE = "job"

CAPTIONS = {
    "job": (
        "job: its own processes; CPU in cores, memory pss (shared pages once), rss or "
        "cgroup; --scope host: the whole machine"
    ),
    "host": (
        "host (whole machine): CPU percent of all its CPUs, memory used by all on it, "
        "other jobs too; --scope job: the job's own"
    ),
}


@dataclass(frozen=True)
class Figures:
    """The row fields of one scope's CPU and memory figures, and the CPU's unit."""

    cpu_p95: str
    cpu_peak: str
    mem_p95: str
    mem_peak: str
    fmt_cpu: Callable[[Any], str]
    kind: str | None = None  # the field naming the memory kind, where there is one
    cpu_limit: str | None = None
    mem_limit: str | None = None
    cpu_seconds: str | None = None


JOB = Figures(
    "job_cpu_cores_p95",
    "job_cpu_cores_peak",
    "job_memory_bytes_p95",
    "job_memory_bytes_peak",
    fmt_cores,
    kind="job_memory_kind",
    cpu_limit="job_limit_cpu_cores",
    mem_limit="job_limit_memory_bytes",
    cpu_seconds="job_cpu_seconds",
)
HOST = Figures(
    "cpu_percent_p95", "cpu_percent_peak", "mem_bytes_p95", "mem_bytes_peak", fmt_percent
)


def figures(scope: str, prefix: str = "") -> Figures:
    """The fields of ``scope``'s figures, each led by ``prefix`` (``last_`` in jobs)."""
    chosen = HOST if scope == "host" else JOB

    def named(field: str | None) -> str | None:
        return None if field is None else prefix + field

    return Figures(
        prefix + chosen.cpu_p95,
        prefix + chosen.cpu_peak,
        prefix + chosen.mem_p95,
        prefix + chosen.mem_peak,
        chosen.fmt_cpu,
        kind=named(chosen.kind),
        cpu_limit=named(chosen.cpu_limit),
        mem_limit=named(chosen.mem_limit),
        cpu_seconds=named(chosen.cpu_seconds),
    )


def memory_text(row: Mapping[str, Any], field: str, kind_field: str | None) -> str:
    """``420 KiB pss``: bytes with the kind of memory they are, where the row says."""
    text = fmt_bytes(row.get(field))
    kind = row.get(kind_field) if kind_field else None
    if text == NONE or not isinstance(kind, str) or not kind:
        return text
    return f"{text} {kind}"
