"""The buffering front of a worker: a request reaches a thread only once it has all arrived.

gunicorn's gthread worker hands each accepted connection to a thread at once, and
the thread waits there for the client's bytes: 16 connections that sent nothing
delayed ``/healthz`` by 4.7 s, and a client sending one byte a second held its
thread for as long as it liked, since each byte restarted the socket timeout.

Here the worker's main loop (its selector; no thread) reads every connection
without blocking until its request is whole -- the header block, then the body by
``Content-Length`` or by chunked framing up to its last chunk and trailers -- and
only then submits it to the thread pool.  The thread parses the request with
gunicorn's own parser from those bytes (its socket's reads end where they end, so
a thread never waits for a client) and writes the answer to the real socket.  A
kept-alive connection comes back to the front for its next request.

Deadlines, each kept by the main loop, so none of them costs a thread:

- waiting for the first byte of a request (a new connection, or a kept-alive one
  between requests): closed after gunicorn's keep-alive time (5 s);
- from the first byte, the whole request (headers and body) within
  ``request_timeout``, and never silent for longer than ``io_timeout``.  Past
  either: with the headers incomplete the connection is closed; with the body
  incomplete the client gets a 408 JSON error;
- the answer: each send waits at most ``io_timeout`` for the client to read
  (``SO_SNDTIMEO``) and the whole answer must be taken within ``request_timeout``
  of its first byte, plus one second per 64 KiB it holds (a large streamed read
  over a slow link still finishes);
- closing: the front half-closes and drains what the client still sends for at
  most 2 s without blocking (gunicorn itself lingers on the main loop).

Limits: a header block over 64 KiB is answered 431.  A body larger than the app's
``max_body`` is handed over as soon as the limit is passed (or at once, from its
``Content-Length``), so that the app answers 413 and counts it.  A request whose
framing is malformed goes to the thread as it is, for gunicorn's parser to reject.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import logging
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn import http
from gunicorn import util as gunicorn_util
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn

from resmon.server.framing import (
    CONTINUE,
    DEFAULT_BODY_LIMIT,
    HEAD_TOO_LARGE,
    READY,
    Framing,
    RequestSocket,
    error_response,
    set_send_timeout,
)

log = logging.getLogger(__name__)

LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024
RECV_BYTES = 64 * 1024

_BODY_TIMEOUT = error_response(408, "Request Timeout", "request body not received in time")
_HEAD_TOO_LARGE = error_response(431, "Request Header Fields Too Large")


class FrontConn(TConn):
    """A client's connection, with what the front has gathered of its next request."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any) -> None:
        super().__init__(cfg, sock, client, server)
        self.raw = sock
        self.buf = bytearray()
        self.framing = Framing()
        self.waiting_since = 0.0
        self.first_byte = 0.0  # 0.0: no byte of the next request yet
        self.last_byte = 0.0
        self.continue_sent = False
        self.lingering = 0.0  # when a closing connection is dropped at the latest
        self.drained = 0
        self.generation = 0  # bumped whenever a deadline entry of the connection goes stale
        self.timed = False  # a deadline entry is due for what the connection waits for now
        self.registered = False
        self.on_readable: Any = None


class BufferingFront:
    """The front's half of a worker: mixed in before gunicorn's ThreadWorker.

    Uses the worker's ``cfg``, ``poller``, ``nr_conns``, ``worker_connections``,
    ``alive`` and ``enqueue_req``; the deadlines are ``io_timeout`` and
    ``request_timeout``.
    """

    io_timeout = 30.0
    request_timeout = 30.0
    cfg: Any
    poller: selectors.BaseSelector
    nr_conns: int
    worker_connections: int
    alive: bool
    wsgi: Any

    def run(self) -> None:
        self.front_conns: set[FrontConn] = set()
        self.front_heap: list[tuple[float, int, int, FrontConn]] = []
        self.front_seq = itertools.count()
        self.front_stop = 0.0
        self.body_limit = body_limit(self.wsgi)
        super().run()  # type: ignore[misc]

    # --- connections in ------------------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self._out_of_descriptors()
            elif exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self.take(sock, client, listener.getsockname())

    def take(self, sock: socket.socket, client: Any, server: Any) -> None:
        """A connection just accepted (``nr_conns`` already counts it)."""
        conn = FrontConn(self.cfg, sock, client, server)
        set_send_timeout(sock, self.io_timeout)
        conn.on_readable = partial(self._readable, conn)
        self._wait(conn, b"", fresh=True)

    def _out_of_descriptors(self) -> None:
        """No file descriptor left for another connection: accept none until one
        closes (the worker stops polling its listeners at ``worker_connections``),
        instead of the worker dying of EMFILE."""
        if self.worker_connections > self.nr_conns:
            self.worker_connections = max(1, self.nr_conns)
            log.warning(
                "out of file descriptors, accepting no more connections than are open",
                extra={"connections": self.nr_conns},
            )

    # --- gathering a request --------------------------------------------------------

    def _wait(self, conn: FrontConn, data: bytes, fresh: bool = False) -> None:
        """The connection (``fresh``: just accepted) waits here for its next request,
        of which ``data`` came already."""
        now = time.monotonic()
        conn.sock, conn.parser = conn.raw, None
        conn.buf = bytearray(data)
        conn.framing = Framing()
        conn.continue_sent = False
        conn.waiting_since = now
        conn.first_byte = conn.last_byte = now if data else 0.0
        conn.timed = False
        self.front_conns.add(conn)
        try:
            conn.raw.setblocking(False)
        except OSError:
            self._close(conn)
            return
        if data and self._check(conn):
            return
        if fresh:
            self._read(conn)  # often the request is there already: no wait in the poller
        else:  # a kept-alive client reads the answer before it sends again
            self._schedule(conn)
            self._register(conn)

    def _readable(self, conn: FrontConn, _fileobj: Any) -> None:
        if conn.lingering:
            self._drain(conn)
        else:
            self._read(conn)

    def _read(self, conn: FrontConn) -> None:
        received = 0
        ended = False
        while True:
            try:
                data = conn.raw.recv(RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                ended = True
                break
            conn.buf += data
            received += len(data)
            if len(data) < RECV_BYTES:
                break
        if received:
            conn.last_byte = time.monotonic()
            if not conn.first_byte:  # the request's deadlines start (and may be sooner)
                conn.first_byte = conn.last_byte
                conn.timed = False
            if self._check(conn):
                return
        if ended:  # the client left before its request was whole
            self._close(conn)
            return
        if not conn.timed:  # only a connection left waiting needs a deadline entry
            self._schedule(conn)
        self._register(conn)

    def _check(self, conn: FrontConn) -> bool:
        """Hand the request over if it is whole; False while it is not."""
        framing = conn.framing
        state = framing.check(conn.buf, self.body_limit)
        if state == READY:
            self._hand_over(conn)
            return True
        if state == HEAD_TOO_LARGE:
            self._answer(conn, _HEAD_TOO_LARGE)
            return True
        if framing.expect_continue and not conn.continue_sent and framing.needs_body:
            conn.continue_sent = True
            with contextlib.suppress(OSError):
                conn.raw.send(CONTINUE)
        return False

    def _hand_over(self, conn: FrontConn) -> None:
        self._leave(conn)
        request = RequestSocket(conn.raw, bytes(conn.buf), self.io_timeout, self.request_timeout)
        conn.buf = bytearray()
        conn.sock = request  # type: ignore[assignment]
        conn.parser = http.get_parser(self.cfg, request, conn.client)
        conn.initialized = conn.data_ready = True  # gunicorn's thread neither waits nor re-parses
        self.enqueue_req(conn)  # type: ignore[attr-defined]

    def finish_request(self, conn: TConn, fs: Any) -> None:
        """A thread is done with the connection: back to the front, or closed."""
        if not isinstance(conn, FrontConn):
            super().finish_request(conn, fs)  # type: ignore[misc]
            return
        try:
            keepalive = not fs.cancelled() and bool(fs.result())
        except Exception:
            keepalive = False
        request, rest = conn.sock, b""
        if isinstance(request, RequestSocket) and request.detached:
            self._leave(conn)  # the connection is an SSE stream now (resmon.server.sse)
            self.nr_conns -= 1
            return
        if isinstance(request, RequestSocket):
            if request.silence < self.io_timeout:  # lowered near the answer's deadline
                set_send_timeout(conn.raw, self.io_timeout)
            if keepalive and conn.parser is not None:  # a pipelined request's first bytes
                rest = conn.parser.unreader.take_buffered() + request.unread()
        if keepalive and conn.raw.fileno() >= 0:
            self._wait(conn, rest)
        else:
            self._linger(conn)

    # --- deadlines and closing --------------------------------------------------------

    def _deadline(self, conn: FrontConn) -> float:
        if conn.lingering:
            return conn.lingering
        if not conn.first_byte:
            idle = conn.waiting_since + (self.cfg.keepalive or self.io_timeout)
            return min(idle, self.front_stop) if self.front_stop else idle
        return min(conn.first_byte + self.request_timeout, conn.last_byte + self.io_timeout)

    def _schedule(self, conn: FrontConn) -> None:
        conn.generation += 1
        conn.timed = True
        entry = (self._deadline(conn), next(self.front_seq), conn.generation, conn)
        heapq.heappush(self.front_heap, entry)

    def murder_pending(self) -> None:
        """Each turn of the worker's loop: close what is past its deadline."""
        super().murder_pending()  # type: ignore[misc]
        now = time.monotonic()
        if not self.alive and not self.front_stop:
            # Stopping: a connection with no request under way gets what gunicorn
            # gives a kept-alive one, a short linger for a request already sent.
            self.front_stop = now + STOP_KEEPALIVE_LINGER
            for conn in list(self.front_conns):
                if not conn.first_byte and not conn.lingering:
                    self._schedule(conn)
        heap = self.front_heap
        while heap and heap[0][0] <= now:
            _, _, generation, conn = heapq.heappop(heap)
            if generation != conn.generation:
                continue
            deadline = self._deadline(conn)
            if deadline > now:  # bytes came meanwhile
                heapq.heappush(heap, (deadline, next(self.front_seq), generation, conn))
            else:
                self._expired(conn, now)

    def _expired(self, conn: FrontConn, now: float) -> None:
        if conn.lingering or not conn.first_byte:
            self._close(conn)
            return
        if now - conn.last_byte >= self.io_timeout:
            message = "client silent past --io-timeout, connection closed"
        else:
            message = "request not received within --request-timeout, connection closed"
        body = conn.framing.head_end >= 0
        log.warning(
            message,
            extra={"stage": "body" if body else "headers", "received_bytes": len(conn.buf)},
        )
        if body:
            self._answer(conn, _BODY_TIMEOUT)
        else:
            self._close(conn)

    def _answer(self, conn: FrontConn, response: bytes) -> None:
        with contextlib.suppress(OSError):
            conn.raw.send(response)
        self._linger(conn)

    def _linger(self, conn: FrontConn) -> None:
        """Close as RFC 9112 section 9.6 asks: half-close, then read what the client
        still sends (2 s and 64 KiB at most) so that the kernel does not reset the
        connection under the answer -- from the poller, not blocking the loop."""
        try:
            conn.raw.setblocking(False)
            conn.raw.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.sock, conn.parser = conn.raw, None
        conn.lingering = time.monotonic() + LINGER_SECONDS
        conn.drained = 0
        self.front_conns.add(conn)
        self._schedule(conn)
        self._register(conn)

    def _drain(self, conn: FrontConn) -> None:
        try:
            data = conn.raw.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.drained += len(data)
        if not data or conn.drained > LINGER_BYTES:
            self._close(conn)

    def _register(self, conn: FrontConn) -> None:
        if not conn.registered:
            self.poller.register(conn.raw, selectors.EVENT_READ, conn.on_readable)
            conn.registered = True

    def _leave(self, conn: FrontConn) -> None:
        """The front lets go of the connection (to a thread, or closed)."""
        conn.generation += 1
        conn.timed = False
        self.front_conns.discard(conn)
        if conn.registered:
            conn.registered = False
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.raw)

    def _close(self, conn: FrontConn) -> None:
        self._leave(conn)
        self.nr_conns -= 1
        gunicorn_util.close(conn.raw)


def body_limit(app: Any) -> int:
    """The app's largest request body (resmon's --max-body), else 1 MiB."""
    state = getattr(app, "extensions", {}).get("resmon")
    config = getattr(state, "config", None)
    return int(getattr(config, "max_body", 0) or DEFAULT_BODY_LIMIT)
