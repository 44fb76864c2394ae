"""Alerts through real ``resmon serve`` processes, on SQLite and PostgreSQL: rules from
a file and the admin API, runs pushed over HTTP, the evaluator in the background,
alert events on the event stream, and webhooks to a receiver on loopback that fails
before it accepts, signed and retried from the outbox, across a restart."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
import requests
from alert_helpers import run_payload
from server_proc import ServerProcess, free_port

pytestmark = pytest.mark.slow

SECRET = "webhook-secret-0123456789"
ADMIN = "admin-token-0123456789abcdef"
FAST = (
    "--alert-poll-interval=50ms",
    "--webhook-backoff=200ms",
    "--webhook-timeout=2s",
)


class Receiver:
    """A webhook receiver on a loopback port: answers 500 to the first ``fail_first``
    requests, 200 after; records every request; de-duplicates by event id."""

    def __init__(self, fail_first: int = 0, port: int | None = None) -> None:
        self.fail_first = fail_first
        self.requests: list[dict] = []
        self.accepted: dict[int, int] = {}  # event id -> times answered 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    n = len(receiver.requests)
                    event_id = int(self.headers["X-Resmon-Event-Id"])
                    receiver.requests.append(
                        {"headers": dict(self.headers), "body": body, "event_id": event_id}
                    )
                    ok = n >= receiver.fail_first
                    if ok:
                        receiver.accepted[event_id] = receiver.accepted.get(event_id, 0) + 1
                self.send_response(200 if ok else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port or 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def wait_accepted(self, count: int, timeout: float = 20.0) -> dict[int, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.accepted) >= count:
                    return dict(self.accepted)
            time.sleep(0.05)
        raise AssertionError(f"accepted {self.accepted} of {count}; requests {len(self.requests)}")


def push_runs(server, shares, start=1):
    for i, share in enumerate(shares, start):
        answer = server.push(run_payload(str(i), share))
        assert answer.status_code == 201, answer.text


def alert_events(server, count, timeout=20.0):
    """The alert events stored, once ``count`` are (read back with the event stream)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = requests.get(
            server.url + "/api/v1/events",
            params={"last_event_id": "0", "kinds": "alert", "timeout_seconds": "0.5"},
            headers=server.read_headers,
            timeout=10,
        )
        found = [
            orjson.loads(line[len("data: ") :])
            for line in answer.text.splitlines()
            if line.startswith("data: ")
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def database_target(backend, tmp_path, request):
    if backend == "sqlite":
        return tmp_path / "metrics.db"
    return request.getfixturevalue("postgres_url")


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def rules_file(tmp_path, consecutive=3, threshold="90%"):
    path = tmp_path / "alerts.toml"
    path.write_text(
        f'[[rule]]\nname = "memory near the limit"\nmem_threshold = "{threshold}"\n'
        f"consecutive = {consecutive}\n"
    )
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_receiver_failing_twice_gets_each_event_once_signed(backend, tmp_path, request):
    with Receiver(fail_first=2) as hook:
        args = (
            *FAST,
            f"--alert-rules={rules_file(tmp_path)}",
            f"--webhook-url={hook.url}",
        )
        env = {"RESMON_WEBHOOK_SECRET": SECRET}
        target = database_target(backend, tmp_path, request)
        with ServerProcess(target, extra_args=args, env=env, startup_timeout=60) as server:
            time.sleep(0.3)  # the evaluator's cursor starts at the newest event
            push_runs(server, [0.95, 0.95, 0.95, 0.5, 0.5, 0.5])
            stored = alert_events(server, 2)
            assert [e["data"]["state"] for e in stored] == ["mem_alert", "normal"]
            accepted = hook.wait_accepted(2)
        # Each event id accepted exactly once; the failures were retried.
        assert accepted == {e["id"]: 1 for e in stored}
        assert len(hook.requests) == 4
        for event in stored:  # attempts 1, 2, ... of each event, the last one accepted
            attempts = [
                int(r["headers"]["X-Resmon-Attempt"])
                for r in hook.requests
                if r["event_id"] == event["id"]
            ]
            assert attempts == list(range(1, len(attempts) + 1))
        for r in hook.requests:
            mac = hmac.new(SECRET.encode(), r["body"], hashlib.sha256).hexdigest()
            assert r["headers"]["X-Resmon-Signature"] == f"sha256={mac}"
            assert json.loads(r["body"])["id"] == r["event_id"]
        assert server.returncode == 0, server.stderr_text()[-3000:]


def test_the_outbox_survives_a_restart(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"  # nothing listens there yet
    args = (*FAST, f"--alert-rules={rules_file(tmp_path, consecutive=1)}", f"--webhook-url={url}")
    database = tmp_path / "metrics.db"
    with ServerProcess(database, extra_args=args) as server:
        time.sleep(0.3)
        push_runs(server, [0.95])
        (event,) = alert_events(server, 1)
        time.sleep(0.5)  # a few refused attempts
    from resmon.store import db as dbmod
    from resmon.store import outbox

    db = dbmod.open_database(str(database))
    assert outbox.pending() == 1
    db.close()
    with (
        Receiver(port=port) as hook,
        ServerProcess(
            database,
            read_token=server.read_token,
            hmac_keys=server.hmac_keys,
            extra_args=args,
        ),
    ):
        assert hook.wait_accepted(1) == {event["id"]: 1}
        body = json.loads(hook.requests[0]["body"])
        assert (
            body["data"]["state"] == "mem_alert"
            and int(hook.requests[0]["headers"]["X-Resmon-Attempt"]) > 1
        )
    db = dbmod.open_database(str(database))
    assert outbox.pending() == 0
    db.close()


def test_rules_from_the_file_and_the_admin_api(tmp_path):
    path = rules_file(tmp_path)
    args = (*FAST, f"--alert-rules={path}")
    with ServerProcess(
        tmp_path / "metrics.db", extra_args=args, env={"RESMON_ADMIN_TOKEN": ADMIN}
    ) as server:
        rules_url = server.url + "/api/v1/alerts/rules"
        admin = {"Authorization": f"Bearer {ADMIN}"}
        (file_rule,) = requests.get(rules_url, headers=server.read_headers, timeout=10).json()[
            "rules"
        ]
        assert file_rule["source"] == "file" and file_rule["mem_threshold"] == "90%"
        refused = requests.patch(
            f"{rules_url}/{file_rule['id']}", json={"enabled": False}, headers=admin, timeout=10
        )
        assert refused.status_code == 409 and "rules file" in refused.json()["error"]
        created = requests.post(
            rules_url,
            json={"name": "cpu", "cpu_threshold": "1.5 cores", "evaluate_on": "samples"},
            headers=admin,
            timeout=10,
        )
        assert created.status_code == 201, created.text
        assert (
            requests.post(
                rules_url, json={"name": "x"}, headers=server.read_headers, timeout=10
            ).status_code
            == 401
        )
        # The file changes: the evaluator applies it.
        path.write_text('[[rule]]\nname = "memory near the limit"\nmem_threshold = "80%"\n')
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rules = requests.get(rules_url, headers=server.read_headers, timeout=10).json()["rules"]
            if rules[0]["mem_threshold"] == "80%":
                break
            time.sleep(0.1)
        assert [(r["name"], r["source"]) for r in rules] == [
            ("memory near the limit", "file"),
            ("cpu", "api"),
        ]
        assert rules[0]["mem_threshold"] == "80%" and rules[0]["consecutive"] == 3
        gone = requests.delete(f"{rules_url}/{created.json()['id']}", headers=admin, timeout=10)
        assert gone.status_code == 204


def test_a_bad_rules_file_stops_serve_with_where(tmp_path, runner):
    from resmon.cli import cli

    path = tmp_path / "alerts.toml"
    path.write_text('[[rule]]\nname = "x"\nmem_threshold = "ninety"\n')
    result = runner.invoke(
        cli,
        ["serve", f"--db={tmp_path / 'm.db'}", f"--alert-rules={path}"],
        env={"RECEIVER_READ_TOKEN": "r" * 20, "RECEIVER_HMAC_KEY": "k" * 20},
    )
    assert result.exit_code == 2, result.output
    assert "rule 1 (x): mem_threshold 'ninety'" in result.output


def test_the_admin_token_must_differ_from_the_read_token(tmp_path, runner):
    from resmon.cli import cli

    result = runner.invoke(
        cli,
        ["serve", f"--db={tmp_path / 'm.db'}"],
        env={
            "RECEIVER_READ_TOKEN": "r" * 20,
            "RECEIVER_HMAC_KEY": "k" * 20,
            "RESMON_ADMIN_TOKEN": "r" * 20,
        },
    )
    assert result.exit_code == 2 and "admin token must differ" in result.output


@pytest.mark.postgres
def test_two_replicas_on_postgres_evaluate_each_event_once(tmp_path, postgres_url):
    with Receiver() as hook:
        args = (*FAST, f"--alert-rules={rules_file(tmp_path, consecutive=2)}")
        args += (f"--webhook-url={hook.url}",)
        first = ServerProcess(postgres_url, extra_args=(*args, "--workers=2")).start()
        try:
            second = ServerProcess(
                postgres_url,
                read_token=first.read_token,
                hmac_keys=first.hmac_keys,
                extra_args=(*args, "--workers=2"),
            ).start()
            try:
                time.sleep(0.3)
                shares = [0.95, 0.95, 0.5, 0.5, 0.95, 0.95, 0.5, 0.5]
                for i, share in enumerate(shares, 1):
                    server = first if i % 2 else second
                    assert server.push(run_payload(str(i), share)).status_code == 201
                stored = alert_events(first, 4)
                time.sleep(1.0)  # four evaluators polling every 50 ms: none adds a change
                stored = alert_events(first, 4)
                assert [e["data"]["state"] for e in stored] == [
                    "mem_alert",
                    "normal",
                    "mem_alert",
                    "normal",
                ]
                # One delivery per event, whichever replica sent it.
                assert hook.wait_accepted(4) == {e["id"]: 1 for e in stored}
                assert len(hook.requests) == 4
            finally:
                second.terminate()
        finally:
            first.terminate()


def test_live_samples_alert_on_the_event_stream(tmp_path):
    from alert_helpers import live_body

    rules = tmp_path / "alerts.toml"
    rules.write_text(
        '[[rule]]\nname = "cpu busy"\nevaluate_on = "samples"\ncontainer = "runner"\n'
        'cpu_threshold = "90%"\nconsecutive = 2\n'
    )
    with ServerProcess(tmp_path / "m.db", extra_args=(*FAST, f"--alert-rules={rules}")) as server:
        time.sleep(0.3)
        for seq, share in enumerate([0.95, 0.99, 0.99, 0.1, 0.1]):
            body = live_body(
                "rk-live", seq, cpu_share=share, mem_share=0.1, t=f"2026-01-02T03:04:{seq:02d}Z"
            )
            answer = requests.post(
                server.url + "/api/v1/metrics/live",
                json=body,
                headers=server.push_headers(body["execution"]),
                timeout=10,
            )
            assert answer.status_code == 201, answer.text
        stored = alert_events(server, 2)
        assert [(e["data"]["container"], e["data"]["state"]) for e in stored] == [
            ("runner", "cpu_alert"),
            ("runner", "normal"),
        ]
        assert stored[0]["data"]["evaluate_on"] == "samples"
        assert stored[0]["data"]["cpu"] == {
            "value": 1.98,
            "limit": 2.0,
            "threshold": "90%",
            "breaches": 2,
        }


def test_a_receiver_that_hangs_holds_up_nothing_else(tmp_path):
    """A receiver that accepts the connection and never answers: each delivery waits
    its timeout and backs off; pushes, evaluation and the event stream go on."""
    import socket

    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)  # never accepted: connections complete, no answer ever comes
    url = f"http://127.0.0.1:{hang.getsockname()[1]}/hook"
    args = (
        "--alert-poll-interval=50ms",
        "--webhook-timeout=1s",
        "--webhook-backoff=100ms",
        f"--alert-rules={rules_file(tmp_path, consecutive=1)}",
        f"--webhook-url={url}",
    )
    try:
        with ServerProcess(tmp_path / "m.db", extra_args=args) as server:
            time.sleep(0.3)
            latencies = []
            for i, share in enumerate([0.95, 0.5] * 10, 1):
                started = time.perf_counter()
                assert server.push(run_payload(str(i), share)).status_code == 201
                latencies.append(time.perf_counter() - started)
            stored = alert_events(server, 20)
            assert len(stored) == 20  # every change evaluated while deliveries hang
            assert max(latencies) < 0.5, latencies
    finally:
        hang.close()
    from resmon.store import db as dbmod
    from resmon.store.models import WebhookOutbox

    db = dbmod.open_database(str(tmp_path / "m.db"))
    rows = list(WebhookOutbox.select())
    assert len(rows) == 20 and all(r.delivered_at is None for r in rows)
    tried = [r for r in rows if r.attempts]
    assert tried and all("timed out" in (r.last_error or "") for r in tried if r.last_error)
    db.close()


def test_a_restarted_server_evaluates_at_once(tmp_path):
    """The stopping worker gives its lease up: the next server does not wait for it."""
    args = (*FAST, f"--alert-rules={rules_file(tmp_path, consecutive=1)}")
    database = tmp_path / "metrics.db"
    with ServerProcess(database, extra_args=args) as server:
        time.sleep(0.3)
        push_runs(server, [0.95])
        assert len(alert_events(server, 1)) == 1
    with ServerProcess(
        database, read_token=server.read_token, hmac_keys=server.hmac_keys, extra_args=args
    ) as again:
        started = time.monotonic()
        push_runs(again, [0.5], start=2)
        assert len(alert_events(again, 2, timeout=5)) == 2
        assert time.monotonic() - started < 3


def test_sighup_rereads_the_rules_file(tmp_path):
    """An edit the size and time checks cannot see (same size, the old modification
    time put back) is applied once SIGHUP restarts the workers."""
    import os
    import signal

    path = rules_file(tmp_path, threshold="90%")
    with ServerProcess(tmp_path / "m.db", extra_args=(*FAST, f"--alert-rules={path}")) as server:
        url = server.url + "/api/v1/alerts/rules"
        rules = requests.get(url, headers=server.read_headers, timeout=10).json()["rules"]
        assert rules[0]["mem_threshold"] == "90%"
        stat = os.stat(path)
        path.write_text(path.read_text().replace("90%", "80%"))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        time.sleep(0.5)
        rules = requests.get(url, headers=server.read_headers, timeout=10).json()["rules"]
        assert rules[0]["mem_threshold"] == "90%"  # not seen without the signal
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                answer = requests.get(url, headers=server.read_headers, timeout=10)
                if answer.json()["rules"][0]["mem_threshold"] == "80%":
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        assert answer.json()["rules"][0]["mem_threshold"] == "80%"


def test_slack_format_posts_one_line_of_text(tmp_path):
    with Receiver() as hook:
        args = (
            *FAST,
            f"--alert-rules={rules_file(tmp_path, consecutive=1)}",
            f"--webhook-url={hook.url}",
            "--webhook-format=slack",
        )
        with ServerProcess(tmp_path / "m.db", extra_args=args) as server:
            time.sleep(0.3)
            push_runs(server, [0.95])
            (event,) = alert_events(server, 1)
            assert hook.wait_accepted(1) == {event["id"]: 1}
    body = json.loads(hook.requests[0]["body"])
    assert list(body) == ["text"]
    assert body["text"].startswith(
        "resmon alert: my-org/my-repo ci.yml / build: normal -> mem_alert"
    )
    assert "X-Resmon-Signature" not in hook.requests[0]["headers"]  # no secret given
