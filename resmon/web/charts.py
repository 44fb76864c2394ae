"""The charts' data: the store's answers laid out as uPlot series, x in epoch seconds.

A chart is ``{"id", "title", "unit", "x", "series": [{"label", "values", "style"}]}``;
``style`` is ``p95``, ``peak``, ``avg``, ``max``, ``limit`` (a dashed line) or
``flag`` (points only: the runs flagged as regressions).  ``static/charts.js`` draws
them; nothing here changes a figure.
"""

from __future__ import annotations

from typing import Any

from resmon.web.formats import epoch

# The flagged metrics each job chart marks (the job's own figures, container None).
_CPU_FLAGS = ("cpu_cores_p95", "cpu_seconds")
_MEMORY_FLAGS = ("memory_bytes_peak",)


def _series(label: str, values: list[Any], style: str) -> dict[str, Any]:
    return {"label": label, "values": values, "style": style}


def _has_numbers(values: list[Any]) -> bool:
    return any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _chart(chart_id: str, title: str, unit: str, x: list[Any], series: list[dict[str, Any]]):
    return {
        "id": chart_id,
        "title": title,
        "unit": unit,
        "x": x,
        "series": [s for s in series if _has_numbers(s["values"])],
    }


def job_charts(
    points: list[dict[str, Any]], flagged: dict[int, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """CPU and memory per run of a job's trend (p95, peak, the limit), the runs
    flagged as regressions marked on the figure that was flagged."""
    if not points:
        return []
    x = [epoch(p.get("received_at")) for p in points]

    def marks(metrics: tuple[str, ...], field: str) -> list[Any]:
        out = []
        for p in points:
            hits = [
                f
                for f in flagged.get(p["id"], [])
                if f["container"] is None and f["metric"] in metrics
            ]
            out.append(p.get(field) if hits else None)
        return out

    cpu = _chart(
        "job-cpu",
        "CPU per run (cores)",
        "cores",
        x,
        [
            _series("p95", [p.get("job_cpu_cores_p95") for p in points], "p95"),
            _series("peak", [p.get("job_cpu_cores_peak") for p in points], "peak"),
            _series("limit", [p.get("job_limit_cpu_cores") for p in points], "limit"),
            _series("regression", marks(_CPU_FLAGS, "job_cpu_cores_p95"), "flag"),
        ],
    )
    memory = _chart(
        "job-memory",
        "Memory per run",
        "bytes",
        x,
        [
            _series("p95", [p.get("job_memory_bytes_p95") for p in points], "p95"),
            _series("peak", [p.get("job_memory_bytes_peak") for p in points], "peak"),
            _series("limit", [p.get("job_limit_memory_bytes") for p in points], "limit"),
            _series("regression", marks(_MEMORY_FLAGS, "job_memory_bytes_peak"), "flag"),
        ],
    )
    return [c for c in (cpu, memory) if c["series"]]


def _job_containers(run: dict[str, Any], payload: dict[str, Any], names: list[str]) -> list[str]:
    """The containers in the order a reader wants them: the job's first."""
    job = payload.get("job") if isinstance(payload.get("job"), dict) else {}
    first = [str(n) for n in job.get("containers") or [] if str(n) in names]
    command = run.get("command_container")
    if not first and command in names:
        first = [command]
    return first + [n for n in names if n not in first]


def run_charts(
    run: dict[str, Any], timeline: Any, samples: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Per container, CPU and memory over the run: from the live samples' buckets
    when there are any (a running or lost run, at the granularity the store chose),
    else from the summary's timeline; each with the container's limits."""
    payload = run.get("payload") if isinstance(run.get("payload"), dict) else {}
    limits = {c["name"]: c for c in run.get("containers") or []}
    per: dict[str, dict[str, list[Any]]] = {}
    x: list[Any] = []
    buckets = (samples or {}).get("buckets") or []
    if buckets:
        x = [epoch(b.get("t")) for b in buckets]
        names = sorted({n for b in buckets for n in (b.get("containers") or {})})
        for name in names:
            rows = [(b.get("containers") or {}).get(name) or {} for b in buckets]
            per[name] = {
                "cpu": [(r.get("cpu_cores") or {}).get("avg") for r in rows],
                "cpu_max": [(r.get("cpu_cores") or {}).get("max") for r in rows],
                "memory": [(r.get("memory_bytes") or {}).get("avg") for r in rows],
                "memory_max": [(r.get("memory_bytes") or {}).get("max") for r in rows],
            }
        average, maximum = "average", "maximum"
    elif isinstance(timeline, list) and len(timeline) >= 2:
        points = [p for p in timeline if isinstance(p, dict)]
        start = epoch(run.get("start_time") or payload.get("start_time")) or 0.0
        x = [start + float(p.get("t") or 0) for p in points]
        names = sorted({n for p in points for n in (p.get("containers") or {})})
        for name in names:
            rows = [(p.get("containers") or {}).get(name) or {} for p in points]
            per[name] = {
                "cpu": [r.get("cpu_cores") for r in rows],
                "cpu_max": [],
                "memory": [r.get("memory_bytes") for r in rows],
                "memory_max": [],
            }
        average, maximum = "average", "maximum"
    else:
        return []
    out = []
    for n, name in enumerate(_job_containers(run, payload, list(per))):
        figures = per[name]
        limit = limits.get(name) or {}
        cpu_limit = [limit.get("limit_cpu_cores")] * len(x) if limit.get("limit_cpu_cores") else []
        mem_limit = (
            [limit.get("limit_memory_bytes")] * len(x) if limit.get("limit_memory_bytes") else []
        )
        out.append(
            {
                "name": name,
                "charts": [
                    _chart(
                        f"run-cpu-{n}",
                        f"{name}: CPU (cores)",
                        "cores",
                        x,
                        [
                            _series(average, figures["cpu"], "avg"),
                            _series(maximum, figures["cpu_max"], "max"),
                            _series("limit", cpu_limit, "limit"),
                        ],
                    ),
                    _chart(
                        f"run-memory-{n}",
                        f"{name}: memory",
                        "bytes",
                        x,
                        [
                            _series(average, figures["memory"], "avg"),
                            _series(maximum, figures["memory_max"], "max"),
                            _series("limit", mem_limit, "limit"),
                        ],
                    ),
                ],
            }
        )
    return out


def _group_label(row: dict[str, Any], fields: tuple[str, ...]) -> str:
    # The repository already names its organisation ("org/repo").
    shown = [f for f in fields if not (f == "organization" and "repository" in fields)]
    return " · ".join(str(row.get(f) or "") for f in shown)


def usage_charts(answer: dict[str, Any], fields: tuple[str, ...], groups: int) -> list[dict]:
    """CPU-hours and GiB-hours per day (or hour) of the first ``groups`` groups of a
    :func:`resmon.store.usage.usage` answer, a series each; a bucket a group has no
    row for is a gap."""
    rows = answer.get("rows") or []
    if not rows:
        return []
    buckets = sorted({r["bucket"] for r in rows})
    x = [epoch(b if "T" in b else b + "T00:00:00Z") for b in buckets]
    index = {b: i for i, b in enumerate(buckets)}
    series: dict[str, dict[str, list[Any]]] = {}
    for r in rows:  # ordered by group, then time: the first groups come first
        label = _group_label(r, fields)
        if label not in series:
            if len(series) >= groups:
                break
            series[label] = {"cpu": [None] * len(x), "gib": [None] * len(x)}
        series[label]["cpu"][index[r["bucket"]]] = r.get("cpu_hours")
        series[label]["gib"][index[r["bucket"]]] = r.get("gib_hours")
    span = "hour" if answer.get("granularity") == "hour" else "day"
    return [
        _chart(
            "usage-cpu",
            f"CPU-hours per {span}",
            "hours",
            x,
            [_series(name, s["cpu"], "group") for name, s in series.items()],
        ),
        _chart(
            "usage-gib",
            f"GiB-hours per {span} (memory peak × duration)",
            "hours",
            x,
            [_series(name, s["gib"], "group") for name, s in series.items()],
        ),
    ]
