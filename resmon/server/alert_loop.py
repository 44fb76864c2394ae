"""The alerts' background work in each worker of ``resmon serve``: the evaluator
thread (:class:`Evaluator`) and the webhook sender (:class:`resmon.server.webhooks.Sender`).

Nothing of it runs in a request: a push or a live batch only appends its event, as
before, and the evaluator reads the events table after it
(:mod:`resmon.store.alert_eval`).  Every worker of every replica runs both threads.
One evaluator at a time holds the cursor's lease (10 s, renewed; another takes over
when it runs out) and reads; the others only look at the lease.  The cursor moves by
a conditional UPDATE under a PostgreSQL advisory lock (SQLite: the write lock), so
the events are evaluated once even when two evaluators overlap, and a delivery is
claimed by one sender.  The events are read in
id order with the events feed's rule for PostgreSQL ids that commit out of order
(:class:`resmon.server.event_feed.GapRule`): an id missing below a visible one holds
the evaluation until it commits or ``serve --events-gap-wait``-like 5 s pass.

The rules file (``serve --alert-rules``) is synced when the server starts, and by
each worker's evaluator whenever the file's size or modification time changes (so
also after SIGHUP, which restarts the workers); a file that no longer reads is
logged and the rules stay as they were.

The threads start in a worker right after gunicorn forks it (``os.register_at_fork``:
threads do not survive a fork, and a worker that serves no request must still
deliver what the outbox holds after a restart), and, should that hook not have run,
at the worker's first request.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import socket
import threading
from pathlib import Path
from typing import Any

from flask import Flask

from resmon.server.alerts_config import AlertsConfig
from resmon.server.event_feed import GapRule
from resmon.server.webhooks import Sender
from resmon.store import alert_eval, alerts
from resmon.store import events as store_events

log = logging.getLogger(__name__)

BATCH = 1000
ERROR_BACKOFF = 2.0


class RulesFile:
    """The rules file and the stamp (size, mtime) it was last synced at."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stamp: tuple[int, int] | None = None

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns)

    def sync_if_changed(self) -> bool:
        """Sync the stored file rules when the file changed; True when it was synced."""
        stamp = self._stamp()
        if stamp is not None and stamp == self.stamp:
            return False
        try:
            rules = alerts.read_rules_file(self.path)
            counts = alerts.sync_file_rules(rules)
        except (alerts.RuleError, alerts.RuleConflict) as exc:
            if stamp != self.stamp:
                log.error("alert rules file not applied, the rules stay as they were: %s", exc)
            self.stamp = stamp
            return False
        self.stamp = stamp
        if any(counts.values()):
            log.info(
                "alert rules file applied",
                extra={"path": self.path, **{f"rules_{k}": n for k, n in counts.items()}},
            )
        return True


class Evaluator:
    """The evaluating thread of one worker process."""

    def __init__(self, config: AlertsConfig, gap_wait: float) -> None:
        self.config = config
        self.gaps = GapRule(gap_wait)
        self.runs = alert_eval.RunFigures()
        self.rules_file = RulesFile(config.rules_file) if config.rules_file else None
        self.owner = f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="resmon-alerts", daemon=True)

    def start(self) -> None:
        self._thread.start()
        atexit.register(self.release)

    def release(self) -> None:
        """At the worker's exit: the lease goes, so another evaluator starts at once."""
        self._stopping = True
        try:
            alert_eval.release(self.owner)
        except Exception as exc:  # the database is away: the lease runs out by itself
            log.debug("alert lease not released: %s", type(exc).__name__)

    def _run(self) -> None:
        while not self._stopping:
            busy = False
            try:
                busy = self.tick()
            except Exception as exc:  # the database is away, or lost a race: try again
                log.warning("alert evaluation failed: %s: %s", type(exc).__name__, exc)
                self._wake.wait(ERROR_BACKOFF)
            if not busy:
                self._wake.wait(self.config.poll_interval)
            self._wake.clear()

    def _ready(self, cursor: int) -> list[dict[str, Any]]:
        rows = store_events.events_after(cursor, BATCH, data_as_text=True)
        return self.gaps.ready(cursor, rows)

    def tick(self) -> bool:
        """One round; True when there is more to read at once."""
        if self.rules_file is not None:
            self.rules_file.sync_if_changed()
        if not alert_eval.lead(self.owner):
            return False  # another worker or replica evaluates; this one takes over if it stops
        read, appended = alert_eval.step(
            self._ready,
            targets=self.config.webhook_urls,
            body_format=self.config.webhook_format,
            runs=self.runs,
        )
        if appended:
            log.info("alerts", extra={"changes": len(appended)})
        return read == BATCH and appended is not None


_started_pid = 0
_guard = threading.Lock()


def _start(config: AlertsConfig, gap_wait: float) -> None:
    global _started_pid
    if _started_pid == os.getpid():
        return
    with _guard:
        if _started_pid == os.getpid():
            return
        _started_pid = os.getpid()
        Evaluator(config, gap_wait).start()
        if config.webhook_urls:
            Sender(config).start()


def _after_fork_in_child() -> None:
    global _guard
    _guard = threading.Lock()  # a lock held by a thread of the parent stays held here


os.register_at_fork(after_in_child=_after_fork_in_child)


def init_app(app: Flask) -> None:
    """Sync the rules file now (a server that starts applies it, or says why not) and,
    for ``resmon serve``, start the threads in each worker."""
    from resmon.server.config import state

    server = state(app).config
    config = server.alerts
    if config.rules_file:
        RulesFile(config.rules_file).sync_if_changed()
        # This process's connection must not cross the fork into the workers.
        state(app).database.close()
    if not config.background:
        return
    gap_wait = server.events_gap_wait if _postgres(server.database) else 0.0
    os.register_at_fork(after_in_child=lambda: _start(config, gap_wait))
    app.before_request(lambda: _start(config, gap_wait))


def _postgres(target: str) -> bool:
    from resmon.store.db import is_postgres

    return is_postgres(target)


def rules_file_error(path: str) -> str | None:
    """Why the rules file cannot be used, or None (for ``serve``'s option check)."""
    if not Path(path).is_file():
        return f"{path}: no such file"
    try:
        alerts.read_rules_file(path)
    except alerts.RuleError as exc:
        return str(exc)
    return None
