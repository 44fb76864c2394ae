"""Schema version 7 (run states, live columns, run_batches, events) and the events
table's contract (resmon.store.events), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from server_proc import sample_payload

from resmon.schema import validate_push
from resmon.store import db as dbmod
from resmon.store import events
from resmon.store.models import Event, Run, database_proxy
from resmon.store.write import store_push

SCOPE = {"organization": "o", "repository": "o/r", "workflow": "w.yml", "job": "j"}


def _at_version_6(target, monkeypatch):
    """A database as resmon 6 left it: created from version 1 through the steps, so its
    tables and columns are what those steps made, with runs stored in it."""
    db = dbmod.open_database(target)
    db.execute_sql(
        "CREATE TABLE runs (id {pk}, organization TEXT NOT NULL, repository TEXT NOT NULL, "
        "workflow TEXT NOT NULL, job TEXT NOT NULL, run_id TEXT NOT NULL, "
        "received_at {ts} NOT NULL, payload TEXT NOT NULL)".format(
            pk="SERIAL PRIMARY KEY" if dbmod.is_postgres(target) else "INTEGER PRIMARY KEY",
            ts="TIMESTAMP" if dbmod.is_postgres(target) else "DATETIME",
        )
    )
    monkeypatch.setattr(dbmod, "LATEST_VERSION", 6)
    assert dbmod.migrate(db) == (1, 6)
    monkeypatch.undo()
    columns = {c.name for c in db.get_columns("runs")}
    assert "state" not in columns and "events" not in db.get_tables()
    # Runs pushed at version 6: the write path's INSERT names only the columns it sets
    # plus peewee's defaults, which include the new ones; so store them by hand.
    for run_id in ("1", "2"):
        payload = sample_payload(run_id)
        db.execute_sql(
            "INSERT INTO runs (organization, repository, workflow, job, run_id, run_attempt, "
            "body_sha256, run_key, received_at, payload) VALUES "
            + "({})".format(", ".join([db.param] * 10)),
            (
                "my-org",
                "my-org/my-repo",
                "ci.yml",
                "build",
                run_id,
                "",
                "x" * 64,
                f"key{run_id}",
                "2026-01-02 03:04:05",
                '{"sample_count": 3}',
            ),
        )
        assert payload
    return db


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_version_6_is_upgraded_and_its_runs_are_finished(backend, tmp_path, monkeypatch, request):
    target = (
        str(tmp_path / "m.db") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    )
    db = _at_version_6(target, monkeypatch)
    assert dbmod.migrate(db) == (6, dbmod.LATEST_VERSION)
    assert dbmod.LATEST_VERSION >= 7  # other versions may come after the live one
    runs = list(Run.select().order_by(Run.id))
    assert [(r.run_id, r.state, r.partial, r.live_key) for r in runs] == [
        ("1", "finished", False, None),
        ("2", "finished", False, None),
    ]
    indexes = {ix.name for ix in db.get_indexes("runs")}
    assert {"run_live_key", "run_running_last_batch"} <= indexes
    assert {"events", "run_batches"} <= set(db.get_tables())
    # The upgraded database takes pushes and events as a fresh one does.
    assert store_push(validate_push(sample_payload("3"))).created
    with database_proxy.atomic():
        first = events.append_event("run_finished", SCOPE, 3, {"run": 3})
    # The push appended its run_finished; the one appended here comes after it.
    assert [(e["kind"], e["run_pk"]) for e in events.events_after(0, 10)] == [
        ("run_finished", 3),
        ("run_finished", 3),
    ]
    assert events.events_after(0, 10)[-1]["id"] == first
    latest = dbmod.LATEST_VERSION
    assert dbmod.migrate(db) == (latest, latest)  # idempotent
    # Repeating the step itself is harmless too.
    from playhouse.migrate import PostgresqlMigrator, SqliteMigrator

    from resmon.store.migrations import STEPS

    migrator = PostgresqlMigrator(db) if dbmod.is_postgres(target) else SqliteMigrator(db)
    with db.atomic():
        STEPS[7](db, migrator)
    db.close()


def test_append_and_read_events_in_order(database):
    with database_proxy.atomic():
        a = events.append_event("run_started", SCOPE, 1, {"run": 1, "host": "h"})
        b = events.append_event("snapshot", SCOPE, 1, {"run": 1, "t": "x"})
    other = dict(SCOPE, job="other")
    with database_proxy.atomic():
        c = events.append_event("run_lost", other, None, {"run": None})
    assert a < b < c
    got = events.events_after(0, 100)
    assert [e["id"] for e in got] == [a, b, c]
    assert got[0] == {
        "id": a,
        "kind": "run_started",
        "created_at": got[0]["created_at"],
        **SCOPE,
        "run_pk": 1,
        "data": {"run": 1, "host": "h"},
    }
    assert got[0]["created_at"].endswith("Z")
    assert [e["id"] for e in events.events_after(a, 100)] == [b, c]
    assert [e["id"] for e in events.events_after(0, 1)] == [a]
    assert [e["id"] for e in events.events_after(0, 100, {"job": "other"})] == [c]
    assert events.events_after(0, 100, {"job": "other"}, data_as_text=True)[0]["data"] == (
        '{"run":null}'
    )
    assert events.events_after(c, 100) == [] and events.events_after(0, 0) == []
    assert events.latest_event_id() == c
    with pytest.raises(ValueError):
        events.append_event("nonsense", SCOPE, 1, {})
    with pytest.raises(ValueError):
        events.events_after(0, 10, {"payload": "x"})


def test_an_event_exists_only_if_its_transaction_committed(database):
    class Boom(Exception):
        pass

    with pytest.raises(Boom), database_proxy.atomic():
        events.append_event("run_started", SCOPE, 1, {})
        raise Boom
    assert events.events_after(0, 10) == []


def test_ids_are_never_reused_after_every_event_is_deleted(database):
    with database_proxy.atomic():
        first = events.append_event("run_started", SCOPE, 1, {})
        second = events.append_event("run_started", SCOPE, 1, {})
    Event.delete().execute()
    with database_proxy.atomic():
        third = events.append_event("run_started", SCOPE, 1, {})
    assert first < second < third
