"""A live run's samples: stored compactly, summarised when the run is lost, read as
history at a granularity.

Storage: one ``run_batches`` row per batch, its samples (the wire's live samples,
as received) as a zlib-compressed JSON array.  A 15 s batch of 8 samples with two
containers is about 2.3 KiB of JSON and 0.5 KiB stored; there is no row per sample
or per container to index and update.

A lost run's summary (:func:`partial_summary`) is made from every stored sample with
the statistics of the collector (:func:`resmon.stats.summarize`, the wire's
percentile rule): the host's CPU and memory, the job's and each container's CPU
cores and memory; CPU seconds are the last cumulative figure the batches carried,
the duration from the first sample to the last.  It has the run summary's shape,
so the write path's columns (:mod:`resmon.store.derive`, job figures) come from it
as from a pushed one, and ``partial: true`` says what it is.

History (:func:`history`): per bucket (raw, 1m, 5m, 1h, chosen from the range as
the seed's resource service does: raw up to 1 h, 1m up to 6 h, 5m up to 24 h, 1h
beyond) the average and the maximum of the job's and each container's CPU cores
and memory, and of the host's CPU percent and memory used.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from resmon.schema import format_time, parse_time
from resmon.stats import empty_stat, summarize

GRANULARITIES = {"raw": 0, "1m": 60, "5m": 300, "1h": 3600}
# The range up to which each granularity is chosen (the seed's rule); beyond: 1h.
_AUTO = ((timedelta(hours=1), "raw"), (timedelta(hours=6), "1m"), (timedelta(hours=24), "5m"))
# zlib level 1: measured on live batches, 4.6x smaller at a tenth of level 6's CPU
# (level 6 gains a few percent more).
_ZLIB_LEVEL = 1
SERIES_FIELDS = ("cpu_cores", "memory_bytes")


def encode(samples: list[dict[str, Any]]) -> bytes:
    return encode_text(orjson.dumps(samples))


def encode_text(text: bytes) -> bytes:
    """The stored form of a batch's samples already serialised (``orjson.dumps``)."""
    return zlib.compress(text, _ZLIB_LEVEL)


def decode(blob: bytes | memoryview) -> list[dict[str, Any]]:
    data = zlib.decompress(bytes(blob))
    samples = orjson.loads(data)
    return samples if isinstance(samples, list) else []


def sample_time(sample: dict[str, Any]) -> datetime:
    """A validated sample's time, aware UTC."""
    return parse_time(sample["t"])


def _num(obj: Any, key: str) -> float | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _stat(values: list[float], integer: bool = False) -> dict[str, float]:
    stat = summarize(values) or empty_stat()
    return {k: float(round(v)) if integer else v for k, v in stat.items()}


def _ordered(samples: Iterable[dict[str, Any]]) -> list[tuple[datetime, dict[str, Any]]]:
    """Samples by time, each time once (a batch stored twice under two seqs, or a
    re-sent sample, counts once)."""
    by_time: dict[datetime, dict[str, Any]] = {}
    for sample in samples:
        by_time[sample_time(sample)] = sample
    return sorted(by_time.items(), key=lambda item: item[0])


def partial_summary(
    samples: Iterable[dict[str, Any]], *, command_container: str | None, host: str | None
) -> dict[str, Any] | None:
    """The run summary of a lost run from its stored samples; None without any."""
    ordered = _ordered(samples)
    if not ordered:
        return None
    start, end = ordered[0][0], ordered[-1][0]
    host_cpu, host_mem, host_pct = [], [], []
    job_cpu, job_mem = [], []
    job_seconds = 0.0
    containers: dict[str, dict[str, Any]] = {}
    for _, sample in ordered:
        h = sample.get("host") or {}
        if (v := _num(h, "cpu_percent")) is not None:
            host_cpu.append(v)
        used, total = _num(h, "mem_used_bytes"), _num(h, "mem_total_bytes")
        if used is not None:
            host_mem.append(used)
            if total:
                host_pct.append(used / total * 100.0)
        job = sample.get("job") or {}
        if (v := _num(job, "cpu_cores")) is not None:
            job_cpu.append(v)
        if (v := _num(job, "memory_bytes")) is not None:
            job_mem.append(v)
        job_seconds = max(job_seconds, _num(job, "cpu_seconds") or 0.0)
        for name, figures in (sample.get("containers") or {}).items():
            entry = containers.setdefault(name, {"cpu": [], "mem": [], "last": {}, "seconds": 0.0})
            if (v := _num(figures, "cpu_cores")) is not None:
                entry["cpu"].append(v)
            if (v := _num(figures, "memory_bytes")) is not None:
                entry["mem"].append(v)
            entry["seconds"] = max(entry["seconds"], _num(figures, "cpu_seconds") or 0.0)
            entry["last"] = figures
    if command_container is None:
        job_names = sorted(containers)
    else:
        job_names = [command_container] if command_container in containers else []
    out_containers = [_container_summary(name, containers[name]) for name in sorted(containers)]
    kinds = {c["memory_kind"] for c in out_containers if c["name"] in job_names}
    job_peak = round(max(job_mem)) if job_mem else 0
    return {
        "start_time": format_time(start),
        "end_time": format_time(end),
        "duration_seconds": round((end - start).total_seconds(), 3),
        "sample_count": len(ordered),
        "cpu_total_percent": _stat(host_cpu),
        "mem_used_bytes": _stat(host_mem, integer=True),
        "mem_used_percent": _stat(host_pct),
        "top_cpu_processes": [],
        "top_mem_processes": [],
        "containers": out_containers,
        "cpu_seconds": round(job_seconds, 3),
        "job": {
            "scope": "command" if command_container is not None else "containers",
            "containers": job_names,
            "cpu_cores": _stat(job_cpu),
            "cpu_seconds": round(job_seconds, 3),
            "memory_bytes": _stat(job_mem, integer=True),
            "memory_kind": kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "rss"),
            "memory_peak": {
                "headline": job_peak,
                "low": job_peak,
                "high": None,
                "basis": "sampled",
            },
            "limit_cpu_cores": _job_limit(out_containers, job_names, "limit_cpu_cores"),
            "limit_memory_bytes": _job_limit(out_containers, job_names, "limit_memory_bytes"),
        },
        "partial": True,
        "collector": {"source": "server", "host": host, "reason": "lost"},
    }


def _container_summary(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    last = entry["last"]
    peak = round(max(entry["mem"])) if entry["mem"] else 0
    kind = last.get("memory_kind") if isinstance(last.get("memory_kind"), str) else "rss"
    return {
        "name": name,
        "cpu_cores": _stat(entry["cpu"]),
        "memory_bytes": _stat(entry["mem"], integer=True),
        "cpu_seconds": round(entry["seconds"], 3),
        "limit_cpu_cores": _num(last, "limit_cpu_cores"),
        "limit_memory_bytes": None
        if _num(last, "limit_memory_bytes") is None
        else round(_num(last, "limit_memory_bytes") or 0),
        "memory_kind": kind,
        "memory_peak": {"headline": peak, "low": peak, "high": None, "basis": "sampled"},
        "top_processes": [],
    }


def _job_limit(containers: list[dict[str, Any]], names: list[str], key: str) -> float | None:
    values = [c[key] for c in containers if c["name"] in names]
    if not values or any(v is None for v in values):
        return None
    return sum(values)


# --- history -------------------------------------------------------------------


def choose_granularity(since: datetime, until: datetime) -> str:
    span = until - since
    for limit, name in _AUTO:
        if span <= limit:
            return name
    return "1h"


def _bucket_start(t: datetime, seconds: int) -> datetime:
    if seconds == 0:
        return t
    epoch = int(t.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


class _Agg:
    __slots__ = ("n", "total", "peak")

    def __init__(self) -> None:
        self.n, self.total, self.peak = 0, 0.0, float("-inf")

    def add(self, value: float | None) -> None:
        if value is None:
            return
        self.n += 1
        self.total += value
        self.peak = max(self.peak, value)

    def out(self) -> dict[str, float] | None:
        return None if self.n == 0 else {"avg": self.total / self.n, "max": self.peak}


def history(
    samples: Iterable[dict[str, Any]],
    granularity: str,
    since: datetime | None,
    until: datetime | None,
) -> list[dict[str, Any]]:
    """Buckets of ``granularity`` (a key of :data:`GRANULARITIES`) over the samples
    with ``since <= t < until``, oldest first: ``{t, samples, host, job, containers}``
    with ``{avg, max}`` per figure (None where no sample had it)."""
    seconds = GRANULARITIES[granularity]
    buckets: dict[datetime, dict[str, Any]] = {}
    for t, sample in _ordered(samples):
        if (since is not None and t < since) or (until is not None and t >= until):
            continue
        start = _bucket_start(t, seconds)
        bucket = buckets.get(start)
        if bucket is None:
            bucket = buckets[start] = {"n": 0, "host": {}, "job": {}, "containers": {}}
        bucket["n"] += 1
        h = sample.get("host") or {}
        _add(bucket["host"], "cpu_percent", _num(h, "cpu_percent"))
        _add(bucket["host"], "mem_used_bytes", _num(h, "mem_used_bytes"))
        job = sample.get("job") or {}
        for name in SERIES_FIELDS:
            _add(bucket["job"], name, _num(job, name))
        for cname, figures in (sample.get("containers") or {}).items():
            per = bucket["containers"].setdefault(cname, {})
            for name in SERIES_FIELDS:
                _add(per, name, _num(figures, name))
    return [
        {
            "t": format_time(start),
            "samples": bucket["n"],
            "host": {k: agg.out() for k, agg in bucket["host"].items()},
            "job": {k: agg.out() for k, agg in bucket["job"].items()},
            "containers": {
                name: {k: agg.out() for k, agg in per.items()}
                for name, per in sorted(bucket["containers"].items())
            },
        }
        for start, bucket in sorted(buckets.items(), key=lambda item: item[0])
    ]


def _add(group: dict[str, _Agg], name: str, value: float | None) -> None:
    agg = group.get(name)
    if agg is None:
        agg = group[name] = _Agg()
    agg.add(value)
