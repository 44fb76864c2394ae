"""Fitting a table to the terminal without ever breaking a name across lines.

A table is a list of :class:`Column`.  :func:`fit_table` makes it as wide as the
console at most, in this order:

1. every column at its content's width, when that fits;
2. else the optional columns go, lowest ``drop`` rank first (a rank's columns go
   together, like the two p50 columns of ``show``), until it fits; a note under the
   table names what was left out;
3. else the names (``name=True``: repository, workflow, job, container, step,
   process) are shortened in the middle, longest first, never below
   :data:`NAME_MIN` characters: ``/process_api/233b…/4fca91`` keeps the start and
   the end, the parts that tell two paths apart.

A name longer than :data:`NAME_WIDE` counts at that width in step 2: a limit
column is worth more than the middle of a 78-character cgroup path, which is cut
either way at 80 columns.  Names never go below their header either, so when even
that does not fit (a terminal far narrower than 80 columns), rich cuts the cells
at their end: still one line each.

No cell ever wraps (``no_wrap`` on every column): a run id split over two lines,
or ``integrati`` / ``on``, reads as two values.  Titles are printed above the table
(rather than as rich's table title, which wraps to the table's width) and break
only between names.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from resmon.query.formats import middle_ellipsis

NAME_MIN = 16  # below this a shortened name no longer tells two names apart
NAME_WIDE = 24  # optional columns are not dropped to show more of a name than this

Justify = Literal["left", "right", "center"]


@dataclass(eq=False)  # compared by identity: two columns may hold the same cells
class Column:
    """One column of a table and its cells, top to bottom."""

    header: str
    cells: list[Any] = field(default_factory=list)
    justify: Justify = "right"
    name: bool = False  # a name: shortened in the middle when the width needs it
    drop: int = 0  # optional when above 0: rank 1 goes first, then 2, ...
    style: str = ""
    label: str = ""  # what the note calls the column when it is left out

    def width(self) -> int:
        return max([cell_len(self.header), *(_cell_len(c) for c in self.cells)])


def _cell_len(cell: Any) -> int:
    if isinstance(cell, Text):
        return cell.cell_len
    return cell_len(str(cell))


def new_table(title: str | None = None) -> Table:
    """The one look of every ``resmon query`` table."""
    return Table(
        title=title,
        box=box.SIMPLE_HEAD,
        title_justify="left",
        pad_edge=False,
        collapse_padding=True,
        header_style="bold",
    )


@cache
def _overhead(count: int) -> int:
    """What a table of ``count`` columns adds to its cells (edges, dividers, padding),
    measured from rich rather than derived from its padding rules."""
    table = new_table()
    for _ in range(count):
        table.add_column(width=1)
    console = Console(file=io.StringIO(), width=10_000)
    return Measurement.get(console, console.options, table).maximum - count


def _name_widths(names: list[Column], room: int) -> dict[int, int]:
    """Widths for the name columns within ``room``: the longest are cut first, to a
    common width, none below :data:`NAME_MIN` (or its own width) while that fits,
    else none below its header."""
    natural = {id(c): c.width() for c in names}
    floor = {id(c): min(natural[id(c)], max(NAME_MIN, cell_len(c.header))) for c in names}
    if sum(floor.values()) > room:
        floor = {id(c): min(natural[id(c)], cell_len(c.header)) for c in names}
    widths = dict(floor)
    for level in range(max(natural.values(), default=0), 0, -1):
        candidate = {k: max(floor[k], min(natural[k], level)) for k in natural}
        if sum(candidate.values()) <= room:
            widths = candidate
            break
    # Hand what rounding left back to the columns that were cut, one cell each.
    spare = room - sum(widths.values())
    for k in natural:
        if spare <= 0:
            break
        if widths[k] < natural[k]:
            widths[k] += 1
            spare -= 1
    return widths


def fit_columns(columns: Sequence[Column], width: int) -> tuple[list[Column], dict[int, int]]:
    """The columns kept at ``width`` and each name column's width (see the module's
    docstring for the order)."""
    kept = list(columns)

    def total(cols: list[Column], name_cap: int) -> int:
        widths = (
            min(c.width(), max(name_cap, cell_len(c.header))) if c.name else c.width() for c in cols
        )
        return sum(widths) + _overhead(len(cols))

    for rank in sorted({c.drop for c in columns if c.drop}):
        if total(kept, NAME_WIDE) <= width:
            break
        kept = [c for c in kept if c.drop != rank]
    names = [c for c in kept if c.name]
    if total(kept, 10**6) <= width:
        return kept, {id(c): c.width() for c in names}
    fixed = sum(c.width() for c in kept if not c.name) + _overhead(len(kept))
    return kept, _name_widths(names, width - fixed)


def fit_table(
    columns: Sequence[Column],
    width: int,
    *,
    title: Sequence[str] = (),
    caption: Sequence[str] = (),
) -> Group:
    """The title (see :func:`heading`), the table at ``width`` columns at most, the
    caption lines, and a note naming the columns left out."""
    kept, name_widths = fit_columns(columns, width)
    table = new_table()
    for c in kept:
        table.add_column(
            c.header,
            justify=c.justify,
            style=c.style,
            no_wrap=True,
            # Only a misjudged width reaches rich's own cut; it still never wraps.
            overflow="ellipsis",
            width=name_widths.get(id(c)),
        )
    rows = len(kept[0].cells) if kept else 0
    for i in range(rows):
        table.add_row(
            *(
                middle_ellipsis(str(c.cells[i]), name_widths[id(c)]) if c.name else c.cells[i]
                for c in kept
            )
        )
    parts: list[RenderableType] = []
    if title:
        parts.append(heading(title, width))
    parts.append(table)
    left_out = [c.label or c.header for c in columns if all(c is not k for k in kept)]
    for line in caption:
        parts.append(Text(line, style="table.caption"))
    if left_out:
        units = [f"not shown at {width} columns:"]
        units += [f"{label}," for label in left_out[:-1]] + [left_out[-1], "(-o json has all)"]
        parts.append(heading(units, width, style="table.caption"))
    return Group(*parts)


def heading(units: Sequence[str], width: int, style: str = "table.title") -> Text:
    """``units`` joined by spaces, broken into lines only between units, each unit
    shortened in the middle if it alone is wider than the line: a title that names a
    repository, a workflow and a job never splits one of them."""
    lines: list[str] = []
    line = ""
    for unit in units:
        unit = middle_ellipsis(unit, width)
        if line and cell_len(line) + 1 + cell_len(unit) > width:
            lines.append(line)
            line = unit
        else:
            line = f"{line} {unit}" if line else unit
    if line:
        lines.append(line)
    return Text("\n".join(lines), style=style, no_wrap=True, overflow="ellipsis")


def scope_units(row: Any, lead: str = "", tail: str = "") -> list[str]:
    """A job's scope as heading units: ``lead repo ·``, ``workflow ·``, ``job tail``."""
    units = [lead] if lead else []
    units += [
        f"{row.get('repository', '')} ·",
        f"{row.get('workflow', '')} ·",
        f"{row.get('job', '')}{tail}",
    ]
    return units
