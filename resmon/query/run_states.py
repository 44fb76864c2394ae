"""A run's state as the tables show it: a ``live`` or ``lost`` tag beside its id, the
``State`` line of ``resmon query show``, and the caption that says what the tags mean.

A finished run has no tag (most runs are); an answer from a server before live runs
has no ``state`` at all and reads as finished.  Colour is an extra: the tag's word
says it on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.text import Text

from resmon.query.formats import fmt_ago, fmt_time
from resmon.query.layout import Column

TAGS = {"running": ("live", "green"), "lost": ("lost", "yellow")}
CAPTION = (
    "live: still running, figures when it finishes (resmon query live shows it now); "
    "lost: its batches stopped, figures from the samples it streamed (partial)"
)


def tag(row: Mapping[str, Any], prefix: str = "") -> str | None:
    """``live`` for a running run, ``lost`` for a lost one (or any partial one), else
    None; ``prefix`` reads a jobs row's ``last_`` fields."""
    state = row.get(f"{prefix}state")
    if state in TAGS:
        return TAGS[state][0]
    return "lost" if row.get(f"{prefix}partial") else None


def tagged(text: str, row: Mapping[str, Any], prefix: str = "") -> Text:
    """``text`` (a run id, a time) with its run's tag after it, coloured."""
    cell = Text(text)
    word = tag(row, prefix)
    if word:
        cell.append(" ")
        cell.append(word, style="green" if word == "live" else "yellow")
    return cell


def caption(rows: Sequence[Mapping[str, Any]], prefix: str = "") -> list[str]:
    """The caption line explaining the tags, when any row has one."""
    return [CAPTION] if any(tag(r, prefix) for r in rows) else []


def state_line(run: Mapping[str, Any], now: datetime | None = None) -> str | None:
    """The ``State`` line of one run; None for an answer without a state."""
    state = run.get("state")
    if state == "running":
        last = run.get("last_batch_at")
        return "running (live)" + (f", last batch {fmt_ago(last, now)}" if last else "")
    if state == "lost" or run.get("partial"):
        until = run.get("end_time") or run.get("last_batch_at")
        return f"lost: partial summary from its streamed samples up to {fmt_time(until)}"
    return str(state) if state else None


def partial_count(row: Mapping[str, Any], runs_key: str = "runs") -> str:
    """A run count with its lost runs: ``5`` or ``5 (1 lost)``."""
    runs = str(row.get(runs_key, 0) or 0)
    partial = row.get("partial_runs") or 0
    return f"{runs} ({partial} lost)" if partial else runs


def counted_caption(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The caption line explaining ``(n lost)`` in a count of runs, when any row has one."""
    if not any(r.get("partial_runs") for r in rows):
        return []
    return ["(n lost): runs whose batches stopped, counted with their partial figures"]


def id_column(rows: Sequence[Mapping[str, Any]]) -> Column:
    """The ID column with each run's tag; left-aligned when any run has one, so the
    ids stay in line and the tags stand out after them."""
    tags = any(tag(r) for r in rows)
    return Column("ID", [tagged(str(r.get("id")), r) for r in rows], "left" if tags else "right")
