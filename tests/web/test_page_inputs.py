"""The pages against what a person (or a crawler) may type into a URL: a clear 400 or
404 page, never a 500 or a traceback; and the read token as a bearer header works
for scripts as the session does for browsers.  In process (Flask's test client)."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from web_data import build_history

from resmon.server import create_app
from resmon.server.config import ServerConfig

TOKEN = "page-inputs-read-token"
JOB = {"org": "acme", "repo": "acme/widgets", "workflow": "ci.yml", "job": "build"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    path = build_history(tmp_path_factory.mktemp("inputs") / "metrics.db")
    app = create_app(ServerConfig(database=path, read_token=TOKEN))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    return client


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/jobs?sort=size", 400),
        ("/jobs?page=0", 400),
        ("/jobs?page=-1", 400),
        ("/jobs?page=1e3", 400),
        ("/jobs?page=99999999999999999999", 400),
        ("/jobs?page=50", 200),
        ("/jobs?org=" + "x" * 300, 400),
        ("/jobs?repo=%00", 400),
        ("/jobs?org=nobody", 200),
        ("/job", 400),
        ("/job?org=acme&repo=acme/widgets&workflow=ci.yml", 400),
        ("/job?" + urlencode({**JOB, "job": "buidl"}), 404),
        ("/job?" + urlencode({**JOB, "job": "b\x00"}), 400),
        ("/job?" + urlencode({**JOB, "repo": "widgets"}), 200),
        ("/runs/0", 404),
        ("/runs/abc", 404),
        ("/runs/-1", 404),
        ("/runs/" + "9" * 19, 404),
        ("/runs/999999999999999999", 404),
        ("/usage?period=2w", 400),
        ("/usage?by=team", 400),
        ("/usage?metric=disk", 400),
        ("/usage?period=1d&by=job&metric=duration", 200),
        ("/alerts?state=%ff", 200),
        ("/live?organization=%00", 200),
    ],
)
def test_a_bad_address_is_a_clear_page_never_a_server_error(client, url, status):
    response = client.get(url)
    assert response.status_code == status, response.data[:500]
    assert response.mimetype == "text/html"
    assert b"Traceback" not in response.data


def test_a_missing_job_suggests_the_closest(client):
    response = client.get("/job?" + urlencode({**JOB, "job": "buidl"}))
    assert response.status_code == 404
    assert b"build" in response.data


def test_no_token_no_session_is_sent_to_sign_in(client):
    response = client.get("/jobs?org=acme", headers={"Authorization": ""})
    assert response.status_code in (302, 303)
    assert response.headers["Location"].startswith("/login?next=")
    static = client.get("/assets/charts.js", headers={"Authorization": ""})
    assert static.status_code == 200


@pytest.mark.postgres
def test_every_page_renders_on_postgresql(postgres_url):
    """The pages over PostgreSQL's answers (Decimals from SUM and AVG, aware times)."""
    build_history(postgres_url)
    app = create_app(ServerConfig(database=postgres_url, read_token=TOKEN))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    jobs = client.get("/api/v1/jobs").get_json()["jobs"]
    lost = next(j["last_id"] for j in jobs if j["last_state"] == "lost")
    finished = next(j["last_id"] for j in jobs if j["last_state"] == "finished")
    for url in (
        "/jobs",
        "/jobs?sort=memory",
        "/job?" + urlencode(JOB),
        f"/runs/{finished}",
        f"/runs/{lost}",
        "/live",
        "/usage",
        "/usage?by=job&period=30d&metric=memory",
        "/alerts",
    ):
        response = client.get(url)
        assert response.status_code == 200, (url, response.data[:300])


def test_hostile_names_are_text_never_markup(tmp_path):
    """A job or container named like markup is shown as text in the HTML and inside the
    chart data blocks (which a `</script>` in a name could otherwise end)."""
    from datetime import UTC, datetime, timedelta

    from query_data import push_body, run_summary

    from resmon.schema import validate_push
    from resmon.store import db as dbmod
    from resmon.store.write import store_push

    evil = "<img src=x onerror=alert(1)></script><script>alert(2)</script>"
    path = str(tmp_path / "evil.db")
    db = dbmod.open_database(path)
    dbmod.migrate(db)
    start = datetime.now(UTC) - timedelta(days=2)
    for n in range(4):
        summary = run_summary(start=start + timedelta(hours=n))
        summary["containers"][1]["name"] = evil
        summary["timeline"] = [
            {"t": float(t), "containers": {evil: {"cpu_cores": 0.5, "memory_bytes": 1000}}}
            for t in range(3)
        ]
        store_push(validate_push(push_body(f"r{n}", summary, job=evil, workflow=evil)))
    db.close()
    app = create_app(ServerConfig(database=path, read_token=TOKEN))
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TOKEN}"
    jobs = client.get("/api/v1/jobs").get_json()["jobs"]
    run = jobs[0]["last_id"]
    scope = {"org": "acme", "repo": "acme/widgets", "workflow": evil, "job": evil}
    for url in ("/jobs", "/job?" + urlencode(scope), f"/runs/{run}", "/usage?by=job"):
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.get_data(as_text=True)
        assert "<img src=x" not in body and "<script>alert" not in body, url
        assert "&lt;img src=x" in body or "\\u003cimg src=x" in body, url
