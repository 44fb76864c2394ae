"""Database set-up in one place: a target string -> a peewee database, and migrations.

``open_database("metrics.db")`` is SQLite with WAL, a busy timeout, foreign keys and
``BEGIN IMMEDIATE`` transactions (a writer takes the write lock when it starts, so
two writers queue on the busy timeout instead of failing with a busy snapshot);
``open_database("postgresql://user@host/db")`` is PostgreSQL.  Either way the models
of :mod:`resmon.store.models` are bound to it.

Connections: peewee keeps one connection per thread and opens it on first use.
Nothing closes it per request.  Measured here (2000 single-threaded pushes through
write.store_push on a SQLite file): one kept connection 2,526 pushes/s, connect +
close around every push 451/s -- connecting re-runs the pragmas and re-opens the
WAL.  gunicorn's gthread workers keep their threads, so each keeps its connection.

The schema versions and the steps between them are in :mod:`resmon.store.migrations`.
A fresh database is created at the latest version directly.  :func:`migrate` is
idempotent and runs under a lock (SQLite's write lock, a PostgreSQL advisory
lock), so servers starting together upgrade once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlparse

from peewee import Database, PostgresqlDatabase, SqliteDatabase
from playhouse.migrate import PostgresqlMigrator, SqliteMigrator
from playhouse.shortcuts import ReconnectMixin

from resmon.store import models
from resmon.store.migrations import LATEST_VERSION, STEPS

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
# SQLite checkpoints by itself past this many WAL pages (4 KiB each): a backstop only.
WAL_AUTOCHECKPOINT_BACKSTOP_PAGES = 16_384
# The background checkpointer looks this often, and checkpoints once the WAL is this big
# (SQLite's own default threshold, 1000 pages).
CHECKPOINT_INTERVAL_SECONDS = 0.5
CHECKPOINT_WAL_BYTES = 1000 * 4096
POSTGRES_SCHEMES = ("postgresql", "postgres")
# Any constant: the PostgreSQL advisory lock that serialises migrations.
_PG_MIGRATION_LOCK = 0x7265736D6F6E  # "resmon"


class DatabaseError(Exception):
    """A database target that cannot be opened or migrated; the message says why."""


class ReconnectingPostgresqlDatabase(ReconnectMixin, PostgresqlDatabase):
    """PostgreSQL that reconnects once when the server dropped an idle connection
    (a restart, a pooler timeout) instead of failing the request."""


def is_postgres(target: str) -> bool:
    return urlparse(target).scheme in POSTGRES_SCHEMES


def open_database(target: str, *, bind: bool = True) -> Database:
    """A peewee database for a SQLite path or a ``postgresql://`` URL.

    With ``bind`` (the default) the models are bound to it through
    ``models.database_proxy``; one database per process is the model here.
    """
    if not target:
        raise DatabaseError("no database given: pass a SQLite path or a postgresql:// URL")
    db: Database
    if is_postgres(target):
        db = _open_postgres(target)
    elif "://" in target:
        raise DatabaseError(
            f"unsupported database URL scheme {urlparse(target).scheme!r}: "
            "use a SQLite file path or postgresql://user@host:port/dbname"
        )
    else:
        db = SqliteDatabase(
            target,
            pragmas={
                "journal_mode": "wal",
                "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
                "foreign_keys": 1,
                # In WAL mode NORMAL is durable across process crashes (a SIGKILL
                # after the 201 keeps the run; tested); only a power cut can lose
                # the last commits.  FULL fsyncs every commit: 1,606 against 2,526
                # pushes/s in the measurement above.
                "synchronous": "normal",
                # Checkpoints run on a background thread (see _Checkpointer), not in
                # the COMMIT of whichever push crossed SQLite's default 1000 pages:
                # that commit fsyncs WAL and database while holding the write lock.
                # This limit is only the backstop should that thread fall behind.
                "wal_autocheckpoint": WAL_AUTOCHECKPOINT_BACKSTOP_PAGES,
            },
            lock_type="IMMEDIATE",
            timeout=SQLITE_BUSY_TIMEOUT_MS / 1000,
            check_same_thread=False,
        )
    if bind:
        models.database_proxy.initialize(db)
    return db


def _open_postgres(url: str) -> Database:
    parsed = urlparse(url)
    name = unquote(parsed.path.lstrip("/"))
    if not name:
        raise DatabaseError(f"PostgreSQL URL without a database name: {describe_target(url)}")
    kwargs: dict[str, Any] = {}
    if parsed.hostname:
        kwargs["host"] = parsed.hostname
    if parsed.port:
        kwargs["port"] = parsed.port
    if parsed.username:
        kwargs["user"] = unquote(parsed.username)
    if parsed.password:
        kwargs["password"] = unquote(parsed.password)
    for part in filter(None, parsed.query.split("&")):
        key, _, value = part.partition("=")
        kwargs[unquote(key)] = unquote(value)
    kwargs.setdefault("connect_timeout", 5)
    return ReconnectingPostgresqlDatabase(name, **kwargs)


# --- one writer at a time (SQLite) -------------------------------------------------


class _WriteLock:
    """Queues the writers of one SQLite file: the threads of this process on a
    mutex, the processes (gunicorn's workers, other servers on the host) on
    ``flock`` of ``<database>-writer.lock``.

    Without it every writer goes straight to ``BEGIN IMMEDIATE`` and the losers
    retry in SQLite's busy handler, which sleeps 1, 2, 5, 10, 20... ms between
    tries: measured under 32 concurrent pushes that made the p99 latency 300 ms
    and more while the lock was mostly free.  Queued here, each writer starts the
    moment the previous one commits.  Other programs writing the file still meet
    the busy timeout, as before.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.mutex = threading.Lock()
        self.fd: int | None = None
        self.pid = 0

    def after_fork_in_child(self) -> None:
        # flock belongs to the open file description: the child must open its own,
        # or parent and child would share one lock; and a mutex some thread of the
        # parent held at the fork would stay locked forever in the child.
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd = None
        self.mutex = threading.Lock()

    def _lock_fd(self) -> int | None:
        if self.fd is None or self.pid != os.getpid():
            try:
                self.fd = os.open(self.path + "-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:  # a read-only directory: the busy timeout still works
                log.debug("no writer lock file: %s", exc)
                self.fd = None
            self.pid = os.getpid()
        return self.fd

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self.mutex:
            fd = self._lock_fd()
            if fd is None:
                yield
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)


class _Checkpointer:
    """Checkpoints one SQLite file's WAL from a daemon thread of this process.

    SQLite's automatic checkpoint runs inside the COMMIT that pushes the WAL past
    its threshold, so one push in a thousand pages waited for a checkpoint and its
    fsyncs while holding the write lock, and every writer queued behind it.  A
    PASSIVE checkpoint here runs beside the writers (WAL mode lets it) and never
    waits for them; the WAL restarts from its beginning at the next write after a
    complete one, as before.  Started by the first write of a process (gunicorn's
    workers, after their fork); several processes may each run one, and a
    checkpoint that finds another one running simply returns.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.thread: threading.Thread | None = None

    def ensure_started(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(
                target=self._run, name="resmon-wal-checkpoint", daemon=True
            )
            self.thread.start()

    def _run(self) -> None:
        wal = self.path + "-wal"
        conn: sqlite3.Connection | None = None
        while True:
            time.sleep(CHECKPOINT_INTERVAL_SECONDS)
            try:
                if os.stat(wal).st_size < CHECKPOINT_WAL_BYTES:
                    continue
                if conn is None:
                    conn = sqlite3.connect(self.path, timeout=0, check_same_thread=False)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except (OSError, sqlite3.Error) as exc:
                # No WAL yet, or a checkpoint already running: try again later.
                log.debug("WAL checkpoint skipped: %s", exc)


_write_locks: dict[str, _WriteLock] = {}
_write_locks_guard = threading.Lock()
_checkpointers: dict[str, _Checkpointer] = {}


def _after_fork_in_child() -> None:
    global _write_locks_guard
    _write_locks_guard = threading.Lock()
    for lock in _write_locks.values():
        lock.after_fork_in_child()
    # Threads do not survive a fork: the child starts its own at its first write.
    _checkpointers.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def write_lock(db: Database) -> contextlib.AbstractContextManager[None]:
    """Hold around a write transaction: one writer at a time on a SQLite file (see
    :class:`_WriteLock`); nothing on PostgreSQL, whose row locks need no help."""
    if not isinstance(db, SqliteDatabase) or str(db.database) in ("", ":memory:"):
        return contextlib.nullcontext()
    path = os.path.abspath(str(db.database))
    lock = _write_locks.get(path)
    if lock is None or path not in _checkpointers:
        with _write_locks_guard:
            lock = _write_locks.setdefault(path, _WriteLock(path))
            _checkpointers.setdefault(path, _Checkpointer(path)).ensure_started()
    return lock()


def describe_target(target: str) -> str:
    """The database target with any password removed, for logs and errors."""
    if not is_postgres(target):
        return target
    parsed = urlparse(target)
    if parsed.password is None:
        return target
    netloc = parsed.netloc.rsplit("@", 1)[1]
    user = parsed.username or ""
    return parsed._replace(netloc=f"{user}:***@{netloc}").geturl()


# --- versions --------------------------------------------------------------


def schema_version(db: Database) -> int:
    """The version the database is at: 0 empty, 1 a bare runs table, else the stored row."""
    tables = set(db.get_tables())
    if models.SchemaVersion._meta.table_name in tables:
        row = db.execute_sql("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0
    if models.Run._meta.table_name in tables:
        return 1
    return 0


def check_ready(db: Database) -> str | None:
    """None when the database answers and is at the latest version, else the reason."""
    try:
        version = schema_version(db)
    except Exception as exc:  # any driver error means "not ready"; the reason is logged
        log.warning("database not reachable: %s", type(exc).__name__)
        return "database unreachable"
    if version != LATEST_VERSION:
        return f"database schema at version {version}, expected {LATEST_VERSION}"
    return None


def migrate(db: Database) -> tuple[int, int]:
    """Create or upgrade the schema to ``LATEST_VERSION``; returns (from, to).

    Runs in one transaction: a failed upgrade leaves the database as it was.
    """
    postgres = isinstance(db, PostgresqlDatabase)
    with db.atomic():
        if postgres:
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_MIGRATION_LOCK,))
        start = version = schema_version(db)
        if version > LATEST_VERSION:
            raise DatabaseError(
                f"database schema version {version} is newer than this resmon "
                f"({LATEST_VERSION}); upgrade resmon"
            )
        if version == 0:
            db.create_tables(models.MODELS)
            version = LATEST_VERSION
        migrator = PostgresqlMigrator(db) if postgres else SqliteMigrator(db)
        while version < LATEST_VERSION:
            STEPS[version + 1](db, migrator)
            version += 1
        _write_version(db, version)
    if start != version:
        log.info("database schema upgraded from version %d to %d", start, version)
    return start, version


def _write_version(db: Database, version: int) -> None:
    models.SchemaVersion.create_table(safe=True)
    db.execute_sql("DELETE FROM schema_version")
    models.SchemaVersion.insert(version=version).execute()
