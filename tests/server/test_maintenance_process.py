"""resmon serve's maintenance (resmon.server.maintenance) runs in a process of its own:
it rolls up and deletes on the server's database, the request workers run no thread
of it, and it ends with the server (stopped, or gone)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from query_data import push_body, run_summary

from resmon.schema import validate_push
from resmon.server import maintenance
from resmon.store import retention
from resmon.store.db import migrate, open_database
from resmon.store.models import RollupJob, Run, database_proxy
from resmon.store.write import store_push

NOW = datetime.now(UTC).replace(microsecond=0)


def push(n: int, at: datetime) -> int:
    summary = run_summary(start=at - timedelta(seconds=205), duration=200.0)
    return store_push(validate_push(push_body(f"r{n}", summary)), received_at=at).id


def wait_for(check, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the maintenance process did nothing in time"
        time.sleep(0.2)


@pytest.fixture
def sqlite_file(tmp_path):
    path = str(tmp_path / "m.db")
    db = open_database(path)
    migrate(db)
    yield path
    maintenance.stop_process()
    maintenance.configure(None)
    db.close()
    database_proxy.initialize(None)


def test_the_process_rolls_up_and_deletes_and_the_workers_run_no_thread(sqlite_file):
    old = push(1, NOW - timedelta(days=200))
    new = push(2, NOW - timedelta(minutes=5))
    options = maintenance.MaintenanceOptions(
        rollup_interval=0.3, retention_interval=0.5, policy=retention.RetentionPolicy()
    )
    maintenance.configure(options)
    proc = maintenance.start_process(options, sqlite_file)
    assert proc.poll() is None
    # A request worker of this server starts no thread of its own.
    maintenance.ensure_started()
    assert maintenance._started_pid != os.getpid()

    def rolled_up_and_deleted() -> bool:
        database_proxy.close()
        ids = [r.id for r in Run.select()]
        rolled = RollupJob.select().where(RollupJob.span == "day").count()
        return ids == [new] and rolled >= 1

    wait_for(rolled_up_and_deleted)
    assert old not in [r.id for r in Run.select()]
    maintenance.stop_process()
    assert proc.poll() is not None


def test_the_process_ends_when_the_server_is_gone(sqlite_file, tmp_path):
    # A stand-in server: starts the process, then dies without stopping it.
    script = (
        "import sys, time\n"
        "from resmon.server import maintenance\n"
        "p = maintenance.start_process(maintenance.MaintenanceOptions(), sys.argv[1])\n"
        "print(p.pid, flush=True)\n"
        "import os; os._exit(0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, sqlite_file],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    child = int(out.stdout.split()[0])

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        # Reaped by init or a zombie: either way not running the loop any more.
        with open(f"/proc/{child}/stat") as f:
            return f.read().split(")")[1].split()[0] == "Z"

    wait_for(gone, 10.0)
