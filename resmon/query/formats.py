"""Values as ``resmon query`` tables show them: human units, relative times, sparklines.

Binary units with three significant digits (``64.0 MiB``), cores to two decimals,
``3m 20s``, ``2h ago``; a missing value is a dash, never ``0``.  How close a figure
is to its limit is a percent and a colour name (:func:`percent_style`); the tables
of :mod:`resmon.query.tables` put them in cells.  JSON and CSV never use these:
they carry the raw numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.cells import cell_len

from resmon.schema import parse_time

NONE = "–"
SPARKS = "▁▂▃▄▅▆▇█"
WARN_PERCENT = 70.0
ALERT_PERCENT = 90.0


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def fmt_bytes(value: float | None) -> str:
    """Binary units with three significant digits: ``512 B``, ``64.0 MiB``, ``1.50 GiB``."""
    if _missing(value):
        return NONE
    n = float(value)  # type: ignore[arg-type]
    if abs(n) < 1000:
        return f"{n:.0f} B"
    unit = "B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024
        # Up a unit from 1000 on: "0.98 GiB" reads better than "1000 MiB".
        if abs(n) < 1000 or unit == "PiB":
            break
    if abs(n) < 10:
        return f"{n:.2f} {unit}"
    if abs(n) < 100:
        return f"{n:.1f} {unit}"
    return f"{n:.0f} {unit}"


def fmt_cores(value: float | None) -> str:
    return NONE if _missing(value) else f"{value:.2f}"


def fmt_percent(value: float | None) -> str:
    return NONE if _missing(value) else f"{value:.0f}%"


def fmt_duration(seconds: float | None) -> str:
    """``850ms``, ``42s``, ``3m 20s``, ``2h 05m``, ``3d 4h``."""
    if _missing(seconds):
        return NONE
    s = float(seconds)  # type: ignore[arg-type]
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 10:
        return f"{s:.1f}s"
    total = int(round(s))
    if total < 60:
        return f"{total}s"
    minutes, sec = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def to_datetime(value: Any) -> datetime | None:
    """An aware UTC datetime from an API time string (or a datetime), else None."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def fmt_ago(value: Any, now: datetime | None = None) -> str:
    """``just now``, ``45s ago``, ``12m ago``, ``2h ago``, ``3d ago``; a date past 30 days."""
    when = to_datetime(value)
    if when is None:
        return NONE
    now = now or datetime.now(UTC)
    seconds = (now - when).total_seconds()
    if seconds < -60:
        return when.strftime("%Y-%m-%d %H:%M")  # clock skew: say when, not "in 3m"
    if seconds < 5:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)}s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)}m ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h ago"
    if seconds < 30 * 86400:
        return f"{int(seconds // 86400)}d ago"
    return when.strftime("%Y-%m-%d")


def fmt_time(value: Any) -> str:
    when = to_datetime(value)
    return NONE if when is None else when.strftime("%Y-%m-%d %H:%M:%S UTC")


def percent_of(value: float | None, limit: float | None) -> float | None:
    if _missing(value) or _missing(limit) or not limit:
        return None
    return float(value) / float(limit) * 100.0  # type: ignore[arg-type]


def percent_style(percent: float | None) -> str:
    if percent is None:
        return ""
    if percent < WARN_PERCENT:
        return "green"
    if percent <= ALERT_PERCENT:
        return "yellow"
    return "bold red"


def sparkline(values: Sequence[float | None]) -> str:
    """One block per value, scaled from the smallest value to the largest, so a rise
    from 75 % to 82 % shows as a rise rather than a flat top row; say so next to it
    (:func:`value_span`).  All values equal are a flat middle row; a missing one is a
    space."""
    present = [float(v) for v in values if not _missing(v)]  # type: ignore[arg-type]
    low, high = min(present, default=0.0), max(present, default=0.0)
    out = []
    for v in values:
        if _missing(v):
            out.append(" ")
        elif high <= low:
            out.append(SPARKS[len(SPARKS) // 2 - 1])
        else:
            step = (float(v) - low) / (high - low) * (len(SPARKS) - 1)  # type: ignore[arg-type]
            out.append(SPARKS[min(len(SPARKS) - 1, int(step + 0.5))])
    return "".join(out)


def value_span(values: Sequence[float | None], fmt: Callable[[float | None], str]) -> str:
    """``75%..82%``: the range a sparkline of ``values`` spans, in the figure's units."""
    present = [v for v in values if not _missing(v)]
    if not present:
        return NONE
    return f"{fmt(min(present))}..{fmt(max(present))}"  # type: ignore[type-var]


ELLIPSIS = "…"


def middle_ellipsis(text: str, width: int) -> str:
    """``text`` in at most ``width`` terminal cells, cut in the middle when it must be:
    ``/process_api/233b…/4fca91``.  The start says what kind of name it is, the end
    tells two of them apart (a hash, a job's suffix), so both stay."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    room = width - 1
    head_room = (room + 1) // 2 + room // 6  # a little more of the start
    head = _take(text, head_room)
    tail = _take(text[::-1], room - cell_len(head))[::-1]
    return f"{head}{ELLIPSIS}{tail}"


def _take(text: str, cells: int) -> str:
    """The longest start of ``text`` within ``cells`` terminal cells (wide characters
    count two)."""
    used = 0
    for i, char in enumerate(text):
        used += cell_len(char)
        if used > cells:
            return text[:i]
    return text
