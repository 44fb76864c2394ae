"""``resmon query alerts``: the alert rules and the state of each for each matched job.

The answer is ``{"rules": [...], "states": [...]}``: the bodies of
``GET /api/v1/alerts/rules`` and ``GET /api/v1/alerts/states``, or of
:func:`resmon.store.alerts.list_rules` / :func:`~resmon.store.alerts.list_states`
with ``--db``.  Two tables for people (the states first: what is alerting now), the
answer as JSON, or one CSV (the states, or with ``--rules`` the rules).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from resmon.query.formats import NONE, fmt_ago, fmt_bytes, fmt_cores
from resmon.query.layout import Column, fit_table

RULE_FIELDS = (
    "id",
    "name",
    "source",
    "enabled",
    "evaluate_on",
    "organization",
    "repository",
    "workflow",
    "job",
    "container",
    "cpu_threshold",
    "mem_threshold",
    "consecutive",
    "created_at",
    "updated_at",
)
STATE_FIELDS = (
    "id",
    "rule_id",
    "rule_name",
    "organization",
    "repository",
    "workflow",
    "job",
    "container",
    "state",
    "cpu_consecutive_breaches",
    "mem_consecutive_breaches",
    "cpu_value_cores",
    "cpu_limit_cores",
    "mem_value_bytes",
    "mem_limit_bytes",
    "last_run",
    "last_alerted_at",
    "updated_at",
)
STATE_STYLES = {
    "normal": "green",
    "cpu_alert": "bold red",
    "mem_alert": "bold red",
    "both_alert": "bold red",
}


def fetch(
    source: Any, organization: str | None, alerting_only: bool, limit: int | None
) -> dict[str, Any]:
    """The rules and states from a source of :mod:`resmon.query.client`: its read API
    over HTTP, or the store's functions on a database."""
    if hasattr(source, "_get"):
        rules = source._get("/api/v1/alerts/rules")["rules"]
        params = {
            "organization": organization,
            "alerting": "true" if alerting_only else None,
            "limit": limit,
        }
        states = source._get("/api/v1/alerts/states", params)["states"]
    else:
        from resmon.store import alerts

        rules = source._call(lambda: {"rules": alerts.list_rules(organization)})["rules"]
        states = source._call(
            lambda: {
                "states": alerts.list_states(
                    organization, alerting_only=alerting_only, limit=limit or 1000
                )
            }
        )["states"]
    return {"rules": rules, "states": states}


def csv_rows(body: dict[str, Any], rules: bool) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """The CSV's rows and fields: the rules, or the states with each figure's unit in
    its name (the CSV writer rounds by it)."""
    if rules:
        return list(body["rules"]), RULE_FIELDS
    rows = []
    for s in body["states"]:
        row = dict(s)
        row.update(
            cpu_value_cores=s.get("cpu_value"),
            cpu_limit_cores=s.get("cpu_limit"),
            mem_value_bytes=s.get("mem_value"),
            mem_limit_bytes=s.get("mem_limit"),
        )
        rows.append(row)
    return rows, STATE_FIELDS


def _of(value: str, limit: str) -> str:
    """``1.90 / 2.00 GiB``: the unit once when both have the same."""
    if limit == NONE:
        return value
    unit = limit.rpartition(" ")[2]
    if " " in limit and value.endswith(" " + unit):
        value = value[: -len(unit) - 1]
    return f"{value} / {limit}"


def states_table(states: list[dict[str, Any]], width: int, now: datetime) -> RenderableType:
    if not states:
        return Text("no alert states yet (a rule has a state once a run or sample matches it)")
    cols = {
        "state": Column("STATE", justify="left"),
        "job": Column("JOB", justify="left", name=True),
        "container": Column("CONTAINER", justify="left", name=True, drop=3, label="container"),
        "rule": Column("RULE", justify="left", name=True),
        "cpu": Column("CPU / LIMIT"),
        "mem": Column("MEMORY / LIMIT"),
        "breaches": Column("BREACHES", drop=4, label="breaches"),
        "since": Column("CHANGED", drop=1, label="changed"),
    }
    # What alerts first; the answer's order (the most recently changed first) within.
    for s in sorted(states, key=lambda s: s.get("state") == "normal"):
        state = s.get("state") or "normal"
        cols["state"].cells.append(Text(state, style=STATE_STYLES.get(state, "")))
        cols["job"].cells.append(f"{s.get('repository')} {s.get('workflow')} {s.get('job')}")
        cols["container"].cells.append(s.get("container") or "(job)")
        cols["rule"].cells.append(s.get("rule_name") or str(s.get("rule_id")))
        cols["cpu"].cells.append(_of(fmt_cores(s.get("cpu_value")), fmt_cores(s.get("cpu_limit"))))
        cols["mem"].cells.append(_of(fmt_bytes(s.get("mem_value")), fmt_bytes(s.get("mem_limit"))))
        cols["breaches"].cells.append(
            f"{s.get('cpu_consecutive_breaches', 0)} / {s.get('mem_consecutive_breaches', 0)}"
        )
        changed = s.get("last_alerted_at")
        cols["since"].cells.append(fmt_ago(changed, now) if changed else NONE)
    alerting = sum(1 for s in states if s.get("state") != "normal")
    title = [f"{alerting} alerting", f"of {len(states)} state(s);", "CPU in cores;"]
    title += ["breaches in a row: CPU / memory"]
    return fit_table(list(cols.values()), width, title=title)


def _scope(rule: dict[str, Any]) -> str:
    parts = [rule.get(k) or "*" for k in ("organization", "repository", "workflow", "job")]
    text = " ".join(parts)
    container = rule.get("container")
    return text + (f" [{container}]" if container else "")


def rules_table(rules: list[dict[str, Any]], width: int) -> RenderableType:
    if not rules:
        return Text(
            "no alert rules: give serve --alert-rules FILE, or POST /api/v1/alerts/rules "
            "with the admin token"
        )
    cols = {
        "id": Column("ID"),
        "name": Column("RULE", justify="left", name=True),
        "scope": Column("SCOPE", justify="left", name=True),
        "on": Column("ON", justify="left", drop=2, label="evaluated on"),
        "cpu": Column("CPU", justify="left"),
        "mem": Column("MEMORY", justify="left"),
        "n": Column("N", drop=3, label="consecutive"),
        "enabled": Column("ON/OFF", justify="left", drop=4, label="enabled"),
        "source": Column("FROM", justify="left", drop=1, label="source"),
    }
    for r in rules:
        cols["id"].cells.append(str(r.get("id")))
        cols["name"].cells.append(r.get("name") or "")
        cols["scope"].cells.append(_scope(r))
        cols["on"].cells.append(r.get("evaluate_on") or "runs")
        cols["cpu"].cells.append(r.get("cpu_threshold") or NONE)
        cols["mem"].cells.append(r.get("mem_threshold") or NONE)
        cols["n"].cells.append(str(r.get("consecutive")))
        cols["enabled"].cells.append("on" if r.get("enabled") else Text("off", style="dim"))
        cols["source"].cells.append(r.get("source") or "")
    title = [f"{len(rules)} rule(s);", "N: observations in a row that change a state"]
    return fit_table(list(cols.values()), width, title=title)


def alerts_view(
    body: dict[str, Any], width: int, *, rules_only: bool = False, now: datetime | None = None
) -> RenderableType:
    rules = rules_table(body.get("rules") or [], width)
    if rules_only:
        return rules
    states = states_table(body.get("states") or [], width, now or datetime.now(UTC))
    return Group(states, Text(""), rules)
