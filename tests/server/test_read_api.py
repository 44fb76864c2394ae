"""The read API over HTTP: auth, parameters, job paths, errors, OpenAPI entries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from query_data import now_utc, push_body, run_summary

from resmon.schema import validate_push
from resmon.server import ServerConfig, create_app
from resmon.store.write import store_push

READ = {"Authorization": "Bearer read-token"}
JOB = "/api/v1/jobs/acme/acme%2Fwidgets/ci.yml/build"
ENDPOINTS = (
    "/api/v1/jobs",
    f"{JOB}/runs",
    f"{JOB}/trend",
    "/api/v1/runs/1",
    "/api/v1/top",
)


@pytest.fixture
def client(tmp_path):
    app = create_app(
        ServerConfig(database=str(tmp_path / "m.db"), read_token="read-token", hmac_keys=("k",))
    )
    start = now_utc() - timedelta(hours=2)
    for i in range(3):
        summary = run_summary(start=start + timedelta(minutes=i), builder_cores=0.5 * (i + 1))
        store_push(validate_push(push_body(str(i), summary)))
    store_push(validate_push(push_body("9", run_summary(start=start), workflow="Nightly CI")))
    return app.test_client()


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_read_endpoint_needs_the_read_token(client, path):
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer k"}).status_code == 401
    response = client.get(path, headers=READ)
    assert response.status_code == 200, response.json
    assert response.headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(
    "path",
    [
        f"{JOB}/runs",
        "/api/v1/jobs/acme/acme/widgets/ci.yml/build/runs",  # two segments
        "/api/v1/jobs/acme/widgets/ci.yml/build/runs",  # bare repository
    ],
)
def test_job_path_spellings(client, path):
    body = client.get(path, headers=READ).json
    assert body["repository"] == "acme/widgets"
    assert [r["run_id"] for r in body["runs"]] == ["2", "1", "0"]


def test_workflow_with_spaces_and_slashes_in_names(client):
    body = client.get("/api/v1/jobs/acme/acme%2Fwidgets/Nightly%20CI/build/runs", headers=READ).json
    assert [r["run_id"] for r in body["runs"]] == ["9"]


def test_runs_limit_and_truncation_header(client):
    response = client.get(f"{JOB}/runs?limit=2", headers=READ)
    assert response.headers["X-Resmon-Truncated"] == "true"
    assert response.json["truncated"] is True and len(response.json["runs"]) == 2
    response = client.get(f"{JOB}/runs?limit=3", headers=READ)
    assert "X-Resmon-Truncated" not in response.headers
    # A large limit is capped, never an unbounded list.
    assert client.get(f"{JOB}/runs?limit=999999", headers=READ).json["limit"] == 1000


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("runs?limit=0", "limit"),
        ("runs?limit=abc", "limit"),
        ("runs?since=yesterday", "invalid time"),
        ("trend?by=week", "invalid grouping"),
    ],
)
def test_bad_parameters_are_400_with_a_reason(client, query, message):
    response = client.get(f"{JOB}/{query}", headers=READ)
    assert response.status_code == 400
    assert message in response.json["error"]


def test_top_bad_metric_and_period(client):
    assert "metric" in client.get("/api/v1/top?metric=disk", headers=READ).json["error"]
    response = client.get("/api/v1/top?period=forever", headers=READ)
    assert response.status_code == 400 and "7d" in response.json["error"]


def test_not_found_carries_suggestions(client):
    response = client.get("/api/v1/jobs/acme/acme%2Fwidgets/ci.yml/biuld/runs", headers=READ)
    assert response.status_code == 404
    assert response.json["suggestions"][0] == "acme acme/widgets ci.yml build"
    response = client.get(f"{JOB}/trend?container=bilder", headers=READ)
    assert response.status_code == 404 and response.json["suggestions"] == ["builder"]
    assert client.get("/api/v1/runs/424242", headers=READ).status_code == 404
    response = client.get("/api/v1/runs/abc", headers=READ)
    assert response.status_code == 404 and "ids are the numbers" in response.json["error"]
    assert client.get("/api/v1/jobs/acme/runs", headers=READ).status_code == 404


def test_documented_in_openapi(client):
    doc = client.get("/api/v1/openapi.json").json
    for path in (
        "/api/v1/jobs",
        "/api/v1/jobs/{organization}/{repository}/{workflow}/{job}/runs",
        "/api/v1/jobs/{organization}/{repository}/{workflow}/{job}/trend",
        "/api/v1/runs/{id}",
        "/api/v1/top",
    ):
        op = doc["paths"][path]["get"]
        assert op["security"] == [{"readToken": []}]
        assert {"200", "401", "404"} <= set(op["responses"])


def _step(run_id: str, start, container: str, name: str) -> dict:
    summary = run_summary(start=start)
    summary["command"] = {"name": name, "container": container, "exit_code": 0}
    return push_body(run_id, summary, job="steps")


def test_runs_and_trend_points_name_the_wrapped_step(client):
    """Two wrapped steps of one job run (`collect --name compile -- make`, then
    `--name unit-tests -- pytest`) are two rows that say which step each was; a run
    without a command has nulls."""
    start = now_utc() - timedelta(hours=1)
    store_push(validate_push(_step("5", start, "compile", "make")))
    store_push(validate_push(_step("5", start + timedelta(minutes=5), "unit-tests", "pytest")))
    store_push(validate_push(push_body("6", run_summary(start=start), job="steps")))
    job = "/api/v1/jobs/acme/acme%2Fwidgets/ci.yml/steps"
    runs = client.get(f"{job}/runs", headers=READ).json["runs"]
    assert [(r["run_id"], r["command_container"], r["command_name"]) for r in runs] == [
        ("6", None, None),
        ("5", "unit-tests", "pytest"),
        ("5", "compile", "make"),
    ]
    points = client.get(f"{job}/trend", headers=READ).json["points"]
    assert [(p["command_container"], p["command_name"]) for p in points] == [
        ("compile", "make"),
        ("unit-tests", "pytest"),
        (None, None),
    ]
    # Documented where the rows are.
    doc = client.get("/api/v1/openapi.json").json
    runs_op = doc["paths"]["/api/v1/jobs/{organization}/{repository}/{workflow}/{job}/runs"]
    schema = runs_op["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    row = schema["properties"]["runs"]["items"]["properties"]
    assert row["command_container"]["type"] == ["string", "null"] and "command_name" in row
    trend_op = doc["paths"]["/api/v1/jobs/{organization}/{repository}/{workflow}/{job}/trend"]
    schema = trend_op["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert "command_container" in schema["properties"]["points"]["items"]["properties"]


@pytest.mark.parametrize(
    "query",
    [
        "runs?since=1d&until=2d",
        "trend?since=2026-11-02&until=2026-11-01",
        "trend?by=day&since=2026-11-01T12:00:00Z&until=2026-11-01T12:00:00Z",
    ],
)
def test_a_window_that_ends_before_it_starts_is_400(client, query):
    response = client.get(f"{JOB}/{query}", headers=READ)
    assert response.status_code == 400
    error = response.json["error"]
    assert error.startswith("since ") and "until " in error, error
    assert "since must be earlier than until" in error


@pytest.mark.parametrize("period", ["0d", "0s", "0.0000001s", " 0w "])
def test_an_empty_top_period_is_400(client, period):
    response = client.get("/api/v1/top", query_string={"period": period}, headers=READ)
    assert response.status_code == 400
    assert response.json["error"].startswith("period: ") and "above 0" in response.json["error"]
