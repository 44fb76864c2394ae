"""A small real HTTP receiver for push tests: scripted statuses, every request recorded;
and the minimal payload the spool and push tests send (``spool_payload``).

Live batches (``POST …/api/v1/metrics/live``) are kept apart from the pushes: their
own script, status, delay and records (``live_requests``, ``live_stored`` by
idempotency key), answered as the live contract says; ``requests`` and ``script``
stay the pushes' only, so a push test is not disturbed by a collector that streams.

It is a real ``http.server`` on a free loopback port in a thread, so the push client
goes through real sockets, real HTTP parsing and real timeouts.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return orjson.loads(self.body)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client that gave up (push timeout against ``delay``) is what those tests
        # want; the stock handler would print its BrokenPipeError into pytest's output.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@dataclass
class Receiver:
    """Answers POSTs with ``script`` (a list of (status, body, headers)), then 201 forever."""

    script: list[tuple[int, bytes, dict[str, str]]] = field(default_factory=list)
    requests: list[ReceivedRequest] = field(default_factory=list)
    stored: dict[str, ReceivedRequest] = field(default_factory=dict)  # by idempotency key
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay: float = 0.0  # seconds to wait before answering (a server that hangs)
    live_script: list[tuple[int, bytes, dict[str, str]]] = field(default_factory=list)
    live_status: int | None = None  # answer every live batch with this (404: a Go receiver)
    live_delay: float = 0.0
    live_requests: list[ReceivedRequest] = field(default_factory=list)
    live_stored: dict[str, ReceivedRequest] = field(default_factory=dict)

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/api/v1/metrics"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                if self.path.rstrip("/").endswith("/live"):
                    self._answer(*receiver.live_answer(self._read()))
                    return
                if receiver.delay:
                    time.sleep(receiver.delay)
                req = self._read()
                with receiver.lock:
                    receiver.requests.append(req)
                    if receiver.script:
                        status, body, headers = receiver.script.pop(0)
                    else:
                        key = req.headers.get("Idempotency-Key", "")
                        status = 200 if key and key in receiver.stored else 201
                        receiver.stored.setdefault(key or str(len(receiver.requests)), req)
                        body = orjson.dumps({"id": len(receiver.stored), "status": "created"})
                        headers = {}
                self._answer(status, body, headers)

            def _read(self) -> ReceivedRequest:
                length = int(self.headers.get("Content-Length") or 0)
                return ReceivedRequest(
                    self.path, dict(self.headers.items()), self.rfile.read(length)
                )

            def _answer(self, status, body, headers):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def live_answer(self, req: ReceivedRequest) -> tuple[int, bytes, dict[str, str]]:
        with self.lock:
            self.live_requests.append(req)  # seen when it comes, answered after live_delay
        if self.live_delay:
            time.sleep(self.live_delay)
        with self.lock:
            if self.live_script:
                return self.live_script.pop(0)
            if self.live_status is not None:
                return self.live_status, b'{"error": "not found"}', {}
            key = req.headers.get("Idempotency-Key", "")
            duplicate = key in self.live_stored
            self.live_stored.setdefault(key, req)
        stored = "duplicate" if duplicate else "created"
        body = orjson.dumps({"run": 1, "state": "running", "stored": stored})
        return (200 if duplicate else 201), body, {}

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def closed_port_url() -> str:
    """A loopback URL nobody listens on (bound and closed: connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/v1/metrics"


def spool_payload(run_id: str = "1", pad: int = 0) -> dict:
    """A push payload with just its execution scope: the spool and the push client
    carry payloads without reading the run summary.  ``pad`` adds that many bytes."""
    summary: dict = {"sample_count": 1}
    if pad:
        summary["pad"] = "x" * pad
    return {
        "execution": {
            "organization": "o",
            "repository": "o/r",
            "workflow": "w",
            "job": "j",
            "run_id": run_id,
        },
        "run_summary": summary,
    }
