"""Fixtures every test folder shares: an isolated environment (autouse), a CliRunner,
a push receiver, and PostgreSQL (``postgres_url``, and ``database``: a migrated SQLite
file, then a migrated PostgreSQL database; both from tests/pg.py)."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from pg import migrated_database, postgres_url  # noqa: F401  (fixtures, registered here)

# Variables that change resmon's behaviour; no test may inherit them from the shell.
_ISOLATED_PREFIXES = ("RESMON_", "RECEIVER_", "COLLECTOR_", "GITHUB_", "GITEA_", "CGROUP_")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith(_ISOLATED_PREFIXES) and name != "RESMON_TEST_POSTGRES_URL":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("NO_COLOR", "1")


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def receiver():
    """A real HTTP receiver on a free loopback port (tests/collect_receiver.py)."""
    from collect_receiver import Receiver

    r = Receiver().start()
    yield r
    r.stop()
