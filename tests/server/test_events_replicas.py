"""Two ``resmon serve`` processes on one PostgreSQL database (two replicas behind a
load balancer): an event stored through one reaches a subscriber of the other, in
order, and a subscriber that moves to the other replica resumes with Last-Event-ID.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest
import requests
from events_client import EventStream, add_events
from server_proc import ServerProcess

from resmon.store import db as dbmod
from resmon.tokens import push_token

HMAC = ("replica-hmac-key-0123456789",)
READ = "replica-read-token"


@pytest.fixture
def replicas(postgres_url):
    args = ("--workers=2", "--threads=2")
    with (
        ServerProcess(postgres_url, read_token=READ, hmac_keys=HMAC, extra_args=args) as a,
        ServerProcess(postgres_url, read_token=READ, hmac_keys=HMAC, extra_args=args) as b,
    ):
        yield a, b


def _live_batch(server: ServerProcess, run_key: str, seq: int) -> requests.Response:
    execution = {
        "organization": "o",
        "repository": "o/r",
        "workflow": "w",
        "job": "j",
        "run_id": "1",
        "run_attempt": "1",
    }
    t = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {
        "execution": execution,
        "run": {
            "run_key": run_key,
            "start_time": t,
            "host": "runner-1",
            "live_interval_seconds": 15,
            "interval_seconds": 2.0,
            "mode": "wrapper",
            "command_container": "command",
        },
        "batch": {
            "seq": seq,
            "samples": [
                {
                    "t": t,
                    "elapsed": None,
                    "host": {"cpu_percent": 10.0, "mem_used_bytes": 1, "mem_total_bytes": 2},
                    "job": {"cpu_cores": None, "memory_bytes": 5, "cpu_seconds": 0.5},
                    "containers": {},
                }
            ],
        },
    }
    token = push_token(HMAC[0], "o", "o/r", "w", "j")
    return requests.post(
        server.url + "/api/v1/metrics/live",
        json=body,
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"{run_key}:{seq}"},
        timeout=10,
    )


def test_an_event_stored_through_one_replica_reaches_the_other(replicas, postgres_url):
    a, b = replicas
    db = dbmod.open_database(postgres_url)
    try:
        with EventStream(b.url, {"Authorization": f"Bearer {READ}"}) as on_b:
            time.sleep(0.5)
            ids = add_events(db, 10, label="from elsewhere")
            assert [e["id"] for e in on_b.wait_for(10)] == ids
            moved = EventStream(
                a.url, {"Authorization": f"Bearer {READ}", "Last-Event-ID": str(ids[4])}
            )
            with moved:
                assert [e["id"] for e in moved.wait_for(5)] == ids[5:]
    finally:
        db.close()


def test_a_live_batch_pushed_to_one_replica_is_an_event_on_the_other(replicas):
    a, b = replicas
    document = requests.get(a.url + "/api/v1/openapi.json", timeout=5).json()
    if "/api/v1/metrics/live" not in document["paths"]:
        pytest.skip("POST /api/v1/metrics/live is not served yet (the ingest side)")
    params = {"kinds": "run_started,snapshot"}
    with EventStream(b.url, {"Authorization": f"Bearer {READ}"}, params) as on_b:
        time.sleep(0.5)
        run_key = str(uuid.uuid4())
        first = _live_batch(a, run_key, 0)
        assert first.status_code == 201, first.text
        assert _live_batch(a, run_key, 1).status_code == 201
        got = on_b.wait_for(2, timeout=10)
        kinds = [e["event"] for e in got]
        assert kinds[0] == "run_started" and "snapshot" in kinds, kinds
        assert [e["id"] for e in got] == sorted(e["id"] for e in got)
