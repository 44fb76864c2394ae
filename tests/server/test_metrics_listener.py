"""The separate metrics listener (--metrics-addr): /metrics only, total deadlines, a
bounded number of connections and threads; and the database figures read in the
background (no query per scrape), in process and on real servers."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import orjson
import pytest
import requests
from server_proc import ServerProcess, free_port, sample_payload
from test_server_metrics import HMAC_KEY, READ, READ_TOKEN, headers_for, promtool_check, value

from resmon.server import ServerConfig, create_app
from resmon.server.config import state
from resmon.server.metrics import DatabaseStats
from resmon.server.metrics_listener import MetricsListener

BODY = b"# HELP up 1\n# TYPE up gauge\nup 1\n"


def render(accept: str | None) -> tuple[bytes, str]:
    return BODY, "text/plain; version=0.0.4; charset=utf-8"


@pytest.fixture
def listener():
    server = MetricsListener("127.0.0.1", 0, render, timeout=0.5).start()
    yield server
    server.stop()


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data``, read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_and_body(raw: bytes) -> tuple[int, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def closed_after(sock: socket.socket, limit: float = 10.0) -> float:
    """Seconds until the server closes ``sock`` (reads and drops whatever it sends)."""
    start = time.monotonic()
    sock.settimeout(limit)
    while sock.recv(65536):
        pass
    return time.monotonic() - start


# --- the listener alone --------------------------------------------------------------------


def test_metrics_and_only_metrics(listener):
    raw = exchange(listener.port, b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_and_body(raw) == (200, BODY)
    assert b"Connection: close" in raw
    raw = exchange(listener.port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
    assert status_and_body(raw) == (200, b"")
    assert f"Content-Length: {len(BODY)}".encode() in raw
    for path in (b"/", b"/metricsx", b"/api/v1/metrics", b"/metrics/", b"//metrics"):
        raw = exchange(listener.port, b"GET " + path + b" HTTP/1.1\r\n\r\n")
        status, body = status_and_body(raw)
        assert (status, orjson.loads(body)) == (404, {"error": "not found"}), path
    raw = exchange(listener.port, b"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
    assert status_and_body(raw)[0] == 405 and b"Allow: GET, HEAD" in raw
    status, body = status_and_body(exchange(listener.port, b"garbage\r\n\r\n"))
    assert (status, orjson.loads(body)) == (400, {"error": "bad request"})
    status, _ = status_and_body(
        exchange(listener.port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000)
    )
    assert status == 431


def test_an_idle_connection_is_closed_at_its_deadline(listener):
    with socket.create_connection(("127.0.0.1", listener.port)) as s:
        assert 0.4 <= closed_after(s) < 1.5


def test_a_slow_request_is_closed_at_its_deadline_however_often_it_sends(listener):
    with socket.create_connection(("127.0.0.1", listener.port)) as s:
        start = time.monotonic()
        sent = 0
        try:
            for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 100:
                s.sendall(bytes([byte]))  # one byte every 50 ms: never silent for long
                sent += 1
                time.sleep(0.05)
        except OSError:
            pass  # reset: the server closed it
        elapsed = time.monotonic() - start
    assert elapsed < 1.5 and sent < 40, (elapsed, sent)


def test_idle_connections_cannot_crowd_out_a_scrape(listener):
    threads_before = set(threading.enumerate())
    idle = [socket.create_connection(("127.0.0.1", listener.port)) for _ in range(200)]
    try:
        start = time.monotonic()
        raw = exchange(listener.port, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert status_and_body(raw) == (200, BODY)
        assert time.monotonic() - start < 0.3
        # no thread per connection (threads of earlier tests may end meanwhile)
        assert set(threading.enumerate()) <= threads_before
        assert len(listener._conns) <= 64
    finally:
        for s in idle:
            s.close()


def test_a_failing_render_is_a_json_500_and_the_listener_goes_on():
    calls = []

    def flaky(accept):
        calls.append(accept)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return render(accept)

    server = MetricsListener("127.0.0.1", 0, flaky, timeout=2).start()
    try:
        req = b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text\r\n\r\n"
        status, body = status_and_body(exchange(server.port, req))
        assert (status, orjson.loads(body)) == (500, {"error": "internal server error"})
        assert status_and_body(exchange(server.port, req)) == (200, BODY)
        assert calls == ["application/openmetrics-text"] * 2
    finally:
        server.stop()


# --- database figures in the background ------------------------------------------------------


def test_scrapes_do_not_query_the_database(tmp_path, monkeypatch):
    app = create_app(
        ServerConfig(database=str(tmp_path / "m.db"), read_token=READ_TOKEN, hmac_keys=(HMAC_KEY,))
    )
    db = state(app).database
    counts: list[str] = []
    execute_sql = db.execute_sql

    def counting(sql, *args, **kwargs):
        if "count(*)" in sql.lower():
            counts.append(sql)
        return execute_sql(sql, *args, **kwargs)

    monkeypatch.setattr(db, "execute_sql", counting)
    client = app.test_client()
    for _ in range(50):
        response = client.get("/metrics", headers=READ)
        assert response.status_code == 200
        assert value(response.text, "resmon_runs_stored") == 0
    assert len(counts) == 1  # the background reading, once per --metrics-refresh (15 s)


def test_readings_stop_when_nobody_scrapes_and_start_again():
    reads = []
    stats = DatabaseStats(lambda: reads.append(1) or (len(reads), 10), interval=0.05)
    first = stats.get()
    assert first is not None and first.up and first.runs == 1
    time.sleep(0.05 * (DatabaseStats.IDLE_INTERVALS + 5))
    stopped_at = len(reads)
    time.sleep(0.3)
    assert len(reads) == stopped_at  # idle: no more readings
    again = stats.get()
    assert again is not None and again.runs > stopped_at - 1 and again.age < 0.05 * 2


def test_a_failed_reading_reports_the_database_down():
    def broken():
        raise OSError("disk gone")

    reading = DatabaseStats(broken, interval=10).get()
    assert reading is not None and reading.up is False


def test_a_fork_waits_for_a_reading_in_progress():
    started = threading.Event()

    def slow():
        started.set()
        time.sleep(0.5)
        return 1, 1

    stats = DatabaseStats(slow, interval=10, fork_guard=True)
    stats.get(wait=0)
    assert started.wait(5)
    begin = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    waited = time.monotonic() - begin
    os.waitpid(pid, 0)
    assert waited >= 0.3  # the fork waited for the reading (no connection crosses it)


# --- real servers ---------------------------------------------------------------------------


def _listening_on(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp) listening on ``port``."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":
                out.add(address)
    return out


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@pytest.mark.slow
def test_the_separate_listener_of_a_real_server(tmp_path):
    port = free_port()
    with ServerProcess(
        tmp_path / "m.db",
        read_token=READ_TOKEN,
        hmac_keys=(HMAC_KEY,),
        extra_args=(f"--metrics-addr=:{port}", "--io-timeout=1"),
    ) as server:
        assert _listening_on(port) == {"0100007F"}  # :PORT is 127.0.0.1 only
        p = sample_payload("1")
        requests.post(server.url + "/api/v1/metrics", json=p, headers=headers_for(p), timeout=10)
        url = f"http://127.0.0.1:{port}"
        response = requests.get(url + "/metrics", timeout=10)
        assert response.status_code == 200
        assert value(response.text, "resmon_runs_stored") == 1
        promtool_check(response.text)
        other = requests.get(url + "/api/v1/metrics/repo/a/b/c/d", headers=READ, timeout=10)
        assert (other.status_code, other.json()) == (404, {"error": "not found"})

        with socket.create_connection(("127.0.0.1", port)) as idle:
            assert 0.8 <= closed_after(idle) < 2.5  # min(10 s, --io-timeout)

        master = server.proc.pid
        threads = _threads(master)
        crowd = [socket.create_connection(("127.0.0.1", port)) for _ in range(150)]
        try:
            response = requests.get(url + "/metrics", timeout=2)
            assert response.status_code == 200
            assert _threads(master) == threads
        finally:
            for s in crowd:
                s.close()
    assert server.returncode == 0


@pytest.mark.slow
def test_fifty_scrapes_read_the_database_once(tmp_path):
    port = free_port()
    with ServerProcess(
        tmp_path / "m.db",
        read_token=READ_TOKEN,
        hmac_keys=(HMAC_KEY,),
        extra_args=(f"--metrics-addr=127.0.0.1:{port}", "--metrics-on-addr"),
    ) as server:
        for url, headers in ((f"http://127.0.0.1:{port}", {}), (server.url, READ)):
            ages = []
            for _ in range(50):
                text = requests.get(url + "/metrics", headers=headers, timeout=10).text
                ages.append(value(text, "resmon_database_stats_age_seconds"))
            # One reading serves them all: its age only grows (a reading per scrape
            # would start it again from 0 each time).
            assert ages == sorted(ages) and ages[-1] > ages[0], ages


@pytest.mark.slow
def test_scrapes_answer_while_postgresql_blocks_every_reading(postgres_url):
    import psycopg2

    port = free_port()
    with ServerProcess(
        postgres_url,
        read_token=READ_TOKEN,
        hmac_keys=(HMAC_KEY,),
        extra_args=(
            f"--metrics-addr=127.0.0.1:{port}",
            "--metrics-on-addr",
            "--metrics-refresh=0.3s",
        ),
    ) as server:
        p = sample_payload("1")
        requests.post(server.url + "/api/v1/metrics", json=p, headers=headers_for(p), timeout=10)
        targets = ((f"http://127.0.0.1:{port}", {}), (server.url, READ))
        for url, headers in targets:  # the first scrape of each waits for a first reading
            text = requests.get(url + "/metrics", headers=headers, timeout=10).text
            assert value(text, "resmon_runs_stored") == 1
        blocker = psycopg2.connect(postgres_url)
        try:
            with blocker.cursor() as cur:  # count(*) on runs now waits for this transaction
                cur.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
            start = time.monotonic()
            for i in range(50):
                url, headers = targets[i % 2]
                response = requests.get(url + "/metrics", headers=headers, timeout=5)
                assert response.status_code == 200
                assert value(response.text, "resmon_runs_stored") == 1
            assert time.monotonic() - start < 10
            time.sleep(0.5)
            for url, headers in targets:  # the readings are stuck, the scrapes are not
                text = requests.get(url + "/metrics", headers=headers, timeout=5).text
                assert value(text, "resmon_database_stats_age_seconds") > 0.5
        finally:
            blocker.rollback()
            blocker.close()
        deadline = time.monotonic() + 10
        for url, headers in targets:
            while True:
                text = requests.get(url + "/metrics", headers=headers, timeout=5).text
                if value(text, "resmon_database_stats_age_seconds") < 0.5:
                    break
                assert time.monotonic() < deadline
                time.sleep(0.1)
    assert server.returncode == 0
