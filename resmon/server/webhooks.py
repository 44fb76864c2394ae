"""Webhook deliveries from the outbox (:mod:`resmon.store.outbox`), in the background.

Each worker of ``resmon serve`` runs one :class:`Sender`: a thread that reads the due
rows and hands each to a small pool of delivery threads, which claim the row (one
worker or replica wins it), POST its body and record the answer.  A receiver that
is slow or gone holds at most its delivery thread for the timeout, then its rows
back off (1 s, 2 s, 4 s ... up to an hour); nothing else waits for it, not the
pushes, not the evaluator, not the other deliveries beyond the pool's size.

A delivery is ``POST <target>`` with the body stored in the outbox (JSON) and:

- ``X-Resmon-Event-Id``: the ``alert`` event's id, the same on every retry, so a
  receiver drops what it has seen (delivery is at least once);
- ``X-Resmon-Signature: sha256=<hex HMAC-SHA256 of the body with the webhook secret>``
  when a secret is set;
- ``X-Resmon-Delivery`` (the outbox row) and ``X-Resmon-Attempt`` (1, 2, ...).

Any 2xx is delivered; anything else, a timeout or a refused connection is retried.
Redirects are not followed (a 3xx is a failure: the URL is the operator's to fix).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from resmon import __version__
from resmon.server.alerts_config import AlertsConfig
from resmon.store import outbox

log = logging.getLogger(__name__)

POOL = 4  # deliveries at once per worker
BATCH = 50
PRUNE_EVERY = 3600.0
ERROR_BACKOFF = 2.0
MAX_ANSWER = 64 * 1024


class WebhookUrlError(ValueError):
    """A webhook URL that cannot be delivered to; the message says why."""


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookUrlError(f"webhook URL {url!r} must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise WebhookUrlError("a webhook URL must not carry a user or password")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        raise WebhookUrlError(f"webhook URL {url!r} has an invalid port") from None
    return url


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(delivery: outbox.Delivery, config: AlertsConfig) -> tuple[bool, str]:
    """One attempt: (delivered, what happened)."""
    body = delivery.body.encode()
    parts = urlsplit(delivery.target)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"resmon/{__version__}",
        "X-Resmon-Event-Id": str(delivery.event_id),
        "X-Resmon-Delivery": str(delivery.id),
        "X-Resmon-Attempt": str(delivery.attempts),
    }
    if config.webhook_secret:
        headers["X-Resmon-Signature"] = signature(config.webhook_secret, body)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn: http.client.HTTPConnection
    try:
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                parts.hostname or "",
                parts.port,
                timeout=config.webhook_timeout,
                context=ssl.create_default_context(),
            )
        else:
            conn = http.client.HTTPConnection(
                parts.hostname or "", parts.port, timeout=config.webhook_timeout
            )
        try:
            conn.request("POST", path, body=body, headers=headers)
            answer = conn.getresponse()
            answer.read(MAX_ANSWER)
        finally:
            conn.close()
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if 200 <= answer.status < 300:
        return True, f"HTTP {answer.status}"
    return False, f"HTTP {answer.status} {answer.reason}"


class Sender:
    """The outbox's sending thread of one worker process."""

    def __init__(self, config: AlertsConfig) -> None:
        self.config = config
        self.pool = ThreadPoolExecutor(POOL, thread_name_prefix="resmon-webhook")
        self.in_flight: set[int] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._last_prune = 0.0
        self._thread = threading.Thread(target=self._run, name="resmon-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:  # a daemon thread: it ends with its worker
            try:
                self.tick()
            except Exception as exc:  # the database is away: try again later
                log.warning("reading the webhook outbox failed: %s: %s", type(exc).__name__, exc)
                self._wake.wait(ERROR_BACKOFF)
            self._wake.wait(self.config.poll_interval)
            self._wake.clear()

    def tick(self) -> int:
        """Hand the due rows to the pool; returns how many were handed over."""
        now = time.monotonic()
        if now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            outbox.prune()
        with self._lock:
            room = POOL * 2 - len(self.in_flight)
        if room <= 0:
            return 0
        handed = 0
        for row_id, due_at in outbox.due(BATCH, self.config.webhook_urls):
            with self._lock:
                if row_id in self.in_flight or len(self.in_flight) >= POOL * 2:
                    continue
                self.in_flight.add(row_id)
            self.pool.submit(self._deliver, row_id, due_at)
            handed += 1
        return handed

    def _deliver(self, row_id: int, due_at) -> None:  # type: ignore[no-untyped-def]
        try:
            lease = self.config.webhook_timeout * 2 + 5
            delivery = outbox.claim(row_id, due_at, lease)
            if delivery is None:
                return
            ok, what = post(delivery, self.config)
            if ok:
                outbox.delivered(delivery)
                log.info(
                    "webhook delivered",
                    extra={"event_id": delivery.event_id, "attempt": delivery.attempts},
                )
            else:
                at = outbox.failed(delivery, what, first=self.config.webhook_backoff)
                log.warning(
                    "webhook delivery failed: %s; next attempt at %s",
                    what,
                    at.isoformat(timespec="seconds"),
                    extra={"event_id": delivery.event_id, "attempt": delivery.attempts},
                )
        except Exception as exc:  # the database went away mid-delivery: the lease ends it
            log.warning("webhook delivery interrupted: %s: %s", type(exc).__name__, exc)
        finally:
            with self._lock:
                self.in_flight.discard(row_id)
            self._wake.set()
