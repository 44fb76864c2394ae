"""The webhook outbox on SQLite and PostgreSQL: due rows, one claim wins, backoff,
delivered rows pruned, rows of a target no longer configured left alone."""

from __future__ import annotations

from datetime import datetime, timedelta

from resmon.store import outbox
from resmon.store.models import WebhookOutbox

T0 = datetime(2026, 1, 1, 12, 0, 0)


def add(target="http://a/hook", event_id=1, at=T0):
    return WebhookOutbox.insert(
        event_id=event_id, target=target, body="{}", attempts=0, next_attempt_at=at, created_at=at
    ).execute()


def test_a_due_row_is_claimed_once_and_backs_off_until_delivered(database):
    row_id = add()
    assert outbox.due(10, now=T0 - timedelta(seconds=1)) == []
    ((found, due_at),) = outbox.due(10, now=T0)
    assert found == row_id
    first = outbox.claim(row_id, due_at, lease=30, now=T0)
    assert first is not None and first.attempts == 1 and first.event_id == 1
    assert outbox.claim(row_id, due_at, lease=30, now=T0) is None  # another sender: lost
    assert outbox.due(10, now=T0 + timedelta(seconds=29)) == []  # leased
    retry_at = outbox.failed(first, "HTTP 500 Internal Server Error", first=1.0, now=T0)
    assert retry_at == T0 + timedelta(seconds=1)
    ((_, due_at),) = outbox.due(10, now=retry_at)
    second = outbox.claim(row_id, due_at, lease=30, now=retry_at)
    assert second is not None and second.attempts == 2
    assert outbox.failed(second, "x", first=1.0, now=retry_at) == retry_at + timedelta(seconds=2)
    assert WebhookOutbox.get_by_id(row_id).last_error == "x"
    assert outbox.pending() == 1
    outbox.delivered(second, now=retry_at)
    assert outbox.pending() == 0 and outbox.due(10, now=T0 + timedelta(days=1)) == []
    assert outbox.prune(now=retry_at + timedelta(days=6)) == 0
    assert outbox.prune(now=retry_at + timedelta(days=8)) == 1


def test_backoff_doubles_up_to_an_hour():
    assert [outbox.backoff(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert outbox.backoff(13) == 3600.0 and outbox.backoff(10**6) == 3600.0


def test_only_the_configured_targets_are_due(database):
    add("http://a/hook", 1)
    gone = add("http://gone/hook", 2)
    assert len(outbox.due(10, now=T0)) == 2
    assert [i for i, _ in outbox.due(10, ("http://a/hook",), now=T0)] != [gone]
    assert len(outbox.due(10, ("http://a/hook",), now=T0)) == 1
