"""One job's runs as the read queries find and name them, and stored values as answers.

A job is named by its scope (organization, repository, workflow, job); the
questions of :mod:`resmon.store.history` select its runs with :func:`scope_where`,
echo the scope with :func:`scope_fields`, and name it in errors and suggestions
with :func:`describe_job` and :func:`job_name`.  The repository is canonicalised
here, once, so ``widgets`` and ``acme/widgets`` of organization ``acme`` are the
same job in every question.

Times are stored naive UTC and answered as RFC 3339 (:func:`answer_time`).  The
one place SQLite and PostgreSQL differ, the calendar day of a time, is
:func:`day_of`.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import Any

from peewee import JOIN, PostgresqlDatabase, fn

from resmon.schema import format_time
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
    for key in ("received_at", "start_time", "end_time"):
        if key in row:
            row[key] = answer_time(row[key])
    return row


def _is_postgres() -> bool:
    return isinstance(database_proxy.obj, PostgresqlDatabase)


def day_of(column: Any) -> Any:
    """The UTC calendar day of a stored time, as ``YYYY-MM-DD`` text.  SQLite keeps times
    as ISO text, so ``date()`` reads them; PostgreSQL has a real timestamp type."""
    if _is_postgres():
        return fn.to_char(column, "YYYY-MM-DD")
    return fn.date(column)


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
