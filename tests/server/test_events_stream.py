"""GET /api/v1/events on a real ``resmon serve`` (SQLite file): order and ids, resume
with Last-Event-ID, filters, heartbeats, the subscriber limit, request threads left
free, the read token's three places, bad parameters."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from events_client import SCOPE, EventStream, add_events
from server_proc import ServerProcess, sample_payload

from resmon.store import db as dbmod


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server for the module (2 threads, fast heartbeats) and its database."""
    path = tmp_path_factory.mktemp("events") / "m.db"
    with ServerProcess(
        path, extra_args=("--threads=2", "--sse-heartbeat=300ms", "--sse-max-subscribers=12")
    ) as server:
        database = dbmod.open_database(str(path))
        yield server, database
        database.close()
    assert server.returncode == 0, server.stderr_text()[-3000:]


def test_events_arrive_in_order_with_ids(served):
    server, db = served
    with EventStream(server.url, server.read_headers) as stream:
        assert stream.status == 200
        assert stream.response.headers["Content-Type"] == "text/event-stream"
        time.sleep(0.5)  # subscribed: only events from now on
        ids = add_events(db, 20, label="order")
        got = stream.wait_for(20)
    assert [e["id"] for e in got] == ids
    assert [e["data"]["data"]["n"] for e in got] == list(range(20))
    first = got[0]
    assert first["event"] == "snapshot" and first["data"]["kind"] == "snapshot"
    assert {k: first["data"][k] for k in SCOPE} == SCOPE
    assert first["data"]["id"] == first["id"] and first["data"]["created_at"].endswith("Z")


def test_reconnect_with_last_event_id_misses_none_and_repeats_none(served):
    """A writer appends 150 events while the client drops its connection twice and
    resumes each time with Last-Event-ID (the header, then the parameter)."""
    server, db = served
    start = add_events(db, 1, label="mark")[0]
    written: list[int] = []

    def write() -> None:
        for _ in range(150):
            written.extend(add_events(db, 1, label="r"))
            time.sleep(0.01)

    writer = threading.Thread(target=write)
    got: list[dict] = []
    with EventStream(server.url, {**server.read_headers, "Last-Event-ID": str(start)}) as s:
        writer.start()
        got += s.wait_for(40)
    with EventStream(server.url, {**server.read_headers, "Last-Event-ID": str(got[-1]["id"])}) as s:
        got += s.wait_for(50)
    with EventStream(server.url, server.read_headers, {"last_event_id": got[-1]["id"]}) as s:
        writer.join()
        got += s.wait_for(len(written) - len(got))
        assert s.none_within(0.6) == []
    assert [e["id"] for e in got] == written


def test_resume_gets_stored_events_before_live_ones(served):
    server, db = served
    ids = add_events(db, 5, label="before")
    with EventStream(server.url, server.read_headers, {"last_event_id": ids[0]}) as stream:
        assert [e["id"] for e in stream.wait_for(4)] == ids[1:]
        more = add_events(db, 3, label="after")
        assert [e["id"] for e in stream.wait_for(3)] == more


def test_filters_by_scope_and_kind(served):
    server, db = served
    other = {**SCOPE, "organization": "p", "repository": "p/q"}
    params = {"organization": "p", "kinds": "run_started,run_lost"}
    with (
        EventStream(server.url, server.read_headers, params) as filtered,
        EventStream(server.url, server.read_headers, {"repository": "o/r", "job": "j"}) as mine,
    ):
        time.sleep(0.5)
        add_events(db, 2, "snapshot", other)
        wanted = add_events(db, 1, "run_started", other) + add_events(db, 1, "run_lost", other)
        add_events(db, 1, "run_lost", SCOPE)
        ours = add_events(db, 1, "run_finished", SCOPE)
        assert [e["id"] for e in filtered.wait_for(2)] == wanted
        assert filtered.none_within(0.6) == []
        got = mine.wait_for(2)
        assert [e["event"] for e in got] == ["run_lost", "run_finished"]
        assert got[-1]["id"] == ours[0]


def test_heartbeats_on_an_idle_stream(served):
    server, _ = served
    with EventStream(server.url, server.read_headers) as stream:
        time.sleep(1.2)
        assert stream.comments.count(": hb") >= 2, stream.comments


def test_read_token_in_header_parameter_or_cookie(served):
    server, _ = served
    for kwargs in (
        {"params": {"token": server.read_token}},
        {"cookies": {"resmon_read_token": server.read_token}},
    ):
        with EventStream(server.url, **kwargs) as stream:
            assert stream.status == 200
    for kwargs in ({}, {"params": {"token": "wrong"}}, {"headers": {"Authorization": "Bearer x"}}):
        with EventStream(server.url, **kwargs) as stream:
            assert stream.status == 401
            assert stream.response.json() == {"error": "unauthorized"}


@pytest.mark.parametrize(
    "params, headers",
    [
        ({"last_event_id": "abc"}, {}),
        ({"last_event_id": "-1"}, {}),
        ({"last_event_id": "99999999999999999999"}, {}),
        ({}, {"Last-Event-ID": "1.5"}),
        ({"kinds": "snapshot,nope"}, {}),
        ({"timeout_seconds": "0"}, {}),
        ({"timeout_seconds": "nan"}, {}),
        ({"timeout_seconds": "100000"}, {}),
        ({"organization": "x" * 300}, {}),
        ({"job": "a\x00b"}, {}),
    ],
)
def test_bad_parameters_are_400(served, params, headers):
    server, _ = served
    response = requests.get(
        server.url + "/api/v1/events",
        params=params,
        headers={**server.read_headers, **headers},
        timeout=5,
    )
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}


def test_timeout_seconds_ends_the_stream(served):
    server, _ = served
    started = time.monotonic()
    response = requests.get(
        server.url + "/api/v1/events",
        params={"timeout_seconds": "0.5"},
        headers=server.read_headers,
        timeout=5,
    )
    assert response.status_code == 200
    assert 0.4 < time.monotonic() - started < 3
    assert response.text.startswith(": resmon events\nretry: 2000\n\n")


def test_subscriber_limit_answers_503_with_retry_after_and_frees_places(served):
    server, _ = served
    streams = [EventStream(server.url, server.read_headers) for _ in range(12)]
    try:
        assert [s.status for s in streams] == [200] * 12
        over = requests.get(server.url + "/api/v1/events", headers=server.read_headers, timeout=5)
        assert over.status_code == 503
        assert int(over.headers["Retry-After"]) >= 1
        assert "subscribers" in over.json()["error"]
        streams.pop().close()
        time.sleep(0.3)  # the loop notices the client left
        again = EventStream(server.url, server.read_headers)
        streams.append(again)
        assert again.status == 200
    finally:
        for s in streams:
            s.close()


def test_pushes_keep_their_speed_with_more_subscribers_than_threads(served):
    """12 streams open on a worker with 2 request threads: pushes and reads answer
    as fast as with none, and every stream still gets the events."""
    server, db = served

    def push_times(tag: str) -> list[float]:
        out = []
        for i in range(15):
            started = time.perf_counter()
            response = server.push(sample_payload(f"{tag}-{i}"))
            out.append(time.perf_counter() - started)
            assert response.status_code == 201, response.text
        return out

    alone = sorted(push_times("alone"))
    # Pushes append run_finished events: these streams wait for snapshots only.
    streams = [
        EventStream(server.url, server.read_headers, {"kinds": "snapshot"}) for _ in range(12)
    ]
    try:
        assert [s.status for s in streams] == [200] * 12
        with_streams = sorted(push_times("with"))
        assert requests.get(server.url + "/health", timeout=2).status_code == 200
        ids = add_events(db, 3, label="fanout")
        for s in streams:
            assert [e["id"] for e in s.wait_for(3)] == ids
    finally:
        for s in streams:
            s.close()
    # The median push with 12 subscribers, against the same without (noisy machine:
    # a generous factor; a held thread would make pushes queue for seconds).
    assert with_streams[7] < max(0.2, 4 * alone[7]), (alone, with_streams)
    assert with_streams[-1] < 2.0, with_streams
