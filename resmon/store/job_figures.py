"""A run's job figures: what the job itself used, not the machine it ran on.

A run summary's ``cpu_total_percent`` and ``mem_used_bytes`` are the host's (the
whole machine's /proc/stat and MemAvailable): a wrapped ``sleep 1`` on a busy runner
shows CPU p95 100 % and 1.28 GiB there.  The job's own figures are stored beside
them, in the ``job_*`` columns of ``runs`` (:data:`JOB_COLUMNS`), from:

1. the summary's ``job`` block, when the collector sent one (resmon's, from the
   version that measures the job): the per-sample sum over the job's containers;
2. else, in a wrapped run (the summary has ``command``), the container the command
   ran in (``command.container``): the other containers of a wrapped run are the
   rest of the machine;
3. else the sum over ``containers`` (a sidecar run, or the Go collector, which sends
   neither ``job`` nor ``command``): the sum of the containers' p95 as the p95 and of
   their peaks as the peak -- each at least the figure of the summed series, since
   the containers' peaks need not coincide;
4. else nothing (NULL): a summary without containers says nothing about the job.

Memory says what it measures (``job_memory_kind``): ``pss`` (shared pages counted
once), ``rss`` (resident pages summed per process), ``cgroup`` (the container's own
kernel counter) or ``mixed``.  Without the summary's own ``memory_kind`` the kind is
read from ``collector.sources`` where it names one source (``cgroupfs`` is the
cgroup's, ``procfs`` summed RSS), else ``rss``: what a collector without PSS summed.

Pure, and never raises: the ``job`` block and ``command`` are not checked on a push,
so what is not a number of the right kind is left out (NULL).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from resmon.store.values import bigint, name, number

JOB_COLUMNS = (
    "job_scope",
    "job_cpu_cores_p95",
    "job_cpu_cores_peak",
    "job_cpu_seconds",
    "job_memory_bytes_p95",
    "job_memory_bytes_peak",
    "job_memory_kind",
    "job_memory_peak_low_bytes",
    "job_memory_peak_high_bytes",
    "job_limit_cpu_cores",
    "job_limit_memory_bytes",
)
MEMORY_KINDS = ("pss", "rss", "cgroup", "mixed")
JOB_SCOPES = ("command", "containers")
# A collector source's name -> the memory kind a series from it is.
_SOURCE_KINDS = {"cgroupfs": "cgroup", "procfs": "rss"}


def _none() -> dict[str, Any]:
    return dict.fromkeys(JOB_COLUMNS)


def _stat(obj: Mapping[str, Any], field: str, key: str) -> Any:
    stat = obj.get(field)
    return stat.get(key) if isinstance(stat, dict) else None


def _kind(value: Any) -> str | None:
    return value if isinstance(value, str) and value in MEMORY_KINDS else None


def _from_block(job: dict[str, Any]) -> dict[str, Any]:
    """The columns from the summary's own ``job`` block, as sent."""
    peak = job.get("memory_peak") if isinstance(job.get("memory_peak"), dict) else {}
    scope = job.get("scope")
    return {
        "job_scope": scope if scope in JOB_SCOPES else None,
        "job_cpu_cores_p95": number(_stat(job, "cpu_cores", "p95")),
        "job_cpu_cores_peak": number(_stat(job, "cpu_cores", "peak")),
        "job_cpu_seconds": number(job.get("cpu_seconds")),
        "job_memory_bytes_p95": bigint(_stat(job, "memory_bytes", "p95")),
        "job_memory_bytes_peak": bigint(_stat(job, "memory_bytes", "peak")),
        "job_memory_kind": _kind(job.get("memory_kind")),
        "job_memory_peak_low_bytes": bigint(peak.get("low")),
        "job_memory_peak_high_bytes": bigint(peak.get("high")),
        "job_limit_cpu_cores": number(job.get("limit_cpu_cores")),
        "job_limit_memory_bytes": bigint(job.get("limit_memory_bytes")),
    }


def _container_kind(container: dict[str, Any], summary: dict[str, Any]) -> str:
    """What a container's memory series measures: its ``memory_kind``, else the one
    source ``collector.sources`` names for it, else ``rss``."""
    kind = _kind(container.get("memory_kind"))
    if kind:
        return kind
    collector = summary.get("collector")
    sources = collector.get("sources") if isinstance(collector, dict) else None
    if isinstance(sources, dict):
        # resmon's wrapper summaries nest them under "containers"; sidecar ones did not.
        nested = sources.get("containers")
        entry = (nested if isinstance(nested, dict) else sources).get(container.get("name"))
        memory = entry.get("memory") if isinstance(entry, dict) else None
        names = [memory] if isinstance(memory, str) else memory
        if isinstance(names, list):
            kinds = {_SOURCE_KINDS.get(n) for n in names if isinstance(n, str)}
            if len(kinds) > 1:
                return "mixed"
            if kinds and None not in kinds:
                return str(kinds.pop())
    return "rss"


def _sum(values: list[Any], convert: Any) -> Any:
    """The sum of ``values`` converted, or None unless every one is a number."""
    converted = [convert(v) for v in values]
    if not converted or any(v is None for v in converted):
        return None
    return convert(sum(converted))


def _from_containers(
    containers: list[dict[str, Any]], summary: dict[str, Any], scope: str
) -> dict[str, Any]:
    """The columns of one container (a wrapped command's), or summed over several."""
    peaks = [c.get("memory_peak") for c in containers]
    ranges = [p for p in peaks if isinstance(p, dict)]
    kinds = {_container_kind(c, summary) for c in containers}
    low = high = None
    if len(ranges) == len(containers):
        # The job's peak is at least any one container's, at most all of theirs together.
        lows = [bigint(p.get("low")) for p in ranges]
        low = max(lows) if None not in lows else None  # type: ignore[type-var]
        high = _sum([p.get("high") for p in ranges], bigint)
    # A container without CPU time (a peer's) adds nothing to it; none with any: None.
    seconds = [number(c.get("cpu_seconds")) for c in containers]
    measured = [s for s in seconds if s is not None]
    return {
        "job_scope": scope,
        "job_cpu_cores_p95": _sum([_stat(c, "cpu_cores", "p95") for c in containers], number),
        "job_cpu_cores_peak": _sum([_stat(c, "cpu_cores", "peak") for c in containers], number),
        "job_cpu_seconds": _sum(measured, number),
        "job_memory_bytes_p95": _sum([_stat(c, "memory_bytes", "p95") for c in containers], bigint),
        "job_memory_bytes_peak": _sum(
            [_stat(c, "memory_bytes", "peak") for c in containers], bigint
        ),
        "job_memory_kind": kinds.pop() if len(kinds) == 1 else "mixed",
        "job_memory_peak_low_bytes": low,
        "job_memory_peak_high_bytes": high,
        # A job's limit is known only where each of its containers has one.
        "job_limit_cpu_cores": _sum([c.get("limit_cpu_cores") for c in containers], number),
        "job_limit_memory_bytes": _sum([c.get("limit_memory_bytes") for c in containers], bigint),
    }


def job_columns(run_summary: Any) -> dict[str, Any]:
    """The ``job_*`` columns of a run summary (see the module's docstring for which
    figures they are); every one None where the summary does not give it."""
    if not isinstance(run_summary, dict):
        return _none()
    job = run_summary.get("job")
    if isinstance(job, dict):
        return _from_block(job)
    containers = (
        [
            c
            for c in run_summary.get("containers") or ()
            if isinstance(c, dict) and isinstance(c.get("name"), str)
        ]
        if isinstance(run_summary.get("containers"), list)
        else []
    )
    command = run_summary.get("command")
    if isinstance(command, dict):
        wanted = name(command.get("container"))
        mine = [c for c in containers if wanted is not None and name(c["name"]) == wanted]
        if mine:
            return _from_containers(mine[:1], run_summary, "command")
        # The command was never sampled (it ended first): the kernel's CPU time of
        # it is all there is; the other containers are the rest of the machine.
        return {
            **_none(),
            "job_scope": "command",
            "job_cpu_seconds": number(command.get("rusage_cpu_seconds")),
        }
    if not containers:
        return _none()
    return _from_containers(containers, run_summary, "containers")


def job_columns_of_text(payload_text: Any) -> dict[str, Any]:
    """:func:`job_columns` of a stored payload (JSON text), for the version-5 backfill;
    all None for text that is no JSON object."""
    if not isinstance(payload_text, (str, bytes)):
        return _none()
    try:
        summary = orjson.loads(payload_text)
    except orjson.JSONDecodeError:
        return _none()
    return job_columns(summary)
