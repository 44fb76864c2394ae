"""End to end: a real ``resmon serve`` process on a free loopback port, real HTTP.

What only the real server can show: the production WSGI server's handling of
percent-encoded slashes, chunked bodies, slow clients and SIGTERM; restart
persistence; logs on stderr.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time

import pytest
import requests
from server_proc import ServerProcess, free_port, sample_payload

pytestmark = pytest.mark.slow


@pytest.fixture
def live_server(tmp_path):
    with ServerProcess(tmp_path / "metrics.db") as server:
        yield server


# The server refuses keys under 16 bytes (the Go vectors' keys are shorter): this one
# is printf 'v1\0org\0repo\0wf\0job' | openssl dgst -sha256 -hmac resmon-test-hmac-key-0001
VECTOR = "5e2c342cd3853285e1c1438d767a3a921ba5144a963e73e0d8b25aa40ff01b2c"


def raw_request(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def test_token_vector_mint_push_and_query_both_encodings(tmp_path):
    with ServerProcess(
        tmp_path / "m.db", hmac_keys=("resmon-test-hmac-key-0001", "older-key-0123456789")
    ) as server:
        scope = {"organization": "org", "repository": "repo", "workflow": "wf", "job": "job"}
        r = requests.post(
            server.url + "/api/v1/token", json=scope, headers=server.read_headers, timeout=5
        )
        assert (r.status_code, r.json()) == (200, {"token": VECTOR})

        payload = sample_payload(
            "42", organization="org", repository="org/repo", workflow="wf", job="job"
        )
        r = requests.post(
            server.url + "/api/v1/metrics",
            json=payload,
            headers={"Authorization": f"Bearer {VECTOR}"},
            timeout=5,
        )
        assert r.status_code == 201, r.text
        assert r.json() == {"id": 1, "status": "created"}

        # gunicorn decodes %2F in PATH_INFO: both encodings must still find the run.
        for path in (
            "org/org%2Frepo/wf/job",
            "org/org/repo/wf/job",
            "org/repo/wf/job",
            "org/org%2frepo/wf/job",
        ):
            r = requests.get(
                f"{server.url}/api/v1/metrics/repo/{path}", headers=server.read_headers, timeout=5
            )
            assert r.status_code == 200, (path, r.text)
            rows = r.json()
            assert [row["run_id"] for row in rows] == ["42"], path
            assert rows[0]["payload"] == payload["run_summary"]
            assert rows[0]["repository"] == "org/repo"
        assert server.terminate() == 0


def test_encoded_slash_inside_a_workflow_name_stays_one_segment(live_server):
    payload = sample_payload("1", workflow="build/test")
    assert live_server.push(payload).status_code == 201
    r = requests.get(
        live_server.url + "/api/v1/metrics/repo/my-org/my-org%2Fmy-repo/build%2Ftest/build",
        headers=live_server.read_headers,
        timeout=5,
    )
    assert [row["workflow"] for row in r.json()] == ["build/test"]


def test_runs_survive_a_restart(tmp_path):
    db = tmp_path / "m.db"
    server = ServerProcess(db)
    with server:
        first = server.push(sample_payload("1", start_time="2026-01-02T03:00:00Z")).json()["id"]
        server.push(
            sample_payload("2", start_time="2026-01-02T04:00:00Z"),
            headers={"Idempotency-Key": "abc"},
        )
    assert server.returncode == 0
    again = ServerProcess(db, read_token=server.read_token, hmac_keys=server.hmac_keys)
    with again:
        r = requests.get(
            again.url + "/api/v1/metrics/repo/my-org/my-repo/ci.yml/build",
            headers=again.read_headers,
            timeout=5,
        )
        assert [row["run_id"] for row in r.json()] == ["2", "1"]
        # Idempotency survives too: a retry after the restart is a duplicate.
        r = again.push(sample_payload("1", start_time="2026-01-02T03:00:00Z"))
        assert (r.status_code, r.json()) == (200, {"id": first, "status": "duplicate"})
        r = again.push(
            sample_payload("2", start_time="2026-01-02T04:00:00Z"),
            headers={"Idempotency-Key": "abc"},
        )
        assert r.status_code == 200


def test_killed_right_after_201_the_run_is_still_there(tmp_path):
    db = tmp_path / "m.db"
    server = ServerProcess(db).start()
    try:
        assert server.push(sample_payload("1")).status_code == 201
    finally:
        server.kill()  # SIGKILL: no clean shutdown, no checkpoint
    count = sqlite3.connect(db).execute("SELECT count(*) FROM runs").fetchone()[0]
    assert count == 1


def test_chunked_body_over_the_limit_is_413_and_stores_nothing(tmp_path):
    with ServerProcess(tmp_path / "m.db", extra_args=("--max-body=16Ki",)) as server:
        payload = sample_payload("1", padding="x" * 40_000)
        body = json.dumps(payload).encode()

        def chunks():
            for i in range(0, len(body), 4096):
                yield body[i : i + 4096]

        headers = {**server.push_headers(payload["execution"]), "Content-Type": "application/json"}
        r = requests.post(
            server.url + "/api/v1/metrics", data=chunks(), headers=headers, timeout=10
        )
        assert r.status_code == 413
        assert r.json() == {"error": "request body too large"}
        # Content-Length over the limit: refused before reading.
        r = requests.post(server.url + "/api/v1/metrics", data=body, headers=headers, timeout=10)
        assert r.status_code == 413
        # A chunked body under the limit is fine.
        small = json.dumps(sample_payload("2")).encode()
        r = requests.post(
            server.url + "/api/v1/metrics",
            data=iter([small[:100], small[100:]]),
            headers=headers,
            timeout=10,
        )
        assert r.status_code == 201, r.text
        r = requests.get(
            server.url + "/api/v1/metrics/repo/my-org/my-repo/ci.yml/build",
            headers=server.read_headers,
            timeout=5,
        )
        assert [row["run_id"] for row in r.json()] == ["2"]


def test_bad_requests_get_json_errors_never_tracebacks(live_server):
    url = live_server.url
    cases = [
        requests.post(
            url + "/api/v1/metrics",
            data=b"{",
            headers=live_server.push_headers(sample_payload()["execution"]),
        ),
        requests.get(url + "/does/not/exist"),
        requests.put(url + "/api/v1/metrics"),
        requests.get(url + "/api/v1/metrics/repo/a/b", headers=live_server.read_headers),
        requests.get(
            url + "/api/v1/metrics/repo/a/b/c/d?limit=-1", headers=live_server.read_headers
        ),
    ]
    assert [r.status_code for r in cases] == [400, 404, 405, 404, 400]
    for r in cases:
        assert r.headers["Content-Type"] == "application/json"
        assert set(r.json()) == {"error"}
        assert "Traceback" not in r.text
    # A request line gunicorn itself rejects is not a crash either.
    reply = raw_request(live_server.port, b"GARBAGE\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400")
    assert requests.get(url + "/healthz", timeout=5).status_code == 200


def test_slow_clients_do_not_stop_others_being_served(live_server):
    """Three clients sending their headers a byte at a time hold three of the
    worker's four threads; everyone else is still served promptly."""
    stop = threading.Event()
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    results: list[bytes] = []

    def slow_client():
        with socket.create_connection(("127.0.0.1", live_server.port), timeout=30) as s:
            for i in range(len(request) - 4):
                if stop.is_set():
                    break
                s.sendall(request[i : i + 1])
                time.sleep(0.02)
            else:
                s.sendall(request[-4:])
                results.append(s.recv(4096))

    slow = [threading.Thread(target=slow_client) for _ in range(3)]
    for t in slow:
        t.start()
    time.sleep(0.5)  # all three are mid-headers now
    latencies = []
    for n in range(20):
        started = time.monotonic()
        r = live_server.push(sample_payload(str(n)))
        latencies.append(time.monotonic() - started)
        assert r.status_code == 201
    assert any(t.is_alive() for t in slow), "slow clients finished too early to prove anything"
    assert max(latencies) < 1.0, latencies
    for t in slow:
        t.join(30)
    # The slow clients are served too, once their headers are complete.
    assert len(results) == 3 and all(r.startswith(b"HTTP/1.1 200") for r in results)


def test_sigterm_finishes_the_request_in_flight_and_exits_0(live_server):
    """A push whose body is still arriving when SIGTERM lands is completed and
    stored; /readyz says 503; new connections are refused; the process exits 0."""
    payload = sample_payload("inflight")
    body = json.dumps(payload).encode()
    token = live_server.push_headers(payload["execution"])["Authorization"]
    head = (
        f"POST /api/v1/metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    import http.client

    # A load balancer's kept-alive probe connection, opened before the signal.
    probe = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=5)
    probe.request("GET", "/readyz")
    assert probe.getresponse().read() == b'{"status":"ready"}'
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=20) as s:
        s.sendall(head + body[:10])
        time.sleep(0.3)  # the worker thread is now blocked reading this body
        live_server.proc.send_signal(15)
        time.sleep(0.3)
        # Readiness fails while draining, so the balancer stops sending traffic.
        probe.request("GET", "/readyz")
        answer = probe.getresponse()
        assert answer.status == 503
        assert json.loads(answer.read()) == {"status": "unavailable", "reason": "shutting down"}
        probe.close()
        time.sleep(0.5)
        # Draining: the listener is closed, no new connection gets in.
        with pytest.raises(requests.ConnectionError):
            requests.get(live_server.url + "/healthz", timeout=2)
        assert live_server.returncode is None, "server exited with a request in flight"
        s.sendall(body[10:])
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 201"), reply
    assert b'"status":"created"' in reply
    live_server.proc.wait(15)
    assert live_server.returncode == 0
    count = sqlite3.connect(live_server.database).execute("SELECT count(*) FROM runs").fetchone()[0]
    assert count == 1


def test_logs_are_json_lines_without_secrets(live_server):
    payload = sample_payload("1")
    push_token = live_server.push_headers(payload["execution"])["Authorization"].split()[1]
    live_server.push(payload)
    requests.get(
        live_server.url + "/api/v1/metrics/repo/my-org/my-repo/ci.yml/build?limit=3",
        headers=live_server.read_headers,
        timeout=5,
    )
    requests.post(
        live_server.url + "/api/v1/token",
        json={"organization": "o", "repository": "o/r", "workflow": "w", "job": "j"},
        headers=live_server.read_headers,
        timeout=5,
    )
    requests.get(
        live_server.url + "/health",
        headers={"Authorization": f"Bearer {live_server.hmac_key}"},
        timeout=5,
    )
    assert live_server.terminate() == 0
    text = live_server.stderr_text()
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    requests_logged = [r for r in records if r.get("msg") == "request"]
    assert [
        (r["method"], r["path"], r["status"]) for r in requests_logged if r["path"] != "/readyz"
    ] == [
        ("POST", "/api/v1/metrics", 201),
        ("GET", "/api/v1/metrics/repo/my-org/my-repo/ci.yml/build", 200),
        ("POST", "/api/v1/token", 200),
        ("GET", "/health", 200),
    ]
    assert all(isinstance(r["duration_ms"], float) for r in requests_logged)
    for secret in (live_server.read_token, live_server.hmac_key, push_token, "limit=3"):
        assert secret not in text


def test_serve_listens_on_ipv6_loopback(tmp_path):
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback in this environment")
    server = ServerProcess(tmp_path / "m.db")
    server.extra_args = (f"--addr=[::1]:{server.port}",)  # the last --addr wins
    server.wait_ready = lambda: _wait_url(f"http://[::1]:{server.port}/readyz", server)  # type: ignore[method-assign]
    with server:
        assert requests.get(f"http://[::1]:{server.port}/health", timeout=5).json() == {
            "status": "ok"
        }


def _wait_url(url, server):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(server.stderr_text())
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("not ready")


@pytest.mark.postgres
def test_postgres_end_to_end_with_restart(postgres_url):  # noqa: F811
    server = ServerProcess(postgres_url)
    with server:
        assert server.push(sample_payload("1")).status_code == 201
        assert server.push(sample_payload("1")).status_code == 200
        assert server.push(sample_payload("2"), headers={"Idempotency-Key": "k"}).status_code == 201
        assert server.push(sample_payload("3"), headers={"Idempotency-Key": "k"}).status_code == 422
    assert server.returncode == 0
    with ServerProcess(
        postgres_url, read_token=server.read_token, hmac_keys=server.hmac_keys
    ) as again:
        r = requests.get(
            again.url + "/api/v1/metrics/repo/my-org/my-org%2Fmy-repo/ci.yml/build",
            headers=again.read_headers,
            timeout=5,
        )
        assert sorted(row["run_id"] for row in r.json()) == ["1", "2"]
        assert requests.get(again.url + "/readyz", timeout=5).json() == {"status": "ready"}


def test_collect_pushes_to_serve_and_the_summary_comes_back_unchanged(tmp_path):
    """resmon collect -> (spool) -> resmon serve -> query API: the run summary that
    comes back is exactly the one the collector wrote."""
    import os
    import subprocess
    import sys

    from resmon.collect.spool import Spool
    from resmon.tokens import push_token

    ci_env = {
        "GITHUB_REPOSITORY_OWNER": "acme",
        "GITHUB_REPOSITORY": "acme/widgets",
        "GITHUB_WORKFLOW": "ci.yml",
        "GITHUB_JOB": "build",
        "GITHUB_RUN_ID": "501",
    }
    spool_dir = tmp_path / "spool"
    with ServerProcess(tmp_path / "m.db") as server:
        env = {
            **os.environ,
            **ci_env,
            "COLLECTOR_PUSH_TOKEN": push_token(
                server.hmac_key, "acme", "acme/widgets", "ci.yml", "build"
            ),
        }
        collect = [
            sys.executable,
            "-m",
            "resmon",
            "collect",
            f"--spool-dir={spool_dir}",
            "--push-timeout=1s",
        ]
        # First to a port where nothing listens: the payload stays in the spool,
        # so the test can read the exact body the collector sends.
        closed = subprocess.run(
            [*collect, "--interval=0.1s", f"--push-endpoint=http://127.0.0.1:{free_port()}/api/v1/metrics",
             "--", "sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"],
            env=env, capture_output=True, timeout=60,
        )  # fmt: skip
        assert closed.returncode == 0, closed.stderr.decode()
        [entry] = Spool(spool_dir).pending()
        sent = json.loads(entry.read_body())
        assert sent["run_summary"]["sample_count"] >= 1
        flush = subprocess.run(
            [*collect, "--flush-spool", f"--push-endpoint={server.url}/api/v1/metrics"],
            env=env, capture_output=True, timeout=60,
        )  # fmt: skip
        assert flush.returncode == 0, flush.stderr.decode()
        r = requests.get(
            server.url + "/api/v1/metrics/repo/acme/acme%2Fwidgets/ci.yml/build",
            headers=server.read_headers,
            timeout=5,
        )
        [run] = r.json()
        assert run["run_id"] == "501"
        assert run["payload"] == sent["run_summary"]


def test_concurrent_retries_across_worker_processes_store_one_run(tmp_path):
    """Two worker processes, sixteen clients sending the same run at once (half with
    the key, half without): one run stored, everybody gets its id."""
    with ServerProcess(tmp_path / "m.db", extra_args=("--workers=2",)) as server:
        barrier = threading.Barrier(16)
        answers: list = [None] * 16

        def client(i):
            headers = {"Idempotency-Key": "one-run"} if i % 2 else {}
            barrier.wait()
            answers[i] = server.push(sample_payload("77"), headers=headers)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [200] * 15 + [201], [r.text for r in answers]
        assert len({r.json()["id"] for r in answers}) == 1
        count = sqlite3.connect(server.database).execute("SELECT count(*) FROM runs").fetchone()[0]
        assert count == 1


def test_a_silent_client_is_dropped_after_io_timeout(tmp_path):
    """Half-sent headers, or a body that stops arriving, free the thread after
    --io-timeout: headers -> connection closed; body -> 408 JSON."""
    with ServerProcess(tmp_path / "m.db", extra_args=("--io-timeout=1",)) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Half")
            started = time.monotonic()
            assert s.recv(4096) == b""  # closed by the server, without an answer
            assert 0.8 < time.monotonic() - started < 5

        payload = sample_payload("1")
        body = json.dumps(payload).encode()
        token = server.push_headers(payload["execution"])["Authorization"]
        head = (
            f"POST /api/v1/metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(head + body[:20])
            reply = b""
            while not reply.endswith(b"}") and (chunk := s.recv(4096)):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 408"), reply
        assert reply.endswith(b'{"error":"request body not received in time"}')
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
        count = sqlite3.connect(server.database).execute("SELECT count(*) FROM runs").fetchone()[0]
        assert count == 0
    # An expected event, logged as one line, not as a socket error with a traceback.
    logs = server.stderr_text()
    assert "client silent past --io-timeout" in logs
    assert "Traceback" not in logs


def test_a_client_that_stops_reading_its_answer_is_one_warning_line(tmp_path):
    """A GET whose client never reads the answer: the worker's send gives up after
    --io-timeout without progress, the log says so in one line (no traceback), and
    the server keeps answering others."""
    with ServerProcess(tmp_path / "m.db", extra_args=("--io-timeout=1",)) as server:
        pad = "x" * 700_000
        for run in range(12):
            payload = sample_payload(str(run), note=pad)
            assert server.push(payload).status_code == 201
        path = "/api/v1/metrics/repo/my-org/my-org%2Fmy-repo/ci.yml/build"
        head = (
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.read_token}\r\n\r\n"
        ).encode()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", server.port))
            s.sendall(head)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if "did not take the answer in time" in server.stderr_text():
                    break
                time.sleep(0.2)
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
    logs = server.stderr_text()
    assert "client did not take the answer in time" in logs
    assert "Traceback" not in logs
