"""The push client against a real HTTP server on loopback: retries, refusals, budgets."""

from __future__ import annotations

import json
import os
import time

import orjson
from collect_receiver import closed_port_url, spool_payload

from resmon.collect.push import PushClient, deliver, retry_after_seconds, retry_failed
from resmon.collect.spool import Spool


def test_503_three_times_then_201_is_one_delivery_with_one_key(tmp_path, receiver):
    receiver.script = [(503, b'{"error": "database restarting"}', {})] * 3
    spool = Spool(tmp_path)
    entry = spool.add(spool_payload())
    client = PushClient(receiver.url, "tok")
    report = deliver(spool, client, time.monotonic() + 10)
    assert [e.name for e in report.delivered] == [entry.name]
    assert report.ok and spool.pending() == []
    assert len(receiver.requests) == 4 and len(receiver.stored) == 1
    keys = {r.headers["Idempotency-Key"] for r in receiver.requests}
    assert keys == {entry.idempotency_key}
    bodies = {r.body for r in receiver.requests}
    assert len(bodies) == 1  # every retry sends the same bytes
    first = receiver.requests[0]
    assert first.headers["Authorization"] == "Bearer tok"
    assert first.headers["Content-Type"] == "application/json"
    assert first.json()["idempotency_key"] == entry.idempotency_key
    assert report.results[entry.name].attempts == 4
    assert report.results[entry.name].response == {"id": 1, "status": "created"}


def test_401_is_tried_once_and_lands_in_failed_with_the_reason(tmp_path, receiver):
    receiver.script = [(401, b'{"error": "invalid push token"}', {})]
    spool = Spool(tmp_path)
    entry = spool.add(spool_payload())
    report = deliver(spool, PushClient(receiver.url, "wrong"), time.monotonic() + 10)
    assert len(receiver.requests) == 1
    assert not report.ok and report.failed[0][1].status == 401
    assert spool.pending() == []
    reason = (tmp_path / "failed" / (entry.name + ".reason")).read_text()
    assert "HTTP 401: invalid push token" in reason


def test_429_honours_retry_after(tmp_path, receiver):
    receiver.script = [(429, b"slow down", {"Retry-After": "0.6"})]
    spool = Spool(tmp_path)
    spool.add(spool_payload())
    start = time.monotonic()
    report = deliver(spool, PushClient(receiver.url, "t"), start + 5)
    assert report.ok and len(receiver.requests) == 2
    assert time.monotonic() - start >= 0.6


def test_retry_after_beyond_budget_stops_early_and_keeps_the_payload(tmp_path, receiver):
    receiver.script = [(503, b"maintenance", {"Retry-After": "120"})]
    spool = Spool(tmp_path)
    entry = spool.add(spool_payload())
    start = time.monotonic()
    report = deliver(spool, PushClient(receiver.url, "t"), start + 1.0)
    assert time.monotonic() - start < 0.5  # no point waiting for a retry we cannot make
    assert [e.name for e, _ in report.left] == [entry.name]
    assert report.left[0][1].describe() == "HTTP 503: maintenance"


def test_closed_port_keeps_payload_within_budget(tmp_path):
    spool = Spool(tmp_path)
    entry = spool.add(spool_payload())
    start = time.monotonic()
    report = deliver(spool, PushClient(closed_port_url(), "t"), start + 0.8)
    elapsed = time.monotonic() - start
    assert elapsed < 1.2
    assert [e.name for e in spool.pending()] == [entry.name]
    result = report.left[0][1]
    assert result.status is None and "onnection" in result.describe()
    assert result.attempts >= 2  # retried within the budget


def test_each_entry_goes_with_the_token_it_was_spooled_with(tmp_path, receiver):
    spool = Spool(tmp_path)
    spool.add(spool_payload("old"), meta={"endpoint": receiver.url, "token": "token-of-old-job"})
    spool.add(spool_payload("new"))
    report = deliver(spool, PushClient(receiver.url, "token-of-this-job"), time.monotonic() + 5)
    assert report.ok
    auth = {r.json()["execution"]["run_id"]: r.headers["Authorization"] for r in receiver.requests}
    assert auth == {"old": "Bearer token-of-old-job", "new": "Bearer token-of-this-job"}


def test_a_repeat_answered_200_counts_as_delivered(tmp_path, receiver):
    spool = Spool(tmp_path)
    entry = spool.add(spool_payload())
    body = entry.read_body()
    receiver.stored[entry.idempotency_key] = None  # the server already has it
    report = deliver(spool, PushClient(receiver.url, "t"), time.monotonic() + 5)
    assert report.ok and receiver.requests[0].body == body


def test_retry_after_parsing():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0


def test_a_server_that_hangs_costs_no_more_than_the_budget(tmp_path, receiver):
    receiver.delay = 3.0
    spool = Spool(tmp_path)
    entry = spool.add(spool_payload())
    start = time.monotonic()
    report = deliver(spool, PushClient(receiver.url, "t"), start + 0.5)
    assert time.monotonic() - start < 0.9
    assert [e.name for e, _ in report.left] == [entry.name]
    assert "timed out" in report.left[0][1].describe().lower()


def test_an_entry_that_is_not_a_payload_is_set_aside_and_never_sent(tmp_path, receiver):
    secret = tmp_path / "secret"
    secret.write_bytes(b'{"execution": {"run_id": "SECRET"}}')
    spool = Spool(tmp_path / "spool")
    good = spool.add(spool_payload("good"))
    linked = spool.directory / ("0" * 19 + "1-11111111-1111-4111-8111-111111111111.json")
    linked.symlink_to(secret)
    report = deliver(spool, PushClient(receiver.url, "t"), time.monotonic() + 5)
    assert [e.name for e in report.delivered] == [good.name]
    assert [e.name for e in report.skipped] == [linked.name]
    assert [r.json()["execution"]["run_id"] for r in receiver.requests] == ["good"]
    assert (spool.directory / "quarantine" / linked.name).is_symlink()
    assert spool.pending() == [] and spool.skipped == 1


def test_retry_failed_uses_the_current_token_and_keeps_the_key(tmp_path, receiver):
    spool = Spool(tmp_path)
    a = spool.add(spool_payload("a"), meta={"endpoint": receiver.url, "token": "expired"})
    b = spool.add(spool_payload("b"), meta={"endpoint": receiver.url, "token": "expired"})
    for entry in (a, b):
        spool.move_to_failed(entry, "HTTP 401: invalid push token")
    bodies = {e.idempotency_key: (tmp_path / "failed" / e.name).read_bytes() for e in (a, b)}
    receiver.script = [(201, b'{"id": 7, "status": "created"}', {}), (422, b"bad run", {})]
    report = retry_failed(spool, PushClient("", "renewed"), time.monotonic() + 5)
    assert [e.name for e in report.delivered] == [a.name]
    assert [e.name for e, _ in report.failed] == [b.name]
    for request in receiver.requests:
        assert request.headers["Authorization"] == "Bearer renewed"
        assert request.body == bodies[request.headers["Idempotency-Key"]]
    assert [e.name for e in spool.failed()] == [b.name]
    assert sorted(os.listdir(tmp_path / "failed")) == sorted(
        [b.name, b.name + ".meta", b.name + ".reason"]
    )
    reason = (tmp_path / "failed" / (b.name + ".reason")).read_text()
    assert reason == f"{receiver.url}: HTTP 422: bad run\n"


def test_retry_failed_without_a_token_sends_the_one_it_was_spooled_with(tmp_path, receiver):
    # For a refusal that was not the token's fault (fixed on the server since).
    spool = Spool(tmp_path)
    entry = spool.add(spool_payload(), meta={"endpoint": receiver.url, "token": "own"})
    spool.move_to_failed(entry, "HTTP 422: idempotency key in use")
    report = retry_failed(spool, PushClient("", None), time.monotonic() + 5)
    assert report.ok and receiver.requests[0].headers["Authorization"] == "Bearer own"
    assert os.listdir(tmp_path / "failed") == []


def _logged_push(tmp_path, receiver, log_format: str) -> str:
    """Deliver one entry with the collector's own log handler and return what it wrote."""
    import io

    from resmon.collect.logging_setup import configure_logging

    stream = io.StringIO()
    undo = configure_logging("INFO", log_format, stream)
    try:
        spool = Spool(tmp_path)
        entry = spool.add(spool_payload())
        assert deliver(spool, PushClient(receiver.url, "t"), time.monotonic() + 5).ok
    finally:
        undo()
    [line] = [x for x in stream.getvalue().splitlines() if f"pushed {entry.name}" in x]
    return line


def test_the_servers_answer_is_logged_as_json_not_a_python_repr(tmp_path, receiver):
    receiver.script = [(201, b'{"id": 41, "status": "created", "note": "it\'s \\"here\\""}', {})]
    line = _logged_push(tmp_path, receiver, "json")
    record = orjson.loads(line)
    assert record["response"] == {"id": 41, "status": "created", "note": 'it\'s "here"'}
    assert record["level"] == "INFO" and record["msg"].startswith("pushed ")
    assert "{'id'" not in line


def test_the_servers_answer_is_logged_as_dotted_keys_in_text(tmp_path, receiver):
    receiver.script = [(201, b'{"id": 41, "status": "created", "note": "a b", "tags": [1]}', {})]
    line = _logged_push(tmp_path, receiver, "text")
    assert line.startswith("time=") and ' level=INFO msg="pushed ' in line
    assert line.endswith(
        ' response.id=41 response.status=created response.note="a b" response.tags=[1]'
    )
    assert "{'id'" not in line


def test_an_answer_json_cannot_hold_is_still_one_line(tmp_path, receiver):
    # Python reads a 100-digit integer; orjson cannot write it: the log line must not fail.
    receiver.script = [(201, b'{"id": ' + b"9" * 100 + b', "status": "created"}', {})]
    line = _logged_push(tmp_path, receiver, "json")
    assert json.loads(line)["response"] == {"id": int("9" * 100), "status": "created"}
    receiver.script = [(201, b"not json", {})]
    line = _logged_push(tmp_path / "2", receiver, "text")
    assert line.endswith(" response=null")
