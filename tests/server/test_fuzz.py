"""Fuzzing the HTTP API with schemathesis against its own OpenAPI document.

Every operation of ``GET /api/v1/openapi.json`` gets generated requests, valid and
invalid (schemathesis' positive and negative modes), each sent twice: with the
right credentials (the push token of the body's own scope, computed per case, or
the read token) and without any.  Checked on every response: no 5xx, and status
code, content type, headers and body conform to the document.

Once on an in-process app (Flask's WSGI interface, fast, many examples) and once
on a live ``resmon serve`` (gunicorn, real HTTP), where the raw-URI path handling
and the production server's own answers come into play.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from server_proc import ServerProcess, sample_payload

from resmon.server import ServerConfig, create_app
from resmon.server.openapi import build_openapi
from resmon.tokens import push_token

HMAC_KEY = "fuzz-hmac-key-0123"
READ_TOKEN = "fuzz-read-token"
# Not negative_data_rejection: the API ignores unknown query parameters and fields
# on purpose (the wire contract is additive), which that check counts as failures.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Bounded: the whole file stays well under a minute and a half on two cores.  A
# deeper run by hand: RESMON_FUZZ_EXAMPLES=500 pytest tests/test_fuzz.py
DEEP = int(os.environ.get("RESMON_FUZZ_EXAMPLES", "0"))
IN_PROCESS = settings(
    max_examples=DEEP or 50,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=False,
)
LIVE = settings(max_examples=DEEP or 25, deadline=None, suppress_health_check=list(HealthCheck))

schema = schemathesis.openapi.from_dict(build_openapi())


def credentials(case) -> dict[str, str]:
    """The right bearer token for this case: the push token of the scope the body
    names (when it names one), or the read token."""
    pushed = ("/api/v1/metrics", "/api/v1/metrics/live")
    if case.operation.method.upper() == "POST" and case.operation.path in pushed:
        body = case.body if isinstance(case.body, dict) else {}
        execution = body.get("execution") if isinstance(body.get("execution"), dict) else {}
        scope = [execution.get(k, "") for k in ("organization", "repository", "workflow", "job")]
        if all(isinstance(v, str) for v in scope):
            return {"Authorization": f"Bearer {push_token(HMAC_KEY, *scope)}"}
        return {"Authorization": "Bearer " + "0" * 64}
    return {"Authorization": f"Bearer {READ_TOKEN}"}


def anonymous(case) -> dict[str, str]:
    # schemathesis may have generated an Authorization header of its own; drop it.
    if case.headers:
        case.headers.pop("Authorization", None)
    return {}


def seed(post) -> None:
    """A few stored runs, so that reads return rows and not only empty lists."""
    for i in range(3):
        payload = sample_payload(str(i), organization="o", repository="o/r", workflow="w", job="j")
        e = payload["execution"]
        token = push_token(HMAC_KEY, e["organization"], e["repository"], e["workflow"], e["job"])
        post(payload, {"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    app = create_app(
        ServerConfig(
            database=str(tmp_path_factory.mktemp("fuzz") / "fuzz.db"),
            read_token=READ_TOKEN,
            hmac_keys=(HMAC_KEY,),
            max_body=64 * 1024,
        )
    )
    client = app.test_client()
    seed(lambda body, headers: client.post("/api/v1/metrics", json=body, headers=headers))
    return app


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with ServerProcess(
        tmp_path_factory.mktemp("fuzz-live") / "fuzz.db",
        read_token=READ_TOKEN,
        hmac_keys=(HMAC_KEY,),
        extra_args=("--max-body=64Ki",),
    ) as server:
        seed(lambda body, headers: server.push(body, headers=headers))
        yield server
    assert server.returncode == 0, server.stderr_text()[-3000:]


@schema.parametrize()
@IN_PROCESS
def test_fuzz_in_process(case, fuzz_app):
    case.call_and_validate(app=fuzz_app, headers=credentials(case), checks=CHECKS)
    case.call_and_validate(app=fuzz_app, headers=anonymous(case), checks=CHECKS)


def bounded(case) -> None:
    """GET /api/v1/events streams until the client leaves; the fuzzer reads answers
    whole, so on the live server each stream is told to end after 0.2 s (its other
    parameters stay fuzzed; in process the answer ends by itself)."""
    if case.operation.path == "/api/v1/events":
        case.query = {**(case.query or {}), "timeout_seconds": "0.2"}


@pytest.mark.slow
@schema.parametrize()
@LIVE
def test_fuzz_live_server(case, live):
    bounded(case)
    case.call_and_validate(base_url=live.url, headers=credentials(case), checks=CHECKS, timeout=10)
    case.call_and_validate(base_url=live.url, headers=anonymous(case), checks=CHECKS, timeout=10)


def test_document_covers_every_operation():
    """The fuzzing reaches every route: nothing of the API is left out of the document."""
    operations = {
        (result.ok().method.upper(), result.ok().path) for result in schema.get_all_operations()
    }
    assert ("POST", "/api/v1/metrics") in operations
    assert ("GET", "/metrics") in operations
    assert len(operations) >= 10


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/runs/%C2%B3",  # '³': str.isdigit() is true, int() refuses it
        "/api/v1/runs/%E2%91%A0",  # '①'
        "/api/v1/metrics/repo/o/o%2Fr/w/j?limit=%C2%B2",
        "/api/v1/jobs/o/o%2Fr/w/j/runs?limit=%C2%B3",
        "/api/v1/top?limit=%E2%91%A0",
    ],
)
def test_unicode_digits_are_client_errors(fuzz_app, path):
    """Found by the live fuzzing: these were 500s."""
    response = fuzz_app.test_client().get(path, headers={"Authorization": f"Bearer {READ_TOKEN}"})
    assert response.status_code in (400, 404), response.text
    assert "error" in response.json


@pytest.mark.slow
def test_http_server_errors_are_json_and_documented(live):
    """Found by the live fuzzing: gunicorn answered an over-long request line with an
    HTML 414 that the document did not list.  Its own errors are JSON now."""
    import socket

    import requests

    long_line = requests.get(live.url + "/api/v1/jobs?x=" + "a" * 5000, timeout=10)
    many_headers = requests.get(
        live.url + "/health", headers={f"X-H{i}": "v" for i in range(120)}, timeout=10
    )
    for response, status in ((long_line, 414), (many_headers, 431)):
        assert response.status_code == status
        assert response.headers["Content-Type"] == "application/json"
        assert set(response.json()) == {"error"}
        for path in schema.raw_schema["paths"].values():
            for operation in path.values():
                if isinstance(operation, dict) and "responses" in operation:
                    assert str(status) in operation["responses"]
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as conn:
        conn.sendall(b"GARBAGE\r\n\r\n")
        answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.endswith(b'{"error":"bad request"}')
