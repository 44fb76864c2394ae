"""GET /api/v1/usage: the read token, its parameters, org-scoped tokens, and the
background rollups of a real ``resmon serve`` (the rollup pass in its worker, the
lag, one process at a time), on SQLite; two replicas on PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
from datetime import timedelta

import pytest
import requests
from query_data import now_utc, push_body, run_summary
from server_proc import ServerProcess

from resmon.schema import validate_push
from resmon.server import ServerConfig, create_app
from resmon.store import rollup_pass
from resmon.store.write import store_push
from resmon.tokens import read_token

READ = {"Authorization": "Bearer read-token"}


@pytest.fixture
def client(tmp_path):
    app = create_app(
        ServerConfig(
            database=str(tmp_path / "m.db"), read_token="read-token", hmac_keys=("k" * 16,)
        )
    )
    start = now_utc() - timedelta(hours=30)
    for i in range(6):
        org = ("acme", "beta")[i % 2]
        summary = run_summary(start=start + timedelta(hours=5 * i), cpu_seconds=3600.0 * (i + 1))
        store_push(validate_push(push_body(str(i), summary, org=org, repo=f"{org}/widgets")))
    return app.test_client()


def test_usage_needs_the_read_token(client):
    assert client.get("/api/v1/usage").status_code == 401
    response = client.get("/api/v1/usage", headers=READ)
    assert response.status_code == 200, response.json


def test_usage_by_org_per_day(client):
    body = client.get("/api/v1/usage?by=org&period=7d", headers=READ).json
    assert body["by"] == "org" and body["granularity"] == "day"
    per_org: dict[str, float] = {}
    for row in body["rows"]:
        assert set(row) >= {"organization", "bucket", "runs", "cpu_hours", "gib_hours"}
        assert "job" not in row
        per_org[row["organization"]] = per_org.get(row["organization"], 0) + row["cpu_hours"]
    assert per_org == {"acme": 1 + 3 + 5, "beta": 2 + 4 + 6}
    assert body["totals"]["runs"] == 6 and body["totals"]["cpu_hours"] == 21
    rollup_pass.catch_up()  # the same answer from the rollups
    again = client.get("/api/v1/usage?by=org&period=7d", headers=READ).json
    assert {**again, "until": None} == {**body, "until": None}


@pytest.mark.parametrize(
    "query, message",
    [
        ("by=team", "by"),
        ("granularity=week", "granularity"),
        ("period=0d", "period"),
        ("period=abc", "period"),
        ("organization=" + "x" * 300, "organization"),
    ],
)
def test_bad_parameters_are_400_naming_them(client, query, message):
    response = client.get(f"/api/v1/usage?{query}", headers=READ)
    assert response.status_code == 400
    assert message in response.json["error"]


def test_filters(client):
    body = client.get(
        "/api/v1/usage?by=job&granularity=hour&period=2d&organization=acme", headers=READ
    ).json
    assert {r["organization"] for r in body["rows"]} == {"acme"}
    assert all(r["bucket"].endswith(":00:00Z") for r in body["rows"])
    body = client.get("/api/v1/usage?by=repo&repository=beta/widgets", headers=READ).json
    assert {r["repository"] for r in body["rows"]} == {"beta/widgets"}


def _wait_rolled_up(path: str, runs: int, timeout: float = 15.0) -> float:
    """Seconds until the rollups of the database at ``path`` hold ``runs`` runs."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with sqlite3.connect(path) as conn:
            try:
                row = conn.execute(
                    "SELECT COALESCE(SUM(runs), 0) FROM rollup_jobs WHERE span = 'day'"
                ).fetchone()
            except sqlite3.OperationalError:
                row = (0,)
        if row[0] >= runs:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"rollups did not reach {runs} runs in {timeout} s")


def test_a_real_server_rolls_up_in_the_background_and_scopes_usage(tmp_path):
    path = str(tmp_path / "serve.db")
    with ServerProcess(path, extra_args=("--rollup-interval=200ms", "--workers=2")) as server:
        start = now_utc() - timedelta(hours=3)
        for i in range(8):
            org = ("acme", "beta")[i % 2]
            payload = push_body(
                f"r{i}", run_summary(start=start + timedelta(minutes=i)), org=org,
                repo=f"{org}/widgets",
            )  # fmt: skip
            assert server.push(payload).status_code == 201
        lag = _wait_rolled_up(path, 8)
        assert lag < 5, lag
        everyone = requests.get(
            server.url + "/api/v1/usage?by=org", headers=server.read_headers, timeout=10
        ).json()
        assert {r["organization"] for r in everyone["rows"]} == {"acme", "beta"}
        token = read_token(server.hmac_key, "acme", expires=int(time.time()) + 3600)
        mine = requests.get(
            server.url + "/api/v1/usage?by=job",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()
        assert {r["organization"] for r in mine["rows"]} == {"acme"}
        assert mine["totals"]["runs"] == 4
        other = requests.get(
            server.url + "/api/v1/usage?organization=beta",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()
        assert other["rows"] == []
    assert server.returncode == 0, server.stderr_text()[-2000:]
