"""resmon.store.write: exactly-once storage under concurrency, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import threading
import time

import pytest
from peewee import OperationalError, SqliteDatabase
from server_proc import sample_payload

from resmon.schema import validate_push
from resmon.store import db as dbmod
from resmon.store import group_commit, write
from resmon.store.models import ContainerStat, Run, database_proxy


def push(run_id="1", **kwargs):
    return validate_push(sample_payload(run_id, **kwargs))


def hammer(n, fn):
    """Run fn from n threads released at the same instant; results in order."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def worker(i):
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:  # collected, asserted on by the caller
            results[i] = exc
        finally:
            database_proxy.close()  # each thread has its own connection

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_concurrent_pushes_with_one_key_store_one_run(database):
    results = hammer(8, lambda i: write.store_push(push("1"), "same-key"))
    assert all(isinstance(r, write.StoreResult) for r in results), results
    assert sorted(r.status for r in results) == ["created"] + ["duplicate"] * 7
    assert len({r.id for r in results}) == 1
    assert Run.select().count() == 1
    assert ContainerStat.select().count() == 1


def test_concurrent_keyless_retries_store_one_run(database):
    results = hammer(8, lambda i: write.store_push(push("1")))
    assert sorted(r.status for r in results) == ["created"] + ["duplicate"] * 7
    assert Run.select().count() == 1


def test_concurrent_distinct_runs_are_all_stored(database):
    results = hammer(8, lambda i: write.store_push(push(str(i)), f"key-{i}"))
    assert [r.status for r in results] == ["created"] * 8
    assert Run.select().count() == 8 and ContainerStat.select().count() == 8


def test_concurrent_conflicting_bodies_one_wins_the_rest_conflict(database):
    results = hammer(6, lambda i: write.store_push(push(str(i)), "contested"))
    created = [r for r in results if isinstance(r, write.StoreResult)]
    conflicts = [r for r in results if isinstance(r, write.IdempotencyConflict)]
    assert len(created) == 1 and len(conflicts) == 5
    assert all(c.run_id == created[0].id for c in conflicts)


def test_a_different_key_for_the_same_run_is_still_that_run(database):
    first = write.store_push(push("1"), "key-a")
    again = write.store_push(push("1"), "key-b")
    assert (again.id, again.status) == (first.id, "duplicate")


# A real SQLite error in the middle of a push: the trigger makes a container INSERT of
# the run whose run_id is ``when`` fail with "integer overflow" (OperationalError).
_FAIL_TRIGGER = (
    "CREATE TRIGGER fail_containers BEFORE INSERT ON {containers} "
    "WHEN (SELECT run_id FROM {runs} WHERE id = NEW.{run}) = '{when}' "
    "BEGIN SELECT abs(-9223372036854775807 - 1); END"
)


def _fail_container_inserts(db, when: str) -> None:
    db.execute_sql(
        _FAIL_TRIGGER.format(
            containers=ContainerStat._meta.table_name,
            runs=Run._meta.table_name,
            run=ContainerStat.run.column_name,
            when=when,
        )
    )


def test_failed_container_insert_rolls_back_the_run(database, monkeypatch):
    if isinstance(database, SqliteDatabase):
        # SQLite pushes go straight to the sqlite3 connection: fail inside SQLite.
        _fail_container_inserts(database, "1")
        with pytest.raises(OperationalError, match="overflow"):
            write.store_push(push("1"))
        database.execute_sql("DROP TRIGGER fail_containers")
    else:
        original = type(database).execute_sql
        table = ContainerStat._meta.table_name

        def failing(self, sql, params=None, *args, **kwargs):
            # The container insert fails after the run's own insert went through.
            if sql.startswith(f'INSERT INTO "{table}"'):
                raise RuntimeError("disk full")
            return original(self, sql, params, *args, **kwargs)

        monkeypatch.setattr(type(database), "execute_sql", failing)
        with pytest.raises(RuntimeError):
            write.store_push(push("1"))
        monkeypatch.setattr(type(database), "execute_sql", original)
    assert Run.select().count() == 0  # one transaction: no run without its containers
    assert write.store_push(push("1")).status == "created"


def _one_batch(db_path: str, pushes: list) -> list:
    """Store ``pushes`` from one thread each, all queued before any is written, so
    that one group commit takes them together; results (or exceptions) in order."""
    group = group_commit._group_commits[os.path.abspath(db_path)]
    results: list = [None] * len(pushes)

    def worker(i):
        try:
            results[i] = write.store_push(*pushes[i])
        except Exception as exc:  # collected, asserted on by the caller
            results[i] = exc
        finally:
            database_proxy.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(pushes))]
    with group.leader:  # nobody writes until every push is queued
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(group.pending) < len(pushes) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(group.pending) == len(pushes)
    for t in threads:
        t.join(30)
    assert not group.pending
    return results


def test_group_commit_stores_a_batch_with_its_duplicates(tmp_path):
    path = str(tmp_path / "m.db")
    db = dbmod.open_database(path)
    dbmod.migrate(db)
    first = write.store_push(push("0"))
    results = _one_batch(
        path,
        [
            (push("1"), None),
            (push("1"), None),
            (push("2"), "k"),
            (push("2"), "k"),
            (push("0"), None),
        ],
    )
    # Two pushes of one run in one batch: one created, the other a duplicate of it.
    for pair in (results[0:2], results[2:4]):
        assert sorted(r.status for r in pair) == ["created", "duplicate"]
        assert pair[0].id == pair[1].id != first.id
    assert (results[4].id, results[4].status) == (first.id, "duplicate")
    assert Run.select().count() == 3
    assert ContainerStat.select().count() == 3
    db.close()


def test_group_commit_failure_is_the_failing_push_s_own(tmp_path):
    path = str(tmp_path / "m.db")
    db = dbmod.open_database(path)
    dbmod.migrate(db)
    write.store_push(push("0"))
    _fail_container_inserts(db, "bad")
    # The failing push rolls the batch back; every other push is stored on its own.
    results = _one_batch(
        path, [(push("1"), None), (push("bad"), None), (push("3"), None), (push("3"), None)]
    )
    assert isinstance(results[1], OperationalError)
    assert results[0].status == "created"
    assert sorted(r.status for r in results[2:]) == ["created", "duplicate"]
    assert results[2].id == results[3].id
    runs = sorted(r.run_id for r in Run.select())
    assert runs == ["0", "1", "3"]
    assert ContainerStat.select().count() == 3
    db.close()


def test_body_digest_ignores_spelling_and_order():
    a = push("1", repository="my-org/my-repo")
    payload = sample_payload("1", repository="my-repo")
    payload["run_summary"] = dict(reversed(list(payload["run_summary"].items())))
    b = validate_push(payload)
    assert write.body_digest(a) == write.body_digest(b)
    assert write.body_digest(a) != write.body_digest(push("2"))


def test_wal_is_checkpointed_off_the_request_path(tmp_path):
    """The WAL is copied into the database file by the background checkpointer, not
    by a push's COMMIT: SQLite's own automatic checkpoint is set far above what
    these pushes write, so only the checkpointer can grow the database file."""
    path = tmp_path / "wal.db"
    db = dbmod.open_database(str(path))
    dbmod.migrate(db)
    assert db.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0] == (
        dbmod.WAL_AUTOCHECKPOINT_BACKSTOP_PAGES
    )
    size_before = path.stat().st_size
    wal = tmp_path / "wal.db-wal"
    n = 0
    while not wal.exists() or wal.stat().st_size < 2 * dbmod.CHECKPOINT_WAL_BYTES:
        n += 1
        write.store_push(push(f"run-{n}"))
    assert path.stat().st_size == size_before  # nothing checkpointed by the pushes
    deadline = time.monotonic() + 10
    while path.stat().st_size == size_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.stat().st_size > size_before
    assert Run.select().count() == n
    db.close()
