"""Write a batch of backfilled columns into ``runs``, as the schema steps that fill
new columns from the stored summaries do (versions 5 and 12).

One UPDATE joined to a VALUES list per batch on PostgreSQL (one statement, one
round trip); executemany on SQLite, which runs in-process, where that is as fast and
needs no UPDATE ... FROM."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from peewee import Database, PostgresqlDatabase


def update_runs(
    db: Database,
    names: Sequence[str],
    casts: dict[str, str],
    updates: Sequence[tuple[Any, ...]],
) -> None:
    """Set ``names`` of each run in ``updates``: rows of ``(run id, *values)`` in the
    order of ``names``; ``casts`` gives each name's PostgreSQL type for the VALUES list."""
    if not updates:
        return
    p = db.param
    if not isinstance(db, PostgresqlDatabase):
        assignments = ", ".join(f"{n} = {p}" for n in names)
        db.cursor().executemany(
            f"UPDATE runs SET {assignments} WHERE id = {p}",
            [(*row[1:], row[0]) for row in updates],
        )
        return
    marks = ", ".join([f"{p}::integer", *(f"{p}::{casts[n]}" for n in names)])
    db.execute_sql(
        "UPDATE runs SET "
        + ", ".join(f"{n} = v.{n}" for n in names)
        + " FROM (VALUES "
        + ", ".join([f"({marks})"] * len(updates))
        + f") AS v(id, {', '.join(names)}) WHERE runs.id = v.id",
        [value for row in updates for value in row],
    )
