"""Structured logs: JSON lines on stderr, one per request, never a secret.

The request line carries method, path (without the query string), status,
duration and the route template; no header, body or query value is ever logged,
so tokens cannot leak through it.  Other records (gunicorn's, the database's)
go through the same formatter.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson

REQUEST_LOGGER = "resmon.server.request"

# LogRecord attributes that are not "extra" fields.
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class ClientTimeoutFilter(logging.Filter):
    """gunicorn logs a client that stopped taking its answer (the send timed out:
    EAGAIN from the socket timeout, or the answer's deadline of --request-timeout
    plus a second per 64 KiB) as a socket error with a traceback; it is an expected
    event, so it becomes one warning line.  A request that is not received in time
    never reaches a worker: the front answers it (:mod:`resmon.server.front`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (BlockingIOError, TimeoutError)):
            record.msg, record.args = (
                "client did not take the answer in time (--io-timeout silence, or "
                "--request-timeout plus 1 s per 64 KiB), connection closed",
                (),
            )
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


class LineHandler(logging.StreamHandler):
    """A StreamHandler that writes each formatted line with one ``write(2)`` on the
    stream's file descriptor, without the handler lock.

    A StreamHandler formats and writes under its lock; under load the request
    line of every thread queued on it (py-spy: 5% of the server's samples waiting
    in ``Handler.acquire``, the holder waiting for the GIL back after its write).
    One ``write`` of at most PIPE_BUF bytes is atomic on a pipe, and a regular
    file's offset is updated atomically per ``write``, so lines never interleave.
    Longer lines (tracebacks) and streams without a descriptor take the lock path.
    """

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        try:
            self.fd: int | None = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            self.fd = None

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        if not self.filter(record):
            return False
        try:
            line = (self.format(record) + self.terminator).encode()
        except Exception:
            self.handleError(record)
            return True
        if self.fd is None or len(line) > select.PIPE_BUF:
            with self.lock:  # type: ignore[union-attr]
                self.flush()
                self.stream.write(line.decode())
                self.flush()
            return True
        try:
            while line:
                line = line[os.write(self.fd, line) :]
        except OSError:
            self.handleError(record)
        return True


def configure_logging(level: str = "info") -> None:
    """Route every logger to stderr as JSON lines (only ``resmon serve`` calls this)."""
    handler = LineHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    # None of these is ever written (the formatter skips LogRecord's own fields), and
    # gathering them costs every request line: the caller's frame walk most of all
    # (the logging HOWTO's "Optimization" section names these switches).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def gunicorn_logconfig(level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for gunicorn's own loggers, in the same format."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "filters": {"client_timeout": {"()": ClientTimeoutFilter}},
        "handlers": {
            "stderr": {
                "class": "resmon.server.logs.LineHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
                "filters": ["client_timeout"],
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            # Access logging is ours (one line per request, with the route template).
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
    }


_request_log = logging.getLogger(REQUEST_LOGGER)


def log_request(method: str, path: str, route: str, status: int, started: float) -> float:
    """Log the request line; returns the duration in seconds."""
    duration = time.perf_counter() - started
    _request_log.info(
        "request",
        extra={
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": round(duration * 1000, 3),
        },
    )
    return duration
