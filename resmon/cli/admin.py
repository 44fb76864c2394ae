"""``resmon admin``: maintenance of a resmon database, run beside or instead of serve."""

from __future__ import annotations

import click


def _db_option(f):
    return click.option(
        "--db",
        "database",
        required=True,
        metavar="PATH|URL",
        envvar="RESMON_DB",
        help="The database `resmon serve --db` uses (a SQLite file or postgresql:// URL).  "
        "[env: RESMON_DB]",
    )(f)


def _open(database):
    import os

    from resmon.store import db as dbmod

    if not dbmod.is_postgres(database) and not os.path.isfile(database):
        raise click.ClickException(f"no database file at {database}")
    try:
        db = dbmod.open_database(database)
        dbmod.migrate(db)
    except dbmod.DatabaseError as exc:
        raise click.ClickException(str(exc)) from None
    return db


@click.group(short_help="Rebuild the rollups, give SQLite's space back.")
def admin():
    """Maintenance of a resmon database.  Safe while `resmon serve` runs on it: each
    command works in short transactions, as the server's own background work does."""


@admin.command("rebuild-rollups", short_help="Recompute the rollups from the runs that remain.")
@click.option(
    "--since", metavar="WHEN", help="From this day: 30d, 2026-11-01 (default: the first run)."
)
@click.option("--until", metavar="WHEN", help="To this day (default: the last run).")
@_db_option
def rebuild_rollups(since, until, database):
    """Recompute the hourly and daily rollups of whole UTC days from the runs stored
    (after a bug fix, a restore, or runs written by another tool).  Days whose runs
    retention deleted lose their rollups: rebuild only what the runs still cover.

    \b
    Examples:
      resmon admin rebuild-rollups --db metrics.db --since 7d
      resmon admin rebuild-rollups --db postgresql://resmon@db/resmon
    """
    from resmon.store.rollup_pass import rebuild
    from resmon.store.scope import HistoryError, parse_window

    try:
        start, end = parse_window(since, until, names=("--since", "--until"))
    except HistoryError as exc:
        raise click.UsageError(str(exc)) from None
    db = _open(database)
    try:
        days = rebuild(start, end)
    finally:
        db.close()
    click.echo(f"rebuilt the rollups of {days} day{'s' if days != 1 else ''}")


@admin.command("vacuum", short_help="Make a SQLite file give space back after deletions.")
@_db_option
def vacuum(database):
    """Rewrite a SQLite file once (VACUUM) in auto_vacuum=INCREMENTAL mode, so that
    retention returns freed pages to the file system.  `resmon serve` does it by
    itself for files up to 64 MiB; a larger file needs this, once: writers wait for
    the whole rewrite (about a second per 100 MiB), so run it when pushes can wait.
    """
    from resmon.store import retention

    db = _open(database)
    try:
        if not retention.ensure_incremental_vacuum(db, force=True):
            raise click.ClickException("only a SQLite file has this mode")
    finally:
        db.close()
    click.echo(f"{database} gives space back after deletions (auto_vacuum=incremental)")
