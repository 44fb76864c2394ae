"""Where ``resmon collect``'s diagnostics go: stderr, in the same shape as its records.

The records (samples, the run summary) are the output and go to stdout; warnings and
errors about the run go to stderr through the ``resmon`` logger, as JSON or as
``key=value`` text after ``--log-format``, so one parser reads both streams.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from resmon.collect.records import format_time, text_value

# The LogRecord attribute that carries a line's structured fields (see log_fields).
FIELDS_ATTRIBUTE = "resmon_fields"
_RESERVED = frozenset({"time", "level", "msg", "logger", "error"})


def log_fields(**fields: Any) -> dict[str, Any]:
    """``extra=`` for a log call whose values are data, not prose: a server's answer, say.

    ``log.info("pushed %s", name, extra=log_fields(response={"id": 1}))`` writes
    ``"response": {"id": 1}`` as JSON, or ``response.id=1`` as text; formatting the
    value into the message would print a Python repr neither format can parse.
    """
    return {FIELDS_ATTRIBUTE: fields}


def _fields(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, FIELDS_ATTRIBUTE, None)
    if not isinstance(fields, Mapping):
        return {}
    return {k: v for k, v in fields.items() if k not in _RESERVED}


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson's error: a server's integer past 64 bits, say
        import json

        return json.dumps(value, default=str, separators=(",", ":"))


def _text_fields(prefix: str, value: Any, out: list[str]) -> None:
    # Nested objects become dotted keys, as in the records' text form; a list is one
    # JSON value, quoted when it holds a space or a quote.
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _text_fields(f"{prefix}.{k}", v, out)
    elif isinstance(value, list):
        out.append(f"{prefix}={text_value(_json(value))}")
    else:
        out.append(f"{prefix}={text_value(value)}")


class JsonLogFormatter(logging.Formatter):
    """Diagnostics as the same JSON shape as the records (time, level, msg)."""

    def format(self, record: logging.LogRecord) -> str:
        obj = {
            "time": format_time(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname.replace("WARNING", "WARN"),
            "msg": record.getMessage(),
            "logger": record.name,
            **_fields(record),
        }
        if record.exc_info:
            obj["error"] = self.formatException(record.exc_info)
        return _json(obj)


class TextLogFormatter(logging.Formatter):
    """Diagnostics as ``key=value`` text, like the records with ``--log-format text``."""

    def format(self, record: logging.LogRecord) -> str:
        when = format_time(datetime.fromtimestamp(record.created, UTC))
        level = record.levelname.replace("WARNING", "WARN")
        parts = [
            f"time={when} level={level} msg={text_value(record.getMessage())} logger={record.name}"
        ]
        for key, value in _fields(record).items():
            _text_fields(key, value, parts)
        line = " ".join(parts)
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
