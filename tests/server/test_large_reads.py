"""Reads are bounded in memory: the Go-compatible runs list streams every row.

400 runs of 1 MiB in one scope (200 on PostgreSQL), then
``GET /api/v1/metrics/repo/...`` of all of them from a real ``resmon serve`` (one
worker): the worker's peak resident memory may exceed what it was before by less
than 50 MiB (when the list was built in memory its VmHWM went 36 -> 1,241 MiB for
400 runs), and the answer is complete, valid JSON, newest first, equal to the
runs stored.  The runs are stored with ``store_push`` (the write path the server
uses) rather than over HTTP, to keep the test short; the read is real HTTP.

In-process: the stream's batches meet at ties of ``received_at`` without losing
or repeating a run, ``?limit`` and the time window keep their meaning, a database
failure mid-stream ends the body early (logged, no traceback), and the read API's
lists are capped by bytes as well as rows.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from peewee import OperationalError
from server_proc import ServerProcess, sample_payload

from resmon.schema import validate_push
from resmon.server import ServerConfig, api, create_app, state
from resmon.store import db as dbmod
from resmon.store import history, scope
from resmon.store.models import Run
from resmon.store.write import store_push

MIB = 1024 * 1024
# Runs of 1 MiB stored for the large read: fewer on PostgreSQL, where storing each
# costs its compression and WAL (200 MiB still far exceeds what the worker may grow).
RUNS = {"sqlite": 400, "postgresql": 200}
SCOPE = {"organization": "o", "repository": "o/r", "workflow": "ci.yml", "job": "build"}
GO_GET = "/api/v1/metrics/repo/o/o%2Fr/ci.yml/build"
RSS_GROWTH_LIMIT = 50 * MIB


def filler(n: int, size: int) -> str:
    """A run's own bulk: ``size`` characters that say which run they belong to."""
    unit = f"run {n:05d} "
    return (unit * (size // len(unit) + 1))[:size]


def big_payload(n: int, size: int = MIB) -> dict[str, Any]:
    payload = sample_payload(str(n), **SCOPE)
    payload["run_summary"]["notes"] = filler(n, size)
    return payload


def store_runs(target: str, count: int, size: int) -> list[int]:
    """``count`` runs of about ``size`` bytes each, stored as a push stores them; their ids."""
    database = dbmod.open_database(target)
    dbmod.migrate(database)
    try:
        return [store_push(validate_push(big_payload(n, size))).id for n in range(count)]
    finally:
        database.close()


def memory_of(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(value.split()[0]) * 1024
    return figures


def _maintenance(pid: int) -> bool:
    try:
        return b"resmon.server.maintenance" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # gone: not a worker to measure either


def worker_pid(server: ServerProcess) -> int:
    """The one gunicorn worker: the arbiter's only child."""
    assert server.proc is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text()
        # The maintenance process (rollups, retention) is a child too, not a worker.
        pids = [int(p) for p in children.split() if not _maintenance(int(p))]
        if len(pids) == 1:
            return pids[0]
        time.sleep(0.1)
    raise AssertionError(f"expected one worker, found {children!r}")


def download(url: str, headers: dict[str, str], into: Path) -> tuple[int, dict[str, str]]:
    with requests.get(url, headers=headers, stream=True, timeout=60) as response:
        with into.open("wb") as out:
            for chunk in response.iter_content(MIB):
                out.write(chunk)
        return response.status_code, dict(response.headers)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def target(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "metrics.db")
    return request.getfixturevalue("postgres_url")


def database_name(target: str) -> str:
    return "postgresql" if "://" in target else "sqlite"


@pytest.mark.slow
def test_reading_400_runs_of_1_mib_streams_them_in_bounded_memory(target, tmp_path):
    runs = RUNS[database_name(target)]
    ids = store_runs(target, runs, MIB)
    with ServerProcess(target) as server:
        # Warm the worker up: its imports, its database connection, one small answer.
        empty = requests.get(
            server.url + "/api/v1/metrics/repo/x/x%2Fy/w/j", headers=server.read_headers, timeout=10
        )
        assert empty.json() == []
        pid = worker_pid(server)
        before = memory_of(pid)
        answer = tmp_path / "answer.json"
        started = time.monotonic()
        status, headers = download(server.url + GO_GET, server.read_headers, answer)
        seconds = time.monotonic() - started
        after = memory_of(pid)
        print(
            f"\n{database_name(target)}: {runs} runs of 1 MiB, "
            f"{answer.stat().st_size / MIB:.0f} MiB in {seconds:.1f} s; worker VmRSS "
            f"{before['VmRSS'] / MIB:.0f} -> {after['VmRSS'] / MIB:.0f} MiB, "
            f"VmHWM {before['VmHWM'] / MIB:.0f} -> {after['VmHWM'] / MIB:.0f} MiB"
        )
        # ?limit keeps its meaning, and says when more runs matched.
        r = requests.get(server.url + GO_GET + "?limit=3", headers=server.read_headers, timeout=10)
        assert [row["id"] for row in r.json()] == ids[::-1][:3]
        assert r.headers["X-Resmon-Truncated"] == "true"
        assert r.headers["X-Total-Count"] == str(runs)
        r = requests.get(
            server.url + GO_GET + "?until=2000-01-01T00:00:00Z",
            headers=server.read_headers,
            timeout=10,
        )
        assert r.json() == []
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert "X-Resmon-Truncated" not in headers
    # The peak during the answer against the resident size before it.
    assert after["VmHWM"] - before["VmRSS"] < RSS_GROWTH_LIMIT, (before, after)

    # The standard library's parser: orjson takes three times as long on strings of 1 MiB.
    rows = json.loads(answer.read_bytes())
    assert [row["id"] for row in rows] == ids[::-1]  # every run, newest first
    for row in rows:
        n = int(row["run_id"])
        assert row["payload"] == big_payload(n)["run_summary"]
        assert {k: row[k] for k in SCOPE} == SCOPE


# --- in-process: batches, ties, failures, the read API's byte cap -----------------

READ = "large-reads-read-token-0123456789"


@pytest.fixture
def client(target):
    app = create_app(ServerConfig(database=target, read_token=READ, hmac_keys=("k" * 32,)))
    yield app.test_client()
    state(app).database.close()


def get(client, path: str) -> Any:
    return client.get(path, headers={"Authorization": f"Bearer {READ}"})


def newest_first_ids(where: Any = True) -> list[int]:
    query = Run.select(Run.id).where(where).order_by(Run.received_at.desc(), Run.id.desc())
    return [row[0] for row in query.tuples()]


def test_batches_meet_at_ties_of_received_at_without_losing_or_repeating_a_run(client, monkeypatch):
    """Batches of at most 3 runs or 5,000 bytes of summaries, over 25 runs of 1.3 and
    5 KB received at 4 distinct times: the keyset continues inside a tie, and each
    cut-off (rows, bytes) ends some batch."""
    ids = [
        store_push(validate_push(big_payload(n, 4000 if n % 4 == 0 else 300))).id for n in range(25)
    ]
    base = datetime(2026, 1, 1, 12)
    for n, run_pk in enumerate(ids):
        Run.update(received_at=base + timedelta(minutes=n // 7)).where(Run.id == run_pk).execute()
    monkeypatch.setattr(scope, "STREAM_BATCH_ROWS", 3)
    monkeypatch.setattr(scope, "STREAM_BATCH_BYTES", 5000)
    sizes: list[tuple[int, bool]] = []
    for name in ("_sqlite_batch", "_postgres_batch"):
        real = getattr(scope, name)

        def recording(where: Any, rows: int, real: Any = real) -> Any:
            batch, after, done = real(where, rows)
            sizes.append((len(batch), done))
            return batch, after, done

        monkeypatch.setattr(scope, name, recording)
    expected = newest_first_ids()
    assert sorted(expected) == sorted(ids)

    r = get(client, GO_GET)
    assert [row["id"] for row in r.get_json()] == expected
    assert (3, False) in sizes and any(n < 3 and not done for n, done in sizes)
    for limit in (1, 2, 3, 4, 7, 24, 25):
        r = get(client, f"{GO_GET}?limit={limit}")
        assert [row["id"] for row in r.get_json()] == expected[:limit], limit
        assert ("X-Resmon-Truncated" in r.headers) == (limit < 25)
    r = get(client, f"{GO_GET}?since=2026-01-01T12:01:00Z&until=2026-01-01T12:03:00Z")
    window = (Run.received_at >= base + timedelta(minutes=1)) & (
        Run.received_at < base + timedelta(minutes=3)
    )
    assert [row["id"] for row in r.get_json()] == newest_first_ids(window)
    assert len(r.get_json()) == 14


def test_a_database_failure_mid_stream_ends_the_body_unterminated(client, monkeypatch, caplog):
    for n in range(6):
        store_push(validate_push(big_payload(n, 1000)))
    monkeypatch.setattr(scope, "STREAM_BATCH_ROWS", 2)
    monkeypatch.setattr(api, "STREAM_PIECE_BYTES", 1)  # each run goes out on its own
    batches = {"n": 0}
    real = scope._postgres_batch if scope._is_postgres() else scope._sqlite_batch

    def failing(where: Any, rows: int) -> Any:
        batches["n"] += 1
        if batches["n"] == 2:
            raise OperationalError("server closed the connection unexpectedly")
        return real(where, rows)

    monkeypatch.setattr(scope, "_sqlite_batch", failing)
    monkeypatch.setattr(scope, "_postgres_batch", failing)
    r = get(client, GO_GET)
    assert r.status_code == 200
    assert r.data.startswith(b"[{") and not r.data.endswith(b"]")
    with pytest.raises(ValueError):
        json.loads(r.data)
    assert len(json.loads(r.data + b"]")) == 2  # the first batch, whole
    assert any("runs list ended early" in rec.getMessage() for rec in caplog.records)
    assert not any(rec.exc_info for rec in caplog.records)


def test_a_database_failure_before_the_first_byte_is_an_error_answer(client, monkeypatch):
    store_push(validate_push(big_payload(1, 1000)))

    def failing(where: Any, rows: int) -> Any:
        raise OperationalError("database is locked")

    monkeypatch.setattr(scope, "_sqlite_batch", failing)
    monkeypatch.setattr(scope, "_postgres_batch", failing)
    r = get(client, GO_GET)
    assert r.status_code == 500 and r.get_json() == {"error": "internal server error"}


def test_read_api_lists_are_capped_by_bytes_as_well_as_rows(client, monkeypatch):
    long = "w" * 250
    for n in range(12):
        payload = sample_payload(
            str(n), organization="o", repository="o/r", workflow=f"{long}{n:02d}", job="j" * 250
        )
        store_push(validate_push(payload))
    for n in range(5):
        store_push(validate_push(sample_payload(f"{n}" + "x" * 250, **SCOPE)))
    row_bytes = len(orjson.dumps(history.list_jobs()["jobs"][0]))
    monkeypatch.setattr(history, "MAX_ANSWER_BYTES", row_bytes * 4)

    r = get(client, "/api/v1/jobs")
    assert r.get_json()["truncated"] is True and r.headers["X-Resmon-Truncated"] == "true"
    assert 1 <= len(r.get_json()["jobs"]) <= 4
    assert len(r.data) < row_bytes * 4 + 1000

    run_bytes = len(
        orjson.dumps(
            get(client, "/api/v1/jobs/o/o%2Fr/ci.yml/build/runs?limit=1").get_json()["runs"][0]
        )
    )
    monkeypatch.setattr(history, "MAX_ANSWER_BYTES", run_bytes * 3)
    r = get(client, "/api/v1/jobs/o/o%2Fr/ci.yml/build/runs?limit=5")
    body = r.get_json()
    assert body["truncated"] is True and r.headers["X-Resmon-Truncated"] == "true"
    assert len(body["runs"]) == 2

    monkeypatch.setattr(history, "MAX_ANSWER_BYTES", 4 * MIB)
    monkeypatch.setattr(history, "MAX_JOBS", 5)
    body = get(client, "/api/v1/jobs").get_json()
    assert body["truncated"] is True and len(body["jobs"]) == 5
    body = get(client, "/api/v1/jobs?repository=r").get_json()
    assert body["truncated"] is True and len(body["jobs"]) == 5
    monkeypatch.setattr(history, "MAX_JOBS", 10_000)
    body = get(client, "/api/v1/jobs?repository=r").get_json()
    assert body["truncated"] is False and len(body["jobs"]) == 13
