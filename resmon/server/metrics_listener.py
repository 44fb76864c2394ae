"""The separate metrics listener of ``resmon serve --metrics-addr``: ``GET /metrics`` only.

It runs in the gunicorn master, outside the app, and has no authentication (bind
it to a private address; ``:PORT`` means ``127.0.0.1:PORT``).  So that no client
can hold it, it is one thread with a selector, not a thread per connection:

- every connection has a total deadline (``timeout``, from accept to the last
  byte of the answer), not a silence timeout that each byte restarts, so idle,
  one-byte-a-second and never-reading clients are all closed when it passes;
- at most ``max_connections`` are open at once; a new one beyond that closes the
  oldest connection still sending its request, so idle clients cannot crowd out a
  scraper, whose request comes at once;
- a request is its head only (no body is read, 8 KiB at most) and every answer
  closes the connection: ``/metrics`` gets the exposition, any other path a JSON
  404, another method a JSON 405.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
MAX_HEAD = 8 * 1024
MAX_CONNECTIONS = 64
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}

# (Accept header or None) -> (body, content type): the exposition of the registry.
Render = Callable[[str | None], tuple[bytes, str]]


@dataclass
class _Connection:
    sock: socket.socket
    deadline: float
    head: bytearray = field(default_factory=bytearray)
    answer: memoryview | None = None


def response(status: int, body: bytes, content_type: str, extra: str = "") -> bytes:
    """An HTTP/1.1 answer that closes the connection."""
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n{extra}\r\n"
    )
    return head.encode("latin-1") + body


def json_error(status: int, message: str, extra: str = "") -> bytes:
    return response(status, orjson.dumps({"error": message}), "application/json", extra)


def answer(head: bytes, render: Render) -> bytes:
    """The answer to one request head (request line and headers, CRLF-separated)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return json_error(400, "bad request")
    method, target, _version = parts
    path = target.split("?", 1)[0]
    if path != METRICS_PATH:
        return json_error(404, "not found")
    if method not in ("GET", "HEAD"):
        return json_error(405, "method not allowed", "Allow: GET, HEAD\r\n")
    accept = None
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == "accept":
            accept = value.strip()
    try:
        body, content_type = render(accept)
    except Exception:  # a scrape must never take the listener down
        log.exception("metrics listener: rendering failed")
        return json_error(500, "internal server error")
    whole = response(200, body, content_type)
    return whole[: len(whole) - len(body)] if method == "HEAD" else whole


class MetricsListener:
    """``GET /metrics`` on one socket, served by one thread (see the module docstring)."""

    def __init__(
        self,
        host: str,
        port: int,
        render: Render,
        *,
        timeout: float,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, port), family=family, backlog=128)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self.render = render
        self.timeout = timeout
        self.max_connections = max_connections
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conns: dict[int, _Connection] = {}

    def start(self) -> MetricsListener:
        self._thread = threading.Thread(target=self._run, name="metrics-listener", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sock.close()

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                # Wake for the nearest deadline, and at least twice a second for stop().
                wait = min(
                    [c.deadline for c in self._conns.values()], default=time.monotonic() + 0.5
                )
                events = sel.select(max(0.0, min(wait - time.monotonic(), 0.5)))
                for key, mask in events:
                    if key.fileobj is self.sock:
                        self._accept(sel)
                    else:
                        self._step(sel, key.fd, mask)
                now = time.monotonic()
                for fd, conn in list(self._conns.items()):
                    if now >= conn.deadline:
                        self._close(sel, fd)
            for fd in list(self._conns):
                self._close(sel, fd)

    def _accept(self, sel: selectors.BaseSelector) -> None:
        for _ in range(64):  # what is waiting now; the selector calls again for more
            try:
                sock, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: keep serving the open ones
                log.warning("metrics listener: accept failed: %s", exc)
                return
            if len(self._conns) >= self.max_connections and not self._evict(sel):
                sock.close()
                continue
            sock.setblocking(False)
            conn = _Connection(sock, time.monotonic() + self.timeout)
            self._conns[sock.fileno()] = conn
            sel.register(sock, selectors.EVENT_READ)

    def _evict(self, sel: selectors.BaseSelector) -> bool:
        """Close the oldest connection still sending its request, to make room: a
        scraper's request arrives in milliseconds, so idle clients cannot crowd it out."""
        waiting = [(c.deadline, fd) for fd, c in self._conns.items() if c.answer is None]
        if not waiting:
            return False
        self._close(sel, min(waiting)[1])
        return True

    def _step(self, sel: selectors.BaseSelector, fd: int, mask: int) -> None:
        conn = self._conns.get(fd)
        if conn is None:
            return
        try:
            if conn.answer is None and mask & selectors.EVENT_READ:
                self._read(sel, conn)
            elif conn.answer is not None and mask & selectors.EVENT_WRITE:
                sent = conn.sock.send(conn.answer)
                conn.answer = conn.answer[sent:]
                if not conn.answer:
                    self._close(sel, fd)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # reset by the peer, and the like
            self._close(sel, fd)

    def _read(self, sel: selectors.BaseSelector, conn: _Connection) -> None:
        chunk = conn.sock.recv(4096)
        if not chunk:  # the client gave up before a whole head
            self._close(sel, conn.sock.fileno())
            return
        conn.head += chunk
        end = conn.head.find(b"\r\n\r\n")
        if end < 0 and len(conn.head) <= MAX_HEAD:
            return
        if end < 0 or end > MAX_HEAD:
            data = json_error(431, "request head too large")
        else:
            data = answer(bytes(conn.head[:end]), self.render)
        conn.answer = memoryview(data)
        sel.modify(conn.sock, selectors.EVENT_WRITE)

    def _close(self, sel: selectors.BaseSelector, fd: int) -> None:
        conn = self._conns.pop(fd, None)
        if conn is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(conn.sock)
        conn.sock.close()


# --- the listener of resmon serve ------------------------------------------------


@contextlib.contextmanager
def separate_listener(
    host: str, port: int, app: Flask, database: str, *, timeout: float, refresh: float
) -> Iterator[int]:
    """Serve the app's metrics on ``host:port`` from a thread of this (master) process
    (:class:`MetricsListener`).

    Yields the bound port.  The database figures are read in the background through
    a connection opened per reading (see :func:`~resmon.server.metrics.database_stats_fresh`), and a fork
    waits for a reading in progress; workers forked later close their copy of the
    listening socket, and the thread and socket are closed when the block ends.
    """
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.multiprocess import MultiProcessCollector

    from resmon.server import metrics as m

    registry = CollectorRegistry(auto_describe=False)
    mp_path = m.multiprocess_path()
    if mp_path:
        MultiProcessCollector(registry, path=mp_path)
    else:  # one process: export the app's own objects
        metrics: m.ServerMetrics = app.extensions["resmon_metrics"]
        registry.register(metrics.pushes)
        registry.register(metrics.durations)
    stats = m.DatabaseStats(lambda: m.database_stats_fresh(database), refresh, fork_guard=True)
    # One thread answers every connection: wait little for a first reading.
    registry.register(m.ServerCollector(stats, wait=min(1.0, timeout / 2)))  # type: ignore[arg-type]

    def render(accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept or "")
        return encoder(registry), content_type

    listener = MetricsListener(host, port, render, timeout=timeout).start()
    owner = os.getpid()
    open_socket = [True]

    def close_in_child() -> None:
        if open_socket[0]:
            listener.sock.close()

    os.register_at_fork(after_in_child=close_in_child)
    log.info("metrics listener", extra={"addr": f"{host}:{listener.port}"})
    try:
        yield listener.port
    finally:
        if os.getpid() == owner:
            open_socket[0] = False
            listener.stop()
