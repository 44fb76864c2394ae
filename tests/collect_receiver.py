"""A small real HTTP receiver for push tests: scripted statuses, every request recorded;
and the minimal payload the spool and push tests send (``spool_payload``).

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
                if receiver.delay:
                    time.sleep(receiver.delay)
                length = int(self.headers.get("Content-Length") or 0)
                req = ReceivedRequest(
                    self.path, dict(self.headers.items()), self.rfile.read(length)
                )
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
