"""resmon.schema: the wire format's validation, directly (the API tests cover it over HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from server_proc import sample_payload

from resmon.schema import PayloadError, format_time, parse_time, validate_push


def test_valid_payload_is_canonicalised_and_extra_fields_kept():
    payload = sample_payload("7", repository="my-repo", future_field={"x": 1})
    payload["execution"]["run_attempt"] = 2
    payload["execution"]["runner"] = "r1"
    pushed = validate_push(payload)
    assert pushed.scope == ("my-org", "my-org/my-repo", "ci.yml", "build")
    assert pushed.execution["run_id"] == "7" and pushed.execution["run_attempt"] == "2"
    assert pushed.execution["runner"] == "r1"
    assert pushed.run_summary["future_field"] == {"x": 1}


def test_numeric_run_id_is_accepted_as_text():
    payload = sample_payload()
    payload["execution"]["run_id"] = 12345
    assert validate_push(payload).execution["run_id"] == "12345"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: p["execution"].pop("run_id"), "execution.run_id is required"),
        (lambda p: p["execution"].update(run_id="  "), "execution.run_id is required"),
        (
            lambda p: p["execution"].update(job="a\x00b"),
            "execution.job contains control characters",
        ),
        (
            lambda p: p["execution"].update(organization=["x"]),
            "execution.organization must be a string",
        ),
        (lambda p: p["run_summary"].update(duration_seconds=float("nan")), "must be finite"),
        (lambda p: p["run_summary"].update(duration_seconds=-0.5), "must not be negative"),
        (lambda p: p["run_summary"].update(sample_count=1.5), "must be a whole number"),
        (lambda p: p["run_summary"]["mem_used_bytes"].update(peak=2.0**63), "is too large"),
        (lambda p: p["run_summary"].update(end_time="2026-01-02T03:04:05"), "RFC 3339"),
        (
            lambda p: p["run_summary"]["containers"][0].update(name=""),
            "name must be a non-empty string",
        ),
        (lambda p: p["run_summary"]["containers"][0].update(oom_kills=-1), "must not be negative"),
        (
            lambda p: p["run_summary"].update(top_cpu_processes=[{"pid": "x"}]),
            "pid must be a number",
        ),
    ],
)
def test_invalid_fields_say_where(mutate, message):
    payload = sample_payload()
    mutate(payload)
    with pytest.raises(PayloadError, match=message):
        validate_push(payload)


def test_top_level_must_be_objects():
    for bad in ([], "x", None, {"execution": {"run_id": "1"}}, {"run_summary": {}}):
        with pytest.raises(PayloadError):
            validate_push(bad)


def test_times_round_trip_go_nanoseconds():
    assert parse_time("2026-01-02T03:04:05.123456789Z") == datetime(
        2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC
    )
    assert parse_time("2026-01-02T05:04:05+02:00") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (
        format_time(datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC))
        == "2026-01-02T03:04:05.120000Z"
    )
