"""Database set-up and migrations (resmon.store.db), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

import pytest
from server_proc import ServerProcess, sample_payload

from resmon.store import db as dbmod
from resmon.store.job_figures import JOB_COLUMNS
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
    assert dbmod.check_ready(db) == f"database schema at version 0, expected {dbmod.LATEST_VERSION}"
    assert dbmod.migrate(db) == (0, dbmod.LATEST_VERSION)
    assert dbmod.migrate(db) == (dbmod.LATEST_VERSION,) * 2  # idempotent
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
    assert dbmod.migrate(db) == (2, dbmod.LATEST_VERSION)
    assert {ix.name for ix in db.get_indexes("runs")} == {
        "run_scoped_idempotency_key",
        "run_run_key",
        "run_received_at",
        "run_organization_repository_workflow_job_received_at",
        "run_live_key",  # version 7
        "run_running_last_batch",
        "run_organization_repository_workflow_job_branch_received_at",  # version 11
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
    assert dbmod.migrate(db) == (1, dbmod.LATEST_VERSION)
    check_upgraded()
    # The upgraded schema enforces what a fresh one does.
    assert {ix.name for ix in db.get_indexes("runs") if ix.unique} == {
        "runs_run_key",
        "run_scoped_idempotency_key",
        "run_live_key",  # version 7
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
    assert dbmod.migrate(db) == (1, dbmod.LATEST_VERSION)
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
    assert sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchone() == (
        dbmod.LATEST_VERSION,
    )


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
    monkeypatch.setattr("resmon.store.migrations.derive_legacy", boom)
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


# --- version 3 -> 4: idempotency keys per scope, columns that hold what a push may carry ---

# What resmon created at version 3 on PostgreSQL (peewee's DDL, as logged); SQLite's
# differs only in the type names below.
V3_SCHEMA_PG = (
    'CREATE TABLE "runs" ("id" SERIAL NOT NULL PRIMARY KEY, "organization" VARCHAR(255) NOT NULL,'
    ' "repository" VARCHAR(255) NOT NULL, "workflow" VARCHAR(255) NOT NULL,'
    ' "job" VARCHAR(255) NOT NULL, "run_id" VARCHAR(255) NOT NULL,'
    ' "run_attempt" VARCHAR(255) NOT NULL, "idempotency_key" VARCHAR(255),'
    ' "body_sha256" VARCHAR(64) NOT NULL, "run_key" VARCHAR(64) NOT NULL,'
    ' "received_at" TIMESTAMP NOT NULL, "start_time" TIMESTAMP, "end_time" TIMESTAMP,'
    ' "duration_seconds" REAL, "sample_count" INTEGER, "cpu_seconds" REAL,'
    ' "cpu_percent_peak" REAL, "cpu_percent_p95" REAL, "mem_bytes_peak" BIGINT,'
    ' "mem_bytes_p95" BIGINT, "payload" TEXT NOT NULL);'
    'CREATE UNIQUE INDEX "run_idempotency_key" ON "runs" ("idempotency_key");'
    'CREATE UNIQUE INDEX "run_run_key" ON "runs" ("run_key");'
    'CREATE INDEX "run_received_at" ON "runs" ("received_at");'
    'CREATE INDEX "run_organization_repository_workflow_job_received_at"'
    ' ON "runs" ("organization", "repository", "workflow", "job", "received_at");'
    'CREATE TABLE "run_containers" ("id" SERIAL NOT NULL PRIMARY KEY,'
    ' "run_id" INTEGER NOT NULL, "name" VARCHAR(255) NOT NULL, "cpu_cores_peak" REAL,'
    ' "cpu_cores_p99" REAL, "cpu_cores_p95" REAL, "cpu_cores_p75" REAL, "cpu_cores_p50" REAL,'
    ' "cpu_cores_avg" REAL, "memory_bytes_peak" BIGINT, "memory_bytes_p99" BIGINT,'
    ' "memory_bytes_p95" BIGINT, "memory_bytes_p75" BIGINT, "memory_bytes_p50" BIGINT,'
    ' "memory_bytes_avg" REAL, "cpu_seconds" REAL, "limit_cpu_cores" REAL,'
    ' "limit_memory_bytes" BIGINT, "cpu_throttled_seconds" REAL, "oom_kills" INTEGER,'
    ' FOREIGN KEY ("run_id") REFERENCES "runs" ("id") ON DELETE CASCADE);'
    'CREATE INDEX "containerstat_run_id" ON "run_containers" ("run_id");'
    'CREATE INDEX "containerstat_name_run_id" ON "run_containers" ("name", "run_id");'
    'CREATE TABLE "schema_version" ("version" INTEGER NOT NULL);'
    "INSERT INTO schema_version (version) VALUES (3)"
)
V3_SCHEMA_SQLITE = (
    V3_SCHEMA_PG.replace("SERIAL", "INTEGER")
    .replace("TIMESTAMP", "DATETIME")
    .replace("BIGINT", "INTEGER")
)
# Stored at version 3: a key in the attacker's scope, a keyed run and a key-less one.
ATTACKER = {"organization": "attacker", "repository": "attacker/x"}
VICTIM = {"organization": "victim", "repository": "victim/y"}
V3_PUSHES = [
    (sample_payload("A-1", **ATTACKER), "run-12345"),
    (sample_payload("7"), "k-7"),
    (sample_payload("8"), None),
]


def insert_v3_run(db, body: dict, key: str | None) -> None:
    """A run as resmon's version-3 write path stored it: the same derived columns,
    digest and payload text, without the columns version 4 adds."""
    import orjson

    from resmon.schema import validate_push
    from resmon.store.derive import derive
    from resmon.store.write import body_digest

    payload = validate_push(body)
    derived = derive(payload.execution, payload.run_summary, body_digest(payload))
    later = ("command_container", "command_name", *JOB_COLUMNS)
    # Columns of later versions (context, I/O...) are not in a version-3 table.
    present = {c.name for c in db.get_columns("runs")}
    row = {
        **{k: v for k, v in derived.columns.items() if k not in later and k in present},
        "repository": derived.repository,
        "idempotency_key": key,
        "received_at": "2026-01-05 00:00:00",
        "payload": orjson.dumps(payload.run_summary).decode(),
    }
    for name in ("start_time", "end_time"):
        row[name] = str(row[name]) if row[name] else None
    run_pk = _insert(db, "runs", row)
    for container in derived.containers:
        _insert(db, "run_containers", {**container, "run_id": run_pk})


def _insert(db, table: str, row: dict) -> int:
    columns = ", ".join(f'"{name}"' for name in row)
    marks = ", ".join([db.param] * len(row))
    returning = " RETURNING id" if dbmod.is_postgres(_target(db)) else ""
    cursor = db.execute_sql(
        f'INSERT INTO "{table}" ({columns}) VALUES ({marks}){returning}', list(row.values())
    )
    return cursor.fetchone()[0] if returning else cursor.lastrowid


def _target(db) -> str:
    return "postgresql://" if isinstance(db, dbmod.PostgresqlDatabase) else str(db.database)


def open_v3(target: str):
    """An open database at schema version 3 holding ``V3_PUSHES``."""
    db = dbmod.open_database(target)
    schema = V3_SCHEMA_PG if dbmod.is_postgres(target) else V3_SCHEMA_SQLITE
    with db.atomic():
        for statement in schema.split(";"):
            db.execute_sql(statement)
        for body, key in V3_PUSHES:
            insert_v3_run(db, body, key)
    assert dbmod.schema_version(db) == 3
    return db


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def v3_database(request, tmp_path):
    """``open_v3`` on a SQLite file, then on a throwaway PostgreSQL database."""
    target = (
        str(tmp_path / "v3.db")
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    db = open_v3(target)
    yield db
    db.close()


def _indexes(db) -> dict[str, set[str]]:
    """Each table's indexes, but the primary key's (PostgreSQL lists it); SQLite's own
    sqlite_sequence (the events table's AUTOINCREMENT) left out."""
    return {
        table: {ix.name for ix in db.get_indexes(table) if not ix.name.endswith("_pkey")}
        for table in db.get_tables()
        if table != "sqlite_sequence"
    }


def test_version_3_is_upgraded_with_its_rows_and_keys_are_per_scope(v3_database):
    from resmon.schema import validate_push
    from resmon.store import write
    from resmon.store.derive import scoped_idempotency_key

    db = v3_database
    stored = Run.select(Run.id, Run.run_key, Run.body_sha256, Run.payload).order_by(Run.id)
    before = list(stored.tuples())
    assert dbmod.migrate(db) == (3, dbmod.LATEST_VERSION)
    # Rows, containers and their figures kept.
    assert list(stored.tuples()) == before
    assert ContainerStat.select().count() == 3
    assert Run.get(Run.run_id == "7").containers[0].limit_memory_bytes == 2_147_483_648
    # Keys backfilled from the stored scope; the key-less run has none.
    keys = {r.run_id: r.scoped_idempotency_key for r in Run.select()}
    assert keys == {
        "A-1": scoped_idempotency_key("attacker", "attacker/x", "ci.yml", "build", "run-12345"),
        "7": scoped_idempotency_key("my-org", "my-org/my-repo", "ci.yml", "build", "k-7"),
        "8": None,
    }
    # Version 9: the rollups, where each run was counted, the pass's cursor; index names
    # as the database keeps them (PostgreSQL cuts them at 63 bytes, and leaves its
    # primary keys' out).
    postgres = isinstance(db, dbmod.PostgresqlDatabase)
    cut = 63 if postgres else None
    rollup_indexes = {
        "rollup_jobs": {
            "rollupjob_span_bucket_organization_repository_workflow_job",
            "rollupjob_span_organization_repository_workflow_job_runs_4ac6c6f"[:cut],
        },
        "rollup_containers": {
            "rollupcontainer_span_bucket_organization_repository_work_ee271ed"[:cut]
        },
        "rollup_runs": set(),
        "rollup_cursor": set() if postgres else {"sqlite_autoindex_rollup_cursor_1"},
    }
    # Version 10: alert rules, their states, the evaluator's cursor, the webhook outbox.
    alert_indexes = {
        "alert_rules": {"alertrule_name"},
        "alert_states": {
            "alertstate_target_key",
            "alertstate_rule_id_organization",
            "alertstate_organization_updated_at",
        },
        "alert_cursor": set() if postgres else {"sqlite_autoindex_alert_cursor_1"},
        "webhook_outbox": {"webhook_outbox_due"},
    }
    # The indexes of a database created at version 4: the global key index is gone.
    assert _indexes(db) == {
        "runs": {
            "run_scoped_idempotency_key",
            "run_run_key",
            "run_received_at",
            "run_organization_repository_workflow_job_received_at",
            "run_live_key",  # version 7: live runs
            "run_running_last_batch",
            # Version 11: a job's runs and trend on one branch.
            "run_organization_repository_workflow_job_branch_received_at",
        },
        "run_containers": {"containerstat_run_id", "containerstat_name_run_id"},
        # Version 11: the steps of runs pushed step by step.
        "run_steps": {"runstep_run_id", "runstep_step_key", "runstep_scoped_idempotency_key"},
        # Version 6: the runs flagged as regressions at push.
        "run_regressions": {"runregression_run_id", "runregression_received_at"},
        # Version 7: live batches and events.
        "run_batches": {"runbatch_run_id_seq"},
        "events": {"event_created_at"},
        "schema_version": set(),
        **rollup_indexes,
        **alert_indexes,
    }
    # The rules of version 4 hold for the upgraded rows.
    attacker_run = Run.get(Run.run_id == "A-1").id
    victim = write.store_push(validate_push(sample_payload("V-1", **VICTIM)), "run-12345")
    assert victim.status == "created"
    again = write.store_push(validate_push(V3_PUSHES[0][0]), "run-12345")
    assert (again.id, again.status) == (attacker_run, "duplicate")
    with pytest.raises(write.IdempotencyConflict):
        write.store_push(validate_push(sample_payload("A-2", **ATTACKER)), "run-12345")
    with pytest.raises(write.RunConflict):
        write.store_push(validate_push(sample_payload("7", sample_count=601)), "k-other")
    assert write.store_push(validate_push(sample_payload("8")), "k-8").status == "duplicate"
    assert Run.select().count() == 4
    assert dbmod.migrate(db) == (dbmod.LATEST_VERSION,) * 2


def test_servers_upgrading_one_database_at_once_upgrade_it_once(v3_database):
    """Each thread has its own connection: the migration lock (SQLite's write lock, the
    PostgreSQL advisory lock) lets one upgrade and the other find it done."""
    import threading

    from resmon.store.models import database_proxy

    barrier = threading.Barrier(2)
    results: list = [None, None]

    def upgrade(i: int) -> None:
        barrier.wait()
        try:
            results[i] = dbmod.migrate(v3_database)
        except Exception as exc:  # collected, asserted on below
            results[i] = exc
        finally:
            database_proxy.close()

    threads = [threading.Thread(target=upgrade, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    latest = dbmod.LATEST_VERSION
    assert sorted(results) == [(3, latest), (latest, latest)], results
    assert Run.select().count() == 3 and ContainerStat.select().count() == 3


def _column_types(db, schema: str) -> dict[tuple[str, str], tuple]:
    rows = db.execute_sql(
        "SELECT table_name, column_name, data_type, character_maximum_length "
        "FROM information_schema.columns WHERE table_schema = %s",
        (schema,),
    ).fetchall()
    return {(table, column): (kind, length) for table, column, kind, length in rows}


@pytest.mark.postgres
def test_version_3_on_postgres_gets_the_column_types_of_a_fresh_database(postgres_url):
    db = open_v3(postgres_url)
    dbmod.migrate(db)
    upgraded = _column_types(db, "public")
    assert upgraded[("runs", "sample_count")] == ("bigint", None)
    assert upgraded[("run_containers", "oom_kills")] == ("bigint", None)
    assert upgraded[("runs", "cpu_seconds")] == ("double precision", None)
    assert upgraded[("run_containers", "memory_bytes_avg")] == ("double precision", None)
    assert upgraded[("runs", "repository")] == ("character varying", 511)
    # Every column as a database created at version 4 declares it (created beside, in
    # a schema of its own).
    db.execute_sql("CREATE SCHEMA fresh")
    db.execute_sql("SET search_path TO fresh")
    dbmod.migrate(db)
    fresh = _column_types(db, "fresh")
    db.execute_sql("SET search_path TO public")
    assert fresh == upgraded
    db.close()


def test_columns_hold_every_number_a_push_may_carry(database):
    """What the validator accepts is stored and read back exactly: whole numbers up to
    2**62 (3e9 was a 500 in PostgreSQL's int4 columns), fractions to the last digit
    (PostgreSQL's 4-byte REAL kept seven), and a canonical repository of 511
    characters (a 255-character organization with a bare 255-character name)."""
    from resmon.schema import MAX_NUMBER, validate_push
    from resmon.store import write

    wide = {"organization": "o" * 255, "repository": "r" * 255}
    for i, (whole, fraction) in enumerate(
        [(3e9, 123456.789), (3_000_000_000, 1234567891.5), (2**62 - 1, 0.1), (2**62, 2.0**61)]
    ):
        body = sample_payload(
            str(i), **wide, sample_count=whole, duration_seconds=fraction, cpu_seconds=fraction
        )
        container = body["run_summary"]["containers"][0]
        container.update(oom_kills=whole, cpu_throttled_seconds=fraction)
        container["memory_bytes"]["avg"] = fraction
        assert whole <= MAX_NUMBER
        run_pk = write.store_push(validate_push(body), f"k-{i}").id
        run = Run.get_by_id(run_pk)
        stored = run.containers[0]
        assert run.repository == "o" * 255 + "/" + "r" * 255
        assert (run.sample_count, stored.oom_kills) == (int(whole), int(whole))
        assert type(run.sample_count) is int and type(stored.oom_kills) is int
        assert run.duration_seconds == run.cpu_seconds == fraction
        assert stored.cpu_throttled_seconds == stored.memory_bytes_avg == fraction
    assert Run.select().count() == 4


# --- version 3 -> 4: each run's wrapped step, from its stored summary ---


def _wrapped(run_id: str, container: str | None, name: str | None) -> dict:
    body = sample_payload(run_id)
    if container or name:
        body["run_summary"]["command"] = {"container": container, "name": name, "exit_code": 0}
    return body


def test_version_3_runs_get_their_wrapped_step(v3_database, monkeypatch):
    """Backfilled from the stored summaries, in batches of a few runs (here each
    summary alone passes the byte budget): the steps of one job, the default
    container, a run that only has "command" as a process name, and runs without any;
    keyed runs get their scoped key in the same pass."""
    from resmon.store import history, migrations
    from resmon.store.derive import scoped_idempotency_key

    db = v3_database
    steps = [
        (_wrapped("c1", "compile", "make"), "k-c1"),
        (_wrapped("t1", "unit-tests", "pytest"), None),
        (_wrapped("d1", "command", "make"), None),
        (_wrapped("p1", None, None), "k-p1"),
    ]
    steps[3][0]["run_summary"]["top_cpu_processes"][0]["name"] = "command"
    for body, key in steps:
        insert_v3_run(db, body, key)
    payloads = list(Run.select(Run.id, Run.payload).order_by(Run.id).tuples())
    monkeypatch.setattr(migrations, "BACKFILL_BATCH_ROWS", 3)
    monkeypatch.setattr(migrations, "BACKFILL_BATCH_BYTES", 1)

    assert dbmod.migrate(db) == (3, dbmod.LATEST_VERSION)
    stored = {
        r.run_id: (r.command_container, r.command_name, r.scoped_idempotency_key)
        for r in Run.select()
    }
    key = scoped_idempotency_key
    assert stored == {
        "A-1": (None, None, key("attacker", "attacker/x", "ci.yml", "build", "run-12345")),
        "7": (None, None, key("my-org", "my-org/my-repo", "ci.yml", "build", "k-7")),
        "8": (None, None, None),
        "c1": ("compile", "make", key("my-org", "my-org/my-repo", "ci.yml", "build", "k-c1")),
        "t1": ("unit-tests", "pytest", None),
        "d1": ("command", "make", None),
        "p1": (None, None, key("my-org", "my-org/my-repo", "ci.yml", "build", "k-p1")),
    }
    assert list(Run.select(Run.id, Run.payload).order_by(Run.id).tuples()) == payloads
    # What the read side answers for the upgraded runs, and a new push alike.
    from resmon.schema import validate_push
    from resmon.store import write

    write.store_push(validate_push(_wrapped("n1", "lint", "ruff")))
    runs = history.job_runs("my-org", "my-org/my-repo", "ci.yml", "build")["runs"]
    steps_of = {r["run_id"]: (r["command_container"], r["command_name"]) for r in runs}
    assert steps_of["c1"] == ("compile", "make") and steps_of["t1"] == ("unit-tests", "pytest")
    assert steps_of["n1"] == ("lint", "ruff") and steps_of["8"] == (None, None)


@pytest.mark.postgres
def test_version_3_to_4_rewrites_each_postgres_table_once(postgres_url):
    """The whole step, columns added and backfilled, rewrites ``runs`` once (the type
    change), as PostgreSQL's table_rewrite event reports it."""
    db = open_v3(postgres_url)
    insert_v3_run(db, _wrapped("c1", "compile", "make"), None)
    db.execute_sql("CREATE TABLE rewrites (name text)")
    db.execute_sql(
        "CREATE FUNCTION note_rewrite() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN "
        "INSERT INTO rewrites VALUES (pg_event_trigger_table_rewrite_oid()::regclass::text); "
        "END $$"
    )
    db.execute_sql(
        "CREATE EVENT TRIGGER note_rewrites ON table_rewrite EXECUTE FUNCTION note_rewrite()"
    )
    try:
        assert dbmod.migrate(db) == (3, dbmod.LATEST_VERSION)
        rewritten = sorted(row[0] for row in db.execute_sql("SELECT name FROM rewrites"))
        assert rewritten == ["run_containers", "runs"]
        assert Run.get(Run.run_id == "c1").command_container == "compile"
    finally:
        db.execute_sql("DROP EVENT TRIGGER note_rewrites")
        db.close()
