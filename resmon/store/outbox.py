"""The webhook outbox (``webhook_outbox``): deliveries due, claimed, done or retried.

A row is written with its ``alert`` event (:mod:`resmon.store.alert_eval`), so a
delivery exists iff its event does, and it stays until a receiver answered 2xx:
at least once, across restarts.  A sender (:mod:`resmon.server.webhooks`) takes the
due rows and claims each with a conditional UPDATE that moves ``next_attempt_at``
past the time the attempt may take (a lease): of several workers or replicas one
wins a row, and a sender that died mid-attempt leaves a row that is due again when
its lease ends.  A failed attempt sets the next one after an exponential backoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from resmon.store import db as dbmod
from resmon.store.models import WebhookOutbox, database_proxy

BACKOFF_FIRST = 1.0  # seconds before the second attempt; doubled each time
BACKOFF_MAX = 3600.0
MAX_ERROR = 500
KEEP_DELIVERED = timedelta(days=7)


@dataclass(frozen=True)
class Delivery:
    id: int
    event_id: int
    target: str
    body: str
    attempts: int  # this attempt's number (1 for the first)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def backoff(attempts: int, first: float = BACKOFF_FIRST) -> float:
    """Seconds after failed attempt number ``attempts`` (1, 2, ...): first, 2 x first,
    4 x first, ... up to an hour."""
    return min(BACKOFF_MAX, first * 2 ** max(0, min(attempts - 1, 30)))


def due(
    limit: int, targets: tuple[str, ...] | None = None, now: datetime | None = None
) -> list[tuple[int, datetime]]:
    """The undelivered rows whose next attempt is due, oldest due first: (id, due at).
    With ``targets``, only the rows for them: a URL taken out of the server's options
    is no longer called (its rows stay, and go out again if it comes back)."""
    now = now or _now()
    query = (
        WebhookOutbox.select(WebhookOutbox.id, WebhookOutbox.next_attempt_at)
        .where(WebhookOutbox.delivered_at.is_null() & (WebhookOutbox.next_attempt_at <= now))
        .order_by(WebhookOutbox.next_attempt_at, WebhookOutbox.id)
        .limit(limit)
    )
    if targets is not None:
        query = query.where(WebhookOutbox.target.in_(list(targets)))
    return [(int(i), at) for i, at in query.tuples()]


def claim(
    row_id: int, due_at: datetime, lease: float, now: datetime | None = None
) -> Delivery | None:
    """Take one due row for an attempt that may last ``lease`` seconds; None when another
    sender took it (or it was delivered) since it was read."""
    now = now or _now()
    db = database_proxy
    with dbmod.write_lock(db.obj), db.atomic():
        taken = (
            WebhookOutbox.update(
                next_attempt_at=now + timedelta(seconds=lease),
                attempts=WebhookOutbox.attempts + 1,
            )
            .where(
                (WebhookOutbox.id == row_id)
                & WebhookOutbox.delivered_at.is_null()
                & (WebhookOutbox.next_attempt_at == due_at)
            )
            .execute()
        )
        if not taken:
            return None
        row = WebhookOutbox.get_by_id(row_id)
    return Delivery(row.id, row.event_id, row.target, row.body, row.attempts)


def delivered(delivery: Delivery, now: datetime | None = None) -> None:
    db = database_proxy
    with dbmod.write_lock(db.obj), db.atomic():
        WebhookOutbox.update(delivered_at=now or _now(), last_error=None).where(
            WebhookOutbox.id == delivery.id
        ).execute()


def failed(
    delivery: Delivery, error: str, *, first: float = BACKOFF_FIRST, now: datetime | None = None
) -> datetime:
    """Keep the error; the next attempt after the backoff.  Returns when that is."""
    at = (now or _now()) + timedelta(seconds=backoff(delivery.attempts, first))
    db = database_proxy
    with dbmod.write_lock(db.obj), db.atomic():
        WebhookOutbox.update(next_attempt_at=at, last_error=error[:MAX_ERROR]).where(
            (WebhookOutbox.id == delivery.id) & WebhookOutbox.delivered_at.is_null()
        ).execute()
    return at


def prune(now: datetime | None = None, keep: timedelta = KEEP_DELIVERED) -> int:
    """Delete the rows delivered more than ``keep`` ago; returns how many."""
    before = (now or _now()) - keep
    db = database_proxy
    with dbmod.write_lock(db.obj), db.atomic():
        return int(
            WebhookOutbox.delete()
            .where(
                WebhookOutbox.delivered_at.is_null(False) & (WebhookOutbox.delivered_at < before)
            )
            .execute()
        )


def pending() -> int:
    """Rows not delivered yet (a gauge for operators and tests)."""
    return int(WebhookOutbox.select().where(WebhookOutbox.delivered_at.is_null()).count())
