"""Schema version 11: the run's context columns (backfilled from the stored summaries that
carry a ``context``), their branch index and the ``run_steps`` table, on SQLite and
PostgreSQL.  A migrated database has what a fresh one has, and the step is repeatable."""

from __future__ import annotations

import pytest
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator
from server_proc import sample_payload

from resmon.schema import validate_push
from resmon.store import db as dbmod
from resmon.store import history
from resmon.store.migrations import STEPS
from resmon.store.migrations_context import BRANCH_INDEX
from resmon.store.models import Run
from resmon.store.run_context import CONTEXT_COLUMNS
from resmon.store.write import store_push

CONTEXT = {
    "ref": "refs/heads/main",
    "branch": "main",
    "sha": "abc123",
    "event": "push",
    "runner_name": "r1",
    "runner_labels": "linux",
    "pod": "p",
    "namespace": "ci",
    "node": "n1",
}


def _target(backend, tmp_path, request, name="m.db"):
    if backend == "sqlite":
        return str(tmp_path / name)
    return request.getfixturevalue("postgres_url")


def _at_version_10(target, monkeypatch):
    """A database as resmon 10 left it: runs without the context columns and their index,
    no run_steps; two runs stored, one of them by a newer collector (its summary has a
    context, which the version-10 server kept in the payload)."""
    db = dbmod.open_database(target)
    dbmod.migrate(db)
    first = store_push(validate_push(sample_payload("1", context=CONTEXT))).id
    second = store_push(validate_push(sample_payload("2"))).id
    db.execute_sql(f"DROP INDEX {BRANCH_INDEX}")
    db.execute_sql("DROP TABLE run_steps")
    for column in CONTEXT_COLUMNS:
        db.execute_sql(f"ALTER TABLE runs DROP COLUMN {column}")
    db.execute_sql("UPDATE schema_version SET version = 10")
    return db, first, second


def _columns(db, table: str, schema=None) -> dict[str, tuple[str, bool]]:
    return {c.name: (c.data_type.lower(), c.null) for c in db.get_columns(table, schema)}


def _indexes(db, table: str, schema=None) -> set[str]:
    return {ix.name for ix in db.get_indexes(table, schema) if not ix.name.endswith("_pkey")}


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_version_10_gets_the_context_and_steps_of_a_fresh_database(
    backend, tmp_path, monkeypatch, request
):
    target = _target(backend, tmp_path, request)
    db, first, second = _at_version_10(target, monkeypatch)
    start, end = dbmod.migrate(db)
    assert (start, end) == (10, dbmod.LATEST_VERSION)
    # Backfilled from the payload that had a context; NULL for the one without.
    run = Run.get_by_id(first)
    assert (run.branch, run.commit_sha, run.git_ref, run.event_name) == (
        "main",
        "abc123",
        "refs/heads/main",
        "push",
    )
    assert (run.runner_name, run.pod_name, run.pod_namespace, run.node_name) == (
        "r1",
        "p",
        "ci",
        "n1",
    )
    assert all(getattr(Run.get_by_id(second), c) is None for c in CONTEXT_COLUMNS)
    # What a fresh database has: the columns, the index, the steps table.
    migrated = {
        "runs": {k: v for k, v in _columns(db, "runs").items() if k in CONTEXT_COLUMNS},
        "run_steps": _columns(db, "run_steps"),
        "indexes": _indexes(db, "runs") & {BRANCH_INDEX},
        "step_indexes": _indexes(db, "run_steps"),
    }
    # Repeatable: the step again changes nothing.
    migrator = PostgresqlMigrator(db) if dbmod.is_postgres(target) else SqliteMigrator(db)
    with db.atomic():
        STEPS[11](db, migrator)
    assert Run.get_by_id(first).branch == "main"
    assert (
        history.job_runs("my-org", "my-org/my-repo", "ci.yml", "build", branch="main")["runs"][0][
            "id"
        ]
        == first
    )
    db.close()

    schema = None
    if backend == "sqlite":
        fresh = dbmod.open_database(str(tmp_path / "fresh.db"))
    else:  # a fresh database beside the migrated one: another schema of it
        fresh = dbmod.open_database(target)
        fresh.execute_sql("CREATE SCHEMA fresh")
        fresh.execute_sql("SET search_path TO fresh")
        schema = "fresh"
    dbmod.migrate(fresh)
    assert migrated == {
        "runs": {k: v for k, v in _columns(fresh, "runs", schema).items() if k in CONTEXT_COLUMNS},
        "run_steps": _columns(fresh, "run_steps", schema),
        "indexes": _indexes(fresh, "runs", schema) & {BRANCH_INDEX},
        "step_indexes": _indexes(fresh, "run_steps", schema),
    }
    assert len(migrated["runs"]) == len(CONTEXT_COLUMNS)
    assert migrated["indexes"] == {BRANCH_INDEX}
    fresh.close()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_branch_queries_use_the_branch_index(backend, tmp_path, request):
    db = dbmod.open_database(_target(backend, tmp_path, request))
    dbmod.migrate(db)
    for i in range(3):
        context = {"branch": "main" if i else "feature"}
        store_push(validate_push(sample_payload(str(i), context=context)))
    scope = ("my-org", "my-org/my-repo", "ci.yml", "build")
    assert [r["run_id"] for r in history.job_runs(*scope, branch="main")["runs"]] == ["2", "1"]
    assert [r["run_id"] for r in history.job_runs(*scope, branch="feature")["runs"]] == ["0"]
    assert len(history.job_runs(*scope)["runs"]) == 3
    assert [p["run_id"] for p in history.trend(*scope, branch="main")["points"]] == ["1", "2"]
    assert history.trend(*scope, branch="nope")["points"] == []
    if backend == "sqlite":
        query = (
            Run.select(Run.id)
            .where(
                (Run.organization == scope[0])
                & (Run.repository == scope[1])
                & (Run.workflow == scope[2])
                & (Run.job == scope[3])
                & (Run.branch == "main")
            )
            .order_by(Run.received_at.desc())
        )
        sql, params = query.sql()
        plan = " ".join(str(row[-1]) for row in db.execute_sql("EXPLAIN QUERY PLAN " + sql, params))
        assert BRANCH_INDEX in plan, plan
    db.close()
