"""How ``resmon collect`` prints a record: one JSON object per line, or slog-style text.

Samples (``metrics_collected``) and the run summary (``run_summary``) go to stdout
through :class:`RecordWriter`; the diagnostics on stderr reuse :func:`text_value` so
both streams read alike with ``--log-format text``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

import orjson

# The collector's logger: a user filtering on it sees the whole run's diagnostics,
# including a closed output, wherever the code behind them lives.
log = logging.getLogger("resmon.collect.collector")


def format_time(dt: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, to the microsecond: the wire's times
    (:func:`resmon.schema.format_time`, which tests/collect/test_collect_records.py
    holds this to).  Written here for the collector's records, logs and samples, so
    that a sampling sidecar does not hold the wire's validation (resmon.schema and
    resmon.tokens, about 0.1 MiB) before its exit path builds the payload."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _now_rfc3339() -> str:
    return format_time(datetime.now(UTC))


def text_value(value: Any) -> str:
    """One value as slog's text handler writes it: bare when it can be, JSON-quoted otherwise."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.6g}"
    if isinstance(value, str):
        return (
            value
            if value and not any(c in value for c in ' ="\n')
            else orjson.dumps(value).decode()
        )
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    return str(value)


def _process_list_text(procs: list[Any]) -> str:
    items = []
    for p in procs:
        if not isinstance(p, Mapping):
            continue
        cpu = p.get("peak_cpu_percent", p.get("cpu_percent"))
        rss = p.get("peak_mem_rss_bytes", p.get("rss_bytes"))
        cpu_text = "-" if cpu is None else f"{cpu:.1f}%"
        items.append(f"{p.get('name')}[{p.get('pid')}]:{cpu_text}/{(rss or 0) / 1048576:.1f}MiB")
    return ",".join(items)


def _go_text(value: Any) -> str:
    """A value as Go's fmt ``%+v`` writes it, which is how slog's text handler writes a
    list of maps: ``[map[cpu_percent:99.5 name:make pid:7]]`` (keys sorted, floats
    without a trailing ``.0``)."""
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_go_text(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_text(v) for v in value) + "]"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    return "<nil>" if value is None else str(value)


# The Go record's process lists: written in text as slog writes them (see _go_text).
_GO_LISTS = ("top_cpu", "top_memory")


def _flatten(prefix: str, value: Any, out: list[str]) -> None:
    # slog's text handler style: nested objects become dotted keys.  Containers are
    # keyed by name, process lists become one compact field, and the bulky series
    # (timeline, pressure) are left to the JSON format.
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k == "pressure" or v is None:
                continue
            key = f"{prefix}.{k}" if prefix else str(k)
            if k == "timeline" and isinstance(v, list):
                out.append(f"timeline_points={len(v)}")
            elif k in ("top_cpu_processes", "top_mem_processes") and isinstance(v, list):
                out.append(f"{key}={text_value(_process_list_text(v))}")
            elif k in _GO_LISTS and not prefix and isinstance(v, list):
                out.append(f"{key}={text_value(_go_text(v))}")
            elif k == "containers" and isinstance(v, list):
                for c in v:
                    if isinstance(c, Mapping):
                        name = str(c.get("name", "?"))
                        _flatten(f"{key}.{name}", {x: y for x, y in c.items() if x != "name"}, out)
            else:
                _flatten(key, v, out)
    else:
        out.append(f"{prefix}={text_value(value)}")


def format_record(record: Mapping[str, Any], log_format: str) -> bytes:
    """One output line: a JSON object, or ``key=value`` pairs in slog's text style."""
    if log_format == "json":
        return orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS) + b"\n"
    parts: list[str] = []
    _flatten("", record, parts)
    return (" ".join(parts) + "\n").encode()


class RecordWriter:
    """Writes records to a stream; a closed pipe stops the output, never the collection."""

    def __init__(self, stream: IO[bytes], log_format: str) -> None:
        self.stream = stream
        self.log_format = log_format
        self.broken = False

    def write(self, msg: str, body: Mapping[str, Any], level: str = "INFO") -> None:
        if self.broken:
            return
        record = {"time": _now_rfc3339(), "level": level, "msg": msg, **body}
        try:
            self.stream.write(format_record(record, self.log_format))
            self.stream.flush()
        except BrokenPipeError:
            # e.g. `resmon collect | head`: keep collecting and pushing, stop printing.
            self.broken = True
            log.warning("output closed; records are no longer printed")
