"""How the pages write numbers and times: Jinja filters, and the chart data blocks.

Presentation only: every figure comes from the store's answers as they are.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from markupsafe import Markup

from resmon.schema import parse_time

KIB = 1024


def fmt_bytes(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < KIB or unit == "TiB":
            return f"{size:.0f} {unit}" if unit in ("B", "KiB") else f"{size:.1f} {unit}"
        size /= KIB
    return f"{size:.1f} TiB"  # pragma: no cover - the loop returns


def fmt_cores(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def fmt_number(value: Any, digits: int = 1) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    return f"{value:,.{digits}f}"


def fmt_percent(value: Any, digits: int = 0) -> str:
    """A fraction (0.25) as a percentage (25 %)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    return f"{value * 100:.{digits}f} %"


def fmt_change(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    return f"{value * 100:+.0f} %"


def fmt_duration(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    seconds = int(round(value))
    if seconds < 60:
        return f"{value:.1f} s" if value < 10 else f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            return parse_time(value)
        except (ValueError, OverflowError):
            return None
    return None


def fmt_time(value: Any) -> str:
    when = as_time(value)
    return "–" if when is None else when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso_time(value: Any) -> str:
    when = as_time(value)
    return "" if when is None else when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(value: Any) -> float | None:
    when = as_time(value)
    return None if when is None else when.timestamp()


def json_block(value: Any) -> Markup:
    """JSON for a ``<script type="application/json">`` block: ``<``, ``>`` and ``&``
    escaped, so no text in it can end the block."""
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(text)  # noqa: S704 - escaped above for a script data block


def sparkline(values: list[Any], width: int = 80, height: int = 20) -> str:
    """The points of an SVG polyline through ``values`` (None skipped), oldest left,
    scaled from zero to the largest; empty when fewer than two are numbers."""
    numbers = [
        (i, float(v))
        for i, v in enumerate(values)
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    if len(numbers) < 2:
        return ""
    top = max(v for _, v in numbers) or 1.0
    span = max(len(values) - 1, 1)
    return " ".join(
        f"{1 + i * (width - 2) / span:.1f},{height - 1 - v / top * (height - 2):.1f}"
        for i, v in numbers
    )


FILTERS = {
    "bytes": fmt_bytes,
    "cores": fmt_cores,
    "number": fmt_number,
    "percent": fmt_percent,
    "change": fmt_change,
    "duration": fmt_duration,
    "time": fmt_time,
    "iso": iso_time,
    "json_block": json_block,
    "sparkline": sparkline,
}
