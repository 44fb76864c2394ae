"""The push write path's two speed-ups: cached INSERT statements and queued SQLite writers."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

from server_proc import sample_payload

from resmon.schema import validate_push
from resmon.store import db as dbmod
from resmon.store import group_commit, write
from resmon.store.models import ContainerStat, Run


def test_cached_insert_equals_peewee(database):
    """The cached statement and parameters are exactly what peewee would send."""
    payloads = [
        sample_payload("1"),
        sample_payload("2", start_time="2026-03-04T05:06:07.123456+02:00", duration_seconds=None),
        sample_payload("3", containers=[{"name": "a"}, {"name": "b", "oom_kills": 2}]),
    ]
    for payload in payloads:
        derived = write.derive(payload["execution"], payload["run_summary"], "0" * 64)
        row = {**derived.columns, "repository": derived.repository, "payload": "{}"}
        row.update(idempotency_key=None, received_at=derived.columns["start_time"])
        for _ in range(2):  # the first call builds the template, the second uses it
            assert group_commit.insert_sql(Run, row) == Run.insert(**row).sql()
        for container in derived.containers:
            c = {**container, "run": 7}
            assert group_commit.insert_sql(ContainerStat, c) == ContainerStat.insert(**c).sql()
    assert all(t is not None for t in group_commit._INSERT_TEMPLATES.values())


def test_stored_rows_read_back_the_same(database):
    payload = validate_push(sample_payload("9", start_time="2026-01-02T03:04:05.5Z"))
    result = write.store_push(payload, "key-9")
    run = Run.get_by_id(result.id)
    assert run.start_time.isoformat() == "2026-01-02T03:04:05.500000"
    assert run.idempotency_key == "key-9" and run.run_attempt == ""
    assert [c.name for c in run.containers] == ["runner"]
    assert run.containers[0].limit_memory_bytes == 2_147_483_648


def _writer(path: str, n: int, log: str) -> None:
    """Two threads of one process, each writing n rows."""
    db = dbmod.open_database(path, bind=False)

    def write() -> None:
        # SQLite's own busy wait is off: a writer that met the lock held would fail
        # with "database is locked" instead of being queued by write_lock.
        db.execute_sql("PRAGMA busy_timeout = 0")
        me = f"{os.getpid()}.{threading.get_ident()}"
        for i in range(n):
            with dbmod.write_lock(db), db.atomic():
                with open(log, "a") as f:
                    f.write(f"start {me}\n")
                db.execute_sql("INSERT INTO t (v) VALUES (?)", (i,))
                time.sleep(0.001)
                with open(log, "a") as f:
                    f.write(f"end {me}\n")
        db.close()

    threads = [threading.Thread(target=write) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_write_lock_queues_processes_and_threads(tmp_path):
    """3 processes x 2 threads, no busy timeout: every write succeeds, none overlap."""
    path = str(tmp_path / "q.db")
    db = dbmod.open_database(path, bind=False)
    db.execute_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
    db.close()
    log = str(tmp_path / "log")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, 20, log)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    lines = Path(log).read_text().split()
    events = list(zip(lines[::2], lines[1::2], strict=True))
    # Strictly alternating start/end of one process: no two writers ever overlapped.
    for (kind_a, pid_a), (kind_b, pid_b) in zip(events[::2], events[1::2], strict=True):
        assert (kind_a, kind_b) == ("start", "end") and pid_a == pid_b
    db = dbmod.open_database(path, bind=False)
    assert db.execute_sql("SELECT count(*) FROM t").fetchone()[0] == 120
    db.close()
    assert os.path.exists(path + "-writer.lock")
