"""Database set-up and migrations (resmon.store.db), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

import pytest
from server_proc import ServerProcess, sample_payload

from resmon.store import db as dbmod
from resmon.store.models import ContainerStat, Run

V1_SCHEMA = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    organization TEXT NOT NULL, repository TEXT NOT NULL, workflow TEXT NOT NULL,
    job TEXT NOT NULL, run_id TEXT NOT NULL, received_at DATETIME NOT NULL, payload TEXT NOT NULL
)
"""
V1_SCHEMA_PG = V1_SCHEMA.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "SERIAL PRIMARY KEY").replace(
    "DATETIME", "TIMESTAMP"
)


def v1_rows():
    summary = sample_payload("1")["run_summary"]
    return [
        # The Go receiver stored every retry: two copies of run 1.
        (
            "my-org",
            "my-org/my-repo",
            "ci.yml",
            "build",
            "1",
            "2026-01-02 03:04:05.123456",
            json.dumps(summary),
        ),
        (
            "my-org",
            "my-org/my-repo",
            "ci.yml",
            "build",
            "1",
            "2026-01-02 03:04:06",
            json.dumps(summary),
        ),
        (
            "my-org",
            "my-repo",
            "ci.yml",
            "build",
            "2",
            "2026-01-03 00:00:00",
            json.dumps({"sample_count": 3}),
        ),
        ("my-org", "my-org/my-repo", "ci.yml", "build", "3", "2026-01-04 00:00:00", "not json"),
    ]


def make_v1_sqlite(path):
    conn = sqlite3.connect(path)
    conn.execute(V1_SCHEMA)
    conn.executemany(
        "INSERT INTO runs (organization, repository, workflow, job, run_id, received_at, payload) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        v1_rows(),
    )
    conn.commit()
    conn.close()


def check_upgraded():
    runs = list(Run.select().order_by(Run.id))
    assert [r.run_id for r in runs] == ["1", "1", "2", "3"]
    first, copy, bare, broken = runs
    # Backfilled columns, canonical repository, container rows.
    assert first.cpu_percent_peak == 95.0 and first.mem_bytes_peak == 2_000_000_000
    assert first.start_time == datetime(2026, 1, 2, 3, 4, 5)
    assert first.received_at == datetime(2026, 1, 2, 3, 4, 5, 123456)
    assert [c.name for c in first.containers] == ["runner"] and first.containers[
        0
    ].limit_cpu_cores == 2.0
    assert bare.repository == "my-org/my-repo" and bare.sample_count == 3
    assert broken.payload == '"not json"' and broken.body_sha256  # kept, as a JSON string
    # The retried copy survives with a run key of its own.
    assert first.run_key != copy.run_key
    assert len({r.run_key for r in runs}) == 4


def test_a_fresh_database_is_created_at_the_latest_version(tmp_path):
    db = dbmod.open_database(str(tmp_path / "m.db"))
    assert dbmod.schema_version(db) == 0
    assert dbmod.check_ready(db) == "database schema at version 0, expected 3"
    assert dbmod.migrate(db) == (0, dbmod.LATEST_VERSION)
    assert dbmod.migrate(db) == (3, 3)  # idempotent
    assert dbmod.check_ready(db) is None
    db.close()


def test_version_2_loses_the_unused_scope_run_id_index(tmp_path):
    db = dbmod.open_database(str(tmp_path / "m.db"))
    dbmod.migrate(db)
    # A version-2 database as resmon created it before version 3.
    db.execute_sql(
        "CREATE INDEX run_organization_repository_workflow_job_run_id "
        "ON runs (organization, repository, workflow, job, run_id)"
    )
    db.execute_sql("UPDATE schema_version SET version = 2")
    assert dbmod.migrate(db) == (2, 3)
    assert {ix.name for ix in db.get_indexes("runs")} == {
        "run_idempotency_key",
        "run_run_key",
        "run_received_at",
        "run_organization_repository_workflow_job_received_at",
    }
    db.close()


def test_sqlite_pragmas(tmp_path):
    db = dbmod.open_database(str(tmp_path / "m.db"))
    assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute_sql("PRAGMA busy_timeout").fetchone()[0] == dbmod.SQLITE_BUSY_TIMEOUT_MS
    db.close()


def test_v1_sqlite_database_is_upgraded_and_rows_survive(tmp_path):
    path = tmp_path / "old.db"
    make_v1_sqlite(path)
    db = dbmod.open_database(str(path))
    assert dbmod.schema_version(db) == 1
    assert dbmod.migrate(db) == (1, 3)
    check_upgraded()
    # The upgraded schema enforces what a fresh one does.
    assert {ix.name for ix in db.get_indexes("runs") if ix.unique} >= {
        "runs_run_key",
        "runs_idempotency_key",
    }
    db.close()


@pytest.mark.postgres
def test_v1_postgres_database_is_upgraded_and_rows_survive(postgres_url):  # noqa: F811
    db = dbmod.open_database(postgres_url)
    db.execute_sql(V1_SCHEMA_PG)
    for row in v1_rows():
        db.execute_sql(
            "INSERT INTO runs (organization, repository, workflow, job, run_id, received_at, payload) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            row,
        )
    assert dbmod.migrate(db) == (1, 3)
    check_upgraded()
    # The id sequence continues after the old rows.
    from resmon.schema import validate_push
    from resmon.store.write import store_push

    assert store_push(validate_push(sample_payload("9"))).id == 5
    db.close()


@pytest.mark.slow
def test_server_started_on_an_old_database_upgrades_it(tmp_path):
    path = tmp_path / "old.db"
    make_v1_sqlite(path)
    with ServerProcess(path) as server:
        import requests

        r = requests.get(
            server.url + "/api/v1/metrics/repo/my-org/my-repo/ci.yml/build",
            headers=server.read_headers,
            timeout=5,
        )
        assert sorted(row["run_id"] for row in r.json()) == ["1", "1", "2", "3"]
        assert (
            server.push(sample_payload("1", start_time="2026-01-02T03:04:05Z")).json()["status"]
            == "duplicate"
        )
    assert sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchone() == (3,)


def test_a_newer_schema_is_refused(tmp_path):
    db = dbmod.open_database(str(tmp_path / "m.db"))
    dbmod.migrate(db)
    db.execute_sql("UPDATE schema_version SET version = 99")
    with pytest.raises(dbmod.DatabaseError, match="newer than this resmon"):
        dbmod.migrate(db)
    db.close()


def test_failed_upgrade_leaves_the_database_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    make_v1_sqlite(path)

    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure mid-migration")

    db = dbmod.open_database(str(path))
    monkeypatch.setattr("resmon.store.db.derive_legacy", boom)
    with pytest.raises(RuntimeError):
        dbmod.migrate(db)
    db.close()
    conn = sqlite3.connect(path)
    assert [r[1] for r in conn.execute("PRAGMA table_info(runs)")] == [
        "id",
        "organization",
        "repository",
        "workflow",
        "job",
        "run_id",
        "received_at",
        "payload",
    ]
    assert conn.execute("SELECT count(*) FROM runs").fetchone() == (4,)


def test_targets_and_errors():
    assert dbmod.is_postgres("postgresql://u@h/db") and dbmod.is_postgres("postgres://u@h/db")
    assert not dbmod.is_postgres("metrics.db")
    assert (
        dbmod.describe_target("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    )
    with pytest.raises(dbmod.DatabaseError, match="unsupported database URL scheme"):
        dbmod.open_database("mysql://u@h/db", bind=False)
    with pytest.raises(dbmod.DatabaseError, match="without a database name"):
        dbmod.open_database("postgresql://u@h/", bind=False)


def test_container_rows_cascade_with_their_run(tmp_path):
    db = dbmod.open_database(str(tmp_path / "m.db"))
    dbmod.migrate(db)
    from resmon.schema import validate_push
    from resmon.store.write import store_push

    run_id = store_push(validate_push(sample_payload("1"))).id
    assert ContainerStat.select().count() == 1
    Run.delete_by_id(run_id)
    assert ContainerStat.select().count() == 0
    db.close()
