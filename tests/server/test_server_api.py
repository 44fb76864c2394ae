"""The wire API through Flask's test client, on SQLite and on PostgreSQL.

Every status code of the API is here; end-to-end behaviour through the real
server process is in test_server_e2e.py.
"""

from __future__ import annotations

import copy
import json
import logging

import pytest
from server_proc import sample_payload

from resmon.server import ServerConfig, create_app, state
from resmon.store import db as dbmod
from resmon.store.models import ContainerStat, Run
from resmon.tokens import push_token

READ = "read-token-0123456789"
KEY = "hmac-key-current"
OLD_KEY = "hmac-key-previous"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "metrics.db")
    return request.getfixturevalue("postgres_url")


def make_app(database, **overrides):
    config = ServerConfig(
        database=database,
        read_token=READ,
        hmac_keys=(KEY, OLD_KEY),
        max_body=64 * 1024,
        **overrides,
    )
    return create_app(config)


@pytest.fixture
def app(database):
    app = make_app(database)
    yield app
    state(app).database.close()


@pytest.fixture
def client(app):
    return app.test_client()


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def push_auth(payload, key=KEY):
    e = payload["execution"]
    return auth(push_token(key, e["organization"], e["repository"], e["workflow"], e["job"]))


def push(client, payload, key=KEY, headers=None):
    return client.post(
        "/api/v1/metrics", json=payload, headers={**push_auth(payload, key), **(headers or {})}
    )


def query(client, path="/api/v1/metrics/repo/my-org/my-org%2Fmy-repo/ci.yml/build", **kwargs):
    return client.get(path, headers=auth(READ), **kwargs)


def stored_runs():
    return Run.select().count()


# --- push ------------------------------------------------------------------


def test_push_stores_run_and_containers_and_answers_201_created(client):
    r = push(client, sample_payload("100"))
    assert r.status_code == 201, r.data
    assert r.get_json() == {"id": r.get_json()["id"], "status": "created"}
    assert r.data == b'{"id":%d,"status":"created"}' % r.get_json()["id"]
    run = Run.get_by_id(r.get_json()["id"])
    assert (run.organization, run.repository, run.workflow, run.job, run.run_id) == (
        "my-org",
        "my-org/my-repo",
        "ci.yml",
        "build",
        "100",
    )
    assert run.cpu_percent_peak == 95.0 and run.cpu_percent_p95 == 80.0
    assert run.mem_bytes_peak == 2_000_000_000 and run.mem_bytes_p95 == 1_800_000_000
    assert run.duration_seconds == 600.0 and run.sample_count == 600
    assert run.start_time.isoformat() == "2026-01-02T03:04:05"
    [container] = list(run.containers)
    assert container.name == "runner"
    assert container.cpu_cores_peak == 2.0 and container.cpu_cores_p95 == 1.5
    assert container.memory_bytes_peak == 1_073_741_824 and container.memory_bytes_avg == 4.5e8
    assert container.limit_cpu_cores == 2.0 and container.limit_memory_bytes == 2_147_483_648
    assert container.cpu_seconds == 420.5
    assert json.loads(run.payload) == sample_payload("100")["run_summary"]


def test_push_token_for_bare_repository_accepts_full_spelling_and_back(client):
    payload = sample_payload("1", repository="my-org/my-repo")
    bare = auth(push_token(KEY, "my-org", "my-repo", "ci.yml", "build"))
    assert client.post("/api/v1/metrics", json=payload, headers=bare).status_code == 201
    payload = sample_payload("2", repository="my-repo")
    full = auth(push_token(KEY, "my-org", "my-org/my-repo", "ci.yml", "build"))
    assert client.post("/api/v1/metrics", json=payload, headers=full).status_code == 201
    # Both are stored under the canonical spelling.
    assert {r.repository for r in Run.select()} == {"my-org/my-repo"}


def test_every_hmac_key_verifies_rotation(client):
    assert push(client, sample_payload("1"), key=OLD_KEY).status_code == 201
    assert push(client, sample_payload("2"), key="some-other-key").status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
        auth(READ),  # the read token cannot push
        auth(KEY),  # the HMAC key itself is never a bearer token
        auth(push_token(KEY, "my-org", "my-org/my-repo", "ci.yml", "other-job")),  # other scope
    ],
    ids=["none", "basic", "empty", "read-token", "hmac-key", "other-scope"],
)
def test_push_without_the_scopes_push_token_is_401_and_stores_nothing(client, headers):
    r = client.post("/api/v1/metrics", json=sample_payload(), headers=headers)
    assert r.status_code == 401
    assert r.is_json and "error" in r.get_json()
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert stored_runs() == 0


def _mutate(path, value):
    payload = sample_payload()
    target = payload
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return payload


BAD_PAYLOADS = {
    "missing run_id": _mutate(("execution", "run_id"), KeyError),
    "empty run_id": _mutate(("execution", "run_id"), ""),
    "run_id object": _mutate(("execution", "run_id"), {"a": 1}),
    "execution not object": _mutate(("execution",), "x"),
    "summary not object": _mutate(("run_summary",), [1, 2]),
    "stat wrong type": _mutate(("run_summary", "cpu_total_percent"), {"peak": "high"}),
    "negative number": _mutate(("run_summary", "duration_seconds"), -1),
    "oversized number": _mutate(("run_summary", "mem_used_bytes"), {"peak": 1e300}),
    "huge integer": _mutate(("run_summary", "sample_count"), 10**30),
    "bad time": _mutate(("run_summary", "start_time"), "yesterday"),
    "NUL in scope": _mutate(("execution", "job"), "build\x00evil"),
    "control char in scope": _mutate(("execution", "workflow"), "ci\nyml"),
    "scope too long": _mutate(("execution", "job"), "j" * 256),
    "containers not list": _mutate(("run_summary", "containers"), {"name": "x"}),
    "bool as number": _mutate(("run_summary", "duration_seconds"), True),
}


@pytest.mark.parametrize("payload", BAD_PAYLOADS.values(), ids=BAD_PAYLOADS.keys())
def test_invalid_payload_is_400_with_json_error_and_stores_nothing(client, payload):
    # Signed correctly where a scope exists, so only validation can reject it.
    execution = payload.get("execution") if isinstance(payload.get("execution"), dict) else {}
    token = push_token(
        KEY,
        *(str(execution.get(k, "")) for k in ("organization", "repository", "workflow", "job")),
    )
    body = json.dumps(payload)  # stdlib json: writes integers beyond 64 bits too
    r = client.post(
        "/api/v1/metrics", data=body, headers={**auth(token), "Content-Type": "application/json"}
    )
    assert r.status_code == 400, r.data
    assert set(r.get_json()) == {"error"} and r.get_json()["error"]
    assert stored_runs() == 0


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"not json", b'{"execution": NaN}', b"[1e999]", b"\xff\xfe", b'{"a":1}garbage'],
    ids=["empty", "truncated", "text", "NaN", "infinity", "binary", "trailing"],
)
def test_malformed_json_is_400_invalid_json_payload(client, body):
    r = client.post(
        "/api/v1/metrics",
        data=body,
        headers={**push_auth(sample_payload()), "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert r.data == b'{"error":"invalid JSON payload"}'
    assert stored_runs() == 0


def test_body_over_max_body_is_413_and_stores_nothing(client):
    payload = sample_payload(padding="x" * (70 * 1024))
    r = push(client, payload)
    assert r.status_code == 413
    assert r.get_json() == {"error": "request body too large"}
    assert stored_runs() == 0


def test_body_without_content_length_is_read_bounded(client):
    """A chunked body (no Content-Length) is cut off at the limit, not trusted."""
    import io

    body = json.dumps(sample_payload(padding="x" * (70 * 1024))).encode()
    r = client.post(
        "/api/v1/metrics",
        input_stream=io.BytesIO(body),
        headers={**push_auth(sample_payload()), "Content-Type": "application/json"},
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
    assert r.status_code == 413
    assert stored_runs() == 0
    small = json.dumps(sample_payload("2")).encode()
    r = client.post(
        "/api/v1/metrics",
        input_stream=io.BytesIO(small),
        headers={**push_auth(sample_payload()), "Content-Type": "application/json"},
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
    assert r.status_code == 201, r.data


# --- idempotency -------------------------------------------------------------


def test_same_idempotency_key_and_body_is_stored_once(client):
    first = push(client, sample_payload("7"), headers={"Idempotency-Key": "key-1"})
    again = push(client, sample_payload("7"), headers={"Idempotency-Key": "key-1"})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.get_json() == {"id": first.get_json()["id"], "status": "duplicate"}
    assert stored_runs() == 1


def test_payload_idempotency_key_field_works_like_the_header(client):
    payload = {**sample_payload("7"), "idempotency_key": "key-2"}
    first = push(client, payload)
    again = push(client, payload, headers={"Idempotency-Key": "key-2"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert Run.get_by_id(first.get_json()["id"]).idempotency_key == "key-2"


def test_same_key_with_a_different_body_is_422(client):
    assert push(client, sample_payload("7"), headers={"Idempotency-Key": "k"}).status_code == 201
    other = sample_payload("8")
    r = push(client, other, headers={"Idempotency-Key": "k"})
    assert r.status_code == 422
    assert "error" in r.get_json()
    assert stored_runs() == 1


def test_repository_spelling_and_key_order_do_not_change_the_body(client):
    payload = sample_payload("7", repository="my-org/my-repo")
    assert push(client, payload, headers={"Idempotency-Key": "k"}).status_code == 201
    bare = copy.deepcopy(payload)
    bare["execution"]["repository"] = "my-repo"
    bare["run_summary"] = dict(reversed(list(bare["run_summary"].items())))
    assert push(client, bare, headers={"Idempotency-Key": "k"}).status_code == 200


@pytest.mark.parametrize(
    "headers, field",
    [
        ({"Idempotency-Key": "a"}, "b"),
        ({"Idempotency-Key": "x" * 256}, None),
        ({"Idempotency-Key": "a b"}, None),
        ({}, 5),
    ],
    ids=["header-vs-field", "too-long", "space", "not-string"],
)
def test_bad_idempotency_key_is_400(client, headers, field):
    payload = sample_payload()
    if field is not None:
        payload["idempotency_key"] = field
    r = push(client, payload, headers=headers)
    assert r.status_code == 400 and "error" in r.get_json()
    assert stored_runs() == 0


def test_keyless_retry_of_the_same_run_is_a_duplicate(client):
    first = push(client, sample_payload("9"))
    # Same instant written differently: still the same run.
    again = push(client, sample_payload("9", start_time="2026-01-02T03:04:05.000+00:00"))
    assert again.status_code == 200
    assert again.get_json() == {"id": first.get_json()["id"], "status": "duplicate"}
    # Another attempt, another start time, or another job is another run.
    attempt = sample_payload("9")
    attempt["execution"]["run_attempt"] = "2"
    assert push(client, attempt).status_code == 201
    assert push(client, sample_payload("9", start_time="2026-01-02T04:00:00Z")).status_code == 201
    assert push(client, sample_payload("9", job="test")).status_code == 201
    assert stored_runs() == 4


def test_keyless_runs_without_start_time_dedupe_on_identical_body_only(client):
    a = sample_payload("9")
    del a["run_summary"]["start_time"]
    b = copy.deepcopy(a)
    b["run_summary"]["sample_count"] = 601
    assert push(client, a).status_code == 201
    assert push(client, a).status_code == 200
    assert push(client, b).status_code == 201


# --- mint ------------------------------------------------------------------


def test_mint_matches_the_design_test_vector(tmp_path):
    app = create_app(
        ServerConfig(database=str(tmp_path / "m.db"), read_token=READ, hmac_keys=("key", "older"))
    )
    r = app.test_client().post(
        "/api/v1/token",
        json={"organization": "org", "repository": "repo", "workflow": "wf", "job": "job"},
        headers=auth(READ),
    )
    assert r.status_code == 200
    assert r.get_json() == {
        "token": "dd28e8025f8b67eb5720dcc8aed4354c0f2303bb927471dc1b7d85e95f0a5163"
    }


def test_minted_token_pushes(client):
    scope = {
        "organization": "my-org",
        "repository": "my-repo",
        "workflow": "ci.yml",
        "job": "build",
    }
    token = client.post("/api/v1/token", json=scope, headers=auth(READ)).get_json()["token"]
    r = client.post("/api/v1/metrics", json=sample_payload(), headers=auth(token))
    assert r.status_code == 201


@pytest.mark.parametrize("missing", ["organization", "repository", "workflow", "job"])
def test_mint_with_a_missing_field_is_400(client, missing):
    scope = {"organization": "o", "repository": "o/r", "workflow": "w", "job": "j"}
    del scope[missing]
    r = client.post("/api/v1/token", json=scope, headers=auth(READ))
    assert r.status_code == 400
    assert r.get_json() == {"error": f"missing field: {missing}"}


def test_mint_bad_json_and_control_characters_are_400(client):
    r = client.post("/api/v1/token", data=b"{", headers=auth(READ))
    assert (r.status_code, r.get_json()) == (400, {"error": "invalid JSON payload"})
    scope = {"organization": "o", "repository": "o/r", "workflow": "w", "job": "j\x00"}
    assert client.post("/api/v1/token", json=scope, headers=auth(READ)).status_code == 400


def test_mint_without_hmac_key_is_400(tmp_path):
    app = create_app(ServerConfig(database=str(tmp_path / "m.db"), read_token=READ, hmac_keys=()))
    scope = {"organization": "o", "repository": "o/r", "workflow": "w", "job": "j"}
    r = app.test_client().post("/api/v1/token", json=scope, headers=auth(READ))
    assert (r.status_code, r.get_json()) == (400, {"error": "no HMAC key configured"})


@pytest.mark.parametrize(
    "token", [None, KEY, OLD_KEY, "wrong"], ids=["none", "hmac-key", "old-key", "wrong"]
)
def test_mint_needs_the_read_token(client, token):
    scope = {"organization": "o", "repository": "o/r", "workflow": "w", "job": "j"}
    r = client.post("/api/v1/token", json=scope, headers=auth(token) if token else {})
    assert r.status_code == 401 and r.get_json() == {"error": "unauthorized"}


def test_push_token_cannot_mint_or_read(client):
    token = push_auth(sample_payload())
    scope = {
        "organization": "my-org",
        "repository": "my-org/my-repo",
        "workflow": "ci.yml",
        "job": "build",
    }
    assert client.post("/api/v1/token", json=scope, headers=token).status_code == 401
    assert (
        client.get("/api/v1/metrics/repo/my-org/my-repo/ci.yml/build", headers=token).status_code
        == 401
    )


# --- query -----------------------------------------------------------------


def test_query_returns_rows_newest_first_with_payload_objects(client):
    ids = [
        push(client, sample_payload(str(n), start_time=f"2026-01-02T03:0{n}:00Z")).get_json()["id"]
        for n in range(3)
    ]
    push(client, sample_payload("x", job="other"))
    r = query(client)
    assert r.status_code == 200
    rows = r.get_json()
    assert [row["id"] for row in rows] == ids[::-1]
    assert set(rows[0]) == {
        "id",
        "organization",
        "repository",
        "workflow",
        "job",
        "run_id",
        "received_at",
        "payload",
    }
    assert rows[0]["repository"] == "my-org/my-repo" and rows[0]["run_id"] == "2"
    assert (
        rows[0]["payload"] == sample_payload("2", start_time="2026-01-02T03:02:00Z")["run_summary"]
    )
    assert rows[0]["received_at"].endswith("Z")
    assert "X-Resmon-Truncated" not in r.headers


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/metrics/repo/my-org/my-org%2Fmy-repo/ci.yml/build",
        "/api/v1/metrics/repo/my-org/my-org%2fmy-repo/ci.yml/build",
        "/api/v1/metrics/repo/my-org/my-org/my-repo/ci.yml/build",
        "/api/v1/metrics/repo/my-org/my-repo/ci.yml/build",
    ],
    ids=["encoded", "encoded-lowercase", "two-segments", "bare-name"],
)
def test_query_repository_encodings(client, path):
    push(client, sample_payload("1"))
    r = query(client, path)
    assert r.status_code == 200
    assert [row["run_id"] for row in r.get_json()] == ["1"]


def test_query_unknown_scope_is_an_empty_list(client):
    push(client, sample_payload("1"))
    r = query(client, "/api/v1/metrics/repo/my-org/my-org%2Fmy-repo/ci.yml/nope")
    assert (r.status_code, r.get_json()) == (200, [])


def test_query_wrong_number_of_segments_is_404(client):
    for path in (
        "/api/v1/metrics/repo/a/b/c",
        "/api/v1/metrics/repo/a/b/c/d/e/f",
        "/api/v1/metrics/repo/a//c/d",
    ):
        r = query(client, path)
        assert r.status_code == 404 and r.get_json() == {"error": "not found"}, path


def test_query_needs_the_read_token(client):
    for headers in ({}, auth(KEY), auth("nope")):
        r = client.get("/api/v1/metrics/repo/my-org/my-repo/ci.yml/build", headers=headers)
        assert r.status_code == 401


def test_query_limit_since_until(client):
    from datetime import datetime

    for n in range(5):
        push(client, sample_payload(str(n), start_time=f"2026-01-02T03:0{n}:00Z"))
    for n, run in enumerate(Run.select().order_by(Run.id)):
        run.received_at = datetime(2026, 1, 1, n)
        run.save()
    r = query(client, query_string={"limit": "2"})
    assert [row["run_id"] for row in r.get_json()] == ["4", "3"]
    assert r.headers["X-Resmon-Truncated"] == "true" and r.headers["X-Total-Count"] == "5"
    r = query(
        client, query_string={"since": "2026-01-01T01:00:00Z", "until": "2026-01-01T03:00:00Z"}
    )
    assert [row["run_id"] for row in r.get_json()] == ["2", "1"]
    assert r.get_json()[0]["received_at"] == "2026-01-01T02:00:00Z"
    for bad in ({"limit": "0"}, {"limit": "x"}, {"limit": "10001"}, {"since": "yesterday"}):
        r = query(client, query_string=bad)
        assert r.status_code == 400 and "error" in r.get_json(), bad


def test_query_without_limit_returns_every_run_as_the_go_receiver(client):
    """No row cap without ?limit (the Go receiver returned every row): the list is
    streamed in batches, so 1,001 runs come back whole, newest first."""
    from resmon.schema import validate_push
    from resmon.store.write import store_push

    ids = [store_push(validate_push(sample_payload(str(n)))).id for n in range(1001)]
    r = query(client)
    assert [row["id"] for row in r.get_json()] == ids[::-1]
    assert "X-Resmon-Truncated" not in r.headers
    r = query(client, query_string={"limit": "1000"})
    assert len(r.get_json()) == 1000
    assert r.headers["X-Resmon-Truncated"] == "true" and r.headers["X-Total-Count"] == "1001"


# --- health, errors, logs ------------------------------------------------------


def test_health_endpoints(client, app):
    assert client.get("/health").data == b'{"status":"ok"}'
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready"}
    state(app).draining = True
    r = client.get("/readyz")
    assert (r.status_code, r.get_json()) == (
        503,
        {"status": "unavailable", "reason": "shutting down"},
    )


def test_readyz_is_503_when_the_schema_is_not_migrated(tmp_path):
    app = create_app(
        ServerConfig(database=str(tmp_path / "m.db"), read_token=READ, hmac_keys=(KEY,))
    )
    state(app).database.execute_sql("UPDATE schema_version SET version = 1")
    r = app.test_client().get("/readyz")
    assert r.status_code == 503
    assert r.get_json() == {
        "status": "unavailable",
        "reason": f"database schema at version 1, expected {dbmod.LATEST_VERSION}",
    }
    assert (
        app.test_client().get("/healthz").status_code == 200
    )  # liveness never touches the database


def test_unknown_route_404_and_wrong_method_405_are_json(client):
    r = client.get("/nope")
    assert (r.status_code, r.get_json()) == (404, {"error": "not found"})
    r = client.get("/api/v1/metrics")
    assert (r.status_code, r.get_json()) == (405, {"error": "method not allowed"})
    assert r.headers["Allow"] == "OPTIONS, POST"
    r = client.delete("/api/v1/token", headers=auth(READ))
    assert r.status_code == 405 and r.is_json


def test_internal_errors_are_json_without_details_and_logged(tmp_path, caplog):
    app = create_app(
        ServerConfig(database=str(tmp_path / "m.db"), read_token=READ, hmac_keys=(KEY,))
    )
    client = app.test_client()
    # A real failure inside a request: the table vanished under the server.
    state(app).database.execute_sql("DROP TABLE run_containers")
    state(app).database.execute_sql("DROP TABLE runs")
    with caplog.at_level(logging.ERROR):
        r = client.get("/api/v1/metrics/repo/my-org/my-repo/ci.yml/build", headers=auth(READ))
    assert r.status_code == 500
    assert r.data == b'{"error":"internal server error"}'
    assert any(rec.exc_info and "runs" in str(rec.exc_info[1]) for rec in caplog.records)
    # A push that hits the broken database is a 500 or 503, never a traceback.
    r = push(client, sample_payload())
    assert r.status_code in (500, 503) and set(r.get_json()) == {"error"}
    assert b"Traceback" not in r.data


def test_request_log_lines_carry_no_secrets_or_query_strings(client, caplog):
    payload = sample_payload()
    with caplog.at_level(logging.DEBUG):
        push(client, payload)
        query(client, query_string={"limit": "5"})
        client.post(
            "/api/v1/token",
            json={"organization": "o", "repository": "o/r", "workflow": "w", "job": "j"},
            headers=auth(READ),
        )
    lines = [r for r in caplog.records if r.name == "resmon.server.request"]
    assert [(r.method, r.status) for r in lines] == [("POST", 201), ("GET", 200), ("POST", 200)]
    assert lines[1].path == "/api/v1/metrics/repo/my-org/my-org/my-repo/ci.yml/build"
    assert lines[1].route == "/api/v1/metrics/repo/<path:scope>"
    assert all(isinstance(r.duration_ms, float) for r in lines)
    secrets = [READ, KEY, OLD_KEY, push_auth(payload)["Authorization"].split()[1]]
    from resmon.server.logs import JsonFormatter

    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert all(secret not in text for secret in secrets)
    assert "limit=5" not in text


def test_push_outcome_hooks(client, app):
    outcomes = []
    state(app).hooks.push_result.append(outcomes.append)
    push(client, sample_payload("1"))
    push(client, sample_payload("1"))
    client.post("/api/v1/metrics", json=sample_payload("2"))
    push(client, _mutate(("execution", "run_id"), ""))
    push(client, sample_payload("3", padding="x" * 70_000))
    assert outcomes == ["created", "duplicate", "rejected_auth", "rejected_input", "too_large"]


def test_container_rows_go_with_their_run(client):
    run_id = push(client, sample_payload("1")).get_json()["id"]
    assert ContainerStat.select().where(ContainerStat.run == run_id).count() == 1
    Run.delete_by_id(run_id)
    assert ContainerStat.select().count() == 0  # ON DELETE CASCADE (foreign keys on)


# --- idempotency per scope, a run stored with another body, wide numbers -----


def test_a_key_is_per_scope_not_global(client):
    """One scope's Idempotency-Key neither refuses nor reveals another scope's run."""
    theirs = sample_payload("12345", organization="attacker", repository="attacker/x")
    ours = sample_payload("12345")
    first = push(client, theirs, headers={"Idempotency-Key": "run-12345"})
    assert first.status_code == 201, first.get_json()
    second = push(client, ours, headers={"Idempotency-Key": "run-12345"})
    assert second.status_code == 201, second.get_json()
    assert second.get_json()["id"] != first.get_json()["id"]
    again = push(client, ours, headers={"Idempotency-Key": "run-12345"})
    assert (again.status_code, again.get_json()) == (
        200,
        {**second.get_json(), "status": "duplicate"},
    )


def test_another_key_for_a_stored_run_with_another_body_is_409(client):
    stored = sample_payload("77")
    assert push(client, stored, headers={"Idempotency-Key": "K1"}).status_code == 201
    changed = copy.deepcopy(stored)
    changed["run_summary"]["sample_count"] = 601
    conflict = push(client, changed, headers={"Idempotency-Key": "K2"})
    assert conflict.status_code == 409, conflict.get_json()
    assert "already stored with a different run_summary" in conflict.get_json()["error"]
    same = push(client, stored, headers={"Idempotency-Key": "K2"})
    assert (same.status_code, same.get_json()["status"]) == (200, "duplicate")
    assert Run.select().where(Run.run_id == "77").count() == 1


def test_numbers_the_validator_allows_fit_the_columns(client):
    """3e9 overflowed PostgreSQL int4 columns (a 500 the collector retried forever)."""
    payload = sample_payload("wide", sample_count=3_000_000_000)
    payload["run_summary"]["containers"][0]["oom_kills"] = 2**62 - 1
    response = push(client, payload)
    assert response.status_code == 201, response.get_json()
    row = Run.get_by_id(response.get_json()["id"])
    assert row.sample_count == 3_000_000_000
    assert ContainerStat.get(ContainerStat.run == row).oom_kills == 2**62 - 1


def test_scope_fields_are_bounded_in_bytes_not_characters(client):
    """255 four-byte characters per field made a 4,112-byte index entry, which
    PostgreSQL refuses (a 5xx); 255 bytes of UTF-8 per field is the bound."""
    wide = "\U0002000b" * 64  # 256 bytes, 64 characters
    payload = sample_payload("wide", workflow=wide)
    response = push(client, payload)
    assert response.status_code == 400, response.get_json()
    assert "longer than 255 bytes" in response.get_json()["error"]
    minted = client.post(
        "/api/v1/token",
        json={"organization": "o", "repository": "o/r", "workflow": wide, "job": "j"},
        headers=auth(READ),
    )
    assert minted.status_code == 400
    at_limit = sample_payload(
        "edge",
        organization="o" * 255,
        repository="r" * 255,
        workflow="\U0002000b" * 63 + "abc",
        job="j" * 255,
    )
    stored = push(client, at_limit)
    assert stored.status_code == 201, stored.get_json()
