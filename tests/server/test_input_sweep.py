"""No input gets a 5xx: every route, every parameter, hostile values; on SQLite and
PostgreSQL, through Flask's test client and against a real ``resmon serve``.

The cases that were 500s before, each asserted with the status it gets now:

- chunked bodies gunicorn cannot parse (a chunk size of ``zz``, ``-5``, ``0x5``, a
  missing CRLF, a bad chunk extension or trailer, a body cut short): 400;
- JSON nested 100 to 5,000 levels in ``execution`` or ``run_summary`` (orjson
  parses 1,024 levels but serialises 254): 400, nothing stored;
- NUL in a path segment (404: no stored name holds one) or a query value (400),
  which PostgreSQL text cannot hold;
- ``since``/``until``/``period`` past what a datetime holds (``100000000d``,
  ``until=0001-01-01`` with a period...): 400 naming the parameter;
- limits of thousands of digits (``int()`` refuses over 4,300): 400 or capped.

Then the sweep: each parameter of each route gets every value of :data:`HOSTILE`,
and no answer may be a 5xx or an error that is not JSON.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import requests
from server_proc import ServerProcess, sample_payload

from resmon.server import ServerConfig, create_app, state
from resmon.store.models import Run
from resmon.tokens import push_token

READ = "sweep-read-token-0123456789abcdef"
KEY = "sweep-hmac-key-0123456789abcdef"
SCOPE = {"organization": "o", "repository": "o/r", "workflow": "w", "job": "j"}
GO_GET = "/api/v1/metrics/repo/{organization}/{repository}/{workflow}/{job}"
JOB = "/api/v1/jobs/{organization}/{repository}/{workflow}/{job}"


class Raw(str):
    """A value already percent-encoded for a URL: sent as it is (invalid UTF-8,
    an overlong NUL...)."""


# Strings a client may put in any path segment, query value, header or JSON string.
HOSTILE: list[str] = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "%00",
    "\x01\x1f\x7f",
    Raw("%ED%A0%80"),  # a UTF-16 surrogate in UTF-8
    Raw("%C0%80"),  # an overlong NUL
    Raw("%FF%FE"),
    "-1",
    "-5d",
    "0",
    "00000000000000000000000000000001",
    "1" * 30,
    "9" * 5000,
    str(2**63),
    "1e308",
    "NaN",
    "-inf",
    "100000000d",
    "999999999w",
    "9" * 30 + "d",
    "1.5e9h",
    "\u0663",  # ARABIC-INDIC DIGIT THREE
    "\uff11\uff12",  # FULLWIDTH 12
    "\u00b2",  # SUPERSCRIPT TWO
    "\u0663d",
    "0001-01-01",
    "0001-01-01T00:00:00+01:00",
    "0000-00-00",
    "9999-12-31",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-01:00",
    "2026-02-30",
    "x" * 10240,
    "\u00e9" * 3000,
    "a" * 256,
    "../..",
    "/",
    "'; DROP TABLE runs; --",
    "\u202e",
    "[]",
    "null",
]
# What JSON bodies may hold besides strings.
HOSTILE_JSON: list[Any] = [
    -1,
    0,
    1.5,
    2**31,
    3_000_000_000,
    2**62,
    2**63,
    2**64,
    10**30,
    1e308,
    -1e308,
    True,
    None,
    [],
    {},
    [[[[[[[[[[]]]]]]]]]],
    "a\u0000b",
]


# --- the requests ---------------------------------------------------------------


@dataclass
class Case:
    method: str
    path: str  # percent-encoded, with its query string
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    push: bool = False  # sign with the push token of the body's scope


def _encode(value: str) -> str:
    return str(value) if isinstance(value, Raw) else quote(value, safe="")


def _url(template: str, path: dict[str, str], query: dict[str, str]) -> str:
    url = template.format(**{k: _encode(v) for k, v in path.items()})
    if query:
        url += "?" + "&".join(f"{k}={_encode(v)}" for k, v in query.items())
    return url


# Each read route: its template, its path parameters' and query parameters' good values.
READ_ROUTES: list[tuple[str, dict[str, str], dict[str, str]]] = [
    (GO_GET, SCOPE, {"limit": "5", "since": "2020-01-01T00:00:00Z", "until": "2999-01-01Z"}),
    ("/api/v1/jobs", {}, {"organization": "o", "repository": "o/r"}),
    (JOB + "/runs", SCOPE, {"limit": "5", "since": "3650d", "until": "2999-01-01"}),
    (
        JOB + "/trend",
        SCOPE,
        {"container": "runner", "by": "day", "limit": "5", "since": "3650d", "until": "1d"},
    ),
    ("/api/v1/runs/{id}", {"id": "1"}, {}),
    (
        "/api/v1/top",
        {},
        {"metric": "cpu", "scope": "host", "period": "3650d", "until": "2999-01-01", "limit": "5"},
    ),
    (JOB + "/recommendation", SCOPE, {"since": "3650d", "until": "2999-01-01", "runs": "5"}),
    (
        "/api/v1/recommendations",
        {},
        {"since": "3650d", "until": "2999-01-01", "runs": "5", "by": "risk", "limit": "5"},
    ),
    ("/api/v1/regressions", {}, {"since": "3650d", "until": "2999-01-01", "limit": "5"}),
    ("/api/v1/live", {}, dict(SCOPE)),
    (
        "/api/v1/runs/{id}/samples",
        {"id": "1"},
        {"granularity": "1m", "since": "2020-01-01T00:00:00Z", "until": "2999-01-01T00:00:00Z"},
    ),
    ("/health", {}, {"x": "1"}),
    ("/healthz", {}, {"x": "1"}),
    ("/readyz", {}, {"x": "1"}),
    ("/api/v1/openapi.json", {}, {"x": "1"}),
    ("/metrics", {}, {"x": "1"}),
]
# Where hostile values go in a push: a path into the payload.
PUSH_FIELDS: list[tuple[str, ...]] = [
    *(("execution", k) for k in ("organization", "repository", "workflow", "job", "run_id")),
    ("execution", "run_attempt"),
    ("execution", "extra"),
    ("run_summary", "start_time"),
    ("run_summary", "end_time"),
    ("run_summary", "duration_seconds"),
    ("run_summary", "cpu_seconds"),
    ("run_summary", "sample_count"),
    ("run_summary", "cpu_total_percent", "peak"),
    ("run_summary", "mem_used_bytes", "p95"),
    ("run_summary", "top_cpu_processes", 0, "pid"),
    ("run_summary", "top_cpu_processes", 0, "name"),
    ("run_summary", "containers", 0, "name"),
    ("run_summary", "containers", 0, "cpu_cores", "p95"),
    ("run_summary", "containers", 0, "memory_bytes", "peak"),
    ("run_summary", "containers", 0, "limit_memory_bytes"),
    ("run_summary", "containers", 0, "cpu_throttled_seconds"),
    ("run_summary", "containers", 0, "oom_kills"),
    # Not checked on a push (a peer may send anything there): the job figures the
    # store derives from them must still never fail a write.
    ("run_summary", "job"),
    ("run_summary", "job", "cpu_cores", "p95"),
    ("run_summary", "job", "memory_bytes", "peak"),
    ("run_summary", "job", "memory_peak", "high"),
    ("run_summary", "job", "memory_kind"),
    ("run_summary", "job", "scope"),
    ("run_summary", "job", "limit_cpu_cores"),
    ("run_summary", "command"),
    ("idempotency_key",),
]


# Where hostile values go in a live batch (POST /api/v1/metrics/live).
LIVE_FIELDS: list[tuple[str, ...]] = [
    ("execution", "job"),
    ("execution", "run_id"),
    ("run",),
    ("run", "run_key"),
    ("run", "start_time"),
    ("run", "host"),
    ("run", "live_interval_seconds"),
    ("run", "mode"),
    ("run", "command_container"),
    ("batch", "seq"),
    ("batch", "samples"),
    ("batch", "samples", 0),
    ("batch", "samples", 0, "t"),
    ("batch", "samples", 0, "elapsed"),
    ("batch", "samples", 0, "host", "cpu_percent"),
    ("batch", "samples", 0, "job"),
    ("batch", "samples", 0, "job", "cpu_seconds"),
    ("batch", "samples", 0, "containers"),
    ("batch", "samples", 0, "containers", "c", "memory_bytes"),
    ("batch", "samples", 0, "containers", "c", "memory_kind"),
    ("batch", "samples", 0, "containers", "c", "limit_cpu_cores"),
]


def _live_body(run_key: str) -> dict[str, Any]:
    figures = {"cpu_cores": 1.0, "memory_bytes": 2**20, "cpu_seconds": 3.0}
    sample = {
        "t": "2026-01-02T03:04:05Z",
        "elapsed": 2.0,
        "host": {"cpu_percent": 10.0, "mem_used_bytes": 2**30, "mem_total_bytes": 2**32},
        "job": dict(figures),
        "containers": {"c": {**figures, "memory_kind": "pss", "limit_cpu_cores": 2.0}},
    }
    return {
        "execution": {**SCOPE, "run_id": "live-1"},
        "run": {
            "run_key": run_key,
            "start_time": sample["t"],
            "host": "h",
            "mode": "wrapper",
            "live_interval_seconds": 15,
            "command_container": "c",
        },
        "batch": {"seq": 0, "samples": [sample]},
    }


def _payload(run_id: str) -> dict[str, Any]:
    body = sample_payload(run_id, **SCOPE)
    # The job block of a collector that measures the job (resmon.store.job_figures).
    stat = {"peak": 1.0, "p99": 1.0, "p95": 0.5, "p75": 0.5, "p50": 0.5, "avg": 0.5}
    body["run_summary"]["job"] = {
        "scope": "containers",
        "cpu_cores": stat,
        "memory_bytes": {k: v * 2**20 for k, v in stat.items()},
        "memory_peak": {"headline": 2**20, "low": 2**19, "high": 2**21, "basis": "sampled"},
        "memory_kind": "pss",
        "limit_cpu_cores": 2.0,
    }
    return body


def _set(obj: Any, where: tuple[Any, ...], value: Any) -> None:
    for step in where[:-1]:
        obj = obj[step]
    obj[where[-1]] = value


def read_cases(values: list[str]) -> Iterator[Case]:
    for template, path, query in READ_ROUTES:
        for name in (*path, *query):
            for value in values:
                p = {**path, name: value} if name in path else path
                q = {**query, name: value} if name in query else query
                yield Case("GET", _url(template, p, q))


def write_cases(values: list[Any]) -> Iterator[Case]:
    for n, value in enumerate(values):
        for where in PUSH_FIELDS:
            body = _payload(f"sweep-{n}-{'.'.join(map(str, where))}")
            _set(body, where, value)
            yield Case("POST", "/api/v1/metrics", body, push=True)
        if (
            isinstance(value, str)
            and value.isascii()
            and value.isprintable()
            and value.strip() == value != ""
        ):
            yield Case(
                "POST", "/api/v1/metrics", _payload(f"k{n}"), {"Idempotency-Key": value}, True
            )
        for name in ("organization", "repository", "workflow", "job"):
            yield Case("POST", "/api/v1/token", {**SCOPE, name: value})
        for where in LIVE_FIELDS:
            body = _live_body(f"sweep-{n}-{'.'.join(map(str, where))}"[:64])
            _set(body, where, value)
            yield Case("POST", "/api/v1/metrics/live", body, push=True)


def all_cases() -> list[Case]:
    return [*read_cases(HOSTILE), *write_cases([*HOSTILE, *HOSTILE_JSON])]


def push_headers(payload: dict[str, Any]) -> dict[str, str]:
    """The push token of the payload's own scope, so a push gets past the token check."""
    execution = payload["execution"]
    scope = [execution.get(k) for k in ("organization", "repository", "workflow", "job")]
    token = push_token(KEY, *scope) if all(isinstance(s, str) for s in scope) else "0" * 64
    return {"Authorization": f"Bearer {token}"}


def headers_for(case: Case) -> dict[str, str]:
    auth = push_headers(case.body) if case.push else {"Authorization": f"Bearer {READ}"}
    return {**auth, **case.headers}


def body_of(case: Case) -> bytes | None:
    # The standard library's JSON: orjson refuses integers past 64 bits, which is
    # exactly what a client may send.
    return None if case.body is None else json.dumps(case.body).encode()


def check(case: Case, status: int, content_type: str, body: bytes) -> str | None:
    """What is wrong with an answer, or None."""
    if status >= 500:
        return f"{status} {body[:200]!r}"
    if status >= 400 and not content_type.startswith("application/json"):
        return f"{status} is not JSON: {content_type} {body[:200]!r}"
    return None


# --- in-process, SQLite and PostgreSQL ------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "metrics.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def client(target):
    app = create_app(ServerConfig(database=target, read_token=READ, hmac_keys=(KEY,)))
    client = app.test_client()
    for n in range(2):
        payload = _payload(str(n))
        r = client.post("/api/v1/metrics", json=payload, headers=push_headers(payload))
        assert r.status_code == 201, r.text
    yield client
    state(app).database.close()


def get(client, path: str) -> Any:
    return client.get(path, headers={"Authorization": f"Bearer {READ}"})


def test_nul_in_a_path_segment_is_404_and_in_a_query_value_400(client):
    for template, path, query in READ_ROUTES[:4]:
        for name in path:
            r = get(client, _url(template, {**path, name: "a\x00b"}, query))
            assert (r.status_code, r.is_json) == (404, True), (template, name, r.text)
        for name in query:
            if name == "limit":  # digits only: a NUL is simply not a number
                continue
            r = get(client, _url(template, path, {**query, name: "\x00"}))
            assert r.status_code == 400, (template, name, r.text)
            assert name in r.json["error"], r.json
    # The same through the raw request URI the real server gives (RAW_URI).
    r = client.get(
        "/api/v1/metrics/repo/o/o%2Fr/w%00/j",
        headers={"Authorization": f"Bearer {READ}"},
        environ_overrides={"RAW_URI": "/api/v1/metrics/repo/o/o%2Fr/w%00/j"},
    )
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("{job}/runs?since=100000000d", "since"),
        ("{job}/runs?since=999999999w", "since"),
        ("{job}/runs?since=" + "9" * 30 + "d", "since"),
        ("{job}/runs?until=" + "9" * 30 + "d", "until"),
        ("{job}/trend?since=999999999w", "since"),
        ("{job}/trend?until=100000000d", "until"),
        ("/api/v1/top?period=100000000d", "period"),
        ("/api/v1/top?period=999999999w", "period"),
        ("/api/v1/top?period=" + "9" * 30 + "s", "period"),
        ("/api/v1/top?until=0001-01-01", "period"),
        ("/api/v1/top?until=0001-01-01T00:00:00Z&period=1s", "period"),
        ("/api/v1/top?until=100000000d", "until"),
        ("/api/v1/top?until=9999-12-31T23:59:59-01:00", "until"),
        ("{go}?since=9999-12-31T23:59:59-01:00", "since"),
        ("{go}?until=0001-01-01T00:00:00%2B01:00", "until"),
        ("{go}?limit=" + "9" * 5000, "limit"),
    ],
)
def test_times_and_periods_out_of_range_are_400_naming_the_parameter(client, path, parameter):
    path = path.format(job=_url(JOB, SCOPE, {}), go=_url(GO_GET, SCOPE, {}))
    r = get(client, path)
    assert r.status_code == 400, r.text
    assert parameter in r.json["error"]


def test_far_times_that_fit_are_answered(client):
    for path in (
        "{job}/runs?since=0001-01-01&until=9999-12-31",
        "{job}/runs?since=9999-12-31T23:59:59Z",
        "{job}/trend?since=0001-01-01T00:00:00Z&by=day",
        "/api/v1/top?until=9999-12-31T23:59:59Z&period=7d",
        "/api/v1/top?until=0001-01-08&period=7d",
        "{go}?since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59Z",
    ):
        r = get(client, path.format(job=_url(JOB, SCOPE, {}), go=_url(GO_GET, SCOPE, {})))
        assert r.status_code == 200, (path, r.text)


def test_huge_limits_are_capped_or_refused(client):
    r = get(client, _url(JOB + "/runs", SCOPE, {"limit": "9" * 5000}))
    assert r.status_code == 200 and r.json["limit"] == 1000
    r = get(client, _url(JOB + "/runs", SCOPE, {"limit": "0" * 5000}))
    assert r.status_code == 400
    r = get(client, _url(GO_GET, SCOPE, {"limit": "0" * 5000 + "2"}))
    assert r.status_code == 200 and len(r.json) == 2


def test_a_value_the_database_refuses_is_a_400_not_a_500(client, monkeypatch, caplog):
    """Should a check ever miss a value the database cannot hold, the client gets a
    400 it will not retry forever, and the log the traceback."""
    from peewee import DataError

    from resmon.server import api

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise DataError("value too long for type character varying(255)")

    monkeypatch.setattr(api.write, "store_push", refuse)
    payload = _payload("refused")
    r = client.post("/api/v1/metrics", json=payload, headers=push_headers(payload))
    assert (r.status_code, r.json) == (
        400,
        {"error": "a value of the request does not fit the database"},
    )
    assert any(rec.exc_info for rec in caplog.records)


@pytest.mark.parametrize("depth", [100, 254, 500, 1022, 5000])
@pytest.mark.parametrize("where", ["execution", "run_summary"])
def test_json_nested_past_the_bound_is_400_and_stores_nothing(client, depth, where):
    payload = _payload(f"deep-{depth}")
    # orjson cannot write what nests past 254 levels: the nesting is spliced in as text.
    deep = b'{"a":' * depth + b"1" + b"}" * depth
    parts = {k: orjson.dumps(v) for k, v in payload.items()}
    parts[where] = parts[where][:-1] + b',"deep":' + deep + b"}"
    body = b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in parts.items()) + b"}"
    before = Run.select().count()
    r = client.post(
        "/api/v1/metrics", data=body, content_type="application/json", headers=push_headers(payload)
    )
    assert r.status_code == 400, r.text
    # Past 1,024 levels orjson does not parse it at all.
    expected = "invalid JSON payload" if depth > 1022 else f"{where} nests"
    assert expected in r.json["error"]
    assert Run.select().count() == before


def test_json_nested_within_the_bound_is_stored(client):
    deep: Any = 1
    for _ in range(60):
        deep = {"a": deep}
    payload = _payload("nested-60")
    payload["run_summary"]["deep"] = deep
    r = client.post("/api/v1/metrics", json=payload, headers=push_headers(payload))
    assert r.status_code == 201, r.text
    rows = get(client, _url(GO_GET, SCOPE, {})).json
    assert rows[0]["payload"]["deep"] == deep


def test_sweep_in_process(client):
    failures = []
    for case in all_cases():
        r = client.open(
            case.path,
            method=case.method,
            data=body_of(case),
            content_type="application/json",
            headers=headers_for(case),
        )
        problem = check(case, r.status_code, r.content_type or "", r.data)
        if problem:
            failures.append((case.method, case.path[:120], str(case.body)[:200], problem))
    assert not failures, f"{len(failures)} failures, first: {failures[:5]}"


# --- a real server --------------------------------------------------------------


@pytest.fixture
def live(target):
    with ServerProcess(target, read_token=READ, hmac_keys=(KEY,)) as server:
        for n in range(2):
            assert server.push(_payload(str(n))).status_code == 201
        yield server
    assert server.returncode == 0, server.stderr_text()[-3000:]


MALFORMED_CHUNKED = [
    b"zz\r\n{}\r\n0\r\n\r\n",
    b"-5\r\nhello\r\n0\r\n\r\n",
    b"0x5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhelloXX0\r\n\r\n",  # no CRLF after the chunk
    b"5;\x01=\r\nhello\r\n0\r\n\r\n",  # a control character in a chunk extension
    b"5;" + b"e" * 9000 + b"\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n0\r\nBad Trailer\r\n\r\n",
    b"5\r\nhello\r\n0\r\nX: \x00\r\n\r\n",
    b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
]


def raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "token"),
    [
        ("/api/v1/metrics", "0" * 64),
        ("/api/v1/metrics", "any-bearer-token"),
        ("/api/v1/token", READ),
    ],
)
def test_malformed_chunked_bodies_are_400_json(live, path, token):
    for body in MALFORMED_CHUNKED:
        request = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode() + body
        answer = raw_exchange(live.port, request)
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), (body[:30], answer[:300])
        assert b"application/json" in head.lower()
        assert payload.startswith(b'{"error":'), (body[:30], payload[:200])
    # A body cut short by the client closing its side: no request to answer (the
    # server may close without a word) or a 400, never a 5xx.
    for body in (b"5\r\nhello", b"5\r\nhel", b"5\r\nhello\r\n"):
        request = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode() + body
        answer = raw_exchange(live.port, request)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert requests.get(live.url + "/healthz", timeout=5).status_code == 200
    assert "Traceback" not in live.stderr_text()


@pytest.mark.slow
def test_a_bad_body_the_app_did_not_read_gets_no_second_answer(live):
    """GET /health answers without reading its body; gunicorn then drains the body to
    keep the connection, and a malformed chunk there answered a second, unrequested
    400 after the 200.  Exactly one answer, then the connection closes."""
    for body in MALFORMED_CHUNKED:
        request = b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body
        answer = raw_exchange(live.port, request)
        assert answer.count(b"HTTP/1.1 ") == 1, (body[:30], answer[:400])
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"status":"ok"}')
    assert "Traceback" not in live.stderr_text()


@pytest.mark.slow
def test_sweep_live_server(live):
    failures = []
    session = requests.Session()
    for case in all_cases():
        headers = {**headers_for(case), "Content-Type": "application/json"}
        r = session.request(
            case.method, live.url + case.path, data=body_of(case), headers=headers, timeout=10
        )
        problem = check(case, r.status_code, r.headers.get("Content-Type", ""), r.content)
        if problem:
            failures.append((case.method, case.path[:120], str(case.body)[:200], problem))
    assert not failures, f"{len(failures)} failures, first: {failures[:5]}"
    assert "Traceback" not in live.stderr_text()
