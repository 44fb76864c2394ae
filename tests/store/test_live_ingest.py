"""Live batches stored by many threads at once (resmon.store.live_ingest): on a SQLite
file they share the group commit with each other and with pushes; on PostgreSQL each
is its own transaction.  Either way: each (run, seq) stored once, the retries
duplicates, one run_started per run, one snapshot per stored batch, a reused seq
with other samples a conflict, and a batch after the final push changes nothing."""

from __future__ import annotations

import sys
import threading
import uuid
from pathlib import Path

import pytest

from resmon.server.live_wire import validate_live_batch
from resmon.store import live
from resmon.store.models import Event, Run, RunBatch

# The batch bodies of the live API's tests (tests/server is not on the path here).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from live_helpers import EXECUTION, batch_body, sample  # noqa: E402

THREADS = 8
RUNS = 6
SEQS = 5


def _store(body: dict) -> live.BatchResult:
    batch = validate_live_batch(body)
    return live.store_batch(batch.execution, batch.run, batch.seq, batch.samples, times=batch.times)


def test_concurrent_batches_are_stored_once_with_their_events(database):
    keys = [str(uuid.uuid4()) for _ in range(RUNS)]
    bodies = [
        # Each its own run id: runs sharing scope, run id, attempt and start time
        # are one run (its run key), streamed or not.
        batch_body(
            key,
            seq,
            [sample(seq * 3 + i) for i in range(3)],
            execution={**EXECUTION, "run_id": f"run-{n}"},
        )
        for n, key in enumerate(keys)
        for seq in range(SEQS)
    ]
    results: list[live.BatchResult] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def send(offset: int) -> None:
        try:
            # Every thread sends every batch, in its own order: each is stored once.
            for i in range(len(bodies)):
                result = _store(bodies[(i + offset) % len(bodies)])
                with guard:
                    results.append(result)
        except BaseException as exc:
            errors.append(exc)
        finally:
            database.close()

    threads = [threading.Thread(target=send, args=(n * 7,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    created = [r for r in results if r.stored == live.CREATED]
    assert len(created) == RUNS * SEQS
    assert len(results) - len(created) == (THREADS - 1) * RUNS * SEQS
    assert {r.state for r in results} == {live.RUNNING}
    assert RunBatch.select().count() == RUNS * SEQS
    assert Run.select().where(Run.state == live.RUNNING).count() == RUNS
    kinds = [e.kind for e in Event.select().order_by(Event.id)]
    assert kinds.count("run_started") == RUNS
    assert kinds.count("snapshot") == RUNS * SEQS
    run_pks = {r.run for r in results}
    for event in Event.select().where(Event.kind == "run_started"):
        assert event.run_pk in run_pks


def test_conflict_duplicate_and_a_batch_after_the_final_push(database):
    key = str(uuid.uuid4())
    first = _store(batch_body(key, 0, [sample(0), sample(1)]))
    assert (first.state, first.stored) == (live.RUNNING, live.CREATED)
    again = _store(batch_body(key, 0, [sample(0), sample(1)]))
    assert (again.run, again.state, again.stored) == (first.run, live.RUNNING, live.DUPLICATE)
    with pytest.raises(live.BatchConflict):
        _store(batch_body(key, 0, [sample(0), sample(2)]))
    Run.update(state=live.FINISHED).where(Run.id == first.run).execute()
    late = _store(batch_body(key, 1, [sample(3)]))
    assert (late.run, late.state, late.stored) == (first.run, live.FINISHED, live.CREATED)
    snapshot = Run.get_by_id(first.run).snapshot
    assert snapshot.startswith(f'{{"run":{first.run},')  # the first batch's, untouched
    assert Event.select().where(Event.kind == "snapshot").count() == 1
    assert Run.get_by_id(first.run).run_id == EXECUTION["run_id"]
