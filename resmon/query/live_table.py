"""``resmon query live``: the running jobs, like ``kubectl top`` for CI.

One table of the running runs (the answer of ``GET /api/v1/live``, or of
:func:`resmon.store.live_view.live_runs` with ``--db``), each with its latest
snapshot: the job's CPU in cores and memory with its limit, the container count,
how long it has run and how old its last batch is; under it one row per runner
host with the machine's CPU and memory.  :func:`watch` redraws it every few seconds
until interrupted; ``--once`` prints it once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.text import Text

from resmon.query.formats import fmt_ago, fmt_bytes, fmt_cores, fmt_duration, to_datetime
from resmon.query.layout import Column, fit_table


def _job_name(run: dict[str, Any]) -> str:
    return f"{run.get('repository')} {run.get('workflow')} {run.get('job')}"


def _limits(snapshot: dict[str, Any], key: str) -> float | None:
    """The job's limit: the sum of its containers' when each has one."""
    containers = snapshot.get("containers") or {}
    values = [c.get(key) for c in containers.values() if isinstance(c, dict)]
    if not values or any(v is None for v in values):
        return None
    return float(sum(values))


def _up(run: dict[str, Any], now: datetime) -> str:
    start = to_datetime(run.get("start_time"))
    return "-" if start is None else fmt_duration((now - start).total_seconds())


def runs_table(body: dict[str, Any], width: int, now: datetime | None = None) -> RenderableType:
    now = now or datetime.now(UTC)
    runs = body.get("runs") or []
    if not runs:
        return Text("no running jobs (runs appear with their first live batch)")
    cols = {
        "id": Column("ID"),
        "job": Column("JOB", justify="left", name=True),
        "run": Column("RUN", justify="left", drop=2, label="run id"),
        "host": Column("HOST", justify="left", name=True, drop=5),
        "cpu": Column("CPU", style="bold"),
        "cpu_limit": Column("CPU LIM", drop=3, label="CPU limit"),
        "mem": Column("MEMORY", style="bold"),
        "mem_limit": Column("MEM LIM", drop=3, label="memory limit"),
        "containers": Column("CTRS", drop=1, label="containers"),
        "up": Column("UP"),
        "last": Column("LAST BATCH", drop=4, label="last batch"),
    }
    for run in runs:
        snap = run.get("snapshot") or {}
        job = snap.get("job") or {}
        cols["id"].cells.append(str(run.get("id")))
        cols["job"].cells.append(_job_name(run))
        attempt = run.get("run_attempt")
        cols["run"].cells.append(f"{run.get('run_id')}" + (f"/{attempt}" if attempt else ""))
        cols["host"].cells.append(run.get("host") or "-")
        cols["cpu"].cells.append(fmt_cores(job.get("cpu_cores")))
        cols["cpu_limit"].cells.append(fmt_cores(_limits(snap, "limit_cpu_cores")))
        cols["mem"].cells.append(fmt_bytes(job.get("memory_bytes")))
        cols["mem_limit"].cells.append(fmt_bytes(_limits(snap, "limit_memory_bytes")))
        cols["containers"].cells.append(str(len(snap.get("containers") or {})))
        cols["up"].cells.append(_up(run, now))
        cols["last"].cells.append(fmt_ago(run.get("last_batch_at"), now))
    title = [f"{len(runs)} running", "job(s);", "CPU in cores, memory of the job's processes"]
    return fit_table(list(cols.values()), width, title=title)


def hosts_table(body: dict[str, Any], width: int) -> RenderableType | None:
    hosts = body.get("hosts") or []
    if not hosts:
        return None
    cols = [
        Column("HOST", justify="left", name=True),
        Column("CPU %"),
        Column("MEM USED"),
        Column("MEM TOTAL"),
        Column("JOBS"),
    ]
    for host in hosts:
        cpu = host.get("cpu_percent")
        cols[0].cells.append(host.get("host") or "-")
        cols[1].cells.append("-" if cpu is None else f"{cpu:.0f}%")
        cols[2].cells.append(fmt_bytes(host.get("mem_used_bytes")))
        cols[3].cells.append(fmt_bytes(host.get("mem_total_bytes")))
        cols[4].cells.append(str(host.get("runs", 0)))
    return fit_table(cols, width, title=["runner hosts", "(the whole machine)"])


def live_view(body: dict[str, Any], width: int, now: datetime | None = None) -> RenderableType:
    parts: list[RenderableType] = [runs_table(body, width, now)]
    hosts = hosts_table(body, width)
    if hosts is not None:
        parts += [Text(""), hosts]
    return Group(*parts)


def watch(
    ask: Callable[[], dict[str, Any]],
    console: Console,
    every: float,
    *,
    rounds: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Redraw the live view every ``every`` seconds (``rounds`` times, or until
    interrupted: Ctrl-C ends it quietly)."""
    from rich.live import Live

    done = 0
    try:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while rounds is None or done < rounds:
                body = ask()
                stamp = Text(f"every {every:g}s, Ctrl-C to stop", style="table.caption")
                live.update(Group(live_view(body, console.width), stamp), refresh=True)
                done += 1
                if rounds is None or done < rounds:
                    sleep(every)
    except KeyboardInterrupt:
        pass
