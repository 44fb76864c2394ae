"""How ``resmon query`` shows history: rich tables for people, JSON and CSV for scripts.

Every output takes the read API's response body (the same dicts whether they came
over HTTP or straight from a database through :mod:`resmon.store.history`), so a script
switching from ``--output json`` to the HTTP API sees the same field names.

:func:`render` picks the output: the tables of :mod:`resmon.query.tables` (human
units from :mod:`resmon.query.formats`), or the JSON and CSV here, which carry the
raw numbers, never the formatted ones (CSV rounds each to its figure's precision).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from rich.console import Console

from resmon.query.advice_tables import (
    RECOMMEND_FIELDS,
    REGRESSION_FIELDS,
    fleet_table,
    recommend_rows,
    recommend_view,
    regression_rows,
    regressions_table,
)
from resmon.query.kube_yaml import resources_yaml
from resmon.query.scopes import DEFAULT_SCOPE
from resmon.query.tables import jobs_table, run_view, runs_table, top_table, trend_table
from resmon.store.job_figures import JOB_COLUMNS

OUTPUTS = ("table", "json", "csv", "yaml")
PIPE_WIDTH = 160

# --- JSON and CSV ------------------------------------------------------------


def to_json(body: Any) -> str:
    """The API body as indented JSON (raw numbers, RFC 3339 times)."""
    return orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()


# Decimals a figure is written with, by what its field name says it is: what the
# collector measures, no more.  Bytes are whole; a mean or a sum of them is rounded.
CSV_DECIMALS = (("bytes", 0), ("cores", 4), ("percent", 2), ("seconds", 3))


def csv_value(field: str, value: Any) -> Any:
    """A cell as CSV writes it: a float rounded to its figure's precision (so a mean of
    bytes is ``627465``, not ``627464.5000000001``), missing as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isfinite(value):
        for word, decimals in CSV_DECIMALS:
            if word in field:
                return round(value) if decimals == 0 else round(value, decimals)
    return value


def to_csv(rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> str:
    """Rows as CSV with a header: the API's raw numbers at their figure's precision
    (:func:`csv_value`), empty cells for missing values."""
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_value(k, row.get(k)) for k in fields})
    return out.getvalue()


JOB_FIELDS = (
    "organization",
    "repository",
    "workflow",
    "job",
    "run_count",
    "last_id",
    "last_run_id",
    "last_received_at",
    "last_duration_seconds",
    "last_cpu_seconds",
    "last_cpu_percent_p95",
    "last_cpu_percent_peak",
    "last_mem_bytes_p95",
    "last_mem_bytes_peak",
    # The job's own figures (the four above are the host's): after the earlier
    # columns, so scripts reading those by position keep working.
    "last_job_cpu_cores_p95",
    "last_job_cpu_cores_peak",
    "last_job_cpu_seconds",
    "last_job_memory_bytes_p95",
    "last_job_memory_bytes_peak",
    "last_job_memory_kind",
    "last_job_limit_cpu_cores",
    "last_job_limit_memory_bytes",
    # The last run's state (running, finished, lost), partial flag and runner host.
    "last_state",
    "last_partial",
    "last_host",
)
RUN_FIELDS = (
    "id",
    "organization",
    "repository",
    "workflow",
    "job",
    "run_id",
    "run_attempt",
    "received_at",
    "start_time",
    "end_time",
    "duration_seconds",
    "sample_count",
    "cpu_seconds",
    "cpu_percent_p95",
    "cpu_percent_peak",
    "mem_bytes_p95",
    "mem_bytes_peak",
    # Which wrapped step the run was (`resmon collect --name`, the command's base name):
    # last, so scripts reading the earlier columns by position keep working.
    "command_container",
    "command_name",
    # The job's own figures, as stored; cpu_percent_* and mem_bytes_* above are the host's.
    *JOB_COLUMNS,
    # The run's state (running, finished, lost), partial flag and runner host.
    "state",
    "partial",
    "host",
)
CONTAINER_FIELDS = (
    "name",
    "cpu_cores_p50",
    "cpu_cores_p95",
    "cpu_cores_peak",
    "cpu_cores_avg",
    "limit_cpu_cores",
    "memory_bytes_p50",
    "memory_bytes_p95",
    "memory_bytes_peak",
    "memory_bytes_avg",
    "limit_memory_bytes",
    "cpu_seconds",
    "cpu_throttled_seconds",
    "oom_kills",
)
TREND_RUN_FIELDS = ("id", "run_id", "received_at", "duration_seconds")
TREND_DAY_FIELDS = ("day", "runs", "duration_seconds")
JOB_TREND_METRICS = (
    # The host's, then the job's own.
    "cpu_percent_p95",
    "cpu_percent_peak",
    "mem_bytes_p95",
    "mem_bytes_peak",
    "job_cpu_cores_p95",
    "job_cpu_cores_peak",
    "job_cpu_seconds",
    "job_memory_bytes_p95",
    "job_memory_bytes_peak",
    "job_memory_kind",
    "job_limit_cpu_cores",
    "job_limit_memory_bytes",
)
CONTAINER_TREND_METRICS = (
    "cpu_cores_p95",
    "cpu_cores_peak",
    "memory_bytes_p95",
    "memory_bytes_peak",
    "limit_cpu_cores",
    "limit_memory_bytes",
)
TOP_FIELDS = (
    "organization",
    "repository",
    "workflow",
    "job",
    "runs",
    "cpu_seconds_total",
    "cpu_percent_p95_avg",
    "mem_bytes_peak_max",
    "mem_bytes_p95_avg",
    "duration_seconds_total",
    "duration_seconds_avg",
    "job_cpu_seconds_total",
    "job_cpu_cores_p95_avg",
    "job_cpu_cores_peak_max",
    "job_memory_bytes_peak_max",
    "job_memory_bytes_p95_avg",
    "job_memory_kind",
    "partial_runs",
)


FLEET_FIELDS = (
    "organization",
    "repository",
    "workflow",
    "job",
    "runs",
    "status",
    "runs_needed",
    "confidence",
    "cpu_request_cores",
    "cpu_limit_cores",
    "cpu_limit_advice",
    "memory_limit_bytes",
    "memory_peak_max_bytes",
    "current_cpu_limit_cores",
    "current_memory_limit_bytes",
    "frees_cpu_cores",
    "frees_memory_bytes",
    "oom_killed_runs",
    "throttled_runs",
    "near_memory_limit_runs",
    "risk_runs",
    "memory_fit_rate",
    "partial_runs",
)


def trend_fields(trend: Mapping[str, Any]) -> tuple[str, ...]:
    by_day = trend.get("by") == "day"
    base = TREND_DAY_FIELDS if by_day else TREND_RUN_FIELDS
    metrics = CONTAINER_TREND_METRICS if trend.get("container") else JOB_TREND_METRICS
    # Last, so scripts reading the earlier columns by position keep working.
    return base + metrics + (("partial_runs",) if by_day else ("state", "partial", "host"))


def show_csv(run: Mapping[str, Any]) -> str:
    """One CSV row per container, each carrying the run's id and scope."""
    scope = {
        k: run.get(k) for k in ("id", "organization", "repository", "workflow", "job", "run_id")
    }
    rows = [{**scope, **c} for c in run.get("containers") or ()]
    fields = ("id", "organization", "repository", "workflow", "job", "run_id") + CONTAINER_FIELDS
    return to_csv(rows, fields)


# --- the console -------------------------------------------------------------


def make_console(**kwargs: Any) -> Console:
    """The console ``resmon query`` prints to: no syntax highlighting of numbers (the
    colours mean something here), and rich's own terminal / NO_COLOR detection."""
    kwargs.setdefault("highlight", False)
    console = Console(**kwargs)
    if "width" not in kwargs and not console.is_terminal and not os.environ.get("COLUMNS"):
        # Piped or redirected: rich would assume 80 columns and wrap the wider tables;
        # a file has no width, so let rows be as long as their content.
        console.width = PIPE_WIDTH
    return console


# --- one entry point per command ---------------------------------------------


def render(
    kind: str,
    body: Any,
    output: str,
    console: Console,
    now: datetime | None = None,
    scope: str = DEFAULT_SCOPE,
) -> None:
    """Print ``body`` (an API response of ``kind``: jobs, runs, run, trend, top) as
    ``output`` (table, json, csv) on ``console``; a table of jobs, runs or a trend
    shows the job's own figures or the host's (``scope``; top's answer names its own).
    JSON and CSV carry both."""
    if output == "json":
        # Straight to the file: rich would wrap long lines and interpret markup.
        console.file.write(to_json(body) + "\n")
        return
    if output == "yaml":
        if kind != "recommend":
            raise ValueError(f"no yaml output for {kind!r}")
        console.file.write(resources_yaml(body))
        return
    if output == "csv":
        if kind == "recommend":
            text = to_csv(recommend_rows(body), RECOMMEND_FIELDS)
        elif kind == "fleet":
            text = to_csv(body.get("jobs") or [], FLEET_FIELDS)
        elif kind == "regressions":
            text = to_csv(regression_rows(body), REGRESSION_FIELDS)
        elif kind == "jobs":
            text = to_csv(body.get("jobs") or [], JOB_FIELDS)
        elif kind == "runs":
            text = to_csv(body.get("runs") or [], RUN_FIELDS)
        elif kind == "run":
            text = show_csv(body)
        elif kind == "trend":
            text = to_csv(body.get("points") or [], trend_fields(body))
        elif kind == "top":
            text = to_csv(body.get("jobs") or [], TOP_FIELDS)
        else:
            raise ValueError(f"unknown kind {kind!r}")
        console.file.write(text)
        return
    width = console.width
    if kind == "jobs":
        console.print(jobs_table(body, now, width, scope))
    elif kind == "runs":
        console.print(runs_table(body, now, width, scope))
    elif kind == "run":
        console.print(run_view(body, now, width))
    elif kind == "trend":
        console.print(trend_table(body, now, width, scope))
    elif kind == "top":
        console.print(top_table(body, width))
    elif kind == "recommend":
        console.print(recommend_view(body, width))
    elif kind == "fleet":
        console.print(fleet_table(body, width))
    elif kind == "regressions":
        console.print(regressions_table(body, width, now))
    else:
        raise ValueError(f"unknown kind {kind!r}")
