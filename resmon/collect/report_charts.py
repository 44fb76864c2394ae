"""The Markdown report's charts: Mermaid ``xychart-beta`` blocks, which GitHub's and
Forgejo's pages render themselves (no image service sees the data).

What the charts show.  A reader opens the job summary to see *the job*, so the
charts draw the job's containers and nothing else of their own:

- wrapper mode (the summary has ``command.container``): the wrapped command's
  container alone;
- sidecar mode: every container with a given name, i.e. one named by
  ``CGROUP_PROCESS_MAP`` or by a container runtime's id; not ``host`` (the root
  cgroup), not ``unknown``, and not a container named by its raw cgroup path
  (``/user.slice/...``, ``/process_api/...``): nobody named those, they are the
  machine's own services and sessions.  At most five, busiest (CPU-seconds) first.

Everything else appears once, as one grey "other processes, summed" line on the
CPU chart, where it explains a slow job (the cores were busy elsewhere); it is left
off the memory chart, where a host's gigabytes would flatten a job's megabytes and
say nothing about the job.  With no job container in the timeline the charts fall
back to the machine's CPU busy and memory used.

Colours.  xychart's default theme gives its first line the palest colour, and it
has no legend.  So each block sets ``plotColorPalette`` (one colour per line, in
drawing order): the job's first container gets a strong blue and is drawn last (on
top where lines cross), further containers orange, green, purple, brown, the other
processes a light grey.  Under each chart a Markdown legend line names each line
with a square emoji of its hue and the colour's word: GitHub and Forgejo strip
``style`` from HTML, so coloured text or swatches cannot be made in Markdown, but
emoji are plain text and render everywhere, and the word serves where an emoji's
shade differs from the line's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from resmon.collect.containers import HOST_CONTAINER, UNKNOWN_CONTAINER

# Mermaid draws every point; more than this makes a chart slow and no clearer.
CHART_POINTS = 100
MIB = 1024 * 1024


@dataclass(frozen=True)
class Colour:
    """A line's colour, and how the Markdown legend shows it."""

    hex: str
    square: str  # the emoji square of the same hue
    word: str


# Strongest first.  Mid-dark hues that read on GitHub's white and dark pages alike
# and stay apart for the common colour-vision deficiencies (blue against orange first).
JOB_COLOURS = (
    Colour("#1F6FEB", "🟦", "blue"),
    Colour("#D55E00", "🟧", "orange"),
    Colour("#1A7F37", "🟩", "green"),
    Colour("#8250DF", "🟪", "purple"),
    Colour("#8C564B", "🟫", "brown"),
)
OTHERS_COLOUR = Colour("#8C959F", "⬜", "grey")
OTHERS_LABEL = "other processes, summed"
# Containers that are never the job's (see the module docstring).
UNNAMED = frozenset({HOST_CONTAINER, UNKNOWN_CONTAINER})


@dataclass(frozen=True)
class _Line:
    label: str
    colour: Colour
    values: list[float | None]
    plain: bool = False  # a sum or the machine, not a container: the legend does not bold it

    def of(self, values: Sequence[float | None]) -> _Line:
        return replace(self, values=list(values))

    def legend(self) -> str:
        name = md_cell(self.label) if self.plain else f"**{md_cell(self.label)}**"
        return f"{self.colour.square} {name} ({self.colour.word})"


def md_cell(text: Any) -> str:
    """Table-cell text: process and container names come from the job and may hold anything."""
    s = str(text)
    for a, b in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|"), ("`", "\\`")):
        s = s.replace(a, b)
    return " ".join(s.split())


def _label(text: Any) -> str:
    # Mermaid quoted strings cannot contain a double quote.
    return str(text).replace('"', "'").replace("\n", " ")


def _downsample(points: Sequence[Mapping[str, Any]], n: int) -> list[Mapping[str, Any]]:
    if len(points) <= n:
        return list(points)
    step = (len(points) - 1) / (n - 1)
    return [points[round(i * step)] for i in range(n)]


def job_containers(summary: Mapping[str, Any]) -> list[str]:
    """The job's containers in the timeline, the one that gets the strongest colour first.

    Wrapper mode: the wrapped command's container alone.  Sidecar mode: every
    container with a given name (not ``host``, ``unknown`` or a raw cgroup path),
    busiest (CPU-seconds) first.  The module docstring gives the reasons.
    """
    points = [p for p in summary.get("timeline") or [] if isinstance(p, Mapping)]
    seen = {str(n) for p in points for n in (p.get("containers") or {})}
    command = summary.get("command")
    if isinstance(command, Mapping) and command.get("container"):
        return [str(command["container"])] if str(command["container"]) in seen else []
    cpu_seconds: dict[str, float] = {}
    for c in summary.get("containers") or []:
        if isinstance(c, Mapping) and isinstance(c.get("cpu_seconds"), (int, float)):
            cpu_seconds[str(c.get("name"))] = float(c["cpu_seconds"])
    named = [n for n in seen if n not in UNNAMED and not n.startswith("/")]
    return sorted(named, key=lambda n: (-cpu_seconds.get(n, 0.0), n))


def _number(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _axis_top(peak: float) -> str:
    """10 % above the peak, rounded up to two significant digits and written without
    an exponent (``1.5e+03`` is not a number to Mermaid's parser)."""
    target = max(peak, 0.0) * 1.1 or 1.0
    exponent = math.floor(math.log10(target)) - 1
    top = math.ceil(round(target / 10**exponent, 9)) * 10**exponent
    return f"{top:.{max(0, -exponent)}f}"


def _chart(title: str, y_label: str, x_max: float, lines: Sequence[_Line]) -> list[str]:
    """One xychart block and its legend; ``lines`` come most important first.

    The most important line is drawn last, so it lies on top where lines cross; the
    palette lists the colours in drawing order (xychart colours plots by position).
    """
    drawn = list(reversed(lines))
    peak = max((v or 0 for line in lines for v in line.values), default=0)
    palette = ", ".join(line.colour.hex for line in drawn)
    out = [
        "```mermaid",
        # Mermaid reads a directive anywhere in the block; after the type line the
        # block still opens with its diagram type, as tools that sniff it expect.
        "xychart-beta",
        '%%{init: {"themeVariables": {"xyChart": {"plotColorPalette": "' + palette + '"}}}}%%',
        f'    title "{_label(title)}"',
        f'    x-axis "seconds since start" 0 --> {_number(round(max(x_max, 1), 1))}',
        f'    y-axis "{_label(y_label)}" 0 --> {_axis_top(peak)}',
    ]
    # A missing value (no CPU delta on the first sample) is drawn as 0: xychart has no gaps.
    out += [f"    line [{', '.join(_number(v or 0) for v in line.values)}]" for line in drawn]
    out += ["```", "", "Lines: " + " · ".join(line.legend() for line in lines), ""]
    return out


def charts(summary: Mapping[str, Any]) -> list[str]:
    timeline = [p for p in summary.get("timeline") or [] if isinstance(p, Mapping)]
    if len(timeline) < 2:
        return []
    points = _downsample(timeline, CHART_POINTS)
    x_max = float(points[-1].get("t") or 0)
    lines = ["#### Over time", ""]
    job = job_containers(summary)
    if not job:
        machine = _Line("the whole machine", JOB_COLOURS[0], [], plain=True)
        cpu = [p.get("cpu_percent") for p in points]
        mem = [(p.get("mem_used_bytes") or 0) / MIB for p in points]
        lines += _chart("Machine CPU busy (%)", "percent", x_max, [machine.of(cpu)])
        lines += _chart("Machine memory used (MiB)", "MiB", x_max, [machine.of(mem)])
        return lines
    # Five colours: the quietest of more containers are named below the charts instead.
    charted = list(zip(job, JOB_COLOURS, strict=False))
    left_out = job[len(charted) :]

    def values(name: str, field: str, scale: float = 1.0) -> list[float | None]:
        out: list[float | None] = []
        for p in points:
            v = ((p.get("containers") or {}).get(name) or {}).get(field)
            out.append(v / scale if isinstance(v, (int, float)) else None)
        return out

    cpu_lines = [_Line(n, colour, values(n, "cpu_cores")) for n, colour in charted]
    others = _others_cpu(points, set(job))
    if any(others):
        cpu_lines.append(_Line(OTHERS_LABEL, OTHERS_COLOUR, others, plain=True))
    mem_lines = [_Line(n, colour, values(n, "memory_bytes", MIB)) for n, colour in charted]
    lines += _chart("CPU (cores)", "cores", x_max, cpu_lines)
    lines += _chart("Memory (MiB)", "MiB", x_max, mem_lines)
    if left_out:
        lines += ["Not charted (less CPU): " + ", ".join(md_cell(n) for n in left_out), ""]
    return lines


def _others_cpu(points: Sequence[Mapping[str, Any]], job: set[str]) -> list[float | None]:
    """Per point, the CPU cores of every container that is not the job's, summed."""
    out: list[float | None] = []
    for p in points:
        cores = [
            figures.get("cpu_cores")
            for name, figures in (p.get("containers") or {}).items()
            if name not in job and isinstance(figures, Mapping)
        ]
        known = [c for c in cores if isinstance(c, (int, float))]
        out.append(sum(known) if known else None)
    return out
