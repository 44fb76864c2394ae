"""Prometheus metrics of resmon serve: GET /metrics (read token), multi-worker counts,
--metrics-addr; the separate listener's own behaviour is in test_metrics_listener.py."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from server_proc import RESMON, ServerProcess, free_port, sample_payload

from resmon.server import ServerConfig, create_app
from resmon.server.config import PUSH_OUTCOMES
from resmon.server.metrics import method_label
from resmon.tokens import push_token

HMAC_KEY = "metrics-hmac-key"
READ_TOKEN = "metrics-read-token"
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


# --- helpers -------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def pushes(text: str) -> dict[str, float]:
    got = samples(text)
    return {r: got[("resmon_pushes_received_total", (("result", r),))] for r in PUSH_OUTCOMES}


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


def scrape(url: str) -> str:
    """The main port's /metrics, with the read token."""
    response = requests.get(url + "/metrics", headers=READ, timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def scrape_until(get_text, name: str, expected: float, timeout: float = 10) -> str:
    """Scrape until the background reading shows ``expected`` for ``name``."""
    deadline = time.monotonic() + timeout
    while True:
        text = get_text()
        if value(text, name) == expected:
            return text
        assert time.monotonic() < deadline, (name, value(text, name), expected)
        time.sleep(0.05)


def series_count(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def promtool_check(text: str) -> None:
    """``promtool check metrics`` (lint and parse); without promtool, outside CI only,
    prometheus_client's own parser stands in."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required in CI (.ci/run installs the prometheus package)")
        list(text_string_to_metric_families(text))  # raises on malformed exposition
        return
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    problems = (result.stdout + result.stderr).decode()
    assert result.returncode == 0 and not problems.strip(), problems


def headers_for(payload: dict) -> dict[str, str]:
    e = payload["execution"]
    token = push_token(HMAC_KEY, e["organization"], e["repository"], e["workflow"], e["job"])
    return {"Authorization": f"Bearer {token}"}


def drive_every_outcome(post) -> dict[str, int]:
    """Push once per outcome kind (some twice); returns the expected counts.

    ``post(body_bytes_or_json, headers)`` sends one push and returns the status.
    """
    p1, p2 = sample_payload("101"), sample_payload("102")
    assert post(p1, headers_for(p1)) == 201
    assert post(p2, headers_for(p2)) == 201
    assert post(p1, headers_for(p1)) == 200  # same run again: duplicate
    assert post(p1, {}) == 401  # no token
    assert post(p1, {"Authorization": "Bearer " + "0" * 64}) == 401  # wrong token
    assert post(b"{not json", headers_for(p1)) == 400
    bad = sample_payload("103", duration_seconds=-1)
    assert post(bad, headers_for(bad)) == 400
    keyed = sample_payload("104")
    key = {"Idempotency-Key": "k-104"}
    assert post(keyed, {**headers_for(keyed), **key}) == 201
    other = sample_payload("104", duration_seconds=1.0)
    assert post(other, {**headers_for(other), **key}) == 422  # key reused, other body
    big = sample_payload("105", padding="x" * (2 * 1024 * 1024))
    assert post(big, headers_for(big)) == 413
    return {"created": 3, "duplicate": 1, "rejected_auth": 2, "rejected_input": 3, "too_large": 1}


# --- in-process app ------------------------------------------------------------------


@pytest.fixture
def app(tmp_path):
    return create_app(
        ServerConfig(
            database=str(tmp_path / "m.db"),
            read_token=READ_TOKEN,
            hmac_keys=(HMAC_KEY,),
            metrics_refresh=0.1,
        )
    )


def test_metrics_on_the_main_port_need_the_read_token(app):
    client = app.test_client()
    push = push_token(HMAC_KEY, "o", "o/r", "w", "j")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {push}"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.json == {"error": "unauthorized"}
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "resmon_" not in response.text
    response = client.get("/metrics", headers=READ)
    assert response.status_code == 200
    assert "resmon_build_info" in response.text


def test_a_server_without_a_read_token_never_answers_metrics(tmp_path):
    app = create_app(ServerConfig(database=str(tmp_path / "m.db"), hmac_keys=(HMAC_KEY,)))
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401


def test_counters_move_by_outcome_in_process(app):
    client = app.test_client()

    def get_text() -> str:
        return client.get("/metrics", headers=READ).text

    before = pushes(get_text())
    assert before == dict.fromkeys(PUSH_OUTCOMES, 0.0)  # every series exists from the start

    def post(body, headers):
        kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
        return client.post("/api/v1/metrics", headers=headers, **kwargs).status_code

    expected = drive_every_outcome(post)
    text = scrape_until(get_text, "resmon_runs_stored", 3)
    assert pushes(text) == {k: float(v) for k, v in expected.items()}
    assert value(text, "resmon_database_size_bytes") > 0
    assert value(text, "resmon_database_up") == 1
    assert value(text, "resmon_build_info", version=__import__("resmon").__version__) == 1
    # Every push went through the one route template, whatever its outcome.
    count = value(
        text,
        "resmon_http_request_duration_seconds_count",
        route="/api/v1/metrics",
        method="POST",
    )
    assert count == sum(expected.values())
    promtool_check(text)


def test_labels_come_from_fixed_sets(app):
    client = app.test_client()
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    client.get("/api/v1/metrics/repo/secret-org/secret-org%2Fsecret-repo/wf/job", headers=headers)
    client.get("/no/such/path/secret-org")
    client.open("/health", method="BREW")  # a method nobody registered
    text = client.get("/metrics", headers=headers).text
    assert "secret" not in text
    got = samples(text)
    routes = {dict(labels).get("route") for _name, labels in got if labels}
    methods = {dict(labels).get("method") for _name, labels in got if labels}
    assert "/api/v1/metrics/repo/<path:scope>" in routes
    assert "<unmatched>" in routes
    assert "other" in methods and "BREW" not in methods


def test_method_label():
    assert method_label("GET") == "GET"
    assert method_label("get") == "other"
    assert method_label("X" * 1000) == "other"


def test_metrics_path_is_off_when_served_apart(tmp_path):
    app = create_app(
        ServerConfig(
            database=str(tmp_path / "m.db"),
            read_token=READ_TOKEN,
            hmac_keys=(HMAC_KEY,),
            metrics_path=False,
        )
    )
    response = app.test_client().get("/metrics")
    assert response.status_code == 404
    assert response.json == {"error": "not found"}


def test_database_gauges_on_postgresql(postgres_url):  # noqa: F811
    app = create_app(ServerConfig(database=postgres_url, read_token="r", hmac_keys=(HMAC_KEY,)))
    client = app.test_client()
    payload = sample_payload("1")
    assert (
        client.post("/api/v1/metrics", json=payload, headers=headers_for(payload)).status_code
        == 201
    )
    text = client.get("/metrics", headers={"Authorization": "Bearer r"}).text
    assert value(text, "resmon_runs_stored") == 1
    # pg_database_size: a fresh database is several MB, far above any SQLite file here.
    assert value(text, "resmon_database_size_bytes") > 1_000_000
    promtool_check(text)


# --- the real server ---------------------------------------------------------------------


def _workers(master: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            # The maintenance process (rollups, retention) is a child too, not a worker.
            child = int(stat[stat.rfind(b")") + 2 :].split()[1]) == master
            if child and b"resmon.server.maintenance" not in cmdline:
                out.append(int(entry))
    return out


def _wait_for_workers(server: ServerProcess, n: int, gone: int | None = None) -> list[int]:
    """gunicorn spawns workers one by one, with a short random pause in between."""
    deadline = time.monotonic() + 20
    while True:
        alive = _workers(server.proc.pid)
        if len(alive) == n and gone not in alive:
            return alive
        assert time.monotonic() < deadline, (alive, server.stderr_text()[-2000:])
        time.sleep(0.05)


def _post_live(server: ServerProcess):
    def post(body, headers):
        kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
        return requests.post(
            server.url + "/api/v1/metrics", headers=headers, timeout=10, **kwargs
        ).status_code

    return post


@pytest.mark.slow
def test_counts_add_up_across_workers_and_survive_a_worker_death(tmp_path):
    env = {"TMPDIR": str(tmp_path)}
    with ServerProcess(
        tmp_path / "m.db",
        read_token=READ_TOKEN,
        hmac_keys=(HMAC_KEY,),
        extra_args=("--workers=3", "--metrics-refresh=0.2s"),
        env=env,
    ) as server:
        expected = drive_every_outcome(_post_live(server))
        # Many scrapes land on different workers: each must show the whole server.
        for _ in range(6):
            text = scrape(server.url)
            assert pushes(text) == {k: float(v) for k, v in expected.items()}
        promtool_check(text)
        assert value(text, "resmon_runs_stored") == 3
        assert value(text, "resmon_database_up") == 1
        # The private multiprocess directory lives under TMPDIR while serving.
        assert any(p.name.startswith("resmon-metrics-") for p in tmp_path.iterdir())

        # A worker that dies keeps its counts: gunicorn starts another one.
        workers = _wait_for_workers(server, 3)
        os.kill(workers[0], signal.SIGKILL)
        alive = _wait_for_workers(server, 3, gone=workers[0])
        assert workers[0] not in alive
        p = sample_payload("after-kill")
        assert _post_live(server)(p, headers_for(p)) == 201
        text = scrape_until(
            lambda: scrape(server.url), "resmon_runs_stored", expected["created"] + 1
        )
        assert pushes(text)["created"] == expected["created"] + 1
        assert value(text, "process_resident_memory_bytes") > 0
    assert server.returncode == 0
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith("resmon-metrics-")]
    assert leftovers == []  # removed when the server stopped


@pytest.mark.slow
def test_series_do_not_grow_with_distinct_repositories(tmp_path):
    with ServerProcess(
        tmp_path / "m.db",
        read_token=READ_TOKEN,
        hmac_keys=(HMAC_KEY,),
        extra_args=("--workers=2", "--metrics-refresh=0.2s"),
    ) as server:
        post = _post_live(server)
        warm = sample_payload("warm-up")
        assert post(warm, headers_for(warm)) == 201
        # Touch each worker's /metrics route once, so both label sets exist already.
        for _ in range(4):
            scrape(server.url)
        before = scrape(server.url)
        for i in range(100):
            p = sample_payload(
                str(i), organization=f"org-{i}", repository=f"org-{i}/repo-{i}", job=f"job-{i}"
            )
            assert post(p, headers_for(p)) == 201
        after = scrape_until(lambda: scrape(server.url), "resmon_runs_stored", 101)
    assert series_count(after) == series_count(before), (before, after)
    assert pushes(after)["created"] == 101
    assert "org-" not in after and "repo-" not in after


@pytest.mark.slow
def test_separate_metrics_listener(tmp_path):
    metrics_port = free_port()
    env = {"TMPDIR": str(tmp_path)}
    with ServerProcess(
        tmp_path / "m.db",
        hmac_keys=(HMAC_KEY,),
        extra_args=(f"--metrics-addr=127.0.0.1:{metrics_port}", "--workers=2"),
        env=env,
    ) as server:
        p = sample_payload("1")
        assert _post_live(server)(p, headers_for(p)) == 201
        # With --metrics-addr the main port has no /metrics unless asked for.
        assert requests.get(server.url + "/metrics", headers=READ, timeout=10).status_code == 404
        response = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        assert response.status_code == 200
        text = response.text
        assert pushes(text)["created"] == 1
        assert value(text, "resmon_runs_stored") == 1
        assert value(text, "resmon_database_up") == 1
        promtool_check(text)
    assert server.returncode == 0
    # Nothing leaks: the port is free again and the multiprocess directory is gone.
    with socket.socket() as s:
        # SO_REUSEADDR: a TIME_WAIT of a closed scrape connection is fine, a listener is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", metrics_port))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("resmon-metrics-")]


def test_metrics_addr_errors(tmp_path):
    env = {
        **os.environ,
        "RECEIVER_READ_TOKEN": "r",
        "RECEIVER_HMAC_KEY": HMAC_KEY,
        "TMPDIR": str(tmp_path),
    }
    base = [*RESMON, "serve", f"--db={tmp_path / 'm.db'}", f"--addr=127.0.0.1:{free_port()}"]

    def serve(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*base, *args], env=env, capture_output=True, text=True, timeout=30)

    result = serve("--metrics-addr=nonsense")
    assert result.returncode == 2, result.stderr
    assert "--metrics-addr" in result.stderr and "Traceback" not in result.stderr

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = serve(f"--metrics-addr=127.0.0.1:{busy.getsockname()[1]}")
    assert result.returncode == 1, result.stderr
    assert "cannot listen on --metrics-addr" in result.stderr
    assert "Traceback" not in result.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("resmon-metrics-")]


@pytest.mark.slow
def test_a_killed_servers_directory_is_removed_by_the_next_start(tmp_path):
    env = {"TMPDIR": str(tmp_path)}

    def dirs() -> list[str]:
        return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("resmon-metrics-"))

    killed = ServerProcess(tmp_path / "m.db", env=env).start()
    killed.kill()  # SIGKILL: no cleanup runs
    left = dirs()
    assert len(left) == 1 and left[0].startswith(f"resmon-metrics-{killed.proc.pid}-")
    with ServerProcess(tmp_path / "m.db", env=env) as server:
        now = dirs()
        assert left[0] not in now and len(now) == 1
        assert now[0].startswith(f"resmon-metrics-{server.proc.pid}-")
    assert dirs() == []
