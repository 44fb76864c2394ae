"""Schema version 8: which test flagged each regression (run_regressions.test, runs),
on SQLite and PostgreSQL.  Rows stored at version 7 get the defaults (single, 1), and
the shift test's flags get theirs back from their regression events."""

from __future__ import annotations

import pytest
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator
from server_proc import sample_payload

from resmon.schema import validate_push
from resmon.store import baseline, events
from resmon.store import db as dbmod
from resmon.store.migrations import STEPS
from resmon.store.models import RunRegression, database_proxy
from resmon.store.write import store_push

SCOPE = {
    "organization": "my-org",
    "repository": "my-org/my-repo",
    "workflow": "ci.yml",
    "job": "build",
}


def _at_version_7(target, monkeypatch):
    """A database as resmon 7 left it (run_regressions without test and runs), with two
    runs, three flags and the regression event of the second run's shift flags."""
    db = dbmod.open_database(target)
    monkeypatch.setattr(dbmod, "LATEST_VERSION", 7)
    dbmod.migrate(db)
    monkeypatch.undo()
    for column in ("test", "runs"):  # version 6 made the table without them
        db.execute_sql(f"ALTER TABLE run_regressions DROP COLUMN {column}")
    db.execute_sql("UPDATE schema_version SET version = 7")
    first = store_push(validate_push(sample_payload("1"))).id
    second = store_push(validate_push(sample_payload("2"))).id
    p = db.param
    insert = (
        "INSERT INTO run_regressions (run_id, received_at, container, metric, value, median, "
        f"mad, baseline_runs, change) VALUES ({', '.join([p] * 9)})"
    )
    for run_pk, container in ((first, None), (second, None), (second, "runner")):
        db.execute_sql(
            insert,
            (run_pk, "2026-01-02 03:04:05", container, "memory_bytes_peak", 2.0, 1.0, 0.1, 9, 1.0),
        )
    figures = [
        {"container": None, "metric": "memory_bytes_peak", "test": "shift", "runs": 3},
        {"container": "runner", "metric": "memory_bytes_peak", "test": "shift", "runs": 4},
        {"container": "runner", "metric": "cpu_seconds", "test": "shift", "runs": 2},  # no row
    ]
    with database_proxy.atomic():
        events.append_event("regression", SCOPE, second, {"run": second, "regressions": figures})
        events.append_event("regression", SCOPE, first, {"run": first, "regressions": "bad"})
    return db, first, second


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_version_7_flags_get_their_test(backend, tmp_path, monkeypatch, request):
    target = (
        str(tmp_path / "m.db") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    )
    db, first, second = _at_version_7(target, monkeypatch)
    assert dbmod.migrate(db) == (7, dbmod.LATEST_VERSION)
    rows = {
        (r.run_id, r.container): (r.test, r.runs)
        for r in RunRegression.select().order_by(RunRegression.id)
    }
    assert rows == {
        (first, None): ("single", 1),
        (second, None): ("shift", 3),
        (second, "runner"): ("shift", 4),
    }
    listed = baseline.list_regressions(since="2000-01-01")
    assert {(f["test"], f["runs"]) for r in listed["runs"] for f in r["regressions"]} == {
        ("single", 1),
        ("shift", 3),
        ("shift", 4),
    }
    assert dbmod.migrate(db) == (dbmod.LATEST_VERSION,) * 2  # idempotent, and so is the step itself
    migrator = PostgresqlMigrator(db) if dbmod.is_postgres(target) else SqliteMigrator(db)
    with db.atomic():
        STEPS[8](db, migrator)
    assert RunRegression.select().where(RunRegression.test == "shift").count() == 2
    # The columns' defaults hold for a row written without them (an older writer's).
    db.execute_sql(
        "INSERT INTO run_regressions (run_id, received_at, metric, value, median, mad, "
        f"baseline_runs) VALUES ({', '.join([db.param] * 7)})",
        (first, "2026-01-02 03:04:05", "cpu_seconds", 2.0, 1.0, 0.1, 9),
    )
    newest = RunRegression.select().order_by(RunRegression.id.desc()).get()
    assert (newest.test, newest.runs) == ("single", 1)
    db.close()
