"""Which wrapped step a run was: ``command_container`` / ``command_name`` derived from
the run summary's ``command`` (resmon.store.derive), and stored by a real push."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from server_proc import sample_payload

from resmon.schema import validate_push
from resmon.store.derive import command_columns, command_columns_of_text, derive
from resmon.store.models import Run
from resmon.store.write import body_digest, store_push

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "summaries"


def wrapper_summary() -> dict:
    return json.loads((FIXTURES / "wrapper_make_summary.json").read_text())


def derived(summary: dict) -> dict:
    payload = validate_push({**sample_payload("1"), "run_summary": summary})
    return derive(payload.execution, payload.run_summary, body_digest(payload)).columns


def test_a_wrapped_run_gives_its_step():
    summary = wrapper_summary()
    columns = derived(summary)
    assert (columns["command_container"], columns["command_name"]) == ("command", "make")
    summary["command"]["container"] = "unit-tests"  # collect --name unit-tests -- make
    assert derived(summary)["command_container"] == "unit-tests"


def test_a_sidecar_or_peer_summary_gives_none():
    summary = wrapper_summary()
    del summary["command"]  # the Go collector sends no command
    assert command_columns(summary) == {"command_container": None, "command_name": None}
    columns = derived(summary)
    assert columns["command_container"] is None and columns["command_name"] is None


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("make", (None, None)),  # not an object
        (["make"], (None, None)),
        ({"container": 7, "name": None}, (None, None)),
        ({"container": "", "name": "make"}, (None, "make")),
        ({"container": "x" * 300, "name": "y" * 255}, ("x" * 255, "y" * 255)),
        # PostgreSQL text cannot hold NUL, and a line break would break a table row.
        ({"container": "comp\x00ile", "name": "ma\nke\x7f"}, ("compile", "make")),
        ({"container": "\x00\x01", "name": "étape ✓"}, (None, "étape ✓")),
    ],
)
def test_a_peer_may_send_anything_as_command(command, expected):
    columns = command_columns({"command": command})
    assert (columns["command_container"], columns["command_name"]) == expected


def test_stored_text_is_parsed_only_when_it_names_a_command():
    summary = wrapper_summary()
    summary["command"]["container"] = "compile"
    text = orjson.dumps(summary).decode()
    assert command_columns_of_text(text) == {
        "command_container": "compile",
        "command_name": "make",
    }
    # Text without the key is not parsed at all (so not JSON does not matter), and
    # what is not a JSON object, or only has "command" as a value, gives nothing.
    for text in ("{not json", '"not json"', '{"x": "command"}', '["command"]', "", None):
        assert command_columns_of_text(text) == command_columns(None), text


def test_a_push_stores_the_step_on_sqlite_and_postgres(database):
    """Through the real write path: a wrapped step, a peer's run without ``command``,
    and a peer's ``command`` that only the derivation keeps storable (a NUL, 300
    characters) are all stored, none fails the push."""
    compile_step = wrapper_summary()
    compile_step["command"]["container"] = "compile"
    peer = wrapper_summary()
    del peer["command"]
    odd = wrapper_summary()
    odd["command"] = {"container": "a\x00b" + "c" * 300, "name": 12}
    ids = []
    for i, summary in enumerate((compile_step, peer, odd)):
        body = {**sample_payload(str(i)), "run_summary": summary}
        ids.append(store_push(validate_push(body)).id)
    stored = {
        r.id: (r.command_container, r.command_name)
        for r in Run.select(Run.id, Run.command_container, Run.command_name)
    }
    assert stored == {
        ids[0]: ("compile", "make"),
        ids[1]: (None, None),
        ids[2]: ("ab" + "c" * 253, None),
    }
