"""Budgets: ``resmon collect --budget EXPR``, checked on the job's own figures at the end.

An expression is ``FIGURE<=BOUND``:

==================  =====================================  ===========================
figure              the job's figure                       bounds
==================  =====================================  ===========================
``memory``          memory peak (``job.memory_peak``)      ``2GiB``, ``512Mi``, ``90%``
``cpu``             CPU p95 in cores (``job.cpu_cores``)   ``1.5``, ``500m``, ``80%``
``cpu-seconds``     CPU time (``job.cpu_seconds``)         ``600``, ``10m``
``duration``        the run's ``duration_seconds``         ``20m``, ``1h30m``, ``90``
==================  =====================================  ===========================

A percentage is of the job's limit (``job.limit_memory_bytes``,
``job.limit_cpu_cores``); without one the budget is *not checked*, with the reason.
``baseline+25%`` (any figure) is the median of the job's earlier runs, from the
server's answer to the push, plus 25 %: it can only be checked after the push, so
it is never in the pushed summary, only in the log, the Markdown and the workflow
command.

Each check gives ``{expr, figure, value, limit, status, reason}`` with ``status``
``ok``, ``exceeded`` or ``not_checked``.  This module is pure: parsing, checking
and the text of a result; :mod:`resmon.collect.run_checks` says it at the end of a run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resmon.collect.comparison import Comparison

# ``--budget-action fail`` in wrapper mode: a budget was exceeded and the command
# itself exited 0.  Apart from resmon's own codes (1 --flush-spool, 2 usage,
# 126/127 the command could not start, 128+N a signal).
BUDGET_EXIT_CODE = 3

OK, EXCEEDED, NOT_CHECKED = "ok", "exceeded", "not_checked"
OF_LIMIT, ABSOLUTE, BASELINE = "of_limit", "absolute", "baseline"


@dataclass(frozen=True)
class Figure:
    name: str  # the summary's and the comparison's name for it
    label: str  # what a reader calls it
    limit_key: str | None  # the job block's limit, for a percentage

    def format(self, value: float | None) -> str:
        from resmon.collect.human_units import format_figure

        return format_figure(self.name, value)


FIGURES = {
    "memory": Figure("memory_peak_bytes", "memory peak", "limit_memory_bytes"),
    "cpu": Figure("cpu_p95_cores", "CPU p95", "limit_cpu_cores"),
    "cpu-seconds": Figure("cpu_seconds", "CPU time", None),
    "duration": Figure("duration_seconds", "duration", None),
}
EXAMPLES = (
    "memory<=90%, memory<=2GiB, cpu<=1.5, cpu-seconds<=600, duration<=20m, memory<=baseline+25%"
)


@dataclass(frozen=True)
class Budget:
    expr: str  # as written, without blanks: "memory<=90%"
    figure: str  # a key of FIGURES
    kind: str  # OF_LIMIT, ABSOLUTE or BASELINE
    amount: float  # percent (OF_LIMIT, BASELINE), else bytes, cores or seconds

    @property
    def is_baseline(self) -> bool:
        return self.kind == BASELINE


_EXPR = re.compile(r"^([a-z_-]+)<=(.+)$")
_PERCENT = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)%$")
_BASELINE = re.compile(r"^baseline(?:\+(\d+(?:\.\d*)?|\.\d+)%)?$")
_PLAIN_NUMBER = re.compile(r"^[0-9.]+(?:[eE][+-]?[0-9]+)?$")
_BYTES_SUFFIX = re.compile(r"^(.*?\d)\s*(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E)?B$")


def parse_budget(text: str) -> Budget:
    """A budget from its expression; ``ValueError`` with a message fit for the user."""
    expr = "".join(str(text).split())
    match = _EXPR.match(expr.lower().replace("_", "-"))
    if not match:
        raise ValueError(f"budget {text!r}: expected FIGURE<=LIMIT, e.g. {EXAMPLES}")
    figure, bound = match.group(1), expr[match.start(2) :]
    if figure not in FIGURES:
        raise ValueError(
            f"budget {text!r}: unknown figure {figure!r}: use memory, cpu, cpu-seconds or duration"
        )
    baseline = _BASELINE.match(bound.lower())
    if baseline:
        return Budget(expr, figure, BASELINE, float(baseline.group(1) or 0))
    if bound.lower().startswith("baseline"):
        raise ValueError(f"budget {text!r}: write the baseline form as baseline+25% (or baseline)")
    percent = _PERCENT.match(bound)
    if percent:
        if FIGURES[figure].limit_key is None:
            raise ValueError(
                f"budget {text!r}: a percentage is of the job's limit, which only memory "
                f"and cpu have; give {figure} as an amount or as baseline+N%"
            )
        amount = float(percent.group(1))
        if amount <= 0:
            raise ValueError(f"budget {text!r}: the percentage must be more than 0")
        return Budget(expr, figure, OF_LIMIT, amount)
    return Budget(expr, figure, ABSOLUTE, _amount(text, figure, bound))


def _amount(text: str, figure: str, bound: str) -> float:
    from resmon.units import parse_cpu, parse_duration, parse_memory

    try:
        if figure == "memory":
            if bound.endswith("m"):
                raise ValueError("a memory budget in millibytes: write Mi or M")
            if _PLAIN_NUMBER.match(bound):
                raise ValueError(
                    "give the memory with a unit (2GiB, 512Mi, 1G) or as a percentage of "
                    "the job's limit (90%)"
                )
            suffixed = _BYTES_SUFFIX.match(bound)
            value = float(parse_memory("".join(suffixed.groups("")) if suffixed else bound))
        elif figure == "cpu":
            value = parse_cpu(bound)
        else:
            value = parse_duration(bound)
    except ValueError as exc:
        raise ValueError(f"budget {text!r}: {exc}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"budget {text!r}: the limit must be more than 0")
    return value


# --- the job's figures -----------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def job_figure(summary: Mapping[str, Any], figure: str) -> float | None:
    """The job's figure a budget is checked on (None: the summary does not have it)."""
    job = _mapping(summary.get("job"))
    if figure == "memory":
        peak = _number(_mapping(job.get("memory_peak")).get("headline"))
        return peak if peak is not None else _number(_mapping(job.get("memory_bytes")).get("peak"))
    if figure == "cpu":
        return _number(_mapping(job.get("cpu_cores")).get("p95"))
    if figure == "cpu-seconds":
        own = _number(job.get("cpu_seconds"))
        return own if own is not None else _number(summary.get("cpu_seconds"))
    return _number(summary.get("duration_seconds"))


def _result(
    budget: Budget,
    value: float | None,
    limit: float | None,
    reason: str | None = None,
) -> dict[str, Any]:
    if reason is None and value is None:
        reason = f"the run summary has no {FIGURES[budget.figure].label} for the job"
    if reason is not None:
        status = NOT_CHECKED
    else:
        status = OK if value is not None and limit is not None and value <= limit else EXCEEDED
    rounded = 3 if budget.figure != "memory" else 0
    return {
        "expr": budget.expr,
        "figure": FIGURES[budget.figure].name,
        "value": _round(value, rounded),
        "limit": _round(limit, rounded),
        "status": status,
        "reason": reason,
    }


def _round(value: float | None, digits: int) -> float | int | None:
    if value is None:
        return None
    return round(value) if digits == 0 else round(value, digits)


def check(budget: Budget, summary: Mapping[str, Any]) -> dict[str, Any]:
    """A static budget (not the baseline form) against the run summary."""
    value = job_figure(summary, budget.figure)
    if budget.kind == ABSOLUTE:
        return _result(budget, value, budget.amount)
    key = FIGURES[budget.figure].limit_key or ""
    job_limit = _number(_mapping(summary.get("job")).get(key))
    if job_limit is None or job_limit <= 0:
        what = "memory" if budget.figure == "memory" else "CPU"
        return _result(
            budget,
            value,
            None,
            f"no {what} limit is known for the job (CGROUP_LIMITS, or the cgroup's own)",
        )
    return _result(budget, value, job_limit * budget.amount / 100)


def check_baseline(
    budget: Budget,
    summary: Mapping[str, Any],
    comparison: Comparison | None,
    no_comparison: str,
) -> dict[str, Any]:
    """A baseline budget against the server's comparison; ``no_comparison`` says why
    there is none when ``comparison`` is None."""
    value = job_figure(summary, budget.figure)
    name = FIGURES[budget.figure].name
    change = comparison.job_figure(name) if comparison is not None else None
    if comparison is None:
        return _result(budget, value, None, f"no baseline: {no_comparison}")
    if change is None or change.median is None:
        runs = comparison.baseline_runs
        earlier = f" ({runs} earlier run{'s' if runs != 1 else ''})" if runs is not None else ""
        return _result(budget, value, None, f"no baseline for the job's {name}{earlier}")
    if value is None:
        value = change.value
    result = _result(budget, value, change.median * (1 + budget.amount / 100))
    result["baseline_median"] = change.median
    result["baseline_runs"] = comparison.baseline_runs
    return result


# --- the text of a result -----------------------------------------------------------


def describe(result: Mapping[str, Any]) -> str:
    """One line: ``budget memory<=90% exceeded: memory peak 1.9 GiB against 1.8 GiB
    (90 % of the job's 2.0 GiB limit)``.  From the result alone, so a stored summary
    says the same."""
    expr = str(result.get("expr", "?"))
    status = result.get("status")
    if status == NOT_CHECKED:
        return f"budget {expr} not checked: {result.get('reason') or 'no reason given'}"
    try:
        budget: Budget | None = parse_budget(expr)
    except ValueError:
        budget = None
    figure = FIGURES[budget.figure] if budget is not None else None
    value, limit = _number(result.get("value")), _number(result.get("limit"))

    def fmt(v: float | None) -> str:
        return figure.format(v) if figure is not None else f"{v:g}" if v is not None else "–"

    label = figure.label if figure is not None else str(result.get("figure", "figure"))
    text = f"budget {expr} {'ok' if status == OK else 'exceeded'}: {label} {fmt(value)}"
    text += f" against {fmt(limit)}"
    if budget is not None and limit is not None and budget.kind == OF_LIMIT:
        text += f" ({budget.amount:g} % of the job's {fmt(limit * 100 / budget.amount)} limit)"
    elif budget is not None and budget.kind == BASELINE:
        median = _number(result.get("baseline_median"))
        runs = result.get("baseline_runs")
        of = f"the last {runs} runs" if isinstance(runs, int) else "the earlier runs"
        text += f" (the median of {of}, {fmt(median)}, + {budget.amount:g} %)"
    return text


def markdown_lines(results: list[Mapping[str, Any]]) -> list[str]:
    """A Markdown list item per result, the mark first."""
    from resmon.collect.report_charts import md_cell

    marks = {OK: "✅", EXCEEDED: "❌", NOT_CHECKED: "➖"}
    lines = []
    for result in results:
        expr = str(result.get("expr", "?"))
        # A stored summary's text may hold anything: escaped, but the expression as
        # code, where its < and % read as they are.
        text = md_cell(describe(result)).replace(
            f"budget {md_cell(expr)}", f"budget `{expr.replace('`', '')}`", 1
        )
        lines.append(f"- {marks.get(str(result.get('status')), '➖')} {text}")
    return lines


def workflow_command(result: Mapping[str, Any], fail: bool) -> str | None:
    """The GitHub/Forgejo workflow command for a result: ``::error`` for an exceeded
    budget that fails the job, ``::warning`` for one that does not, ``::notice`` for
    one not checked; None for one within its budget."""
    status = result.get("status")
    if status == OK:
        return None
    if status == EXCEEDED:
        level, title = ("error" if fail else "warning"), "resmon budget exceeded"
    else:
        level, title = "notice", "resmon budget not checked"
    return f"::{level} title={_escape(title, True)}::{_escape(describe(result), False)}"


def _escape(text: str, is_property: bool) -> str:
    """The runner's escaping: % first, then the line breaks, and in a property : and ,."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if is_property:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text
