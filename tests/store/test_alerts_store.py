"""Alerts in the store, on SQLite and PostgreSQL: schema version 10 (repeatable, an
upgraded database equal to a fresh one), rules (checks, CRUD, the rules file) and the
evaluator on real events: pushed runs and live batches."""

from __future__ import annotations

import json
from unittest.mock import ANY

import orjson
import pytest
from alert_helpers import MEM_LIMIT, live_body, run_payload

from resmon.schema import validate_push
from resmon.server.live_wire import validate_live_batch
from resmon.store import alert_eval, alerts, events, live
from resmon.store import db as dbmod
from resmon.store.models import ALERT_MODELS, AlertState, WebhookOutbox
from resmon.store.write import store_push

MEM_RULE = {"name": "memory near the limit", "mem_threshold": "90%", "consecutive": 3}


def push(run_id: str, mem_share: float, cpu_share: float = 0.1, **scope):
    return store_push(validate_push(run_payload(run_id, mem_share, cpu_share, **scope))).id


def evaluate_all(targets=("http://127.0.0.1:9/hook",), body_format="json"):
    """Evaluate every event stored since the cursor; returns the alert events."""
    out = []
    while True:
        read, appended = alert_eval.step(
            lambda cursor: events.events_after(cursor, 500),
            targets=targets,
            body_format=body_format,
        )
        assert appended is not None
        out.extend(appended)
        if not read:
            return out


# --- the schema ---------------------------------------------------------------------


def _schema(db):
    tables = sorted(m._meta.table_name for m in ALERT_MODELS)
    if isinstance(db, dbmod.PostgresqlDatabase):
        p = db.param
        columns = db.execute_sql(
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            f"FROM information_schema.columns WHERE table_name IN ({', '.join([p] * 4)}) "
            "ORDER BY table_name, column_name",
            tables,
        ).fetchall()
        indexes = db.execute_sql(
            "SELECT tablename, indexname, indexdef FROM pg_indexes "
            f"WHERE tablename IN ({', '.join([p] * 4)}) ORDER BY indexname",
            tables,
        ).fetchall()
        return columns, indexes
    rows = db.execute_sql(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name IN (?, ?, ?, ?) ORDER BY name",
        tables,
    ).fetchall()
    return rows, None


def test_version_10_is_repeatable_and_equals_a_fresh_database(database):
    fresh = _schema(database)
    assert len(fresh[0]) > 4
    # Back to version 9: the alert tables gone, then the step twice.
    for model in reversed(ALERT_MODELS):
        database.execute_sql(f"DROP TABLE {model._meta.table_name}")
    database.execute_sql("UPDATE schema_version SET version = 9")
    assert dbmod.migrate(database) == (9, dbmod.LATEST_VERSION)
    assert _schema(database) == fresh
    from playhouse.migrate import PostgresqlMigrator, SqliteMigrator

    from resmon.store.migrations_alerts import to_v10

    postgres = isinstance(database, dbmod.PostgresqlDatabase)
    with database.atomic():
        to_v10(database, PostgresqlMigrator(database) if postgres else SqliteMigrator(database))
    assert _schema(database) == fresh


# --- rules --------------------------------------------------------------------------


def test_rule_checks_say_what_is_wrong(database):
    bad = [
        ({}, "name is required"),
        ({"name": "x"}, "needs cpu_threshold, mem_threshold or both"),
        ({"name": "x", "mem_treshold": "90%"}, "unknown field 'mem_treshold'"),
        ({"name": "x", "mem_threshold": "ninety"}, "neither a percent"),
        ({"name": "x", "mem_threshold": "90%", "consecutive": 0}, "consecutive"),
        ({"name": "x", "mem_threshold": "90%", "consecutive": True}, "consecutive"),
        ({"name": "x", "mem_threshold": "90%", "evaluate_on": "pushes"}, "runs or samples"),
        ({"name": "x", "mem_threshold": "90%", "job": ""}, "job must be 1 to 255"),
        ({"name": "x\n", "mem_threshold": "90%"}, "control characters"),
        ({"name": "x", "mem_threshold": ["90%"]}, "must be a string"),
        ([], "a rule is a JSON object"),
    ]
    for raw, message in bad:
        with pytest.raises(alerts.RuleError) as err:
            alerts.create_rule(raw)
        assert message in str(err.value), raw
    assert alerts.list_rules() == []


def test_rules_crud_and_a_changed_threshold_starts_the_states_afresh(database):
    rule = alerts.create_rule({**MEM_RULE, "organization": "my-org", "container": "run*"})
    assert rule["source"] == "api" and rule["mem_threshold"] == "90%"
    assert rule["cpu_threshold"] is None and rule["container"] == "run*"
    with pytest.raises(alerts.RuleConflict):
        alerts.create_rule(MEM_RULE)
    assert alerts.list_rules("my-org") == [rule] and alerts.list_rules("other") == []
    assert alerts.get_rule(rule["id"]) == rule
    evaluate_all()
    for run_id in ("1", "2", "3"):
        push(run_id, 0.95)
    evaluate_all()
    assert [s["state"] for s in alerts.list_states()] == ["mem_alert"]
    renamed = alerts.update_rule(rule["id"], {"name": "renamed", "enabled": True})
    assert renamed["name"] == "renamed" and len(alerts.list_states()) == 1  # states kept
    disabled = alerts.update_rule(rule["id"], {"enabled": False})
    assert disabled["enabled"] is False and alerts.list_states() == []
    changed = alerts.update_rule(rule["id"], {"mem_threshold": "3.5Gi", "enabled": True})
    assert changed["mem_threshold"] == "3.5Gi" and changed["enabled"] is True
    with pytest.raises(alerts.RuleError):
        alerts.update_rule(rule["id"], {"mem_threshold": None})
    alerts.delete_rule(rule["id"])
    with pytest.raises(alerts.NotFound):
        alerts.get_rule(rule["id"])


def test_the_rules_file_is_synced_and_its_rules_are_not_the_apis(database, tmp_path):
    path = tmp_path / "alerts.toml"
    path.write_text(
        '[[rule]]\nname = "mem"\nmem_threshold = "90%"\n\n'
        '[[rule]]\nname = "cpu"\ncpu_threshold = "1.5 cores"\nevaluate_on = "samples"\n'
    )
    assert alerts.sync_file_rules(alerts.read_rules_file(path)) == {
        "created": 2,
        "updated": 0,
        "deleted": 0,
    }
    assert alerts.sync_file_rules(alerts.read_rules_file(path)) == dict.fromkeys(
        ("created", "updated", "deleted"), 0
    )
    mem = next(r for r in alerts.list_rules() if r["name"] == "mem")
    with pytest.raises(alerts.RuleConflict, match="rules file"):
        alerts.update_rule(mem["id"], {"enabled": False})
    with pytest.raises(alerts.RuleConflict, match="rules file"):
        alerts.delete_rule(mem["id"])
    json_path = tmp_path / "alerts.json"
    json_path.write_text(json.dumps({"rules": [{"name": "mem", "mem_threshold": "80%"}]}))
    assert alerts.sync_file_rules(alerts.read_rules_file(json_path)) == {
        "created": 0,
        "updated": 1,
        "deleted": 1,
    }
    assert [(r["name"], r["mem_threshold"]) for r in alerts.list_rules()] == [("mem", "80%")]
    alerts.create_rule({"name": "api rule", "cpu_threshold": "1"})
    json_path.write_text(json.dumps([{"name": "api rule", "mem_threshold": "80%"}]))
    with pytest.raises(alerts.RuleConflict, match="admin API"):
        alerts.sync_file_rules(alerts.read_rules_file(json_path))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[rule]]\nname = 'x'\n", "rule 1 (x): a rule needs"),
        ("[[rules]]\nname = 'x'\n", "unknown table 'rules'"),
        ("[[rule]]\nname = \n", "is not valid TOML"),
        ("[[rule]]\nname='a'\ncpu_threshold='1'\n[[rule]]\nname='a'\ncpu_threshold='1'\n", "two"),
    ],
)
def test_a_bad_rules_file_is_refused_with_where(tmp_path, text, message):
    path = tmp_path / "alerts.toml"
    path.write_text(text)
    with pytest.raises(alerts.RuleError) as err:
        alerts.read_rules_file(path)
    assert message in str(err.value) and str(path) in str(err.value)


# --- evaluation ---------------------------------------------------------------------


def test_three_runs_over_90_percent_alert_and_three_under_recover(database):
    alerts.create_rule(MEM_RULE)
    evaluate_all()  # the cursor starts at the newest event: history is not evaluated
    shares = [0.95, 0.95, 0.95, 0.5, 0.96, 0.5, 0.5, 0.5]
    changes = []
    for i, share in enumerate(shares, 1):
        push(str(i), share)
        changes += [(i, e["data"]["previous"], e["data"]["state"]) for e in evaluate_all()]
    assert changes == [(3, "normal", "mem_alert"), (8, "mem_alert", "normal")]
    (state,) = alerts.list_states()
    assert state["state"] == "normal" and state["container"] == ""
    assert state["mem_limit"] == MEM_LIMIT and state["mem_value"] == int(0.5 * MEM_LIMIT)
    # Each change is an alert event and one outbox row per target.
    stored = [e for e in events.events_after(0, 1000) if e["kind"] == "alert"]
    assert [e["data"]["state"] for e in stored] == ["mem_alert", "normal"]
    assert stored[0]["data"]["mem"]["breaches"] == 3 and stored[0]["organization"] == "my-org"
    outbox = list(WebhookOutbox.select().order_by(WebhookOutbox.id))
    assert [o.event_id for o in outbox] == [e["id"] for e in stored]
    assert orjson.loads(outbox[0].body) == stored[0]


def test_cpu_and_memory_per_container_make_both_alert(database):
    alerts.create_rule(
        {
            "name": "both",
            "container": "*",
            "cpu_threshold": "80%",
            "mem_threshold": "1.5Gi",
            "consecutive": 2,
        }
    )
    evaluate_all()
    for i, (cpu, mem) in enumerate([(0.9, 0.5), (0.9, 0.8), (0.9, 0.8), (0.1, 0.8), (0.1, 0.1)]):
        push(str(i + 1), mem, cpu)
    seen = [(e["data"]["container"], e["data"]["state"]) for e in evaluate_all()]
    assert seen == [("runner", "cpu_alert"), ("runner", "both_alert"), ("runner", "mem_alert")]


def test_scope_patterns_pick_the_jobs(database):
    alerts.create_rule({**MEM_RULE, "repository": "my-repo", "job": "te*", "consecutive": 1})
    evaluate_all()
    push("1", 0.95, job="build")
    push("2", 0.95, job="test")
    push("3", 0.95, job="test", repository="my-org/other")
    assert [(e["job"], e["repository"]) for e in evaluate_all()] == [("test", "my-org/my-repo")]


def test_live_samples_alert_and_recover(database):
    alerts.create_rule(
        {"name": "live", "evaluate_on": "samples", "cpu_threshold": "90%", "consecutive": 2}
    )
    evaluate_all()
    shares = [0.95, 0.97, 0.99, 0.2, 0.1]
    changes = []
    for seq, share in enumerate(shares):
        body = live_body(
            "rk-1", seq, cpu_share=share, mem_share=0.1, t=f"2026-01-02T03:04:{seq:02d}Z"
        )
        batch = validate_live_batch(body)
        live.store_batch(batch.execution, batch.run, batch.seq, batch.samples, times=batch.times)
        changes += [(seq, e["data"]["state"]) for e in evaluate_all()]
    assert changes == [(1, "cpu_alert"), (4, "normal")]
    (state,) = alerts.list_states()
    assert state["cpu_limit"] == 2.0 and state["last_run"] is not None


def test_a_reader_behind_another_writes_nothing(database):
    alerts.create_rule({**MEM_RULE, "consecutive": 1})
    evaluate_all()
    push("1", 0.95)
    start = alert_eval.read_cursor()
    rows = events.events_after(start, 100)
    assert alert_eval.evaluate(rows, start, targets=("t",)) == (rows[-1]["id"], ANY)
    # The same batch again (a second worker that read the same cursor): nothing.
    assert alert_eval.evaluate(rows, start, targets=("t",)) is None
    assert AlertState.select().count() == 1 and WebhookOutbox.select().count() == 1


def test_slack_body_is_one_line_of_text(database):
    alerts.create_rule({**MEM_RULE, "consecutive": 1})
    evaluate_all()
    push("1", 0.95)
    (event,) = evaluate_all(body_format="slack")
    body = orjson.loads(WebhookOutbox.get().body)
    assert list(body) == ["text"]
    assert "normal -> mem_alert" in body["text"] and "memory 1.90 GiB of 2.00 GiB" in body["text"]
    assert "my-org/my-repo ci.yml / build" in body["text"]
    assert event["data"]["mem"]["threshold"] == "90%"


def test_one_evaluator_holds_the_lease_until_it_runs_out(database):
    from datetime import datetime, timedelta

    t0 = datetime(2026, 1, 1)
    assert alert_eval.lead("a", 10, now=t0)
    assert not alert_eval.lead("b", 10, now=t0 + timedelta(seconds=1))
    assert alert_eval.lead("a", 10, now=t0 + timedelta(seconds=6))  # renewed to t0 + 16 s
    assert not alert_eval.lead("b", 10, now=t0 + timedelta(seconds=15))
    assert alert_eval.lead("b", 10, now=t0 + timedelta(seconds=17))  # a stopped renewing
    assert not alert_eval.lead("a", 10, now=t0 + timedelta(seconds=18))
    alert_eval.release("b")
    assert alert_eval.lead("a", 10, now=t0 + timedelta(seconds=19))


def test_a_storm_of_changes_goes_out_in_short_transactions(database):
    """Every job alerting at once: at most max_writes states and alerts a transaction;
    and a job far from its limits is not written again at every run."""
    for i in range(4):
        alerts.create_rule({**MEM_RULE, "name": f"r{i}", "consecutive": 1})
    evaluate_all()
    for i in range(10):
        push(str(i + 1), 0.95, job=f"job-{i}")
    start = alert_eval.read_cursor()
    rows = events.events_after(start, 100)
    transactions = []
    real_store = alert_eval._store

    def counting_store(start, end, dirty, changes, *args):
        transactions.append(len(dirty) + len(changes))
        return real_store(start, end, dirty, changes, *args)

    alert_eval._store = counting_store
    try:
        end, appended = alert_eval.evaluate(rows, start, max_writes=10)
    finally:
        alert_eval._store = real_store
    # Each run: 4 new states and 4 alerts; a transaction ends once 10 are reached.
    assert end == rows[-1]["id"] and len(appended) == 40
    assert transactions == [16, 16, 16, 16, 16] and alert_eval.read_cursor() == end

    def job_0():
        rule = alerts.list_rules()[0]["id"]
        return next(s for s in alerts.list_states(rule_id=rule) if s["job"] == "job-0")

    assert job_0()["mem_consecutive_breaches"] == 1
    push("11", 0.95, job="job-0")  # still alerting, the breaches go on: written
    evaluate_all()
    assert job_0()["mem_consecutive_breaches"] == 2


def test_a_normal_job_is_not_written_at_every_run(database):
    alerts.create_rule(MEM_RULE)
    evaluate_all()
    push("1", 0.5)
    evaluate_all()
    (first,) = alerts.list_states()
    push("2", 0.6)
    evaluate_all()
    (second,) = alerts.list_states()
    assert second["updated_at"] == first["updated_at"]  # nothing changed: no write
    assert second["mem_value"] == first["mem_value"] == int(0.5 * MEM_LIMIT)
