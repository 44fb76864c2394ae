"""Step boundaries marked from the job: ``resmon collect --mark NAME`` against a running
collector, and the segments they make of its run.

The mechanism is a marks file, the simplest that works across containers: the job
appends one JSON line per mark (``{"t": <unix seconds>, "name": "test"}``, a single
``write`` of a few dozen bytes with O_APPEND, so concurrent marks never interleave);
the collector stats the file once per sample and reads what was appended.  In a pod,
the file lives on a volume both containers mount (an ``emptyDir``) and both get its
path from ``RESMON_MARKS_FILE`` (docs/kubernetes.md).  The collector starts reading at
the file's end when it starts: marks of earlier runs are never this run's.

A mark starts a segment named after it; the segment ends at the next mark, or at the
end of the run.  A segment's CPU-seconds are the job's CPU-seconds between its two
boundaries, each read off the job's running total by linear interpolation between the
two samples around it (so segments add up to the job's CPU time after the first mark);
its memory peak is the largest job memory sampled within it (or, for a segment shorter
than an interval, at the first sample after it starts).  Time before the first mark is
no segment.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from resmon.collect.records import format_time

log = logging.getLogger(__name__)

MAX_MARK_NAME = 255
# What one read of the marks file takes at most: a runaway writer cannot make a
# sidecar hold megabytes (the rest is read at the next samples).
MAX_READ_BYTES = 64 * 1024
MAX_SEGMENTS = 1000


def default_marks_file(spool_dir: Path) -> Path:
    """Beside the spool: ``$XDG_STATE_HOME/resmon/marks`` by default."""
    return spool_dir.parent / "marks"


def write_mark(path: Path, name: str, t: float) -> None:
    """Append one mark to ``path`` (made, with its directory, if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = orjson.dumps({"t": round(t, 6), "name": name}) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class MarkReader:
    """New marks appended to the marks file since the collector started."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = self._size()
        self._partial = b""

    def _size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except OSError:
            return 0

    def read(self) -> list[tuple[float, str]]:
        size = self._size()
        if size < self.offset:  # truncated or replaced: start over
            self.offset, self._partial = 0, b""
        if size == self.offset:
            return []
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(min(size - self.offset, MAX_READ_BYTES))
        except OSError as exc:
            log.warning("cannot read the marks file %s: %s", self.path, exc)
            return []
        self.offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        marks = []
        for line in lines:
            try:
                mark = orjson.loads(line)
                t, name = float(mark["t"]), str(mark["name"])[:MAX_MARK_NAME]
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                if line.strip():
                    log.warning("marks file %s: a line that is no mark, skipped", self.path)
                continue
            marks.append((t, name))
        return marks


@dataclass
class _Segment:
    name: str
    start: float
    cpu_start: float
    end: float | None = None
    cpu_end: float | None = None
    memory_peak: float = 0.0
    samples: int = 0


@dataclass
class Segments:
    """The run's segments from its marks, fed the job's running figures per sample."""

    reader: MarkReader
    segments: list[_Segment] = field(default_factory=list)
    _last: tuple[float, float] | None = None  # (t, cumulative job CPU-seconds)
    _pending: list[tuple[float, str]] = field(default_factory=list)

    def sample(self, t: float, cpu_seconds: float, memory_bytes: float) -> None:
        """One sample at ``t``: the job's CPU-seconds so far and its memory now."""
        self._pending.extend(self.reader.read())
        self._pending.sort()
        while self._pending and self._pending[0][0] <= t:
            mark_t, name = self._pending.pop(0)
            cpu = self._cpu_at(mark_t, t, cpu_seconds)
            if self.segments and self.segments[-1].end is None:
                self.segments[-1].end, self.segments[-1].cpu_end = mark_t, cpu
            if len(self.segments) < MAX_SEGMENTS:
                self.segments.append(_Segment(name, mark_t, cpu))
        # The open segment, and those that ended before any sample fell in them (a
        # segment shorter than an interval gets the first sample after it started).
        for seg in reversed(self.segments):
            if seg.end is not None and seg.samples:
                break
            seg.memory_peak = max(seg.memory_peak, memory_bytes)
            seg.samples += 1
        self._last = (t, cpu_seconds)

    def _cpu_at(self, mark_t: float, t: float, cpu_seconds: float) -> float:
        """The job's CPU-seconds at ``mark_t`` (between the last sample and this one)."""
        if self._last is None:
            return cpu_seconds
        t0, c0 = self._last
        if mark_t <= t0 or t <= t0:
            return c0
        return c0 + (cpu_seconds - c0) * (mark_t - t0) / (t - t0)

    def summary(self, end_t: float, end_cpu: float) -> list[dict[str, Any]]:
        """The segments for the run summary's ``steps`` (the last ends with the run)."""
        from datetime import UTC, datetime

        out = []
        for seg in self.segments:
            end = seg.end if seg.end is not None else end_t
            cpu_end = seg.cpu_end if seg.cpu_end is not None else end_cpu
            out.append(
                {
                    "name": seg.name,
                    "start_time": format_time(datetime.fromtimestamp(seg.start, UTC)),
                    "end_time": format_time(datetime.fromtimestamp(max(end, seg.start), UTC)),
                    "duration_seconds": round(max(0.0, end - seg.start), 3),
                    "cpu_seconds": round(max(0.0, cpu_end - seg.cpu_start), 3),
                    "memory_bytes_peak": round(seg.memory_peak) if seg.samples else None,
                    "sample_count": seg.samples,
                    "source": "mark",
                }
            )
        return out


def annotate_timeline(summary: dict[str, Any]) -> None:
    """Name on each timeline point the step (segment) it falls in, so the timeline
    shows the segments: ``step`` on the points from a mark to the next."""
    from resmon.schema import parse_time

    steps = summary.get("steps") or []
    timeline = summary.get("timeline") or []
    try:
        origin = parse_time(summary["start_time"]).timestamp()
        bounds = [
            (parse_time(s["start_time"]).timestamp() - origin, s["name"])
            for s in steps
            if isinstance(s, dict)
        ]
    except (KeyError, TypeError, ValueError):
        return
    bounds.sort()
    for point in timeline:
        t = point.get("t") if isinstance(point, dict) else None
        if not isinstance(t, (int, float)):
            continue
        current = None
        for start, name in bounds:
            if start <= t + 1e-6:
                current = name
            else:
                break
        if current is not None:
            point["step"] = current
