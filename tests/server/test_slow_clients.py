"""Idle and slow clients against a real ``resmon serve``: none of them stalls the
server, and every request has a total deadline (resmon.server.front).

The server is the real ``resmon serve`` command (tests/server_proc.py) with small
deadlines: ``--io-timeout=1`` and ``--request-timeout=2``.
"""

from __future__ import annotations

import errno
import json
import socket
import sqlite3
import threading
import time

import pytest
import requests
from server_proc import ServerProcess, sample_payload

from resmon.server.framing import (
    HEAD_TOO_LARGE,
    READY,
    WAIT,
    Framing,
    RequestSocket,
    error_response,
)
from resmon.server.front import BufferingFront

REQUEST_TIMEOUT = 2.0


@pytest.fixture
def server(tmp_path):
    proc = ServerProcess(
        tmp_path / "m.db",
        extra_args=("--io-timeout=1", f"--request-timeout={REQUEST_TIMEOUT}", "--max-body=64Ki"),
    )
    with proc:
        yield proc


def push_head(server: ServerProcess, payload: dict, length: int | str, extra: str = "") -> bytes:
    token = server.push_headers(payload["execution"])["Authorization"]
    framing = "Transfer-Encoding: chunked" if length == "chunked" else f"Content-Length: {length}"
    return (
        f"POST /api/v1/metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n{extra}\r\n"
    ).encode()


def read_all(sock: socket.socket) -> bytes:
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    return reply


def trickle(port: int, data: bytes, every: float, stop: threading.Event, log: dict) -> None:
    """Send ``data`` one byte per ``every`` seconds until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        started = time.monotonic()
        s.settimeout(every)
        for i in range(len(data)):
            if stop.is_set():
                return
            try:
                s.sendall(data[i : i + 1])
                log["reply"] = log.get("reply", b"") + s.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                pass
            log.setdefault("closed_after", time.monotonic() - started)
            log["bytes_sent"] = i + 1
            return


def stored_runs(server: ServerProcess) -> int:
    return sqlite3.connect(server.database).execute("SELECT count(*) FROM runs").fetchone()[0]


# --- a real server --------------------------------------------------------------------------


@pytest.mark.slow
def test_idle_and_slowloris_connections_do_not_delay_anyone(server):
    """64 silent connections and 16 sending headers a byte at a time, against one
    worker of 4 threads: before the front, 16 silent ones delayed /healthz by 4.7 s."""
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(64)]
    stop = threading.Event()
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: a\r\n" * 100
    slow = [
        threading.Thread(target=trickle, args=(server.port, head, 0.1, stop, {})) for _ in range(16)
    ]
    for t in slow:
        t.start()
    try:
        time.sleep(0.3)
        latencies = []
        for n in range(20):
            started = time.monotonic()
            assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
            assert server.push(sample_payload(str(n))).status_code == 201
            latencies.append(time.monotonic() - started)
        assert max(latencies) < 0.5, latencies
    finally:
        stop.set()
        for t in slow:
            t.join(10)
        for s in idle:
            s.close()


@pytest.mark.slow
def test_slowloris_is_closed_at_its_total_deadline(server):
    """A byte every 0.3 s never trips the 1 s silence limit; the 2 s request deadline
    closes the connection anyway, without an answer."""
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: a\r\n" * 100
    log: dict = {}
    trickle(server.port, head, 0.3, threading.Event(), log)
    assert log.get("reply", b"") == b""
    assert REQUEST_TIMEOUT - 0.3 < log["closed_after"] < REQUEST_TIMEOUT + 2.0, log
    assert log["bytes_sent"] > 5  # it was sending all along
    assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
    server.terminate()
    assert "request not received within --request-timeout" in server.stderr_text()


@pytest.mark.slow
def test_slow_body_gets_408_at_its_total_deadline_and_nothing_is_stored(server):
    payload = sample_payload("slow")
    body = json.dumps(payload).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as s:
        s.sendall(push_head(server, payload, len(body)))
        started = time.monotonic()
        s.settimeout(0.3)
        reply = b""
        for i in range(len(body)):
            try:
                s.sendall(body[i : i + 1])
                reply = s.recv(4096)
                break
            except TimeoutError:
                continue
        elapsed = time.monotonic() - started
        s.settimeout(5)
        reply += read_all(s)
    assert reply.startswith(b"HTTP/1.1 408 "), reply
    assert reply.endswith(b'{"error":"request body not received in time"}')
    assert REQUEST_TIMEOUT - 0.3 < elapsed < REQUEST_TIMEOUT + 2.0
    assert stored_runs(server) == 0


@pytest.mark.slow
def test_keep_alive_pipelining_and_expect_continue(server):
    with requests.Session() as session:
        for n in range(5):
            payload = sample_payload(f"k{n}")
            r = session.post(
                server.url + "/api/v1/metrics",
                json=payload,
                headers=server.push_headers(payload["execution"]),
                timeout=5,
            )
            assert r.status_code == 201
            r = session.get(server.url + "/healthz", timeout=5)
            assert r.status_code == 200
    # Two requests in one write: both answered, in order, on the same connection.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        reply = read_all(s)
    assert reply.count(b"HTTP/1.1 200 ") == 2, reply
    # curl's Expect: 100-continue waits for the interim answer before the body.
    payload = sample_payload("expect")
    body = json.dumps(payload).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(push_head(server, payload, len(body), "Expect: 100-continue\r\n"))
        assert s.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 201 "), reply
    assert b"100 Continue" not in reply
    assert stored_runs(server) == 6


@pytest.mark.slow
def test_chunked_push_succeeds_and_an_oversized_one_is_413(server):
    payload = sample_payload("chunked")
    body = json.dumps(payload).encode()
    r = requests.post(
        server.url + "/api/v1/metrics",
        data=iter([body[:100], body[100:700], body[700:]]),
        headers=server.push_headers(payload["execution"]),
        timeout=5,
    )
    assert r.status_code == 201, r.text
    # Chunks arriving in pieces, with an extension and a trailer.
    payload = sample_payload("pieces")
    body = json.dumps(payload).encode()
    chunked = (
        f"{len(body[:50]):x};note=1\r\n".encode()
        + body[:50]
        + f"\r\n{len(body[50:]):X}\r\n".encode()
        + body[50:]
        + b"\r\n0\r\nX-Trailer: yes\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(push_head(server, payload, "chunked", "Connection: close\r\n"))
        for i in range(0, len(chunked), 97):
            s.sendall(chunked[i : i + 97])
            time.sleep(0.01)
        reply = read_all(s)
    assert reply.startswith(b"HTTP/1.1 201 "), reply
    big = sample_payload("big", padding="x" * 70_000)
    r = requests.post(
        server.url + "/api/v1/metrics",
        data=iter([json.dumps(big).encode()] * 1),
        headers=server.push_headers(big["execution"]),
        timeout=5,
    )
    assert (r.status_code, r.json()) == (413, {"error": "request body too large"})
    assert stored_runs(server) == 2


@pytest.mark.slow
def test_gunicorn_and_front_errors_stay_json(server):
    long_line = requests.get(server.url + "/api/v1/jobs?x=" + "a" * 5000, timeout=5)
    many_headers = requests.get(
        server.url + "/health", headers={f"X-H{i}": "v" for i in range(120)}, timeout=5
    )
    huge_headers = requests.get(
        server.url + "/health", headers={f"X-H{i}": "v" * 8000 for i in range(9)}, timeout=5
    )
    for response, status in ((long_line, 414), (many_headers, 431), (huge_headers, 431)):
        assert response.status_code == status
        assert response.headers["Content-Type"] == "application/json"
        assert set(response.json()) == {"error"}
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GARBAGE\r\n\r\n")
        assert read_all(s).endswith(b'{"error":"bad request"}')
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\nHost: x\n\n")  # bare LF: refused at once
        assert read_all(s).startswith(b"HTTP/1.1 400 ")


# --- the parts, without a server -------------------------------------------------------------


def framing_of(data: bytes, limit: int = 1000) -> int:
    return Framing().check(bytearray(data), limit)


def test_framing_finds_where_a_request_ends():
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
    assert framing_of(head[:-1]) == WAIT
    assert framing_of(head + b"abcd") == WAIT
    assert framing_of(head + b"abcde") == READY
    assert framing_of(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == READY
    chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert framing_of(chunked + b"3\r\nabc\r\n") == WAIT
    assert framing_of(chunked + b"3\r\nabc\r\n0\r\n") == WAIT
    assert framing_of(chunked + b"3\r\nabc\r\n0\r\n\r\n") == READY
    assert framing_of(chunked + b"3;x=y\r\nabc\r\n0\r\nT: 1\r\n") == WAIT
    assert framing_of(chunked + b"3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n") == READY
    # Fed a piece at a time, the same answers.
    framing, buf = Framing(), bytearray()
    for piece in (chunked[:10], chunked[10:], b"3\r\na", b"bc\r\n", b"0\r\n", b"\r\n"):
        buf += piece
        state = framing.check(buf, 1000)
    assert state == READY


def test_framing_hands_over_what_gunicorn_or_the_app_must_refuse():
    chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    for bad_size in (b"zz", b"-5", b"0x5", b"+5", b"1_0", b""):
        assert framing_of(chunked + bad_size + b"\r\n") == READY, bad_size
    assert framing_of(chunked + b"400\r\n", limit=1024) == WAIT
    assert framing_of(chunked + b"401\r\n", limit=1024) == READY  # over the body limit
    assert framing_of(b"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n") == READY
    assert framing_of(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n") == READY
    assert framing_of(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n") == READY
    both = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert framing_of(both) == READY
    assert framing_of(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n") == READY
    assert framing_of(b"GET / HTTP/1.1\nHost: x") == READY  # bare LF
    assert framing_of(b"GET /" + b"a" * 5000) == READY  # gunicorn's 414
    assert framing_of(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 11_000) == HEAD_TOO_LARGE


def test_request_socket_reads_end_with_the_buffer_and_answers_are_bounded():
    server_end, client_end = socket.socketpair()
    with server_end, client_end:
        request = RequestSocket(server_end, b"GET / HTTP/1.1\r\n\r\nnext", silence=30, total=0.5)
        assert request.recv(18) == b"GET / HTTP/1.1\r\n\r\n"
        assert request.unread() == b"next"
        assert request.recv(100) == b"next"
        assert request.recv(100) == b""  # the buffer's end, not a wait for the client
        request.send(b"HTTP/1.1 100 Continue\r\n\r\n")  # the front sent it already
        request.sendall(b"answer")
        assert client_end.recv(100) == b"answer"
        # A client that reads nothing: the answer is given up at its total deadline
        # (plus a second per 64 KiB that did go out), long before --io-timeout.
        server_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        started = time.monotonic()
        with pytest.raises((TimeoutError, BlockingIOError)):
            request.sendall(b"x" * 50_000_000)
        assert time.monotonic() - started < 0.5 + 2.0


def test_out_of_file_descriptors_stops_accepting_instead_of_failing():
    class Listener:
        def accept(self):
            raise OSError(errno.EMFILE, "Too many open files")

    worker = BufferingFront()
    worker.nr_conns, worker.worker_connections = 7, 10_000
    worker.accept(Listener())  # type: ignore[arg-type]
    assert worker.worker_connections == 7


def test_error_response_is_json_without_the_clients_bytes():
    answer = error_response(431, "Request Header Fields Too Large")
    head, body = answer.split(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"Connection: close" in head and f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body) == {"error": "request header fields too large"}
