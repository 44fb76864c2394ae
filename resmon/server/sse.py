"""SSE subscribers off the request threads: one socket loop and one feed per worker.

``GET /api/v1/events`` (:mod:`resmon.server.events_api`) checks the request on a
request thread as any other, and lets gunicorn send the answer's headers and a
first chunk.  Then it hands the client's socket over: the view's body generator
marks the request's :class:`~resmon.server.framing.RequestSocket` ``detached`` (so
gunicorn's closing chunk goes nowhere and the front forgets the connection without
closing it, see ``BufferingFront.finish_request``) and gives the raw socket to
this worker's :class:`SseLoop`.  The request thread is free again at once: N
subscribers cost N sockets and buffers, never N threads.

:class:`SseLoop` is one thread with a selector over non-blocking sockets.  It
writes what the feed posts (:class:`~resmon.server.event_feed.EventFeed`, the one
thread per worker that reads the events table), as HTTP/1.1 chunks (plain bytes to
an HTTP/1.0 client, whose connection then ends the stream), a heartbeat comment
(``: hb``) after ``heartbeat`` seconds without a write, notices a client that left
(EOF on read), and ends a stream at its ``timeout_seconds`` with the last chunk.
A subscriber whose unsent bytes pass ``buffer_limit`` is dropped (closed): it
reconnects with ``Last-Event-ID`` and catches up from the table, so a slow client
costs bounded memory and loses nothing.

The :class:`Hub` counts subscribers against ``max_subscribers`` (the view answers
503 beyond it) and is made lazily in each worker process, after gunicorn forked.
On SIGTERM the worker stops it: each stream ends with its last chunk, so clients
reconnect to another worker or replica while this one drains.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
import time
from typing import Any

from resmon.server.event_feed import EventFeed, Subscriber
from resmon.store import db as dbmod

log = logging.getLogger(__name__)

HEARTBEAT_COMMENT = b": hb\n\n"
LAST_CHUNK = b"0\r\n\r\n"
SEND_SLICE = 256 * 1024
RECV_BYTES = 4096
MAX_SELECT_WAIT = 0.5


class SseLoop:
    """The socket loop of one worker (see the module's docstring)."""

    def __init__(self, *, heartbeat: float, buffer_limit: int, on_closed: Any) -> None:
        self.heartbeat = heartbeat
        self.buffer_limit = buffer_limit
        self.on_closed = on_closed
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self.subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._incoming: list[Subscriber] = []
        self._posted: list[tuple[Subscriber, bytes]] = []
        self._stopping = False
        self._next_scan = 0.0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="resmon-sse-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def attach(self, sub: Subscriber) -> None:
        with self._lock:
            self._incoming.append(sub)
        self._wake()

    def post(self, items: list[tuple[Subscriber, bytes]]) -> None:
        """From the feed's thread: bytes for subscribers, written by the loop."""
        with self._lock:
            self._posted.extend(items)
        self._wake()

    def stop(self) -> None:
        self._stopping = True
        self._wake()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
            self._wake_w.send(b"\0")

    def _run(self) -> None:
        while True:
            try:
                if not self._turn():
                    return
            except Exception:  # never let a bug end every stream of the worker silently
                log.exception("SSE loop error")
                time.sleep(0.1)

    def _turn(self) -> bool:
        for key, mask in self.selector.select(MAX_SELECT_WAIT):
            if key.data is None:
                with contextlib.suppress(OSError):
                    while self._wake_r.recv(4096):
                        pass
                continue
            sub = key.data
            if mask & selectors.EVENT_READ:
                self._read(sub)
            if mask & selectors.EVENT_WRITE and not sub.closed:
                self._flush(sub)
        with self._lock:
            incoming, self._incoming = self._incoming, []
            posted, self._posted = self._posted, []
        now = time.monotonic()
        for sub in incoming:
            self._register(sub, now)
        touched: dict[Subscriber, None] = {}
        for sub, data in posted:
            if not sub.closed:
                sub.pending += data
                sub.last_write = now
                touched[sub] = None
        if now >= self._next_scan:
            self._next_scan = now + min(1.0, self.heartbeat / 4)
            self._scan(now, touched)
        for sub in touched:
            if not sub.closed:
                self._flush(sub)
        if self._stopping:
            for sub in list(self.subscribers):
                self._finish(sub)
            return False
        return True

    def _register(self, sub: Subscriber, now: float) -> None:
        sub.last_write = now
        try:
            sub.sock.setblocking(False)
            sub.events_mask = selectors.EVENT_READ
            self.selector.register(sub.sock, sub.events_mask, sub)
        except (OSError, ValueError):
            self._close(sub)
            return
        self.subscribers.add(sub)

    def _scan(self, now: float, touched: dict[Subscriber, None]) -> None:
        """Heartbeats, and streams past their timeout_seconds."""
        for sub in list(self.subscribers):
            if sub.deadline and now >= sub.deadline:
                self._finish(sub)
            elif now - sub.last_write >= self.heartbeat:
                sub.pending += HEARTBEAT_COMMENT
                sub.last_write = now
                touched[sub] = None

    def _read(self, sub: Subscriber) -> None:
        """A subscriber sends nothing after its request: what comes is dropped; EOF or
        an error means it left."""
        try:
            data = sub.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(sub)

    def _flush(self, sub: Subscriber) -> None:
        if sub.pending:
            if sub.chunked:
                sub.wire += b"%x\r\n" % len(sub.pending)
                sub.wire += sub.pending
                sub.wire += b"\r\n"
            else:
                sub.wire += sub.pending
            sub.pending.clear()
        while sub.wire:
            try:
                sent = sub.sock.send(memoryview(sub.wire)[:SEND_SLICE])
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(sub)
                return
            del sub.wire[:sent]
        if len(sub.wire) > self.buffer_limit:
            self.dropped += 1
            log.warning(
                "SSE subscriber dropped: it reads too slowly",
                extra={"unsent_bytes": len(sub.wire), "limit": self.buffer_limit},
            )
            self._close(sub)
            return
        mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if sub.wire else 0)
        if mask != sub.events_mask:
            sub.events_mask = mask
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.selector.modify(sub.sock, mask, sub)

    def _finish(self, sub: Subscriber) -> None:
        """End the stream properly (the last chunk after what is queued), then close;
        a client that does not take it within 50 ms is closed all the same."""
        self._flush(sub)
        if sub.closed:
            return
        if sub.chunked:
            sub.wire += LAST_CHUNK
        with contextlib.suppress(OSError):
            sub.sock.settimeout(0.05)
            sub.sock.sendall(bytes(sub.wire))
        self._close(sub)

    def _close(self, sub: Subscriber) -> None:
        if sub.closed:
            return
        sub.closed = True
        sub.pending.clear()
        sub.wire.clear()
        self.subscribers.discard(sub)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.selector.unregister(sub.sock)
        with contextlib.suppress(OSError):
            sub.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sub.sock.close()
        self.on_closed()


class Hub:
    """A worker's subscribers: the count against the limit, the loop and the feed."""

    def __init__(
        self,
        *,
        max_subscribers: int,
        heartbeat: float,
        poll_interval: float,
        gap_wait: float,
        buffer_limit: int,
    ) -> None:
        self.pid = os.getpid()
        self.max_subscribers = max_subscribers
        self.count = 0  # reserved (headers on their way) and attached
        self._lock = threading.Lock()
        self.stopped = False
        self.loop = SseLoop(heartbeat=heartbeat, buffer_limit=buffer_limit, on_closed=self.release)
        self.feed = EventFeed(self.loop.post, poll_interval=poll_interval, gap_wait=gap_wait)
        self.loop.start()
        self.feed.start()

    def reserve(self) -> bool:
        """A place for one more subscriber; False at the limit (the view says 503)."""
        with self._lock:
            if self.stopped or self.count >= self.max_subscribers:
                return False
            self.count += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.count -= 1

    def attach(self, sub: Subscriber, sock: socket.socket, timeout: float | None) -> None:
        sub.sock = sock
        if timeout:
            sub.deadline = time.monotonic() + timeout
        self.loop.attach(sub)
        self.feed.add(sub)

    def stop(self) -> None:
        """End every stream (SIGTERM): safe from a signal handler."""
        self.stopped = True
        self.loop.stop()
        self.feed.stop()


_create_lock = threading.Lock()


def hub_for(app: Any) -> Hub:
    """This worker process's hub, made on first use (after gunicorn forked)."""
    hub = app.extensions.get("resmon_sse")
    if hub is not None and hub.pid == os.getpid():
        return hub
    with _create_lock:
        hub = app.extensions.get("resmon_sse")
        if hub is None or hub.pid != os.getpid():
            config = app.extensions["resmon"].config
            hub = Hub(
                max_subscribers=config.sse_max_subscribers,
                heartbeat=config.sse_heartbeat,
                poll_interval=config.sse_poll_interval,
                gap_wait=config.events_gap_wait if dbmod.is_postgres(config.database) else 0.0,
                buffer_limit=config.sse_buffer_limit,
            )
            app.extensions["resmon_sse"] = hub
    return hub


def stop_hub(app: Any) -> None:
    """End this worker's streams, if it has any (the worker got SIGTERM)."""
    extensions = getattr(app, "extensions", None) or {}
    hub = extensions.get("resmon_sse")
    if hub is not None and hub.pid == os.getpid():
        hub.stop()
