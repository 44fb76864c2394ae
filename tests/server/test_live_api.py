"""POST /api/v1/metrics/live, the run states it drives, GET /api/v1/live and
GET /api/v1/runs/{id}/samples, through Flask's test client on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from live_helpers import (
    EXECUTION,
    KEY,
    READ,
    batch_body,
    final_payload,
    new_run_key,
    push_headers,
    sample,
)

from resmon.server import ServerConfig, create_app, state
from resmon.store import events, live
from resmon.store.models import ContainerStat, Run, RunBatch

READ_AUTH = {"Authorization": f"Bearer {READ}"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def app(request, tmp_path):
    target = (
        str(tmp_path / "metrics.db")
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    app = create_app(ServerConfig(database=target, read_token=READ, hmac_keys=(KEY,)))
    yield app
    state(app).database.close()


@pytest.fixture
def client(app):
    return app.test_client()


def post(client, body, headers=None):
    return client.post(
        "/api/v1/metrics/live", json=body, headers={**push_headers(body), **(headers or {})}
    )


def kinds(run_pk):
    return [e["kind"] for e in events.events_after(0, 1000) if e["run_pk"] == run_pk]


def test_first_batch_creates_a_running_run_and_a_retry_is_stored_once(client):
    key = new_run_key()
    body = batch_body(key, 0, [sample(0), sample(1)])
    first = post(client, body)
    assert first.status_code == 201, first.json
    run_pk = first.json["run"]
    assert first.json == {"run": run_pk, "state": "running", "stored": "created"}
    again = post(client, body)
    assert again.status_code == 200 and again.json["stored"] == "duplicate"
    assert RunBatch.select().count() == 1
    run = Run.get_by_id(run_pk)
    assert (run.state, run.host, run.partial, run.live_interval_seconds) == (
        "running",
        "runner-1",
        False,
        15.0,
    )
    assert run.start_time == datetime(2026, 11, 30, 9, 0, 0)
    # The same seq with other samples is refused.
    other = batch_body(key, 0, [sample(5)])
    assert post(client, other).status_code == 422
    assert post(client, batch_body(key, 1, [sample(2)])).status_code == 201
    assert kinds(run_pk) == ["run_started", "snapshot", "snapshot"]
    assert events.events_after(0, 100)[-1]["data"]["t"] == sample(2)["t"]


def test_final_push_finishes_the_live_run_and_a_late_batch_does_not_reopen_it(client):
    key = new_run_key()
    samples = [sample(i) for i in range(4)]
    run_pk = post(client, batch_body(key, 0, samples[:2])).json["run"]
    final = final_payload(key, samples)
    answer = client.post("/api/v1/metrics", json=final, headers=push_headers(final))
    assert answer.status_code == 201, answer.json
    assert answer.json["id"] == run_pk and answer.json["status"] == "created"
    run = Run.get_by_id(run_pk)
    assert (run.state, run.partial, run.cpu_seconds, run.sample_count) == (
        "finished",
        False,
        6.0,
        4,
    )
    assert Run.select().count() == 1
    # A retried final push is a duplicate of the same row; another summary a conflict.
    again = client.post("/api/v1/metrics", json=final, headers=push_headers(final))
    assert again.status_code == 200 and again.json["id"] == run_pk
    changed = final_payload(key, samples, cpu_seconds=99.0)
    assert (
        client.post("/api/v1/metrics", json=changed, headers=push_headers(changed)).status_code
        == 409
    )
    # A batch after the end is stored, the run stays finished, no snapshot event.
    late = post(client, batch_body(key, 1, samples[2:]))
    assert late.status_code == 201 and late.json["state"] == "finished"
    assert Run.get_by_id(run_pk).state == "finished" and RunBatch.select().count() == 2
    assert kinds(run_pk) == ["run_started", "snapshot", "run_finished"]


def test_a_final_push_without_streaming_keeps_its_run_key_for_late_batches(client):
    key = new_run_key()
    samples = [sample(i) for i in range(3)]
    final = final_payload(key, samples)
    stored = client.post("/api/v1/metrics", json=final, headers=push_headers(final))
    assert stored.status_code == 201
    late = post(client, batch_body(key, 0, samples))
    assert late.json == {"run": stored.json["id"], "state": "finished", "stored": "created"}
    assert Run.select().count() == 1
    assert kinds(stored.json["id"]) == ["run_finished"]


def test_lost_run_gets_a_partial_summary_and_a_final_push_completes_it(client):
    key = new_run_key()
    samples = [sample(i, cores=1.5) for i in range(10)]
    run_pk = post(client, batch_body(key, 0, samples[:5])).json["run"]
    post(client, batch_body(key, 1, samples[5:]))
    later = datetime.now(UTC) + timedelta(minutes=5)
    assert live.mark_lost(120, now=later) == [run_pk]
    assert live.mark_lost(120, now=later) == []  # once
    run = Run.get_by_id(run_pk)
    assert (run.state, run.partial) == ("lost", True)
    carried = samples[-1]["job"]["cpu_seconds"]
    assert run.cpu_seconds == run.job_cpu_seconds == carried == 27.0
    assert run.duration_seconds == 18.0 and run.sample_count == 10
    assert run.job_cpu_cores_peak == 1.5 and run.job_memory_bytes_peak == 109
    assert [c.name for c in ContainerStat.select().where(ContainerStat.run == run_pk)] == [
        "command"
    ]
    shown = client.get(f"/api/v1/runs/{run_pk}", headers=READ_AUTH)
    assert shown.status_code == 200, shown.json
    assert kinds(run_pk)[-1] == "run_lost"
    # Not in the live view any more; the final push completes it.
    assert client.get("/api/v1/live", headers=READ_AUTH).json["runs"] == []
    final = final_payload(key, samples)
    done = client.post("/api/v1/metrics", json=final, headers=push_headers(final))
    assert done.status_code == 201 and done.json["id"] == run_pk
    run = Run.get_by_id(run_pk)
    assert (run.state, run.partial) == ("finished", False)
    assert kinds(run_pk)[-1] == "run_finished"


def test_live_view_and_samples_history(client):
    key = new_run_key()
    samples = [sample(i, step=20.0) for i in range(12)]  # 4 minutes
    run_pk = post(client, batch_body(key, 0, samples)).json["run"]
    view = client.get("/api/v1/live", headers=READ_AUTH).json
    (run,) = view["runs"]
    assert run["id"] == run_pk and run["host"] == "runner-1" and run["state"] == "running"
    assert run["snapshot"]["t"] == samples[-1]["t"]
    assert run["snapshot"]["containers"]["command"]["memory_bytes"] == 111
    assert view["hosts"] == [
        {
            "host": "runner-1",
            "t": samples[-1]["t"],
            "cpu_percent": 51.0,
            "mem_used_bytes": 1011,
            "mem_total_bytes": 4000,
            "runs": 1,
        }
    ]
    scoped = client.get("/api/v1/live?job=other", headers=READ_AUTH).json
    assert scoped["runs"] == []
    raw = client.get(f"/api/v1/runs/{run_pk}/samples", headers=READ_AUTH).json
    assert raw["granularity"] == "raw" and len(raw["buckets"]) == 12
    minute = client.get(f"/api/v1/runs/{run_pk}/samples?granularity=1m", headers=READ_AUTH).json
    assert [b["samples"] for b in minute["buckets"]] == [3, 3, 3, 3]
    first = minute["buckets"][0]
    assert first["job"]["memory_bytes"] == {"avg": 101.0, "max": 102.0}
    assert first["containers"]["command"]["cpu_cores"] == {"avg": 1.0, "max": 1.0}
    window = client.get(
        f"/api/v1/runs/{run_pk}/samples?since=2026-11-30T09:01:00Z&until=2026-11-30T09:02:00Z",
        headers=READ_AUTH,
    ).json
    assert window["granularity"] == "raw" and len(window["buckets"]) == 3


@pytest.mark.parametrize(
    ("change", "status"),
    [
        (lambda b: b.pop("run"), 400),
        (lambda b: b["run"].update(run_key=""), 400),
        (lambda b: b["run"].update(run_key="x" * 65), 400),
        (lambda b: b["run"].update(live_interval_seconds=0), 400),
        (lambda b: b["run"].update(host="a\nb"), 400),
        (lambda b: b["batch"].update(seq=-1), 400),
        (lambda b: b["batch"].update(seq=True), 400),
        (lambda b: b["batch"].update(samples=[]), 400),
        (lambda b: b["batch"]["samples"][0].update(t="yesterday"), 400),
        (lambda b: b["batch"]["samples"][0]["job"].update(cpu_cores="1"), 400),
        (lambda b: b["batch"]["samples"][0]["containers"].update({"": {}}), 400),
        (lambda b: b["batch"]["samples"][0].update(containers=[]), 400),
        (lambda b: b["execution"].pop("run_id"), 400),
        (lambda b: b["batch"]["samples"][0].update(pad="x" * 300_000), 413),
    ],
)
def test_bad_batches_are_clear_400s(client, change, status):
    body = batch_body(new_run_key(), 0, [sample(0)])
    headers = push_headers(body)
    change(body)
    answer = client.post("/api/v1/metrics/live", json=body, headers=headers)
    assert answer.status_code == status, answer.json
    assert "error" in answer.json


def test_auth_and_keys(client):
    body = batch_body(new_run_key(), 0, [sample(0)])
    assert client.post("/api/v1/metrics/live", json=body).status_code == 401
    other = dict(EXECUTION, job="other")
    wrong = {
        "Authorization": push_headers(batch_body("k", 0, [], execution=other))["Authorization"]
    }
    assert client.post("/api/v1/metrics/live", json=body, headers=wrong).status_code == 401
    bad_key = {**push_headers(body), "Idempotency-Key": "other:0"}
    assert client.post("/api/v1/metrics/live", json=body, headers=bad_key).status_code == 400
    assert client.get("/api/v1/live").status_code == 401
    assert client.get("/api/v1/runs/1/samples").status_code == 401
    assert client.get("/api/v1/runs/999/samples", headers=READ_AUTH).status_code == 404
    assert client.get("/api/v1/runs/x/samples", headers=READ_AUTH).status_code == 404
    bad = client.get("/api/v1/runs/1/samples?granularity=2m", headers=READ_AUTH)
    assert bad.status_code == 400
    # One scope's run key does not reach another scope's run.
    key = new_run_key()
    mine = post(client, batch_body(key, 0, [sample(0)])).json["run"]
    theirs = post(client, batch_body(key, 0, [sample(0)], execution=other)).json["run"]
    assert mine != theirs
