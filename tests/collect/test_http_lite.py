"""The live sender's HTTP client (resmon/collect/http_lite.py) through real sockets: the
local receiver (tests/collect_receiver.py), a real ``resmon serve``, and a raw server that
answers with whatever bytes a test scripts (garbage, truncated, huge, slow)."""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from collect_receiver import Receiver, closed_port_url

from resmon.collect import http_lite
from resmon.collect.http_lite import HttpClient, HttpError, proxy_configured, split_url
from resmon.collect.push import PushClient, retry_after_seconds

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


class RawServer:
    """Answers each request on a connection with the next scripted bytes (then closes
    when ``close_after``), recording what it read; ``None`` as an answer: say nothing."""

    def __init__(self, answers: list[bytes | None], *, close_after: bool = False) -> None:
        self.answers = list(answers)
        self.close_after = close_after
        self.received: list[bytes] = []
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/api/v1/metrics/live"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        with conn:
            while self.answers:
                request = self._read_request(conn)
                if request is None:
                    return
                self.received.append(request)
                answer = self.answers.pop(0)
                if answer is None:
                    time.sleep(5)
                    return
                conn.sendall(answer)
                if self.close_after:
                    return

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += conn.recv(65536)
        return data

    def close(self) -> None:
        self.sock.close()


def ok(body: bytes = b'{"stored": "created"}', *extra: bytes) -> bytes:
    head = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
    return head + b"".join(extra) + b"Content-Length: %d\r\n\r\n" % len(body) + body


def post(url: str, body: bytes = b"{}", timeout: float = 2.0, client: HttpClient | None = None):
    client = client or HttpClient()
    try:
        return client.post(url, body, {"Content-Type": "application/json"}, timeout=timeout)
    finally:
        if client is not None and client.connections and not client._sock:
            client.close()


# --- the local receiver ------------------------------------------------------------------


def test_posts_to_the_receiver(receiver):
    client = HttpClient({"User-Agent": "resmon-test"})
    url = receiver.url + "/live"
    try:
        for seq in range(3):
            body = orjson.dumps({"seq": seq})
            answer = client.post(url, body, {"Idempotency-Key": f"k:{seq}"}, timeout=5)
            assert answer.status == 201 and orjson.loads(answer.body)["stored"] == "created"
        # http.server answers HTTP/1.0 without keep-alive: a connection per request.
        assert client.connections == 3
    finally:
        client.close()
    assert [r.json() for r in receiver.live_requests] == [{"seq": s} for s in range(3)]
    headers = receiver.live_requests[0].headers
    assert headers["User-Agent"] == "resmon-test"
    assert headers["Host"] == url.split("/")[2]
    assert headers["Idempotency-Key"] == "k:0"


def test_a_404_is_an_answer_not_an_error(receiver):
    receiver.live_status = 404
    answer = post(receiver.url + "/live")
    assert (answer.status, answer.reason) == (404, "Not Found")
    assert orjson.loads(answer.body) == {"error": "not found"}


def test_push_client_lite_retries_a_503_then_delivers(receiver):
    receiver.live_script = [(503, b'{"error": "busy"}', {"Retry-After": "0"})]
    client = PushClient(receiver.url + "/live", "t", lite=True)
    try:
        result = client.send(b"{}", "k:0", time.monotonic() + 5)
    finally:
        client.close()
    assert result.delivered and result.attempts == 2
    assert result.response == {"run": 1, "state": "running", "stored": "created"}


def test_push_client_lite_reports_a_closed_port_as_a_connection_error():
    client = PushClient(closed_port_url(), "t", lite=True)
    result = client.send(b"{}", "k", time.monotonic() + 0.3)
    assert result.status is None and not result.delivered
    assert result.describe().startswith("connection error: connecting to 127.0.0.1:")
    assert "connection refused" in result.message


# --- a real resmon serve -----------------------------------------------------------------


@pytest.mark.slow
def test_a_live_batch_to_a_real_server(tmp_path):
    from live_helpers import EXECUTION, batch_body, sample
    from server_proc import ServerProcess

    from resmon.tokens import push_token

    with ServerProcess(tmp_path / "metrics.db") as server:
        token = push_token(
            server.hmac_key,
            *(EXECUTION[k] for k in ("organization", "repository", "workflow", "job")),
        )
        url = server.url + "/api/v1/metrics/live"
        body = orjson.dumps(batch_body("run-key-1", 0, [sample(0), sample(1)]))
        client = HttpClient()
        try:
            auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            first = client.post(url, body, {**auth, "Idempotency-Key": "run-key-1:0"}, timeout=10)
            again = client.post(url, body, {**auth, "Idempotency-Key": "run-key-1:0"}, timeout=10)
            wrong = client.post(url, body, {"Authorization": "Bearer nope"}, timeout=10)
        finally:
            client.close()
        assert first.status == 201, first.body
        assert again.status == 200 and orjson.loads(again.body)["stored"] == "duplicate"
        assert wrong.status == 401
        assert client.connections == 1, "gunicorn keeps the connection alive"
        live = server.get("/api/v1/live") if hasattr(server, "get") else None
        if live is not None:
            assert [r["run_key"] for r in live.json()["runs"]] == ["run-key-1"]


# --- answers a server should not give ----------------------------------------------------

HOSTILE = [
    (b"garbage\r\n\r\n", "not an HTTP answer"),
    (b"HTTP/1.1 2x1 OK\r\n\r\n", "not an HTTP answer"),
    (b"HTTP/1.1 201 Created\r\nContent-Len", "in the middle of a header line"),
    (b"HTTP/1.1 201 Created\r\nContent-Length: 10\r\n\r\nshort", "in the middle of the body"),
    (b"HTTP/1.1 201 Created\r\nX: " + b"a" * 100_000 + b"\r\n\r\n", "longer than 8192 bytes"),
    (b"HTTP/1.1 201 OK\r\n" + b"X-A: 1\r\n" * 200 + b"\r\n", "more than 100 header lines"),
    (b"HTTP/1.1 201 Created\r\nno colon here\r\n\r\n", "malformed header line"),
    (b"HTTP/1.1 201 OK\r\nContent-Length: -5\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 201 OK\r\nContent-Length: 5, 6\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 201 OK\r\nContent-Length: 99999999999\r\n\r\n", "larger than 1048576"),
    (b"HTTP/1.1 201 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding"),
    (b"HTTP/1.1 201 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"HTTP/1.1 201 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcdXX", "does not end with CRLF"),
    (b"HTTP/1.1 201 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffff\r\n", "larger than 1048576"),
    (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched protocols"),
    (b"", "closed the connection without answering"),
]


@pytest.mark.parametrize(("answer", "message"), HOSTILE, ids=[m for _, m in HOSTILE])
def test_a_hostile_answer_is_one_clear_error(answer, message):
    server = RawServer([answer], close_after=True)
    client = HttpClient()
    try:
        with pytest.raises(HttpError, match=message) as caught:
            client.post(server.url, b"{}", timeout=2)
        assert len(str(caught.value)) < 200  # a log line, not the server's bytes
        assert client._sock is None  # a broken connection is never reused
    finally:
        client.close()
        server.close()


def test_through_push_client_a_hostile_answer_costs_a_retry_not_a_traceback():
    server = RawServer([b"\x00\xff garbage\r\n\r\n", ok()], close_after=True)
    client = PushClient(server.url, "t", lite=True)
    try:
        result = client.send(b"{}", "k", time.monotonic() + 5)
    finally:
        client.close()
        server.close()
    assert result.delivered and result.attempts == 2


def test_a_silent_server_times_out_within_the_deadline():
    server = RawServer([None])
    client = HttpClient()
    start = time.monotonic()
    try:
        with pytest.raises(HttpError, match=r"timed out sending to 127\.0\.0\.1:\d+ after 0\.30 s"):
            client.post(server.url, b"{}", timeout=0.3)
    finally:
        client.close()
        server.close()
    assert time.monotonic() - start < 1.0


def test_a_body_the_server_trickles_still_ends_at_the_deadline():
    """The deadline is the whole request's, not each read's: a byte every 0.1 s cannot
    hold the sender past it."""
    sock = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/live"

    def trickle():
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 201 OK\r\nContent-Length: 100\r\n\r\n")
            for _ in range(100):
                time.sleep(0.1)
                try:
                    conn.sendall(b"x")
                except OSError:
                    return

    threading.Thread(target=trickle, daemon=True).start()
    start = time.monotonic()
    try:
        with pytest.raises(HttpError, match="timed out"):
            HttpClient().post(url, b"{}", timeout=0.5)
    finally:
        sock.close()
    assert time.monotonic() - start < 1.2


def test_chunked_continue_and_read_to_close_answers():
    chunked = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5;ext=1\r\n{"a":\r\n3\r\n 1}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    to_close = b"HTTP/1.0 200 OK\r\n\r\nall of it"
    server = RawServer([chunked, to_close])
    client = HttpClient()
    try:
        first = client.post(server.url, b"{}", timeout=2)
        assert (first.status, orjson.loads(first.body)) == (201, {"a": 1})
        assert first.keep_alive
        second = client.post(server.url, b"{}", timeout=2)
        assert (second.status, second.body, second.keep_alive) == (200, b"all of it", False)
        assert client._sock is None and client.connections == 1
    finally:
        client.close()
        server.close()


def test_an_idle_connection_the_server_closed_is_made_again_once():
    server = RawServer([ok(), ok(b'{"n": 2}')], close_after=True)  # no Connection: close said
    client = HttpClient()
    try:
        assert client.post(server.url, b"{}", timeout=2).status == 201
        time.sleep(0.1)
        second = client.post(server.url, b"{}", timeout=2)
        assert orjson.loads(second.body) == {"n": 2}
        assert client.connections == 2 and len(server.received) == 2
    finally:
        client.close()
        server.close()


def test_connection_close_and_retry_after_are_read():
    answer = (
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        b"Connection: close\r\nContent-Length: 4\r\n\r\nbusy"
    )
    server = RawServer([answer])
    client = HttpClient()
    try:
        reply = client.post(server.url, b"{}", timeout=2)
    finally:
        client.close()
        server.close()
    assert (reply.status, reply.body, reply.keep_alive) == (503, b"busy", False)
    assert retry_after_seconds(reply.header("Retry-After"), now=784111777.0 - 5) == 5.0
    # The obsolete forms go through email.utils (imported only for them).
    assert retry_after_seconds("Sunday, 06-Nov-94 08:49:37 GMT", now=784111777.0) == 0.0
    assert retry_after_seconds("Sun, 99 Nov 1994 08:49:37 GMT") is None
    assert retry_after_seconds("soon") is None


def test_the_request_is_one_post_with_its_length():
    server = RawServer([ok()])
    client = HttpClient({"User-Agent": "ua"})
    body = b'{"x": 1}'
    try:
        client.post(server.url + "?a=1", body, {"Idempotency-Key": "k"}, timeout=2)
    finally:
        client.close()
        server.close()
    head, _, sent = server.received[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /api/v1/metrics/live?a=1 HTTP/1.1"
    assert b"Content-Length: 8" in lines and b"Idempotency-Key: k" in lines
    assert sent == body


def test_headers_and_urls_that_would_split_a_request_are_refused():
    client = HttpClient()
    with pytest.raises(HttpError, match="line break"):
        client.post("http://127.0.0.1:9/x", b"", {"X": "a\r\nEvil: 1"}, timeout=1)
    for url, message in [
        ("ftp://h/x", "not an http"),
        ("http://u:p@h/x", "user info"),
        ("http://h:99999/x", "bad port"),
        ("http:///x", "no host"),
        ("http://h/a b", "spaces or control"),
    ]:
        with pytest.raises(HttpError, match=message):
            split_url(url)
    assert split_url("https://[::1]:8443/api?x#f") == http_lite.Target(
        "https", "::1", 8443, "/api?x"
    )
    assert split_url("http://h?q").path == "/?q"
    assert split_url("https://h.example/p").host_header == "h.example"
    assert split_url("http://[::1]:81/").host_header == "[::1]:81"


def test_an_unresolvable_host_is_a_clear_error():
    with pytest.raises(HttpError, match="cannot resolve the host"):
        HttpClient().post("http://no-such-host.invalid/x", b"", timeout=2)


def test_proxy_configured_follows_the_environment_as_requests_does():
    url = "http://resmon.internal:8080/api/v1/metrics/live"
    assert not proxy_configured(url, {})
    assert proxy_configured(url, {"HTTP_PROXY": "http://proxy:3128"})
    assert proxy_configured(url, {"all_proxy": "http://proxy:3128"})
    assert not proxy_configured(url, {"HTTPS_PROXY": "http://proxy:3128"})  # other scheme
    for no_proxy in ("*", "resmon.internal", ".internal", "internal", "a, resmon.internal:8080"):
        env = {"http_proxy": "http://proxy:3128", "NO_PROXY": no_proxy}
        assert not proxy_configured(url, env), no_proxy
    env = {"http_proxy": "http://proxy:3128", "no_proxy": "resmon.internal:9999,other"}
    assert proxy_configured(url, env)


def test_https_with_the_ca_bundle_requests_would_use(tmp_path, monkeypatch):
    """A real TLS server with a self-signed certificate named by REQUESTS_CA_BUNDLE (as
    a CI setup names its CA for requests): verified, posted, answered."""
    import shutil
    import ssl
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("no openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
                with context.wrap_socket(conn, server_side=True) as tls:
                    RawServer._read_request(tls)
                    tls.sendall(ok(b'{"tls": true}'))
            except ssl.SSLError:
                continue  # the client refused the certificate
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    client = HttpClient()
    try:
        answer = client.post(f"https://localhost:{port}/live", b"{}", timeout=5)
        assert (answer.status, orjson.loads(answer.body)) == (201, {"tls": True})
        # Without that bundle the certificate is refused, in words.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", "")
        monkeypatch.setenv("CURL_CA_BUNDLE", "")
        with pytest.raises(HttpError, match="CERTIFICATE_VERIFY_FAILED"):
            HttpClient().post(f"https://localhost:{port}/live", b"{}", timeout=5)
    finally:
        client.close()
        listener.close()
