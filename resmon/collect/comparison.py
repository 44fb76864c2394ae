"""The server's comparison of a pushed run against the job's baseline, as the
collector reads it from the push's answer.

``resmon serve`` answers a push with ``201 {"id", "status"}`` and, additively, a
``comparison``: the run's job-level figures (and each container's) against the
median and MAD of the job's earlier runs, each flagged when it is a regression.
:func:`parse_comparison` is the one place that knows its shape; everything else
reads :class:`Comparison`.  An answer without it (an older server, the Go
receiver) gives None and changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from resmon.collect.human_units import format_figure
from resmon.collect.report_charts import md_cell

# The figure names the server compares, and how a reader calls each.
LABELS = {
    "memory_peak_bytes": "memory peak",
    "cpu_seconds": "CPU time",
    "cpu_p95_cores": "CPU p95",
    "duration_seconds": "duration",
}


@dataclass(frozen=True)
class FigureChange:
    scope: str  # "job" or "container"
    container: str | None
    figure: str  # a key of LABELS (others are kept and shown by their name)
    value: float | None
    median: float | None
    mad: float | None
    change_percent: float | None
    regression: bool


@dataclass(frozen=True)
class Comparison:
    baseline_runs: int | None
    window_days: float | None
    figures: tuple[FigureChange, ...]
    regressions: int

    def job_figure(self, figure: str) -> FigureChange | None:
        for change in self.figures:
            if change.scope == "job" and change.figure == figure:
                return change
        return None

    @property
    def flagged(self) -> list[FigureChange]:
        return [change for change in self.figures if change.regression]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


# The server's analysis names some figures by their stat (``memory_bytes_peak``); the
# collector reads them under the summary's names.
FIGURE_ALIASES = {"memory_bytes_peak": "memory_peak_bytes", "cpu_cores_p95": "cpu_p95_cores"}


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _figure(item: Any) -> FigureChange | None:
    """One compared figure, or None when it names no figure or an unknown scope.

    ``figure`` (or ``metric``) names it; ``scope`` is "job" or "container", else
    implied by ``container`` (None: the job's); ``change_percent``, else ``change``
    as a fraction."""
    if not isinstance(item, Mapping):
        return None
    name = item.get("figure", item.get("metric"))
    container = item.get("container")
    scope = item.get("scope", "job" if container is None else "container")
    if not isinstance(name, str) or scope not in ("job", "container"):
        return None
    if scope == "container" and not container:
        return None
    percent, fraction = _number(item.get("change_percent")), _number(item.get("change"))
    if percent is None and fraction is not None:
        percent = fraction * 100
    return FigureChange(
        scope=scope,
        container=str(container) if scope == "container" else None,
        figure=FIGURE_ALIASES.get(name, name),
        value=_number(item.get("value")),
        median=_number(item.get("median")),
        mad=_number(item.get("mad")),
        change_percent=percent,
        regression=item.get("regression") is True,
    )


def parse_comparison(response: Any) -> Comparison | None:
    """The comparison in a push's answer, or None when there is none.

    The one place that knows its shape.  Lenient: a figure without a name or scope is
    left out, a number that is not one reads as unknown; nothing here raises on what
    a server sends.
    """
    if not isinstance(response, Mapping):
        return None
    raw = response.get("comparison")
    if not isinstance(raw, Mapping):
        return None
    items = raw.get("figures") if isinstance(raw.get("figures"), list) else []
    figures = [f for f in map(_figure, items) if f is not None]
    runs = _count(raw.get("baseline_runs"))
    if runs is None:
        # Per figure, when the answer says it there: the job's, else the largest.
        counts = [
            (item.get("container") is None, _count(item.get("baseline_runs")))
            for item in items
            if isinstance(item, Mapping)
        ]
        known = sorted((job, n) for job, n in counts if n is not None)
        runs = known[-1][1] if known else None
    regressions = _count(raw.get("regressions"))
    return Comparison(
        baseline_runs=runs,
        window_days=_number(raw.get("window_days")),
        figures=tuple(figures),
        regressions=regressions if regressions is not None else sum(f.regression for f in figures),
    )


def _runs(comparison: Comparison) -> str:
    n = comparison.baseline_runs
    if n is None:
        return "the job's earlier runs"
    return "the last run" if n == 1 else f"the last {n} runs"


def change_line(change: FigureChange, comparison: Comparison) -> str:
    """``memory peak 2.1 GiB, +48 % over the median of the last 20 runs (1.4 GiB)``."""
    where = f"container {change.container}: " if change.scope == "container" else ""
    label = LABELS.get(change.figure, change.figure)
    pct = change.change_percent
    if pct is None and change.value is not None and change.median:
        pct = (change.value / change.median - 1) * 100
    how = f"{pct:+.0f} % against" if pct is not None else "flagged against"
    if pct is not None and pct >= 0:
        how = f"{pct:+.0f} % over"
    return (
        f"{where}{label} {format_figure(change.figure, change.value)}, {how} the median of "
        f"{_runs(comparison)} ({format_figure(change.figure, change.median)})"
    )


def comparison_lines(comparison: Comparison) -> list[str]:
    """A line per regression, or the one line saying there is none (or no baseline yet)."""
    if not comparison.figures:
        n = comparison.baseline_runs
        earlier = f" ({n} earlier run{'s' if n != 1 else ''})" if n is not None else ""
        return [f"no baseline to compare with yet{earlier}"]
    flagged = comparison.flagged
    if not flagged:
        return [f"no change against {_runs(comparison)}"]
    return [change_line(change, comparison) for change in flagged]


def markdown_section(comparison: Comparison | None, budget_lines: list[str]) -> str:
    """The section appended to the job summary after the push: the comparison's
    lines (a regression marked), then the baseline budgets' Markdown lines."""
    out = ["#### Against the job's baseline", ""]
    if comparison is not None:
        mark = "⚠️ " if comparison.flagged else ""
        out += [f"- {mark}{md_cell(line)}" for line in comparison_lines(comparison)]
    out += budget_lines
    return "\n".join(out) + "\n\n"
