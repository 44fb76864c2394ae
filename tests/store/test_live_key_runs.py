"""A collector's run key names one run: a summary pushed again under another run id
(a copy replayed for another run) is a run of its own, not a duplicate of the first,
on SQLite and PostgreSQL."""

from __future__ import annotations

import copy

from server_proc import sample_payload

from resmon.schema import validate_push
from resmon.store.models import Run
from resmon.store.write import store_push


def with_run_key(run_id: str, key: str) -> dict:
    payload = sample_payload(run_id)
    payload["run_summary"]["collector"] = {"run_key": key, "host": "runner-1"}
    return payload


def test_same_collector_run_key_under_another_run_id_is_stored(database):
    first = with_run_key("77", "b7c1e6a0-0000-4000-8000-000000000001")
    second = copy.deepcopy(first)
    second["execution"]["run_id"] = "78"

    a = store_push(validate_push(first), "key-a")
    b = store_push(validate_push(second), "key-b")
    assert (a.status, b.status) == ("created", "created") and a.id != b.id
    assert sorted(r.run_id for r in Run.select()) == ["77", "78"]
    # The run that carried the key first keeps it; retries of either are duplicates.
    assert Run.get_by_id(a.id).live_key is not None and Run.get_by_id(b.id).live_key is None
    assert store_push(validate_push(second), "key-b").status == "duplicate"
    assert store_push(validate_push(second), "key-c").status == "duplicate"
    assert store_push(validate_push(first), "key-d").status == "duplicate"
    assert Run.select().count() == 2
