"""Prometheus metrics of ``resmon serve`` (prometheus_client).

Exported at ``GET /metrics`` on the main listener to the read token (Prometheus
sends it from its scrape config; without it: 401), unless ``--no-metrics-on-addr``;
and with ``--metrics-addr`` on a separate listener without authentication that
answers nothing else (:mod:`resmon.server.metrics_listener`).  Nothing in them names
an organization, repository, job, run or token.

- ``resmon_pushes_received_total{result}``: pushes by outcome, ``result`` one of
  :data:`resmon.server.config.PUSH_OUTCOMES` (a push that met a database outage and
  got 503 has no outcome and is not counted here; it shows in the request histogram);
- ``resmon_http_request_duration_seconds{route,method}``: every request, ``route``
  the URL rule template (``<unmatched>`` for a 404) and ``method`` from a fixed
  set (anything else is ``other``);
- ``resmon_runs_stored``, ``resmon_database_size_bytes`` (SQLite: database file
  plus its WAL; PostgreSQL: ``pg_database_size``), ``resmon_database_up`` and
  ``resmon_database_stats_age_seconds``: read from the database by a background
  thread every ``--metrics-refresh`` (:class:`DatabaseStats`), never by a scrape;
- ``resmon_build_info{version}``;
- ``process_*`` (CPU seconds, resident and virtual memory, open and max file
  descriptors, start time), summed over the gunicorn master and its workers.

Label values come from fixed sets only, so the number of series does not grow
with the number of repositories or runs.

gunicorn runs several worker processes, so counters and histograms use
prometheus_client's multiprocess mode: :func:`multiprocess_dir` creates a private
``PROMETHEUS_MULTIPROC_DIR`` in the master before the workers fork, marks exited
workers dead and removes the directory when the server stops.  A scrape, whichever
worker answers it, adds up the files of every worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import resource
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from peewee import Database, PostgresqlDatabase, SqliteDatabase

from resmon import __version__, procfs
from resmon.server.config import PUSH_OUTCOMES, state

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DIR_PREFIX = "resmon-metrics-"
METRICS_PATH = "/metrics"
UNMATCHED_ROUTE = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
# Pushes and reads take milliseconds; the default buckets start at 5 ms.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# The process that owns the multiprocess directory (the gunicorn master): its pid,
# inherited by the workers across fork, names the server's process tree.
_owner_pid: int | None = None


def method_label(method: str) -> str:
    """A request method as a label value from a fixed set (clients may send anything)."""
    return method if method in METHODS else "other"


# --- multiprocess mode ---------------------------------------------------------


@contextlib.contextmanager
def multiprocess_dir() -> Iterator[str]:
    """A private ``PROMETHEUS_MULTIPROC_DIR`` for the life of ``resmon serve``.

    Enter it in the master before the app is built (the metrics are created then)
    and before gunicorn forks.  Workers that exit are marked dead; the directory is
    removed when the master leaves the block.  gunicorn's workers leave it too
    (``sys.exit`` unwinds through the master's stack after fork), so only the
    process that created the directory removes it.
    """
    global _owner_pid
    from prometheus_client import multiprocess, values

    from resmon.server import wsgi

    _remove_stale_dirs()
    path = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = path
    # prometheus_client chooses its value class when it is imported: choose again now.
    values.ValueClass = values.get_value_class()
    owner = _owner_pid = os.getpid()

    def mark_dead(pid: int) -> None:
        multiprocess.mark_process_dead(pid, path)

    wsgi.ON_CHILD_EXIT.append(mark_dead)
    try:
        yield path
    finally:
        if os.getpid() == owner:
            wsgi.ON_CHILD_EXIT.remove(mark_dead)
            if previous is None:
                os.environ.pop(MULTIPROC_ENV, None)
            else:
                os.environ[MULTIPROC_ENV] = previous
            values.ValueClass = values.get_value_class()
            _owner_pid = None
            shutil.rmtree(path, ignore_errors=True)


def _remove_stale_dirs() -> None:
    """Remove the directories of servers that died without cleaning up (SIGKILL,
    OOM): their names carry the master's pid, and a pid with no process is dead."""
    root = tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        m = re.fullmatch(re.escape(DIR_PREFIX) + r"(\d+)-\w+", name)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        except (PermissionError, OverflowError):
            pass  # alive (another user's), or not a pid


def multiprocess_path() -> str | None:
    path = os.environ.get(MULTIPROC_ENV)
    return path if path and os.path.isdir(path) else None


# --- the database figures, read in the background ----------------------------------


def database_stats(db: Database) -> tuple[int, int]:
    """(runs stored, database size in bytes) through ``db``'s connection."""
    runs = int(db.execute_sql("SELECT count(*) FROM runs").fetchone()[0])
    if isinstance(db, PostgresqlDatabase):
        size = int(db.execute_sql("SELECT pg_database_size(current_database())").fetchone()[0])
    elif isinstance(db, SqliteDatabase):
        size = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                size += os.path.getsize(str(db.database) + suffix)
    else:  # pragma: no cover - open_database makes only these two
        size = 0
    return runs, size


def database_stats_closing(db: Database) -> tuple[int, int]:
    """:func:`database_stats`, then close this thread's connection: the reading thread
    stops when nobody scrapes, and its connection must not outlive it."""
    try:
        return database_stats(db)
    finally:
        db.close()


def database_stats_fresh(target: str) -> tuple[int, int]:
    """:func:`database_stats` over a connection opened and closed for this call.

    Used by the separate metrics listener in the gunicorn master: a connection kept
    there would cross every later fork into a new worker.
    """
    from resmon.store.db import open_database

    return database_stats_closing(open_database(target, bind=False))


@dataclass(frozen=True)
class StatsReading:
    up: bool  # the last reading succeeded; runs and size are from it
    runs: int
    size: int
    age: float  # seconds since that reading


class DatabaseStats:
    """The runs stored and the database size, read every ``interval`` seconds by a
    daemon thread of this process, so that a scrape never queries the database
    (``count(*)`` over the runs grows with the table).

    The thread starts with the first scrape in the process that serves it (after
    gunicorn's fork: threads do not cross it) and stops when nobody scraped for
    ``IDLE_INTERVALS`` intervals; the next scrape starts it again and waits for
    its first reading, so an unscraped server reads nothing.  With ``fork_guard``
    (the master, which forks workers) a fork waits for a reading in progress, so no
    open database connection is copied into a worker.
    """

    IDLE_INTERVALS = 10

    def __init__(
        self, read: Callable[[], tuple[int, int]], interval: float, *, fork_guard: bool = False
    ) -> None:
        self._read = read
        self.interval = interval
        self._lock = threading.Lock()  # the fields below
        self._reading = threading.Lock()  # held while the database is read
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._last: tuple[bool, int, int, float] | None = None  # up, runs, size, monotonic
        self._first = threading.Event()
        self._scraped = time.monotonic()
        self.readings = 0  # how many times the database was read (tests, debugging)
        if fork_guard:
            os.register_at_fork(
                before=self._reading.acquire,
                after_in_parent=self._reading.release,
                after_in_child=self._reading.release,
            )

    def get(self, wait: float = 5.0) -> StatsReading | None:
        """The last reading, or None when there is none yet after ``wait`` seconds."""
        self._ensure_reading()
        self._first.wait(wait)
        with self._lock:
            last = self._last
        if last is None:
            return None
        up, runs, size, at = last
        return StatsReading(up, runs, size, time.monotonic() - at)

    def _ensure_reading(self) -> None:
        with self._lock:
            self._scraped = time.monotonic()
            if self._pid != os.getpid():  # a forked copy: the thread stayed behind
                self._pid, self._thread, self._last = os.getpid(), None, None
                self._first = threading.Event()
            if self._thread is None:
                stale = self._last is None or time.monotonic() - self._last[3] > self.interval
                if stale:  # restarted after an idle spell: wait for a fresh reading
                    self._first = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, name="metrics-database-stats", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._refresh()
            time.sleep(self.interval)
            with self._lock:
                if time.monotonic() - self._scraped > self.IDLE_INTERVALS * self.interval:
                    self._thread = None
                    return

    def _refresh(self) -> None:
        with self._reading:
            self.readings += 1
            try:
                runs, size = self._read()
                up = True
            except Exception as exc:  # any driver error: report it as down, keep going
                log.warning("metrics: database not readable: %s", type(exc).__name__)
                up, runs, size = False, 0, 0
        with self._lock:
            self._last = (up, runs, size, time.monotonic())
        self._first.set()


def _server_pids() -> list[int]:
    """The gunicorn master and its live children, or only this process outside gunicorn."""
    owner = _owner_pid
    if owner is None:
        return [os.getpid()]
    pids = [owner]
    for pid in procfs.list_pids():
        if pid == owner:
            continue
        stat = procfs.read_pid_stat(pid)
        if stat is not None and stat.ppid == owner:
            pids.append(pid)
    return pids


def _boot_time() -> float | None:
    with contextlib.suppress(OSError, ValueError):
        for line in procfs.read_bytes("/proc/stat").splitlines():
            if line.startswith(b"btime "):
                return float(line.split()[1])
    return None


_BOOT_TIME = _boot_time()


class ServerCollector:
    """Gauges of a scrape: build info, the database (from the background reading of
    :class:`DatabaseStats`), and the server's processes (from /proc, cheap)."""

    def __init__(self, stats: DatabaseStats, wait: float = 5.0) -> None:
        self.stats = stats
        self.wait = wait

    def describe(self) -> list:
        return []  # collected at scrape time only; nothing to check at registration

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        info = GaugeMetricFamily(
            "resmon_build_info", "resmon build information; always 1.", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info

        reading = self.stats.get(self.wait)
        if reading is not None:
            yield from self._database(reading)

        stats = [s for s in map(procfs.read_pid_stat, _server_pids()) if s is not None]
        if not stats:
            return
        owner = stats[0]
        # Reaped workers' CPU time lives in the master's cutime/cstime.
        ticks = owner.total_ticks + sum(s.own_ticks for s in stats[1:])
        yield CounterMetricFamily(
            "process_cpu_seconds_total",
            "User and system CPU time of the server's processes, in seconds.",
            value=ticks / procfs.CLK_TCK,
        )
        yield GaugeMetricFamily(
            "process_resident_memory_bytes",
            "Resident memory of the server's processes, in bytes.",
            value=sum(s.rss_pages for s in stats) * procfs.PAGE_SIZE,
        )
        yield GaugeMetricFamily(
            "process_virtual_memory_bytes",
            "Virtual memory of the server's processes, in bytes.",
            value=sum(s.vsize for s in stats),
        )
        fds = 0
        for s in stats:
            with contextlib.suppress(OSError):
                fds += len(os.listdir(f"/proc/{s.pid}/fd"))
        yield GaugeMetricFamily(
            "process_open_fds", "Open file descriptors of the server's processes.", value=fds
        )
        yield GaugeMetricFamily(
            "process_max_fds",
            "Maximum open file descriptors of one server process.",
            value=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        )
        if _BOOT_TIME is not None:
            yield GaugeMetricFamily(
                "process_start_time_seconds",
                "Start time of the server since the Unix epoch, in seconds.",
                value=_BOOT_TIME + owner.starttime / procfs.CLK_TCK,
            )

    def _database(self, reading: StatsReading) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily(
            "resmon_database_up",
            "1 when the last background reading of the database succeeded.",
            value=int(reading.up),
        )
        yield GaugeMetricFamily(
            "resmon_database_stats_age_seconds",
            "Seconds since the last background reading of the database.",
            value=round(reading.age, 3),
        )
        if reading.up:
            yield GaugeMetricFamily(
                "resmon_runs_stored",
                "Runs in the database, at the last reading.",
                value=reading.runs,
            )
            yield GaugeMetricFamily(
                "resmon_database_size_bytes",
                "Database size at the last reading: SQLite file plus WAL, or PostgreSQL "
                "pg_database_size.",
                value=reading.size,
            )


# --- the app's metrics -----------------------------------------------------------


class ServerMetrics:
    """The counters and histogram of one app, and the registry a scrape reads."""

    def __init__(self, stats: DatabaseStats) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram
        from prometheus_client.multiprocess import MultiProcessCollector

        mp_path = multiprocess_path()
        self.registry = CollectorRegistry(auto_describe=False)
        # Multiprocess: values live in per-process files and a scrape adds the files
        # up; registering the objects too would export this process's part twice.
        own = None if mp_path else self.registry
        if mp_path:
            MultiProcessCollector(self.registry, path=mp_path)
        self.pushes = Counter(
            "resmon_pushes_received",
            "Pushes received, by result.",
            ["result"],
            registry=own,
        )
        # Every series exists from the start, at 0; children are looked up once
        # (``labels()`` per request is measurable at a thousand pushes a second).
        self._push_children = {o: self.pushes.labels(result=o) for o in PUSH_OUTCOMES}
        self._duration_children: dict[tuple[str, str], Any] = {}
        self.durations = Histogram(
            "resmon_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ["route", "method"],
            buckets=DURATION_BUCKETS,
            registry=own,
        )
        self.registry.register(ServerCollector(stats))  # type: ignore[arg-type]

    def push_result(self, outcome: str) -> None:
        self._push_children[outcome].inc()

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method_label(method))
        child = self._duration_children.get(key)
        if child is None:  # bounded: route templates x a fixed set of methods
            child = self._duration_children[key] = self.durations.labels(*key)
        child.observe(seconds)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def init_app(app: Flask, *, serve_path: bool = True) -> ServerMetrics:
    """Create the app's metrics, hook them to pushes and requests, and (with
    ``serve_path``) answer ``GET /metrics`` to the read token."""
    from flask import Response, request

    st = state(app)
    stats = DatabaseStats(lambda: database_stats_closing(st.database), st.config.metrics_refresh)
    metrics = ServerMetrics(stats)
    st.hooks.push_result.append(metrics.push_result)
    st.hooks.request_done.append(metrics.request_done)
    app.extensions["resmon_metrics"] = metrics

    if serve_path:

        def metrics_view() -> Response:
            # The read token, as for every read: the figures (version, runs, database
            # size) are the server's own business.  Prometheus sends it from its
            # scrape config (authorization: credentials).
            # An organisation's read token is a valid read token that may not see the
            # whole server's figures: 403.  Never the web session (no cookie auth here).
            from resmon.server import read_scope

            read_scope.authorize_read(allow_session=False)
            read_scope.require_all("the server's metrics")
            body, content_type = metrics.exposition(request.headers.get("Accept"))
            return Response(body, status=200, content_type=content_type)

        app.add_url_rule(METRICS_PATH, "metrics", metrics_view, methods=["GET"])
    return metrics
