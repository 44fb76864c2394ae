"""Where ``resmon collect``'s diagnostics go: stderr, in the same shape as its records.

The records (samples, the run summary) are the output and go to stdout; warnings and
errors about the run go to stderr through the ``resmon`` logger, as JSON or as
``key=value`` text after ``--log-format``, so one parser reads both streams.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO

import orjson

from resmon.collect.records import text_value
from resmon.schema import format_time


class JsonLogFormatter(logging.Formatter):
    """Diagnostics as the same JSON shape as the records (time, level, msg)."""

    def format(self, record: logging.LogRecord) -> str:
        obj = {
            "time": format_time(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname.replace("WARNING", "WARN"),
            "msg": record.getMessage(),
            "logger": record.name,
        }
        if record.exc_info:
            obj["error"] = self.formatException(record.exc_info)
        return orjson.dumps(obj).decode()


class TextLogFormatter(logging.Formatter):
    """Diagnostics as ``key=value`` text, like the records with ``--log-format text``."""

    def format(self, record: logging.LogRecord) -> str:
        when = format_time(datetime.fromtimestamp(record.created, UTC))
        level = record.levelname.replace("WARNING", "WARN")
        line = (
            f"time={when} level={level} msg={text_value(record.getMessage())} logger={record.name}"
        )
        if record.exc_info:
            line += f" error={text_value(self.formatException(record.exc_info))}"
        return line


def configure_logging(
    level: str, log_format: str, stream: IO[str] | None = None
) -> Callable[[], None]:
    """Diagnostics to stderr; only the CLI calls this.  Returns a function that undoes it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLogFormatter() if log_format == "json" else TextLogFormatter())
    root = logging.getLogger("resmon")
    root.addHandler(handler)
    root.setLevel(level.upper())

    def undo() -> None:
        root.removeHandler(handler)

    return undo
