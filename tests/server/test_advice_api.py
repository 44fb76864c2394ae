"""The push answer's comparison with the job's baseline, the regressions flagged, and
the recommendation endpoints, through Flask's test client on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from query_data import GiB, MiB, now_utc, push_body, run_summary

from resmon.analysis.regressions import Thresholds
from resmon.collect.comparison import comparison_lines, parse_comparison
from resmon.server import ServerConfig, create_app, state
from resmon.store.baseline import BaselineOptions
from resmon.store.models import RunRegression
from resmon.tokens import push_token

READ = "advice-read-token-0123456789abcdef"
KEY = "advice-hmac-key-0123456789abcdef"
JOB_PATH = "/api/v1/jobs/acme/acme%2Fwidgets/ci.yml/build"
# Nine ordinary builds: the builder's memory peak 880..960 MiB, its CPU 1.5 cores.
USUAL_MEMORY = [900, 920, 880, 940, 910, 930, 890, 960, 905]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "metrics.db")
    return request.getfixturevalue("postgres_url")


def make_client(target, **config):
    app = create_app(ServerConfig(database=target, read_token=READ, hmac_keys=(KEY,), **config))
    return app, app.test_client()


@pytest.fixture
def client(target):
    app, client = make_client(target)
    yield client
    state(app).database.close()


def push(client, run_id, builder_mem, *, days_ago=0, builder_cores=1.5, key=None):
    start = now_utc() - timedelta(days=days_ago, hours=1)
    body = push_body(
        run_id, run_summary(start=start, builder_mem=builder_mem, builder_cores=builder_cores)
    )
    token = push_token(KEY, "acme", "acme/widgets", "ci.yml", "build")
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    return client.post("/api/v1/metrics", json=body, headers=headers)


def get(client, path):
    return client.get(path, headers={"Authorization": f"Bearer {READ}"})


def push_usual(client, days=True):
    for n, mib in enumerate(USUAL_MEMORY):
        r = push(client, f"r{n}", mib * MiB, days_ago=len(USUAL_MEMORY) - n if days else 0)
        assert r.status_code == 201, r.text


def test_a_first_run_gets_the_go_receivers_answer_and_later_ones_a_comparison(client):
    r = push(client, "first", 900 * MiB)
    assert r.status_code == 201
    assert r.data == b'{"id":%d,"status":"created"}' % r.get_json()["id"]
    r = push(client, "second", 910 * MiB)
    body = r.get_json()
    assert list(body)[:2] == ["id", "status"] and body["status"] == "created"
    comparison = body["comparison"]
    # One earlier run: counted, but too few to compare any figure with.
    assert comparison["baseline_runs"] == 1
    assert comparison["figures"] == [] and comparison["regressions"] == 0


def test_a_memory_regression_is_flagged_in_the_answer_and_listed(client):
    push_usual(client)
    r = push(client, "heavy", 1800 * MiB, key="heavy-1")
    assert r.status_code == 201
    comparison = r.get_json()["comparison"]
    assert comparison["baseline_runs"] == len(USUAL_MEMORY)
    assert comparison["thresholds"] == {"mad": 3.5, "change": 0.2, "shift": 3.0, "shift_runs": 5}
    assert comparison["window_days"] == 30
    flagged = {(f["container"], f["metric"]) for f in comparison["figures"] if f["regression"]}
    # The job's memory (builder + db) and the builder's; not the CPU, not the db.
    assert flagged == {(None, "memory_bytes_peak"), ("builder", "memory_bytes_peak")}
    job_memory = next(
        f
        for f in comparison["figures"]
        if f["container"] is None and f["metric"] == "memory_bytes_peak"
    )
    assert job_memory["scope"] == "job"
    assert job_memory["value"] == 1900 * MiB
    assert job_memory["median"] == 1010 * MiB  # 910 MiB builder + 100 MiB db
    assert job_memory["change"] == pytest.approx(1900 / 1010 - 1)
    assert (job_memory["test"], job_memory["runs"], job_memory["shift"]) == ("single", 1, None)
    assert comparison["regressions"] == 2

    # A retry answers the same comparison and stores no second flag.
    again = push(client, "heavy", 1800 * MiB, key="heavy-1")
    assert again.status_code == 200
    assert again.get_json()["comparison"] == comparison
    assert RunRegression.select().count() == 2

    listed = get(client, "/api/v1/regressions?since=1d").get_json()
    assert [run["run_id"] for run in listed["runs"]] == ["heavy"]
    assert {(f["container"], f["metric"]) for f in listed["runs"][0]["regressions"]} == flagged
    assert {(f["test"], f["runs"]) for f in listed["runs"][0]["regressions"]} == {("single", 1)}
    assert listed["truncated"] is False


# A job whose builder's memory spreads +-20 % (MiB): one run of +58 % is not enough alone.
SPREAD_MEMORY = [700, 1300, 900, 1100, 800, 1200, 1000, 950, 1050, 850]


def test_a_step_that_stays_is_flagged_by_the_shift_test_and_the_collector_reads_it(client):
    for n, mib in enumerate(SPREAD_MEMORY):
        assert push(client, f"s{n}", mib * MiB, days_ago=len(SPREAD_MEMORY) - n).status_code == 201
    answers = [push(client, f"step{n}", 1600 * MiB).get_json()["comparison"] for n in range(3)]
    assert [a["regressions"] for a in answers] == [0, 2, 0]  # flagged once, at the second
    flagged = [f for f in answers[1]["figures"] if f["regression"]]
    assert {(f["container"], f["metric"]) for f in flagged} == {
        (None, "memory_bytes_peak"),
        ("builder", "memory_bytes_peak"),
    }
    job = next(f for f in flagged if f["container"] is None)
    assert (job["test"], job["runs"]) == ("shift", 2)
    assert job["shift"]["median_before"] == 1075 * MiB  # the 10 runs before the step
    assert job["shift"]["median_recent"] == 1700 * MiB and job["shift"]["baseline_runs"] == 10
    assert job["value"] == 1700 * MiB and job["baseline_runs"] == 11  # against all 11 before
    # The collector's reader (resmon/collect/comparison.py) takes the answer as it is.
    parsed = parse_comparison({"id": 1, "status": "created", "comparison": answers[1]})
    assert parsed is not None and parsed.regressions == 2 and parsed.baseline_runs == 11
    assert {(c.container, c.figure) for c in parsed.flagged} == {
        (None, "memory_peak_bytes"),
        ("builder", "memory_peak_bytes"),
    }
    assert "+55 % over the median of the last 11 runs" in comparison_lines(parsed)[0]
    listed = get(client, "/api/v1/regressions?since=1d").get_json()["runs"]
    assert [run["run_id"] for run in listed] == ["step1"]
    # Stored with the test that flagged it, and listed so.
    assert {(f["container"], f["test"], f["runs"]) for f in listed[0]["regressions"]} == {
        (None, "shift", 2),
        ("builder", "shift", 2),
    }


def test_serve_shift_thresholds_decide(target):
    """--regression-shift-runs 0: no shift test, so the step of the test above is never
    flagged; the answer's thresholds say what the server compared with."""
    app, client = make_client(
        target, baseline=BaselineOptions(thresholds=Thresholds(shift=4.0, shift_runs=0))
    )
    try:
        for n, mib in enumerate(SPREAD_MEMORY):
            assert (
                push(client, f"s{n}", mib * MiB, days_ago=len(SPREAD_MEMORY) - n).status_code == 201
            )
        answers = [push(client, f"step{n}", 1600 * MiB).get_json()["comparison"] for n in range(3)]
        assert [a["regressions"] for a in answers] == [0, 0, 0]
        assert answers[0]["thresholds"] == {
            "mad": 3.5,
            "change": 0.2,
            "shift": 4.0,
            "shift_runs": 0,
        }
        assert get(client, "/api/v1/regressions?since=1d").get_json()["runs"] == []
    finally:
        state(app).database.close()


def test_an_ordinary_run_is_not_flagged(client):
    push_usual(client)
    comparison = push(client, "usual", 930 * MiB).get_json()["comparison"]
    assert comparison["regressions"] == 0
    metrics = {(f["container"], f["metric"]) for f in comparison["figures"]}
    assert (None, "cpu_seconds") in metrics and (None, "duration_seconds") in metrics
    assert ("db", "memory_bytes_peak") in metrics
    assert get(client, "/api/v1/regressions").get_json()["runs"] == []


def test_serve_thresholds_decide(target):
    app, client = make_client(
        target, baseline=BaselineOptions(thresholds=Thresholds(mad=3.5, change=1.5))
    )
    try:
        push_usual(client)
        comparison = push(client, "heavy", 1800 * MiB).get_json()["comparison"]
        assert comparison["regressions"] == 0  # +89 %, under the 150 % asked for
        assert comparison["thresholds"]["change"] == 1.5
    finally:
        state(app).database.close()
    app, client = make_client(target, baseline=BaselineOptions(runs=0))
    try:
        r = push(client, "off", 1800 * MiB)
        assert "comparison" not in r.get_json()
    finally:
        state(app).database.close()


def test_the_recommendation_of_a_job_and_its_containers(client):
    push_usual(client)
    body = get(client, JOB_PATH + "/recommendation").get_json()
    job = body["job_recommendation"]
    assert job["status"] == "ok" and job["runs"] == len(USUAL_MEMORY)
    assert job["memory_limit_bytes"] >= (960 + 100) * MiB  # never below the largest peak
    assert job["memory_request_bytes"] == job["memory_limit_bytes"]
    assert set(job["backtest"]) == {"resmon", "ci_sizer", "vpa"}
    assert job["backtest"]["resmon"]["steps"] == len(USUAL_MEMORY) - 3
    assert job["confidence"]["level"] in ("low", "medium")
    builder = next(c for c in body["containers"] if c["name"] == "builder")
    assert builder["current"] == {"cpu_limit_cores": 2.0, "memory_limit_bytes": GiB}
    assert builder["memory_limit_bytes"] >= 960 * MiB
    assert builder["difference"]["memory_limit_bytes"] == builder["memory_limit_bytes"] - GiB
    assert body["runs_limit"] == 100 and body["since"] is not None


def test_fewer_than_three_runs_say_how_many_more(client):
    push(client, "one", 900 * MiB)
    job = get(client, JOB_PATH + "/recommendation").get_json()["job_recommendation"]
    assert job["status"] == "insufficient_runs" and job["runs_needed"] == 2
    assert "memory_limit_bytes" not in job


def test_the_fleet_view_ranks_jobs(client):
    push_usual(client)
    body = get(client, "/api/v1/recommendations?by=risk").get_json()
    assert body["by"] == "risk" and len(body["jobs"]) == 1
    row = body["jobs"][0]
    assert row["repository"] == "acme/widgets" and row["status"] == "ok"
    assert row["risk_runs"] == 0
    assert get(client, "/api/v1/recommendations").get_json()["by"] == "free"


@pytest.mark.parametrize(
    ("path", "word"),
    [
        ("/api/v1/recommendations?by=cheap", "by"),
        ("/api/v1/recommendations?runs=0", "runs"),
        ("/api/v1/recommendations?limit=x", "limit"),
        ("/api/v1/recommendations?since=forever", "since"),
        (JOB_PATH + "/recommendation?runs=-1", "runs"),
        (JOB_PATH + "/recommendation?since=1d&until=2d", "since"),
        ("/api/v1/regressions?since=0001-01-01&until=tomorrow", "until"),
        ("/api/v1/regressions?limit=0", "limit"),
    ],
)
def test_bad_parameters_are_400_naming_them(client, path, word):
    push(client, "one", 900 * MiB)
    r = get(client, path)
    assert r.status_code == 400, r.text
    assert word in r.get_json()["error"]


def test_an_unknown_job_is_404_with_suggestions(client):
    push(client, "one", 900 * MiB)
    r = get(client, "/api/v1/jobs/acme/acme%2Fwidgets/ci.yml/biuld/recommendation")
    assert r.status_code == 404
    assert r.get_json()["suggestions"]


def test_every_endpoint_needs_the_read_token(client):
    for path in (JOB_PATH + "/recommendation", "/api/v1/recommendations", "/api/v1/regressions"):
        assert client.get(path).status_code == 401
