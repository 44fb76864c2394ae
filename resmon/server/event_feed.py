"""The events table as a feed: one poller thread per worker process reads it and
fans each new event out to that worker's SSE subscribers (:mod:`resmon.server.sse`).

Every worker of every replica polls the durable ``events`` table
(:func:`resmon.store.events.events_after`) every ``poll_interval`` while it has
subscribers, so an event reaches them whichever worker or replica stored it.  One
read per tick serves all of a worker's subscribers; each subscriber's filter is
applied here, and the event's text is built once.

The visibility rule (PostgreSQL ids commit out of order).  The feed keeps a
``cursor``: every id at or below it has been delivered or given up.  A tick reads
the events above it, in id order, and delivers them while ids follow one another
(``cursor + 1``, ``+ 2``, ...).  At a missing id it stops and holds the rest: the
missing id may belong to a transaction still open (BIGSERIAL hands ids out before
commit), and delivering a later id first would break ``Last-Event-ID``.  The gap
is given up -- its id taken as rolled back -- once it is ``gap_wait`` old, by
whichever comes first: this worker first saw it that long ago, or the event after
it was created that long ago (so an old gap, e.g. rows deleted by retention, costs
no wait).  So an event is delivered live if its transaction commits within
``gap_wait`` of a later id becoming visible; the held events wait at most that.
On SQLite one writer at a time commits ids in order and a rolled-back id is reused
(``AUTOINCREMENT`` keeps only committed ones), so a gap is never filled later and
``gap_wait`` is 0 there.

Subscribers:

- without ``Last-Event-ID``: events after the newest id stored when the feed took it
  in (the feed wakes up for a new subscriber: milliseconds after it connected);
- resuming at or above the cursor: the shared stream, ids above theirs;
- resuming below it: a catch-up of their own (``events_after`` with their scope,
  in batches, up to the cursor), then the shared stream.  Catch-up reads run on
  the poller thread too, never on a request thread.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from resmon.store import events as store_events

log = logging.getLogger(__name__)

BATCH = 1000  # events read per query
CATCH_UP_BATCHES = 5  # per subscriber and tick: a long catch-up yields to the others
# At start, the feed re-reads this many ids behind the newest: an id of a transaction
# still open then is waited for like any gap.
START_WINDOW = 1000
ERROR_BACKOFF = 2.0


@dataclass(frozen=True)
class EventFilter:
    """What a subscriber asked for: scope fields that must be equal, and kinds."""

    scope: tuple[tuple[str, str], ...] = ()
    kinds: frozenset[str] = frozenset()

    def matches(self, row: dict[str, Any]) -> bool:
        if self.kinds and row["kind"] not in self.kinds:
            return False
        return all(row[name] == value for name, value in self.scope)


def format_event(row: dict[str, Any]) -> bytes:
    """One event as SSE text: ``id:``, ``event:`` (its kind), ``data:`` (one JSON line:
    the event's body with its id, kind, time, scope and run)."""
    body = row["data"]
    if not isinstance(body, str):
        body = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS).decode()
    head = orjson.dumps(
        {k: row[k] for k in ("id", "kind", "created_at", *store_events.SCOPE_FIELDS, "run_pk")}
    ).decode()
    # The stored body is JSON text from orjson (no raw newline), spliced in whole.
    data = head[:-1] + ',"data":' + body.replace("\r", "").replace("\n", "") + "}"
    return f"id: {row['id']}\nevent: {row['kind']}\ndata: {data}\n\n".encode()


class Subscriber:
    """One SSE client.  The feed owns ``last_id``/``caught_up``; the socket loop owns
    the rest (:class:`resmon.server.sse.SseLoop`); ``closed`` is set by the loop."""

    def __init__(self, event_filter: EventFilter, last_id: int | None) -> None:
        self.filter = event_filter
        self.last_id = last_id
        self.caught_up = False
        self.closed = False
        self.sock: Any = None
        self.chunked = True
        self.pending = bytearray()  # SSE text not yet framed
        self.wire = bytearray()  # framed bytes being sent
        self.last_write = 0.0
        self.deadline = 0.0  # 0: no timeout_seconds
        self.events_mask = 0


class GapRule:
    """The visibility rule above: which of the rows read may be delivered now."""

    def __init__(self, gap_wait: float) -> None:
        self.gap_wait = gap_wait
        self.first_seen: dict[int, float] = {}

    def ready(self, cursor: int, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        expected = cursor + 1
        for row in rows:
            if row["id"] != expected and not self._given_up(expected, row):
                break
            out.append(row)
            expected = row["id"] + 1
        self.first_seen = {k: v for k, v in self.first_seen.items() if k >= expected}
        return out

    def _given_up(self, missing: int, row: dict[str, Any]) -> bool:
        if self.gap_wait <= 0:
            return True
        now = time.monotonic()
        first = self.first_seen.setdefault(missing, now)
        if now - first >= self.gap_wait:
            return True
        try:
            created = datetime.fromisoformat(row["created_at"].replace("Z", "+00:00"))
        except (ValueError, AttributeError):
            return False
        return (datetime.now(UTC) - created).total_seconds() >= self.gap_wait


class EventFeed:
    """The poller thread of one worker.  ``deliver(items)`` gets ``[(subscriber,
    bytes), ...]`` once per tick (the socket loop's :meth:`post`)."""

    def __init__(
        self,
        deliver: Callable[[list[tuple[Subscriber, bytes]]], None],
        *,
        poll_interval: float,
        gap_wait: float,
    ) -> None:
        self.deliver = deliver
        self.poll_interval = poll_interval
        self.gaps = GapRule(gap_wait)
        self.cursor: int | None = None
        self.seen_max = 0
        self.subscribers: list[Subscriber] = []
        self._new: list[Subscriber] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="resmon-events-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, sub: Subscriber) -> None:
        with self._lock:
            self._new.append(sub)
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            try:
                busy = self.tick()
            except Exception as exc:  # the database is down or refused: try again later
                log.warning("reading events failed: %s: %s", type(exc).__name__, exc)
                busy = False
                self._wake.wait(ERROR_BACKOFF)
            if not busy:
                self._wake.wait(self.poll_interval)
            self._wake.clear()

    def tick(self) -> bool:
        """One round: new subscribers, the shared stream, catch-ups.  True when there
        is more to read at once."""
        with self._lock:
            new, self._new = self._new, []
        self.subscribers = [s for s in self.subscribers if not s.closed] + new
        if not self.subscribers:
            self.cursor = None  # a later subscriber starts from the newest events again
            return False
        if self.cursor is None:
            self.seen_max = store_events.latest_event_id()
            self.cursor = max(0, self.seen_max - START_WINDOW)
        if any(sub.last_id is None for sub in new):  # "from now": the newest id stored now
            self.seen_max = max(self.seen_max, store_events.latest_event_id())
        for sub in new:
            if sub.last_id is None:
                sub.last_id = self.seen_max
            sub.caught_up = sub.last_id >= self.cursor
        out: list[tuple[Subscriber, bytes]] = []
        more = self._shared(out)
        for sub in self.subscribers:
            if not sub.caught_up and not sub.closed:
                self._catch_up(sub, out)
        if out:
            self.deliver(out)
        return more

    def _shared(self, out: list[tuple[Subscriber, bytes]]) -> bool:
        assert self.cursor is not None
        rows = store_events.events_after(self.cursor, BATCH, data_as_text=True)
        if rows:
            self.seen_max = max(self.seen_max, rows[-1]["id"])
        ready = self.gaps.ready(self.cursor, rows)
        # Subscribers that asked for the same thing are matched once per event and
        # share one piece of bytes per round (those that were behind get the tail
        # they miss): with 200 subscribers at 2,000 events/s the fan-out is the
        # worker's largest cost, and per subscriber it is now one append a round.
        groups: dict[EventFilter, list[Subscriber]] = {}
        for sub in self.subscribers:
            if sub.caught_up and not sub.closed:
                groups.setdefault(sub.filter, []).append(sub)
        formatted: dict[int, bytes] = {}
        for event_filter, subs in groups.items():
            matched = [row for row in ready if event_filter.matches(row)]
            if not matched:
                continue
            ids = [row["id"] for row in matched]
            texts = [
                formatted.get(i) or formatted.setdefault(i, format_event(r))
                for i, r in zip(ids, matched, strict=True)
            ]
            whole: bytes | None = None
            for sub in subs:
                start = bisect.bisect_right(ids, sub.last_id)
                if start == len(ids):
                    continue
                if start == 0:
                    whole = whole or b"".join(texts)
                    out.append((sub, whole))
                else:
                    out.append((sub, b"".join(texts[start:])))
                sub.last_id = ids[-1]
        if ready:
            self.cursor = ready[-1]["id"]
        return len(rows) == BATCH and len(ready) == len(rows)

    def _catch_up(self, sub: Subscriber, out: list[tuple[Subscriber, bytes]]) -> None:
        assert self.cursor is not None and sub.last_id is not None
        scope = dict(sub.filter.scope) or None
        for _ in range(CATCH_UP_BATCHES):
            rows = store_events.events_after(sub.last_id, BATCH, scope, data_as_text=True)
            for row in rows:
                if row["id"] > self.cursor:
                    break
                if sub.filter.matches(row):
                    out.append((sub, format_event(row)))
                sub.last_id = row["id"]
            else:
                if len(rows) == BATCH:
                    continue
            sub.last_id = max(sub.last_id, self.cursor)
            sub.caught_up = True
            return
