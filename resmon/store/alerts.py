"""Alert rules and states: checked rules in, plain dicts out.

A rule (``alert_rules``) is a scope pattern -- organization, repository, workflow,
job and optionally container, ``*`` matching any run of characters -- with a CPU
and a memory threshold (a percent of the limit, or cores / bytes;
:mod:`resmon.analysis.alert_machine`), how many consecutive observations change a
state, and what it is evaluated on: ``runs`` (each finished or lost run of a job) or
``samples`` (each live snapshot of a running job).  ``container`` None watches the
job's own figures; a pattern watches each matching container.

Rules come from two places (``source``): the file given to ``serve --alert-rules``
(:func:`sync_file_rules` makes the stored file rules equal to it; the admin API
cannot change them) and the admin API (:func:`create_rule`, :func:`update_rule`,
:func:`delete_rule`).  Names are unique across both.

States (``alert_states``) are written by :mod:`resmon.store.alert_eval` only; here
they are read (:func:`list_states`).  The HTTP API (:mod:`resmon.server.alerts_api`),
``resmon query alerts`` and the web page call these functions.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from peewee import IntegrityError

from resmon.analysis import alert_machine as machine
from resmon.schema import format_time
from resmon.store import db as dbmod
from resmon.store.models import AlertRule, AlertState, database_proxy
from resmon.store.scope import NotFound

FILE, API = "file", "api"
RUNS, SAMPLES = "runs", "samples"
EVALUATE_ON = (RUNS, SAMPLES)
SCOPE_PATTERNS = ("organization", "repository", "workflow", "job")
RULE_FIELDS = (
    "name",
    "enabled",
    "evaluate_on",
    *SCOPE_PATTERNS,
    "container",
    "cpu_threshold",
    "mem_threshold",
    "consecutive",
)
MAX_RULES = 1000
MAX_STATES = 10_000
_LENGTHS = {"repository": 511}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RuleError(ValueError):
    """A rule that cannot be stored; ``field`` names the part at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RuleConflict(Exception):
    """A rule name taken already, or a file rule the API may not change."""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _time(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return format_time(value.replace(tzinfo=UTC) if value.tzinfo is None else value)


# --- patterns ---------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in text.split("*")), re.DOTALL)


def matches(pattern: str | None, value: str) -> bool:
    """``*`` matches any run of characters (none too); everything else itself."""
    if pattern is None or pattern == "*":
        return True
    return _pattern(pattern).fullmatch(value) is not None


def repository_matches(pattern: str, repository: str) -> bool:
    """A repository pattern matches the canonical ``org/repo`` or, without a ``/``,
    the name after the organization."""
    if matches(pattern, repository):
        return True
    return "/" not in pattern and matches(pattern, repository.partition("/")[2])


# --- checking a rule ------------------------------------------------------------


def _text(value: Any, name: str, *, pattern: bool) -> str:
    limit = _LENGTHS.get(name, 255)
    if not isinstance(value, str):
        raise RuleError(f"{name} must be a string", name)
    if not value or len(value) > limit:
        raise RuleError(f"{name} must be 1 to {limit} characters", name)
    if _CONTROL.search(value):
        raise RuleError(f"{name} must not contain control characters", name)
    if pattern and "**" in value:
        raise RuleError(f"{name}: write one * for any run of characters", name)
    return value


def check_rule(raw: Any, *, partial: bool = False) -> dict[str, Any]:
    """A rule's columns from its JSON (or TOML) form; raises :class:`RuleError`.

    ``partial``: only the fields given (an update); unknown fields are refused either
    way, so a typo (``mem_treshold``) is not silently a rule without a threshold."""
    if not isinstance(raw, dict):
        raise RuleError("a rule is a JSON object")
    unknown = sorted(str(k)[:40] for k in raw if k not in RULE_FIELDS)
    if unknown:
        raise RuleError(
            f"unknown field {unknown[0]!r}: a rule has {', '.join(RULE_FIELDS)}", unknown[0]
        )
    out: dict[str, Any] = {}
    if "name" in raw or not partial:
        if "name" not in raw:
            raise RuleError("name is required", "name")
        out["name"] = _text(raw["name"], "name", pattern=False)
    if "enabled" in raw or not partial:
        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            raise RuleError("enabled must be true or false", "enabled")
        out["enabled"] = enabled
    if "evaluate_on" in raw or not partial:
        on = raw.get("evaluate_on", RUNS)
        if on not in EVALUATE_ON:
            raise RuleError("evaluate_on must be runs or samples", "evaluate_on")
        out["evaluate_on"] = on
    for name in SCOPE_PATTERNS:
        if name in raw or not partial:
            out[name] = _text(raw.get(name, "*"), name, pattern=True)
    if "container" in raw or not partial:
        container = raw.get("container")
        out["container"] = (
            None if container is None else _text(container, "container", pattern=True)
        )
    for name, parse in (
        ("cpu", machine.parse_cpu_threshold),
        ("mem", machine.parse_mem_threshold),
    ):
        key = f"{name}_threshold"
        if key in raw or not partial:
            out.update(_threshold(raw.get(key), key, parse))
    if "consecutive" in raw or not partial:
        n = raw.get("consecutive", 3)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= machine.MAX_CONSECUTIVE:
            raise RuleError(
                f"consecutive must be a whole number from 1 to {machine.MAX_CONSECUTIVE}",
                "consecutive",
            )
        out["consecutive"] = n
    if not partial and out["cpu_threshold_kind"] is None and out["mem_threshold_kind"] is None:
        raise RuleError("a rule needs cpu_threshold, mem_threshold or both", "cpu_threshold")
    return out


def _threshold(value: Any, key: str, parse) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    prefix = key.removesuffix("_threshold")
    if value is None:
        return {f"{prefix}_threshold_kind": None, f"{prefix}_threshold_value": None}
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RuleError(f'{key} must be a string such as "90%"', key)
    if isinstance(value, str) and len(value) > 64:
        raise RuleError(f"{key} is longer than 64 characters", key)
    try:
        threshold = parse(str(value))
    except machine.ThresholdError as exc:
        raise RuleError(str(exc), key) from None
    return {
        f"{prefix}_threshold_kind": threshold.kind,
        f"{prefix}_threshold_value": threshold.value,
    }


def threshold_of(kind: str | None, value: float | None) -> machine.Threshold | None:
    return None if kind is None or value is None else machine.Threshold(kind, float(value))


def rule_dict(rule: AlertRule) -> dict[str, Any]:
    cpu = threshold_of(rule.cpu_threshold_kind, rule.cpu_threshold_value)
    mem = threshold_of(rule.mem_threshold_kind, rule.mem_threshold_value)
    return {
        "id": rule.id,
        "name": rule.name,
        "source": rule.source,
        "enabled": bool(rule.enabled),
        "evaluate_on": rule.evaluate_on,
        "organization": rule.organization,
        "repository": rule.repository,
        "workflow": rule.workflow,
        "job": rule.job,
        "container": rule.container,
        "cpu_threshold": None if cpu is None else cpu.text(),
        "mem_threshold": None if mem is None else mem.text(),
        "consecutive": rule.consecutive,
        "created_at": _time(rule.created_at),
        "updated_at": _time(rule.updated_at),
    }


# --- reading --------------------------------------------------------------------


def list_rules(org: str | None = None) -> list[dict[str, Any]]:
    """Every rule by id; with ``org``, those whose organization pattern matches it."""
    rules = AlertRule.select().order_by(AlertRule.id).limit(MAX_RULES)
    return [rule_dict(r) for r in rules if org is None or matches(r.organization, org)]


def get_rule(rule_id: int, org: str | None = None) -> dict[str, Any]:
    rule = AlertRule.get_or_none(AlertRule.id == rule_id)
    if rule is None or (org is not None and not matches(rule.organization, org)):
        raise NotFound(f"no alert rule {rule_id}", [])
    return rule_dict(rule)


def list_states(
    org: str | None = None,
    *,
    state: str | None = None,
    rule_id: int | None = None,
    alerting_only: bool = False,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """States, the most recently changed first; ``org`` keeps one organization's."""
    query = (
        AlertState.select(AlertState, AlertRule.name)
        .join(AlertRule)
        .order_by(AlertState.updated_at.desc(), AlertState.id.desc())
        .limit(max(1, min(int(limit), MAX_STATES)))
    )
    if org is not None:
        query = query.where(AlertState.organization == org)
    if state is not None:
        if state not in machine.STATES:
            raise RuleError(f"state must be one of {', '.join(machine.STATES)}", "state")
        query = query.where(AlertState.state == state)
    if alerting_only:
        query = query.where(AlertState.state != machine.NORMAL)
    if rule_id is not None:
        query = query.where(AlertState.rule == rule_id)
    return [state_dict(s) for s in query]


def state_dict(s: AlertState) -> dict[str, Any]:
    return {
        "id": s.id,
        "rule_id": s.rule_id,
        "rule_name": s.rule.name,
        "organization": s.organization,
        "repository": s.repository,
        "workflow": s.workflow,
        "job": s.job,
        "container": s.container,
        "state": s.state,
        "cpu_consecutive_breaches": s.cpu_consecutive_breaches,
        "mem_consecutive_breaches": s.mem_consecutive_breaches,
        "cpu_value": s.cpu_value,
        "cpu_limit": s.cpu_limit,
        "mem_value": s.mem_value,
        "mem_limit": s.mem_limit,
        "last_run": s.last_run,
        "last_alerted_at": _time(s.last_alerted_at),
        "created_at": _time(s.created_at),
        "updated_at": _time(s.updated_at),
    }


def summary(org: str | None = None) -> dict[str, Any]:
    """Counts for a page header: rules, enabled rules, states alerting, states by state."""
    rules = list_rules(org)
    by_state = dict.fromkeys(machine.STATES, 0)
    query = AlertState.select(AlertState.state)
    if org is not None:
        query = query.where(AlertState.organization == org)
    for (value,) in query.tuples().iterator():
        by_state[value] = by_state.get(value, 0) + 1
    return {
        "rules": len(rules),
        "enabled": sum(1 for r in rules if r["enabled"]),
        "alerting": sum(n for k, n in by_state.items() if k != machine.NORMAL),
        "by_state": by_state,
    }


# --- writing (the admin API) ----------------------------------------------------


def _write():  # type: ignore[no-untyped-def]
    db = database_proxy
    return dbmod.write_lock(db.obj), db.atomic()


def create_rule(raw: Any, *, source: str = API) -> dict[str, Any]:
    columns = check_rule(raw)
    now = _now()
    lock, tx = _write()
    with lock, tx:
        if AlertRule.select().count() >= MAX_RULES:
            raise RuleConflict(f"at most {MAX_RULES} rules")
        if AlertRule.get_or_none(AlertRule.name == columns["name"]) is not None:
            raise RuleConflict(f"a rule named {columns['name']!r} exists already")
        try:
            rule = AlertRule.create(**columns, source=source, created_at=now, updated_at=now)
        except IntegrityError:
            raise RuleConflict(f"a rule named {columns['name']!r} exists already") from None
    return rule_dict(rule)


def _api_rule(rule_id: int) -> AlertRule:
    rule = AlertRule.get_or_none(AlertRule.id == rule_id)
    if rule is None:
        raise NotFound(f"no alert rule {rule_id}", [])
    if rule.source != API:
        raise RuleConflict(
            f"rule {rule_id} comes from the rules file (serve --alert-rules): change it there"
        )
    return rule


def update_rule(rule_id: int, raw: Any) -> dict[str, Any]:
    """Change the fields given.  A changed scope, threshold, count or ``enabled`` starts
    the rule's states afresh (their counts were against the old rule; a disabled rule
    shows no state that nothing evaluates any more)."""
    columns = check_rule(raw, partial=True)
    lock, tx = _write()
    with lock, tx:
        rule = _api_rule(rule_id)
        merged = {**_columns_of(rule), **columns}
        if merged["cpu_threshold_kind"] is None and merged["mem_threshold_kind"] is None:
            raise RuleError("a rule needs cpu_threshold, mem_threshold or both", "cpu_threshold")
        renamed = "name" in columns and columns["name"] != rule.name
        if renamed and AlertRule.get_or_none(AlertRule.name == columns["name"]) is not None:
            raise RuleConflict(f"a rule named {columns['name']!r} exists already")
        _apply(rule, merged)
    return rule_dict(rule)


def _columns_of(rule: AlertRule) -> dict[str, Any]:
    return {
        name: getattr(rule, name)
        for name in (
            "name",
            "enabled",
            "evaluate_on",
            *SCOPE_PATTERNS,
            "container",
            "cpu_threshold_kind",
            "cpu_threshold_value",
            "mem_threshold_kind",
            "mem_threshold_value",
            "consecutive",
        )
    }


_KEEP_STATES = ("name",)


def _apply(rule: AlertRule, columns: dict[str, Any]) -> bool:
    """Store ``columns`` on ``rule`` if they differ; True when something changed."""
    before = _columns_of(rule)
    changed = {k: v for k, v in columns.items() if before.get(k) != v}
    if not changed:
        return False
    if any(k not in _KEEP_STATES for k in changed):
        AlertState.delete().where(AlertState.rule == rule.id).execute()
    for key, value in changed.items():
        setattr(rule, key, value)
    rule.updated_at = _now()
    rule.save()
    return True


def delete_rule(rule_id: int) -> None:
    lock, tx = _write()
    with lock, tx:
        rule = _api_rule(rule_id)
        AlertState.delete().where(AlertState.rule == rule.id).execute()
        rule.delete_instance()


# --- the rules file -------------------------------------------------------------


def read_rules_file(path: str | Path) -> list[dict[str, Any]]:
    """The checked rules of a TOML (``[[rule]]`` tables) or JSON (``{"rules": [...]}``
    or a list) file; raises :class:`RuleError` naming the file and the rule at fault."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RuleError(f"cannot read alert rules {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".json":
            parsed: Any = json.loads(data)
            items = parsed.get("rules") if isinstance(parsed, dict) else parsed
        else:
            parsed = tomllib.loads(data.decode("utf-8"))
            unknown = sorted(k for k in parsed if k != "rule")
            if unknown:
                raise RuleError(f"{path}: unknown table {unknown[0]!r}: write rules as [[rule]]")
            items = parsed.get("rule", [])
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, RuleError):
            raise
        raise RuleError(f"{path} is not valid {_kind(path)}: {exc}") from None
    if not isinstance(items, list):
        raise RuleError(f"{path}: the rules must be a list")
    if len(items) > MAX_RULES:
        raise RuleError(f"{path}: at most {MAX_RULES} rules")
    rules, names = [], set()
    for index, item in enumerate(items, 1):
        try:
            rule = check_rule(item)
        except RuleError as exc:
            label = item.get("name") if isinstance(item, dict) else None
            raise RuleError(f"{path}: rule {index} ({label or 'no name'}): {exc}") from None
        if rule["name"] in names:
            raise RuleError(f"{path}: two rules named {rule['name']!r}")
        names.add(rule["name"])
        rules.append(rule)
    return rules


def _kind(path: Path) -> str:
    return "JSON" if path.suffix.lower() == ".json" else "TOML"


def sync_file_rules(rules: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Make the stored file rules equal to ``rules`` (checked, from
    :func:`read_rules_file`): new ones created, changed ones updated, the others
    deleted.  Idempotent; several workers may run it at once.  A file rule named as
    an API rule is refused (:class:`RuleConflict`), nothing changed."""
    wanted = {r["name"]: r for r in rules}
    counts = {"created": 0, "updated": 0, "deleted": 0}
    now = _now()
    lock, tx = _write()
    with lock, tx:
        stored = {r.name: r for r in AlertRule.select()}
        for name, columns in wanted.items():
            rule = stored.get(name)
            if rule is not None and rule.source != FILE:
                raise RuleConflict(f"rules file: a rule named {name!r} exists from the admin API")
            if rule is None:
                AlertRule.create(**columns, source=FILE, created_at=now, updated_at=now)
                counts["created"] += 1
            elif _apply(rule, columns):
                counts["updated"] += 1
        for name, rule in stored.items():
            if rule.source == FILE and name not in wanted:
                AlertState.delete().where(AlertState.rule == rule.id).execute()
                rule.delete_instance()
                counts["deleted"] += 1
    return counts
