"""Schema version 12: the job's disk I/O and network columns of ``runs``, on SQLite and
PostgreSQL.  A run stored at version 11 gets them from its stored summary (NULL where
the summary has none: the Go collector's); the step is repeatable, and the upgraded
table equals a fresh one."""

from __future__ import annotations

import pytest
from server_proc import sample_payload

from resmon.schema import validate_push
from resmon.store import db as dbmod
from resmon.store.io_columns import IO_COLUMNS, io_columns, io_columns_of_text
from resmon.store.migrations_io import to_v12
from resmon.store.models import Run
from resmon.store.write import store_push

STAT = {"peak": 9e6, "p99": 8e6, "p95": 7e6, "p75": 5e6, "p50": 1e6, "avg": 2e6}
JOB_IO = {
    "sources": ["proc"],
    "read_bytes": 4096,
    "write_bytes": 209_715_200,
    "read_bytes_per_second": STAT,
    "write_bytes_per_second": STAT,
}
JOB_NET = {
    "namespaces": 1,
    "rx_bytes": 1_000,
    "tx_bytes": 2_000,
    "loopback_rx_bytes": 104_857_600,
    "loopback_tx_bytes": 104_857_600,
    "rx_bytes_per_second": STAT,
    "tx_bytes_per_second": STAT,
}


def _with_io(run_id: str) -> dict:
    payload = sample_payload(run_id)
    payload["run_summary"]["job"] = {"scope": "containers", "io": JOB_IO, "network": JOB_NET}
    return payload


def test_columns_from_a_summary():
    assert io_columns({"job": {"io": JOB_IO, "network": JOB_NET}}) == {
        "job_io_read_bytes": 4096,
        "job_io_write_bytes": 209_715_200,
        "job_io_source": "proc",
        "job_net_rx_bytes": 1_000,
        "job_net_tx_bytes": 2_000,
    }
    mixed = dict(JOB_IO, sources=["cgroup", "proc"])
    assert io_columns({"job": {"io": mixed}})["job_io_source"] == "mixed"
    # What a peer may send there never fails: left out.
    for bad in (None, [], {"job": []}, {"job": {"io": "x", "network": 3}}):
        assert io_columns(bad) == dict.fromkeys(IO_COLUMNS)
    odd = io_columns({"job": {"io": {"read_bytes": "1", "write_bytes": 1e300, "sources": ["x"]}}})
    assert odd == dict.fromkeys(IO_COLUMNS)
    assert io_columns_of_text('{"job": {"scope": "command"}}') == dict.fromkeys(IO_COLUMNS)
    assert io_columns_of_text('{"io": ') == dict.fromkeys(IO_COLUMNS)
    assert io_columns_of_text(None) == dict.fromkeys(IO_COLUMNS)


def _columns(db, table: str) -> dict[str, str]:
    return {c.name: c.data_type.lower() for c in db.get_columns(table)}


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_version_11_runs_get_their_io_columns(backend, tmp_path, request):
    target = (
        str(tmp_path / "m.db") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    )
    db = dbmod.open_database(target)
    dbmod.migrate(db)
    fresh = _columns(db, "runs")
    with_io = store_push(validate_push(_with_io("1"))).id
    go_style = store_push(validate_push(sample_payload("2"))).id
    # As version 11 left it: without the columns.
    for column in IO_COLUMNS:
        db.execute_sql(f"ALTER TABLE runs DROP COLUMN {column}")
    db.execute_sql("UPDATE schema_version SET version = 11")
    assert dbmod.migrate(db) == (11, dbmod.LATEST_VERSION)
    assert _columns(db, "runs") == fresh
    runs = {r.id: r for r in Run.select()}
    assert {n: getattr(runs[with_io], n) for n in IO_COLUMNS} == io_columns(
        {"job": {"io": JOB_IO, "network": JOB_NET}}
    )
    assert all(getattr(runs[go_style], n) is None for n in IO_COLUMNS)
    # Repeatable: a second run of the step changes nothing.
    to_v12(db, _migrator(db))
    assert _columns(db, "runs") == fresh
    assert Run.get_by_id(with_io).job_io_write_bytes == 209_715_200
    db.close()


def _migrator(db):
    from peewee import PostgresqlDatabase
    from playhouse.migrate import PostgresqlMigrator, SqliteMigrator

    return PostgresqlMigrator(db) if isinstance(db, PostgresqlDatabase) else SqliteMigrator(db)


def test_a_push_stores_the_io_columns(tmp_path):
    db = dbmod.open_database(str(tmp_path / "p.db"))
    dbmod.migrate(db)
    run = Run.get_by_id(store_push(validate_push(_with_io("7"))).id)
    assert (run.job_io_write_bytes, run.job_io_source, run.job_net_tx_bytes) == (
        209_715_200,
        "proc",
        2_000,
    )
    db.close()


def test_the_runs_of_a_job_and_a_run_carry_the_io_columns(tmp_path):
    from resmon.store import history

    db = dbmod.open_database(str(tmp_path / "h.db"))
    dbmod.migrate(db)
    run_pk = store_push(validate_push(_with_io("8"))).id
    store_push(validate_push(sample_payload("9")))
    runs = history.job_runs("my-org", "my-org/my-repo", "ci.yml", "build")["runs"]
    by_id = {r["run_id"]: r for r in runs}
    assert by_id["8"]["job_io_write_bytes"] == 209_715_200
    assert by_id["8"]["job_net_rx_bytes"] == 1_000
    assert by_id["9"]["job_io_write_bytes"] is None  # a summary without them
    assert history.get_run(run_pk)["job_io_source"] == "proc"
    db.close()
