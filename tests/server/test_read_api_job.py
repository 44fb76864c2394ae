"""The read API returns each run's job figures beside the host's and ranks top by the
job's, on a real `resmon serve` over SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from query_data import (
    HOST_MEM,
    SLEEP_PSS,
    SLEEP_RSS,
    now_utc,
    push_body,
    run_summary,
    wrapped_sleep_summary,
)
from server_proc import ServerProcess, sample_payload

SLEEP = "/api/v1/jobs/acme/acme%2Fwidgets/ci.yml/sleep"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request, tmp_path):
    target = (
        str(tmp_path / "m.db")
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    with ServerProcess(target) as srv:
        start = now_utc() - timedelta(minutes=30)
        pushes = [
            push_body("1", wrapped_sleep_summary(start=start, job_block=False), job="sleep"),
            push_body("2", wrapped_sleep_summary(start=start), job="sleep"),
            push_body("3", run_summary(start=start, cpu_percent=30.0, cpu_seconds=600.0)),
            # The Go collector: neither job nor command, one container.
            sample_payload("4", organization="acme", repository="acme/widgets", job="go"),
        ]
        for body in pushes:
            assert srv.push(body).status_code == 201, body["execution"]
        yield srv
    assert srv.returncode == 0, srv.stderr_text()[-2000:]


def get(server, path: str, **params) -> requests.Response:
    return requests.get(server.url + path, params=params, headers=server.read_headers, timeout=10)


def test_runs_jobs_and_trend_carry_the_job_figures(server):
    runs = {r["run_id"]: r for r in get(server, SLEEP + "/runs").json()["runs"]}
    assert runs["2"]["job_scope"] == "command" and runs["2"]["job_memory_kind"] == "pss"
    assert runs["2"]["job_memory_bytes_peak"] == SLEEP_PSS
    assert runs["2"]["job_memory_peak_high_bytes"] == SLEEP_RSS
    assert runs["1"]["job_memory_bytes_peak"] == SLEEP_RSS and runs["1"]["job_memory_kind"] == "rss"
    for run in runs.values():
        assert run["job_cpu_cores_p95"] == 0.0 and run["job_cpu_seconds"] < 0.01
        assert run["cpu_percent_p95"] == 100.0 and run["mem_bytes_peak"] == HOST_MEM

    jobs = {j["job"]: j for j in get(server, "/api/v1/jobs").json()["jobs"]}
    assert jobs["sleep"]["last_job_memory_bytes_peak"] == SLEEP_PSS
    # The Go collector's run: derived from its one container.
    go = jobs["go"]
    assert go["last_job_scope"] == "containers" and go["last_job_memory_kind"] == "rss"
    assert go["last_job_cpu_cores_peak"] == 2.0 and go["last_job_limit_cpu_cores"] == 2.0

    points = get(server, SLEEP + "/trend").json()["points"]
    assert [p["job_memory_kind"] for p in points] == ["rss", "pss"]
    (day,) = get(server, SLEEP + "/trend", by="day").json()["points"]
    assert day["job_memory_kind"] == "mixed" and day["job_memory_bytes_peak"] == SLEEP_RSS
    assert day["cpu_percent_peak"] == 100.0


def test_top_ranks_by_the_job_unless_scope_host(server):
    body = get(server, "/api/v1/top").json()
    assert body["scope"] == "job" and body["ranked_by"][0] == "job_cpu_seconds_total"
    assert [j["job"] for j in body["jobs"]][0] == "build"
    sleep = next(j for j in body["jobs"] if j["job"] == "sleep")
    assert sleep["job_memory_kind"] == "mixed" and sleep["cpu_percent_p95_avg"] == 100.0

    host = get(server, "/api/v1/top", scope="host").json()
    assert host["scope"] == "host" and [j["job"] for j in host["jobs"]][0] == "sleep"
    memory = get(server, "/api/v1/top", metric="memory").json()
    assert memory["jobs"][0]["job"] == "go"  # its 2 GB container, not the host's memory

    for bad in ("machine", "JOB", "job ", "a\u00e9"):
        r = get(server, "/api/v1/top", scope=bad)
        assert r.status_code == 400 and r.json()["error"].startswith("scope: invalid scope")
