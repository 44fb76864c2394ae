"""Two real ``resmon serve`` replicas on one PostgreSQL database, both with retention
every 300 ms: the expired runs are deleted once, never by both at the same time (the
runs each replica logs as deleted add up to exactly the expired runs: a batch deleted
by both would be counted twice), and the rollups stay."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from query_data import push_body, run_summary
from server_proc import ServerProcess

from resmon.schema import validate_push
from resmon.store import db as dbmod
from resmon.store import rollup_pass
from resmon.store.write import store_push

pytestmark = pytest.mark.postgres
EXPIRED = 450
OLD = datetime.now(UTC) - timedelta(days=200)


def test_two_replicas_delete_each_expired_run_once(postgres_url):
    db = dbmod.open_database(postgres_url)
    dbmod.migrate(db)
    for n in range(EXPIRED):
        at = OLD + timedelta(minutes=n)
        summary = run_summary(start=at - timedelta(seconds=205))
        store_push(validate_push(push_body(f"old{n}", summary)), received_at=at)
    rollup_pass.catch_up()
    rolled = db.execute_sql("SELECT SUM(runs) FROM rollup_jobs WHERE span = 'day'").fetchone()[0]
    assert rolled == EXPIRED
    db.close()

    args = ("--retention-interval=300ms", "--log-level=info")
    with (
        ServerProcess(postgres_url, extra_args=args) as a,
        ServerProcess(postgres_url, read_token=a.read_token, hmac_keys=a.hmac_keys, extra_args=args) as b,
    ):  # fmt: skip
        for server in (a, b):  # a worker starts its background thread at its first request
            assert requests.get(server.url + "/api/v1/jobs", headers=server.read_headers).ok
        db = dbmod.open_database(postgres_url)
        deadline = time.monotonic() + 60
        while db.execute_sql("SELECT COUNT(*) FROM runs").fetchone()[0]:
            assert time.monotonic() < deadline, "the expired runs were not deleted"
            time.sleep(0.2)
        left = db.execute_sql("SELECT SUM(runs) FROM rollup_jobs WHERE span = 'day'").fetchone()
        assert left[0] == EXPIRED  # the daily rollups outlive the runs
        assert db.execute_sql("SELECT COUNT(*) FROM run_containers").fetchone()[0] == 0
        db.close()
        time.sleep(1.0)  # another pass of each, finding nothing
    logs = a.stderr_text() + b.stderr_text()
    deleted = [int(n) for n in re.findall(r"retention: deleted (?:[^\"]*?)(\d+) runs", logs)]
    assert sum(deleted) == EXPIRED, deleted
    assert a.returncode == 0 and b.returncode == 0
