"""One job's runs as the read queries find and name them, and stored values as answers.

A job is named by its scope (organization, repository, workflow, job); the
questions of :mod:`resmon.store.history` select its runs with :func:`scope_where`,
echo the scope with :func:`scope_fields`, and name it in errors and suggestions
with :func:`describe_job` and :func:`job_name`.  The repository is canonicalised
here, once, so ``widgets`` and ``acme/widgets`` of organization ``acme`` are the
same job in every question.

Times are stored naive UTC and answered as RFC 3339 (:func:`answer_time`).  The
one place SQLite and PostgreSQL differ, the calendar day of a time, is
:func:`day_of`; when a run happened is :func:`run_time`.  The times and periods a
question is asked with (``7d``, ``2026-11-01``) are read by :func:`parse_when`,
:func:`parse_window` and :func:`parse_positive_period`; beyond what a datetime
holds, a window that ends before it starts or an empty period, they are a
:class:`HistoryError` naming the parameter.
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from peewee import JOIN, Case, PostgresqlDatabase, fn

from resmon.schema import format_time, parse_time
from resmon.store.models import ContainerStat, Run, database_proxy
from resmon.tokens import canonical_repository


def answer_time(value: Any) -> str | None:
    """A stored naive-UTC time (a datetime, or text from a raw SQLite aggregate) as RFC 3339."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return format_time(value)


def run_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row of ``runs`` with its times as an answer gives them."""
    for key in ("received_at", "start_time", "end_time", "last_batch_at"):
        if key in row:
            row[key] = answer_time(row[key])
    return row


# A run's state (resmon.store.live): a running run has no figures until its final push
# (or, once lost, its partial summary); a lost one has figures from its streamed
# samples up to where they stopped, and ``partial`` is true.
RUNNING, FINISHED, LOST = "running", "finished", "lost"


def has_figures() -> Any:
    """The runs that have figures: every run but a running one.  Trends, top,
    baselines and recommendations read only these (a running run's NULLs would be
    counted as runs, and take a place among the newest ``runs``)."""
    return Run.state != RUNNING


def partial_count() -> Any:
    """How many of a group's runs have partial figures (a CASE: PostgreSQL has no SUM
    of booleans); answered as a number, or None for an empty group."""
    return fn.SUM(Case(None, ((Run.partial == True, 1),), 0))  # noqa: E712 (SQL, not Python)


def _is_postgres() -> bool:
    return isinstance(database_proxy.obj, PostgresqlDatabase)


def day_of(column: Any) -> Any:
    """The UTC calendar day of a stored time, as ``YYYY-MM-DD`` text.  SQLite keeps times
    as ISO text, so ``date()`` reads them; PostgreSQL has a real timestamp type."""
    if _is_postgres():
        return fn.to_char(column, "YYYY-MM-DD")
    return fn.date(column)


def run_time() -> Any:
    """When a run happened: its start time, or, for a peer's run that sent none, when
    it was received.  A spooled run is received when its collector next reaches the
    server, possibly days later and together with others, so days and windows of a
    trend by day are of this time, not of ``received_at``."""
    return fn.COALESCE(Run.start_time, Run.received_at)


def scope_where(organization: str, repository: str, workflow: str, job: str) -> Any:
    """The condition on ``runs`` that selects one job's runs."""
    repository = canonical_repository(organization, repository)
    return (
        (Run.organization == organization)
        & (Run.repository == repository)
        & (Run.workflow == workflow)
        & (Run.job == job)
    )


def scope_fields(organization: str, repository: str, workflow: str, job: str) -> dict[str, str]:
    """The job's scope as the fields an answer starts with."""
    return {
        "organization": organization,
        "repository": canonical_repository(organization, repository),
        "workflow": workflow,
        "job": job,
    }


def job_name(organization: str, repository: str, workflow: str, job: str) -> str:
    """A job as the arguments that name it (``ORG REPO WORKFLOW JOB``, shell-quoted),
    so a suggestion can be pasted after ``resmon query runs``."""
    parts = (organization, canonical_repository(organization, repository), workflow, job)
    return " ".join(shlex.quote(p) for p in parts)


def describe_job(organization: str, repository: str, workflow: str, job: str) -> str:
    repository = canonical_repository(organization, repository)
    return f"job {job!r} of workflow {workflow!r} in {repository}"


def job_exists(organization: str, repository: str, workflow: str, job: str) -> bool:
    where = scope_where(organization, repository, workflow, job)
    return Run.select(Run.id).where(where).limit(1).exists()


def all_job_names() -> list[str]:
    """Every stored job as :func:`job_name` gives it: what a misspelt job is matched against."""
    return [
        job_name(*row)
        for row in Run.select(Run.organization, Run.repository, Run.workflow, Run.job)
        .distinct()
        .tuples()
    ]


def container_names(organization: str, repository: str, workflow: str, job: str) -> list[str]:
    """The containers seen in any run of the job, by name."""
    query = (
        ContainerStat.select(ContainerStat.name)
        .join(Run, on=(ContainerStat.run == Run.id))
        .where(scope_where(organization, repository, workflow, job))
        .distinct()
        .order_by(ContainerStat.name)
    )
    return [row[0] for row in query.tuples()]


def container_exists(
    organization: str, repository: str, workflow: str, job: str, container: str
) -> bool:
    query = (
        ContainerStat.select(ContainerStat.id)
        .join(Run, JOIN.INNER, on=(ContainerStat.run == Run.id))
        .where(
            scope_where(organization, repository, workflow, job) & (ContainerStat.name == container)
        )
    )
    return query.limit(1).exists()


# --- what is not there ----------------------------------------------------------

SUGGESTIONS = 5


class NotFound(LookupError):
    """Nothing stored under what was asked for; ``suggestions`` are the closest names."""

    def __init__(self, message: str, suggestions: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.suggestions = suggestions or []


def job_not_found(organization: str, repository: str, workflow: str, job: str) -> NotFound:
    """The error for a job never stored, with the closest stored job names."""
    wanted = job_name(organization, repository, workflow, job)
    close = difflib.get_close_matches(wanted, all_job_names(), n=SUGGESTIONS, cutoff=0.4)
    return NotFound(
        f"no runs stored for {describe_job(organization, repository, workflow, job)}", close
    )


def bounded(value: int | None, default: int, maximum: int, what: str) -> int:
    """A row count asked for: the default when not given, at most ``maximum``."""
    if value is None:
        return default
    if value < 1:
        raise HistoryError(f"{what} must be at least 1")
    return min(value, maximum)


# --- every run of a job, in batches ----------------------------------------------

# A batch of a streamed list: at most this many runs, and once their stored
# summaries reach STREAM_BATCH_BYTES, no more (a batch holds at least one run).
STREAM_BATCH_ROWS = 500
STREAM_BATCH_BYTES = 4 * 1024 * 1024
# What a streamed run is, in this order.
STREAM_COLUMNS = (
    Run.id,
    Run.organization,
    Run.repository,
    Run.workflow,
    Run.job,
    Run.run_id,
    Run.received_at,
    Run.payload,
)


def stream_runs(where: Any, limit: int | None = None) -> Iterator[tuple[Any, ...]]:
    """The runs ``where`` selects, newest first (``received_at``, then ``id``), as
    tuples of :data:`STREAM_COLUMNS`; all of them, or the first ``limit``.

    Read in batches that hold at most :data:`STREAM_BATCH_BYTES` of stored
    summaries (or one run), each batch its own statement: memory stays bounded
    however many runs match, and no read transaction stays open while the caller
    sends a batch to a slow client.  The next batch starts after the last run
    given (keyset on ``received_at, id``), so runs stored meanwhile never shift it.
    """
    after: tuple[Any, Any] | None = None
    left = limit
    batch_of = _postgres_batch if _is_postgres() else _sqlite_batch
    while left is None or left > 0:
        rows = STREAM_BATCH_ROWS if left is None else min(STREAM_BATCH_ROWS, left)
        batch, after, done = batch_of(_older_than(where, after), rows)
        yield from batch
        if done:
            return
        if left is not None:
            left -= len(batch)


def _newest_first(query: Any) -> Any:
    return query.order_by(Run.received_at.desc(), Run.id.desc())


def _older_than(where: Any, after: tuple[Any, Any] | None) -> Any:
    """``where``, and after the run at ``(received_at, id)`` in newest-first order."""
    if after is None:
        return where
    received, run_pk = after
    # The first term bounds the index range; the second breaks ties on the time.
    return (
        where & (Run.received_at <= received) & ((Run.received_at < received) | (Run.id < run_pk))
    )


# A batch: its runs, the (received_at, id) to continue after, and whether it was the last.
Batch = tuple[list[tuple[Any, ...]], tuple[Any, Any] | None, bool]


def _sqlite_batch(where: Any, rows: int) -> Batch:
    """SQLite hands rows over one at a time: read until the byte budget is reached,
    then close the statement (which ends its read transaction)."""
    query = _newest_first(Run.select(*STREAM_COLUMNS).where(where)).limit(rows).tuples()
    batch: list[tuple[Any, ...]] = []
    size = 0
    wrapper = query.execute()
    try:
        for row in wrapper.iterator():
            batch.append(row)
            size += len(row[7] or "")
            if size >= STREAM_BATCH_BYTES and len(batch) < rows:
                return batch, (row[6], row[0]), False
    finally:
        wrapper.cursor.close()
    last = (batch[-1][6], batch[-1][0]) if batch else None
    return batch, last, len(batch) < rows


def _postgres_batch(where: Any, rows: int) -> Batch:
    """psycopg2 fetches a whole result at once: first the runs' ids and summary
    sizes (``octet_length`` reads a stored value's size without fetching it), then
    the runs that fit the byte budget."""
    # coerce(False): the size is a number, not text like the column it measures.
    keys = list(
        _newest_first(
            Run.select(Run.id, Run.received_at, fn.octet_length(Run.payload).coerce(False))
        )
        .where(where)
        .limit(rows)
        .tuples()
    )
    chosen: list[tuple[int, Any]] = []
    size = 0
    for run_pk, received, length in keys:
        chosen.append((run_pk, received))
        size += length or 0
        if size >= STREAM_BATCH_BYTES:
            break
    if not chosen:
        return [], None, True
    ids = [run_pk for run_pk, _ in chosen]
    found = {row[0]: row for row in Run.select(*STREAM_COLUMNS).where(Run.id.in_(ids)).tuples()}
    # A run deleted between the two queries is simply not there.
    batch = [found[run_pk] for run_pk in ids if run_pk in found]
    last_pk, last_received = chosen[-1]
    return batch, (last_received, last_pk), len(keys) < rows and len(chosen) == len(keys)


# --- the time window a question names ------------------------------------------


class HistoryError(ValueError):
    """A question that cannot be answered as asked; the message says what to change."""


_PERIOD = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _named(name: str | None, message: str) -> str:
    """The message of a parameter's error, led by the parameter's name when the
    caller gave one (the read API does; the CLI names the option itself)."""
    return f"{name}: {message}" if name else message


def parse_period(text: str, *, name: str | None = None) -> timedelta:
    """A length of time as people write it: ``30m``, ``12h``, ``7d``, ``2w``."""
    m = _PERIOD.match(text or "")
    if not m:
        raise HistoryError(_named(name, f"invalid period {text!r}: use e.g. 30m, 12h, 7d or 2w"))
    try:
        return timedelta(seconds=float(m.group(1)) * _PERIOD_SECONDS[m.group(2)])
    except OverflowError:  # over 999,999,999 days, or more digits than a float holds
        raise HistoryError(_named(name, f"period {text!r} is too long")) from None


def parse_positive_period(text: str, *, name: str | None = None) -> timedelta:
    """:func:`parse_period` of a length that must be more than nothing: a window of
    ``0d`` holds no run, so asking for one is a mistake to name, not an empty answer."""
    length = parse_period(text, name=name)
    if length <= timedelta(0):
        raise HistoryError(
            _named(name, f"{text.strip()!r} is an empty period: use one above 0, e.g. 7d")
        )
    return length


def parse_window(
    since: str | None,
    until: str | None,
    now: datetime | None = None,
    *,
    names: tuple[str, str] = ("since", "until"),
) -> tuple[datetime | None, datetime | None]:
    """``since`` and ``until`` as stored times, each error naming its parameter as
    the asker spelt it (``names``: ``--since`` on the command line).  A window that
    ends where or before it starts (``since=1d`` with ``until=2d``: one day ago is
    after two days ago) holds no run: a :class:`HistoryError` naming both, rather
    than an empty answer that reads as "no runs then"."""
    now = now or datetime.now(UTC)
    first, second = names
    start = parse_when(since, now, name=first)
    end = parse_when(until, now, name=second)
    if start is not None and end is not None and start >= end:
        order = "the same time as" if start == end else "after"
        shown = [answer_time(t.replace(microsecond=0)) for t in (start, end)]
        raise HistoryError(
            f"{first} {since} ({shown[0]}) is {order} {second} {until} ({shown[1]}): "
            f"{first} must be earlier than {second}"
        )
    return start, end


def parse_when(
    text: str | None, now: datetime | None = None, *, name: str | None = None
) -> datetime | None:
    """A point in time: a period back from now (``7d``) or an RFC 3339 time / date
    (``2026-11-01``, ``2026-11-01T12:00:00Z``); naive UTC, as stored."""
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    now = now or datetime.now(UTC)
    if _PERIOD.match(text):
        period = parse_period(text, name=name)
        try:
            return (now - period).astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise HistoryError(_named(name, f"{text!r} reaches back before the year 1")) from None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.fromisoformat(text)
        return parse_time(text).replace(tzinfo=None)
    except ValueError:
        raise HistoryError(
            _named(
                name,
                f"invalid time {text!r}: use a period back from now (7d, 12h) "
                "or a date/time (2026-11-01, 2026-11-01T12:00:00Z)",
            )
        ) from None
