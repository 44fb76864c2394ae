"""The read API's rows carry their run's state, partial flag and host (runs of a job,
one run, the jobs' last run, trend points, top and the fleet), on SQLite and
PostgreSQL; every answer is checked against the OpenAPI document's schema for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from jsonschema_rs import Draft202012Validator
from query_data import MiB, push_body, run_summary

from resmon.schema import format_time, validate_push
from resmon.server import ServerConfig, create_app, state
from resmon.server.openapi import build_openapi
from resmon.store import live
from resmon.store.write import store_push

READ = "read-token-0123456789"
JOB = "/api/v1/jobs/acme/acme%2Fwidgets/ci.yml/build"
NOW = datetime.now(UTC).replace(microsecond=0)
DOCUMENT = build_openapi()


def conforms(body: dict, path: str) -> None:
    """``body`` is what the document says GET ``path`` answers with 200."""
    pointer = "/".join(
        ("#/paths", quote(path.replace("~", "~0").replace("/", "~1")), "get/responses/200/content")
    )
    schema = {**DOCUMENT, "$ref": pointer + "/application~1json/schema"}
    errors = sorted(str(e) for e in Draft202012Validator(schema).iter_errors(body))
    assert not errors, errors[:3]


def sample(start: datetime, i: int) -> dict:
    return {
        "t": format_time(start + timedelta(seconds=2 * i)),
        "elapsed": None if i == 0 else 2.0,
        "host": {"cpu_percent": 40.0, "mem_used_bytes": 10**9, "mem_total_bytes": 4 * 10**9},
        "job": {
            "cpu_cores": None if i == 0 else 1.0,
            "memory_bytes": 600 * MiB,
            "cpu_seconds": 2 * i,
        },
        "containers": {},
    }


def stream(run_id: str, at: datetime) -> int:
    execution = {
        "organization": "acme",
        "repository": "acme/widgets",
        "workflow": "ci.yml",
        "job": "build",
        "run_id": run_id,
        "run_attempt": "",
    }
    run = {"run_key": f"k-{run_id}", "start_time": format_time(at), "host": "runner-5"}
    return live.store_batch(execution, run, 0, [sample(at, i) for i in range(4)], now=at).run


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def client(request, tmp_path):
    target = (
        str(tmp_path / "m.db")
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    app = create_app(ServerConfig(database=target, read_token=READ, hmac_keys=("k" * 16,)))
    for n in range(3):
        at = NOW - timedelta(days=3 - n)
        summary = run_summary(start=at - timedelta(minutes=5))
        store_push(validate_push(push_body(f"r{n}", summary)), received_at=at)
    lost = stream("lost", NOW - timedelta(hours=3))
    assert live.mark_lost(120, now=NOW - timedelta(hours=2)) == [lost]
    stream("live", NOW - timedelta(seconds=20))
    yield app.test_client()
    state(app).database.close()


def get(client, path: str) -> dict:
    r = client.get(path, headers={"Authorization": f"Bearer {READ}"})
    assert r.status_code == 200, r.text
    return r.get_json()


def test_every_row_says_its_runs_state(client):
    runs = get(client, f"{JOB}/runs")
    conforms(runs, "/api/v1/jobs/{organization}/{repository}/{workflow}/{job}/runs")
    states = [(r["run_id"], r["state"], r["partial"], r["host"]) for r in runs["runs"]]
    assert states == [
        ("live", "running", False, "runner-5"),
        ("lost", "lost", True, "runner-5"),
        ("r2", "finished", False, None),
        ("r1", "finished", False, None),
        ("r0", "finished", False, None),
    ]
    for run in runs["runs"][:2]:
        one = get(client, f"/api/v1/runs/{run['id']}")
        conforms(one, "/api/v1/runs/{id}")
        assert (one["state"], one["host"]) == (run["state"], "runner-5")
        assert one["last_batch_at"] is not None
    jobs = get(client, "/api/v1/jobs")
    conforms(jobs, "/api/v1/jobs")
    assert (jobs["jobs"][0]["last_state"], jobs["jobs"][0]["last_host"]) == ("running", "runner-5")


def test_trend_and_top_count_lost_runs_and_leave_running_ones_out(client):
    trend = get(client, f"{JOB}/trend")
    conforms(trend, "/api/v1/jobs/{organization}/{repository}/{workflow}/{job}/trend")
    assert [(p["run_id"], p["state"], p["partial"]) for p in trend["points"]] == [
        ("r0", "finished", False),
        ("r1", "finished", False),
        ("r2", "finished", False),
        ("lost", "lost", True),
    ]
    days = get(client, f"{JOB}/trend?by=day")
    conforms(days, "/api/v1/jobs/{organization}/{repository}/{workflow}/{job}/trend")
    assert sum(d["runs"] for d in days["points"]) == 4
    assert sum(d["partial_runs"] for d in days["points"]) == 1
    top = get(client, "/api/v1/top?metric=memory")
    conforms(top, "/api/v1/top")
    assert (top["jobs"][0]["runs"], top["jobs"][0]["partial_runs"]) == (4, 1)
    recommendation = get(client, f"{JOB}/recommendation")
    conforms(
        recommendation, "/api/v1/jobs/{organization}/{repository}/{workflow}/{job}/recommendation"
    )
    assert recommendation["partial_runs"] == 1 and recommendation["job_recommendation"]["runs"] == 4
    fleet = get(client, "/api/v1/recommendations")
    conforms(fleet, "/api/v1/recommendations")
    assert (fleet["jobs"][0]["runs"], fleet["jobs"][0]["partial_runs"]) == (4, 1)
