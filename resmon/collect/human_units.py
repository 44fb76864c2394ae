"""Figures as a reader writes them: bytes in KiB/MiB/GiB, cores, durations.

Shared by the Markdown report, the budgets and the push answer's comparison, so a
figure reads the same in the job summary and in the log.
"""

from __future__ import annotations


def format_bytes(value: float | None) -> str:
    if value is None:
        return "–"
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_cores(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h {m}m {s}s"
    return f"{m}m {s}s" if m else f"{s}s"


def _short(value: float) -> str:
    """0.143 -> 0.143, 2.5 -> 2.5, 600.0 -> 600.0: a small figure keeps its digits."""
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def format_figure(name: str, value: float | None) -> str:
    """A job figure by its summary name: ``memory_peak_bytes``, ``cpu_p95_cores``,
    ``cpu_seconds``, ``duration_seconds`` (another name: the bare number)."""
    if value is None:
        return "–"
    if name.endswith("_bytes"):
        return format_bytes(value)
    if name.endswith("_cores"):
        return f"{value:.2f} cores"
    if name == "cpu_seconds":
        return f"{_short(value)} CPU-seconds"
    if name.endswith("_seconds"):
        return format_duration(value) if value >= 10 else f"{_short(value)}s"
    return f"{value:g}"
