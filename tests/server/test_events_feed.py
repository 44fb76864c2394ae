"""The pieces behind GET /api/v1/events, in process: the feed (catch-up, the
visibility rule for ids that commit out of order, on SQLite and PostgreSQL), the
SSE text, and the socket loop (chunks, heartbeats, a slow subscriber dropped)."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime

import orjson
import pytest
from events_client import SCOPE, add_events, parse_block

from resmon.server.event_feed import EventFeed, EventFilter, GapRule, Subscriber, format_event
from resmon.server.sse import SseLoop
from resmon.store import db as dbmod
from resmon.store import events as store_events


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path):
    target = (
        str(tmp_path / "m.db")
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    db = dbmod.open_database(target)
    dbmod.migrate(db)
    yield db
    db.close()


class Collect:
    def __init__(self) -> None:
        self.got: dict[Subscriber, list[int]] = {}

    def __call__(self, items: list[tuple[Subscriber, bytes]]) -> None:
        for sub, data in items:
            # One piece may carry several events (a round's for one subscriber).
            blocks = [b for b in data.decode().split("\n\n") if b]
            for block in blocks:
                event = parse_block(block.splitlines())
                assert event is not None
                self.got.setdefault(sub, []).append(event["id"])


def feed_with(*subs: Subscriber, gap_wait: float = 0.0) -> tuple[EventFeed, Collect]:
    collect = Collect()
    feed = EventFeed(collect, poll_interval=0.01, gap_wait=gap_wait)
    for sub in subs:
        feed.add(sub)
    return feed, collect


def test_catch_up_in_batches_then_the_shared_stream(database, monkeypatch):
    monkeypatch.setattr("resmon.server.event_feed.BATCH", 7)
    ids = add_events(database, 40)
    other = add_events(database, 5, scope={**SCOPE, "job": "k"})
    resumed = Subscriber(EventFilter(scope=(("job", "j"),)), ids[2])
    new = Subscriber(EventFilter(), None)
    feed, collect = feed_with(resumed, new)
    while feed.tick() or not resumed.caught_up:
        pass
    assert collect.got[resumed] == ids[3:]
    assert new not in collect.got  # subscribed now: nothing stored before
    later = add_events(database, 3) + add_events(database, 2, scope={**SCOPE, "job": "k"})
    feed.tick()
    assert collect.got[resumed] == ids[3:] + later[:3]
    assert collect.got[new] == later
    assert other


def test_gap_rule_holds_later_ids_until_the_gap_fills_or_is_old():
    rule = GapRule(gap_wait=0.3)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    rows = [{"id": i, "created_at": now} for i in (11, 13, 14)]
    assert [r["id"] for r in rule.ready(10, rows)] == [11]  # 12 missing: hold 13, 14
    assert [r["id"] for r in rule.ready(11, rows[1:])] == []
    time.sleep(0.35)
    assert [r["id"] for r in rule.ready(11, rows[1:])] == [13, 14]  # given up on 12
    old = [{"id": 20, "created_at": "2020-01-01T00:00:00.000000Z"}]
    assert [r["id"] for r in GapRule(5.0).ready(15, old)] == [20]  # an old gap: no wait
    assert [r["id"] for r in GapRule(0.0).ready(15, [{"id": 20}])] == [20]  # SQLite


def test_postgres_ids_committed_out_of_order_are_delivered_in_order(postgres_url):
    """Transaction A takes id N and commits late; B takes N+1 and commits first.  The
    subscriber gets N, then N+1 -- none skipped, none out of order -- and a rolled
    back id is given up after gap_wait."""
    import psycopg2

    db = dbmod.open_database(postgres_url)
    dbmod.migrate(db)
    add_events(db, 2)
    sub = Subscriber(EventFilter(), 0)
    feed, collect = feed_with(sub, gap_wait=1.0)
    feed.tick()
    assert collect.got[sub] == [1, 2]
    sql, params = store_events.event_insert("snapshot", SCOPE, None, {"n": "late"})
    sql = sql.replace("?", "%s") + " RETURNING id"
    first, second = psycopg2.connect(postgres_url), psycopg2.connect(postgres_url)
    try:
        with first.cursor() as cur:
            cur.execute(sql, params)
            late = cur.fetchone()[0]
        with second.cursor() as cur:
            cur.execute(sql, params)
            early = cur.fetchone()[0]
        second.commit()
        assert (late, early) == (3, 4)
        feed.tick()
        assert collect.got[sub] == [1, 2]  # 4 is visible, 3 is not yet: 4 waits
        first.commit()
        feed.tick()
        assert collect.got[sub] == [1, 2, 3, 4]
        with first.cursor() as cur:  # 5: rolled back, never visible
            cur.execute(sql, params)
        with second.cursor() as cur:
            cur.execute(sql, params)
        second.commit()
        first.rollback()
        feed.tick()
        assert collect.got[sub] == [1, 2, 3, 4]
        time.sleep(1.1)
        feed.tick()
        assert collect.got[sub] == [1, 2, 3, 4, 6]
    finally:
        first.close()
        second.close()
        db.close()


def test_event_text_is_one_sse_block_with_the_stored_body():
    row = {
        "id": 7,
        "kind": "snapshot",
        "created_at": "2026-01-02T03:04:05.000000Z",
        **SCOPE,
        "run_pk": 3,
        "data": '{"run":3,"host":"h\\nx"}',
    }
    text = format_event(row).decode()
    assert text.endswith("\n\n") and text.count("\n") == 4
    event = parse_block(text.splitlines())
    assert event["id"] == 7 and event["event"] == "snapshot"
    assert event["data"]["data"] == {"run": 3, "host": "h\nx"}
    assert event["data"]["run_pk"] == 3
    assert orjson.loads(format_event({**row, "data": {"a": 1}}).split(b"data: ")[1])["data"] == {
        "a": 1
    }


def _loop_with_subscriber(buffer_limit: int, heartbeat: float = 60.0):
    closed: list[int] = []
    loop = SseLoop(
        heartbeat=heartbeat, buffer_limit=buffer_limit, on_closed=lambda: closed.append(1)
    )
    server, client = socket.socketpair()
    sub = Subscriber(EventFilter(), 0)
    sub.sock = server
    loop.start()
    loop.attach(sub)
    return loop, sub, client, closed


def test_loop_writes_chunks_and_heartbeats():
    loop, sub, client, closed = _loop_with_subscriber(1 << 20, heartbeat=0.2)
    try:
        loop.post([(sub, b"id: 1\ndata: {}\n\n")])
        client.settimeout(2)
        assert client.recv(100) == b"10\r\nid: 1\ndata: {}\n\n\r\n"
        time.sleep(0.5)
        assert b"6\r\n: hb\n\n\r\n" in client.recv(100)
        client.close()
        time.sleep(0.7)
        assert sub.closed and closed == [1]
    finally:
        loop.stop()
        loop.join(2)


def test_a_slow_subscriber_is_dropped_past_its_buffer_limit():
    loop, sub, client, closed = _loop_with_subscriber(64 * 1024)
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for _ in range(400):  # 400 x 4 KiB, never read
            loop.post([(sub, b"data: " + b"x" * 4096 + b"\n\n")])
            if sub.closed:
                break
            time.sleep(0.001)
        deadline = time.monotonic() + 3
        while not sub.closed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sub.closed and closed == [1] and loop.dropped == 1
    finally:
        client.close()
        loop.stop()
        loop.join(2)
