"""A throwaway PostgreSQL database per test, created and dropped by the fixture.

The admin connection is ``RESMON_TEST_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``).  When PostgreSQL cannot be
reached the test skips, except under ``CI``, where it fails: CI must run them.

tests/conftest.py registers both fixtures for every test folder:

    def test_x(postgres_url): ...      # "postgresql://postgres@127.0.0.1:5432/resmon_test_..."
"""

from __future__ import annotations

import os
import secrets
import time
from urllib.parse import urlparse, urlunparse

import pytest

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url() -> str:
    return os.environ.get("RESMON_TEST_POSTGRES_URL") or DEFAULT_ADMIN_URL


def _connect(url: str):
    import psycopg2

    parsed = urlparse(url)
    conn = psycopg2.connect(
        dbname=parsed.path.lstrip("/") or "postgres",
        user=parsed.username or "postgres",
        password=parsed.password,
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 5432,
        connect_timeout=3,
    )
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    return conn


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL not reachable: {reason}")


@pytest.fixture
def postgres_url():
    """URL of a fresh, empty database; dropped (connections terminated) afterwards."""
    try:
        import psycopg2
    except ImportError as exc:  # pragma: no cover - dev extra installs it
        _unavailable(f"psycopg2 missing: {exc}")
    url = admin_url()
    try:
        admin = _connect(url)
    except psycopg2.OperationalError as exc:
        _unavailable(str(exc).strip())
    name = f"resmon_test_{secrets.token_hex(6)}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    parsed = urlparse(url)
    try:
        yield urlunparse(parsed._replace(path=f"/{name}"))
    finally:
        # Close this process's own peewee connection before dropping the database.
        from resmon.store.models import database_proxy

        if database_proxy.obj is not None and not database_proxy.is_closed():
            database_proxy.close()
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            # FORCE (PostgreSQL 13+) ends sessions that connected since the line above
            # (a background thread of a server that is stopping); retried for one that
            # connects in between.
            for attempt in range(5):
                try:
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    break
                except psycopg2.errors.ObjectInUse:  # noqa: PERF203
                    if attempt == 4:
                        raise
                    time.sleep(0.2)
        admin.close()


@pytest.fixture(
    name="database", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def migrated_database(request, tmp_path):
    """Fixture ``database``: an open, migrated resmon database, a SQLite file and then a
    throwaway PostgreSQL one."""
    from resmon.store import db as dbmod

    target = (
        str(tmp_path / "m.db")
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    db = dbmod.open_database(target)
    dbmod.migrate(db)
    yield db
    db.close()
