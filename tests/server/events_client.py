"""Helpers of the event stream tests: an SSE client on a background thread, and
events appended straight into a database (as the ingest path does, in a transaction).

    with EventStream(server.url, server.read_headers) as stream:
        add_events(db, 3)
        events = stream.wait_for(3)        # [{"id": 1, "event": "snapshot", "data": {...}}, ...]
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from typing import Any

import orjson
import requests

from resmon.store import events as store_events

SCOPE = {"organization": "o", "repository": "o/r", "workflow": "w", "job": "j"}


def add_events(
    database: Any, count: int, kind: str = "snapshot", scope: dict | None = None, **data: Any
) -> list[int]:
    """Append ``count`` events, one transaction each; returns their ids."""
    ids = []
    for i in range(count):
        with database.atomic():
            ids.append(store_events.append_event(kind, scope or SCOPE, None, {"n": i, **data}))
    return ids


def parse_block(lines: list[str]) -> dict[str, Any] | None:
    """One SSE block (the lines before a blank line) -> an event, or None for comments."""
    event: dict[str, Any] = {}
    for line in lines:
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            event["data"] = orjson.loads(value)
        elif name == "id":
            event["id"] = int(value)
        elif name in ("event", "retry"):
            event[name] = value
    return event if "id" in event else None


class EventStream:
    """GET /api/v1/events read on a thread: events, comments and the end, in order."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        cookies: dict[str, str] | None = None,
    ) -> None:
        self.response = requests.get(
            url + "/api/v1/events",
            headers=headers or {},
            params=params,
            cookies=cookies,
            stream=True,
            timeout=(5, 60),
        )
        self.status = self.response.status_code
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.comments: list[str] = []
        self.ended = threading.Event()
        self.received: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        if self.status == 200:
            self._thread.start()
        else:
            self.ended.set()

    def _read(self) -> None:
        block: list[str] = []
        try:
            for raw in self.response.iter_lines(chunk_size=1):
                line = raw.decode()
                if line:
                    block.append(line)
                    if line.startswith(":"):
                        self.comments.append(line)
                    continue
                event = parse_block(block)
                block = []
                if event is not None:
                    self.events.put(event)
        except (requests.RequestException, OSError, ValueError, AttributeError):
            pass
        finally:
            self.ended.set()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The next ``count`` events (fails the test if they do not come in time)."""
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < count:
            left = deadline - time.monotonic()
            try:
                out.append(self.events.get(timeout=max(0.01, left)))
            except queue.Empty:
                raise AssertionError(
                    f"got {len(out)} of {count} events in {timeout} s: {out}"
                ) from None
        self.received += out
        return out

    def none_within(self, seconds: float) -> list[dict[str, Any]]:
        """Events that come within ``seconds`` (a test expects none)."""
        time.sleep(seconds)
        out = []
        while not self.events.empty():
            out.append(self.events.get_nowait())
        return out

    def close(self) -> None:
        """Leave: shut the socket down (so the reader thread and the server see it
        at once), then close the response."""
        try:
            sock = self.response.raw._fp.fp.raw._sock  # http.client's socket
            sock.shutdown(socket.SHUT_RDWR)
        except (AttributeError, OSError):
            pass
        self.response.close()
        self.ended.wait(5)

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
