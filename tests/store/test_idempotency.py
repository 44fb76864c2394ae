"""resmon.store.write: what a retried, re-keyed or conflicting push gets, on SQLite and
PostgreSQL.  Each case states the HTTP answer server/api.py gives for the outcome:
CREATED 201, DUPLICATE 200, IdempotencyConflict 422, RunConflict 409."""

from __future__ import annotations

import os
import threading
import time

import pytest
from server_proc import sample_payload

from resmon.schema import validate_push
from resmon.store import group_commit, write
from resmon.store.models import ContainerStat, Run, database_proxy


def push(run_id="1", **kwargs):
    return validate_push(sample_payload(run_id, **kwargs))


def stored_sample_counts() -> list[int]:
    return [r.sample_count for r in Run.select().order_by(Run.id)]


def concurrently(fns: list) -> list:
    """Run each function on its own thread, released at the same instant; results (or
    the exceptions raised) in order."""
    barrier = threading.Barrier(len(fns))
    results: list = [None] * len(fns)

    def worker(i):
        barrier.wait()
        try:
            results[i] = fns[i]()
        except Exception as exc:  # collected, asserted on by the caller
            results[i] = exc
        finally:
            database_proxy.close()  # each thread has its own connection

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


# --- idempotency keys are per scope ---------------------------------------------

ATTACKER = {"organization": "attacker", "repository": "attacker/x"}
VICTIM = {"organization": "victim", "repository": "victim/y"}


def test_a_key_used_in_another_scope_is_a_new_run(database):
    """Scope attacker/x takes the key first: victim/y's run with it is still stored
    (it was a 422, and the collector moved the run to failed/)."""
    attacker = write.store_push(push("A-1", **ATTACKER), "run-12345")
    victim = write.store_push(push("V-1", **VICTIM), "run-12345")
    assert (attacker.status, victim.status) == ("created", "created")
    assert attacker.id != victim.id
    # Each scope's retry finds its own run, and each scope's conflicts are its own.
    again = write.store_push(push("V-1", **VICTIM), "run-12345")
    assert (again.id, again.status) == (victim.id, "duplicate")
    with pytest.raises(write.IdempotencyConflict) as exc:
        write.store_push(push("V-2", **VICTIM), "run-12345")
    assert exc.value.run_id == victim.id
    assert {r.idempotency_key for r in Run.select()} == {"run-12345"}


@pytest.mark.parametrize(
    "other",
    [
        {"workflow": "other.yml"},
        {"job": "test"},
        {"repository": "my-org/other-repo"},
        {"organization": "other-org", "repository": "other-org/my-repo"},
    ],
    ids=["workflow", "job", "repository", "organization"],
)
def test_each_part_of_the_scope_separates_keys(database, other):
    first = write.store_push(push("1"), "k")
    second = write.store_push(push("1", **other), "k")
    assert second.status == "created" and second.id != first.id


def test_the_repository_spelling_is_one_scope_for_keys(database):
    """``my-repo`` under my-org is ``my-org/my-repo``: one scope, so the key is taken."""
    first = write.store_push(push("1", repository="my-org/my-repo"), "k")
    again = write.store_push(push("1", repository="my-repo"), "k")
    assert (again.id, again.status) == (first.id, "duplicate")
    with pytest.raises(write.IdempotencyConflict):
        write.store_push(push("2", repository="my-repo"), "k")


def test_concurrent_pushes_of_one_key_in_two_scopes_store_both(database):
    """Four retries of each scope's run with one key, all at once: one run per scope."""
    scopes = [ATTACKER, VICTIM] * 4
    results = concurrently(
        [(lambda scope=scope: write.store_push(push("R-1", **scope), "shared")) for scope in scopes]
    )
    assert all(isinstance(r, write.StoreResult) for r in results), results
    for parity in (0, 1):
        mine = results[parity::2]
        assert sorted(r.status for r in mine) == ["created"] + ["duplicate"] * 3
        assert len({r.id for r in mine}) == 1
    assert Run.select().count() == 2 and ContainerStat.select().count() == 2


# --- another key, or none, for a run already stored ---------------------------


def test_a_new_key_for_a_stored_run_with_another_body_is_a_run_conflict(database):
    first = write.store_push(push("R-77"), "K1")
    assert first.status == "created"
    with pytest.raises(
        write.RunConflict, match="already stored with a different run summary"
    ) as exc:
        write.store_push(push("R-77", sample_count=601), "K2")
    assert exc.value.run_id == first.id
    # The stored run and its body are the first push's; nothing of the second is kept.
    assert stored_sample_counts() == [600]
    assert ContainerStat.select().count() == 1
    # K2 was not taken by the refused push: it stays free for a run of its own.
    assert write.store_push(push("R-78"), "K2").status == "created"


def test_a_new_key_for_a_stored_run_with_the_same_body_is_a_duplicate(database):
    first = write.store_push(push("R-77"), "K1")
    again = write.store_push(push("R-77"), "K2")
    assert (again.id, again.status) == (first.id, "duplicate")
    assert Run.select().count() == 1


def test_a_keyless_push_of_a_stored_run_with_another_body_is_a_run_conflict(database):
    first = write.store_push(push("R-77"), "K1")
    with pytest.raises(write.RunConflict) as exc:
        write.store_push(push("R-77", sample_count=601))
    assert exc.value.run_id == first.id
    with pytest.raises(write.RunConflict):
        write.store_push(push("R-77", sample_count=602), None)
    assert write.store_push(push("R-77")).status == "duplicate"
    assert stored_sample_counts() == [600]


def test_the_same_run_summary_spelled_otherwise_is_a_duplicate_not_a_conflict(database):
    """The body digest differs, but nothing would be lost: the start and end written
    with another offset spelling and fractions, the summary's keys in another order,
    and an execution field that is not stored."""
    first = write.store_push(push("R-77"), "K1")
    payload = sample_payload(
        "R-77", start_time="2026-01-02T03:04:05.000+00:00", end_time="2026-01-02T05:14:05+02:00"
    )
    payload["run_summary"] = dict(reversed(list(payload["run_summary"].items())))
    payload["execution"]["runner_name"] = "runner-7"
    again = write.store_push(validate_push(payload), "K2")
    assert (again.id, again.status) == (first.id, "duplicate")
    # Another end time is another summary.
    with pytest.raises(write.RunConflict):
        write.store_push(push("R-77", end_time="2026-01-02T03:14:06Z"), "K3")


def test_the_same_key_with_another_body_stays_an_idempotency_conflict(database):
    """Same key, same run, another body: the key explains the violation first (422),
    before the run does (409)."""
    first = write.store_push(push("R-77"), "K1")
    with pytest.raises(write.IdempotencyConflict) as exc:
        write.store_push(push("R-77", sample_count=601), "K1")
    assert exc.value.run_id == first.id
    with pytest.raises(write.IdempotencyConflict):
        write.store_push(push("R-99"), "K1")


def test_runs_without_a_start_time_are_told_apart_by_their_body(database):
    """Without a start time the body stands in for it: two bodies are two runs, never
    a conflict."""
    a = write.store_push(push("R-77", start_time=None))
    b = write.store_push(push("R-77", start_time=None, sample_count=601))
    assert (a.status, b.status) == ("created", "created")
    assert write.store_push(push("R-77", start_time=None), "K9").status == "duplicate"


def test_concurrent_new_keys_with_other_bodies_one_run_is_stored(database):
    results = concurrently(
        [
            (lambda i=i: write.store_push(push("R-77", sample_count=600 + i), f"K{i}"))
            for i in range(6)
        ]
    )
    created = [r for r in results if isinstance(r, write.StoreResult)]
    conflicts = [r for r in results if isinstance(r, write.RunConflict)]
    assert len(created) == 1 and len(conflicts) == 5, results
    assert created[0].status == "created"
    assert all(c.run_id == created[0].id for c in conflicts)
    assert Run.select().count() == 1 and ContainerStat.select().count() == 1


def test_a_group_commit_batch_answers_each_of_its_pushes(tmp_path):
    """On a SQLite file the pushes queued together are one transaction; a conflicting
    push in the batch is refused on its own and the others are stored."""
    from resmon.store import db as dbmod

    path = str(tmp_path / "m.db")
    db = dbmod.open_database(path)
    dbmod.migrate(db)
    first = write.store_push(push("R-77"), "K1")
    group = group_commit._group_commits[os.path.abspath(path)]
    calls = [
        lambda: write.store_push(push("R-77", sample_count=601), "K2"),  # 409
        lambda: write.store_push(push("R-77"), "K3"),  # 200
        lambda: write.store_push(push("R-78"), "K4"),  # 201
        lambda: write.store_push(push("R-79", sample_count=601)),  # 201
        lambda: write.store_push(push("R-79", sample_count=602)),  # 409 (same batch)
    ]
    with group.leader:  # nobody writes until every push is queued
        threads = []
        results: list = [None] * len(calls)

        def worker(i):
            try:
                results[i] = calls[i]()
            except Exception as exc:  # collected, asserted on below
                results[i] = exc
            finally:
                database_proxy.close()

        for i in range(len(calls)):
            threads.append(threading.Thread(target=worker, args=(i,)))
            threads[-1].start()
        deadline = time.monotonic() + 10
        while len(group.pending) < len(calls) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(group.pending) == len(calls)
    for t in threads:
        t.join(30)
    assert isinstance(results[0], write.RunConflict) and results[0].run_id == first.id
    assert (results[1].id, results[1].status) == (first.id, "duplicate")
    assert results[2].status == "created"
    r79 = [r for r in results[3:] if isinstance(r, write.StoreResult)]
    assert len(r79) == 1 and r79[0].status == "created"
    assert isinstance(next(r for r in results[3:] if r is not r79[0]), write.RunConflict)
    assert sorted(r.run_id for r in Run.select()) == ["R-77", "R-78", "R-79"]
    assert ContainerStat.select().count() == 3
    db.close()
