"""top, the jobs list and usage read the rollups: their answers equal the answers the
runs alone give (a horizon before every run), before the background pass, after it,
and with pushes the pass has not seen yet; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from query_data import MiB, push_body, run_summary

from resmon.schema import validate_push
from resmon.store import history, rollup_pass, rollups, usage
from resmon.store.models import Run
from resmon.store.scope import HistoryError
from resmon.store.write import store_push

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
SCOPES = [
    ("acme", "acme/widgets", "ci.yml", "build"),
    ("acme", "acme/widgets", "ci.yml", "test"),
    ("acme", "acme/gadgets", "release.yml", "build"),
    ("beta", "beta/api", "nightly.yml", "e2e"),
]


def push(n: int, at: datetime, scope) -> int:
    org, repo, workflow, job = scope
    duration = 60.0 + 13 * (n % 7)
    summary = run_summary(
        start=at - timedelta(seconds=duration + 5),
        duration=duration,
        cpu_seconds=100.0 + n,
        cpu_percent=10.0 + n % 50,
        builder_mem=(300 + 37 * (n % 11)) * MiB,
        builder_cores=0.5 + (n % 5) / 4,
    )
    body = push_body(f"r{n}", summary, org=org, repo=repo, workflow=workflow, job=job)
    return store_push(validate_push(body), received_at=at).id


def seed(count: int = 60, offset: int = 0) -> None:
    for i in range(count):
        n = i + offset
        # Spread over 40 days, at odd minutes, so windows cut through hours and days.
        at = NOW - timedelta(hours=n * 16 % 960, minutes=(n * 7) % 60)
        push(n, at, SCOPES[n % len(SCOPES)])


@pytest.fixture
def runs_only(monkeypatch):
    """Answers from the runs alone: the horizon before every run."""

    def ask(question):
        with monkeypatch.context() as m:
            m.setattr(rollups, "horizon", lambda: datetime(1, 1, 1))
            m.setattr(rollups, "run_day_horizon", lambda scope: datetime(1, 1, 1))
            return question()

    return ask


def approx(answer):
    """Floats rounded: a sum of sums is the same figure up to the last bits."""
    if isinstance(answer, dict):
        return {k: approx(v) for k, v in answer.items()}
    if isinstance(answer, list):
        return [approx(v) for v in answer]
    if isinstance(answer, float):
        return round(answer, 6)
    return answer


QUESTIONS = {
    "top cpu 7d": lambda: history.top("cpu", period="7d", limit=100, now=NOW),
    "top memory 30d": lambda: history.top("memory", period="30d", limit=100, now=NOW),
    "top host cpu 30d": lambda: history.top("cpu", scope="host", period="30d", limit=100, now=NOW),
    "top duration 3d until 1d": lambda: history.top(
        "duration", period="3d", until="1d", limit=100, now=NOW
    ),
    "top acme 12h": lambda: history.top("cpu", period="12h", organization="acme", now=NOW),
    "jobs": lambda: history.list_jobs(),
    "jobs acme widgets": lambda: history.list_jobs("acme", "widgets"),
    "jobs bare name": lambda: history.list_jobs(None, "api"),
    "usage job day": lambda: usage.usage("job", "30d", "day", now=NOW),
    "usage org hour": lambda: usage.usage("org", "3d", "hour", now=NOW),
    "usage repo day acme": lambda: usage.usage("repo", "40d", "day", organization="acme", now=NOW),
    "usage workflow day": lambda: usage.usage("workflow", "7d", "day", repository="acme/widgets", now=NOW),
    "trend by day": lambda: history.trend(*SCOPES[0], by="day", limit=100, now=NOW),
    "trend by day, 3 points": lambda: history.trend(*SCOPES[1], by="day", limit=3, now=NOW),
    "trend by day, window": lambda: history.trend(*SCOPES[0], by="day", since="20d", until="3d", now=NOW),
    "trend by day, since": lambda: history.trend(*SCOPES[2], by="day", since="2026-10-01T07:30:00Z", now=NOW),
    "trend container by day": lambda: history.trend(*SCOPES[3], container="builder", by="day", limit=100, now=NOW),
}  # fmt: skip


def settled(answer):
    """An answer with floats rounded and a ranking's ties in name order: two jobs
    whose figure is the same up to the last bits (a sum of sums against a sum) may
    rank either way round."""
    answer = approx(answer)
    if "ranked_by" in answer:
        keys = answer["ranked_by"]
        answer["jobs"] = sorted(
            answer["jobs"],
            key=lambda j: ([-(j[k] if j[k] is not None else -1) for k in keys], j["repository"],
                           j["workflow"], j["job"]),
        )  # fmt: skip
    return answer


def assert_same(runs_only) -> None:
    for name, question in QUESTIONS.items():
        assert settled(question()) == settled(runs_only(question)), name


def test_answers_equal_the_runs_before_during_and_after_the_pass(database, runs_only):
    seed()
    assert_same(runs_only)  # nothing rolled up: everything from the runs
    rollup_pass.catch_up()
    assert rollups.horizon() is None
    assert_same(runs_only)  # everything from the rollups (and the windows' edges)
    seed(10, offset=1000)  # pushed since the pass: read from the runs
    assert rollups.horizon() is not None
    assert_same(runs_only)
    rollup_pass.catch_up()
    assert_same(runs_only)


def test_answers_are_json_numbers(database):
    """PostgreSQL sums counts as numeric: every count is an int, every figure a float."""
    seed(8)
    rollup_pass.catch_up()
    checked = 0
    for name, question in QUESTIONS.items():
        answer = question()
        rows = answer.get("jobs") or answer.get("rows") or answer.get("points") or []
        checked += bool(rows)
        for row in rows:
            for key, value in row.items():
                assert value is None or isinstance(value, (str, int, float, bool)), (name, key)
            count = row.get("runs", row.get("run_count"))
            assert type(count) is int, (name, count)
            if "duration_seconds" in row:
                assert isinstance(row["duration_seconds"], float), name
    assert checked >= len(QUESTIONS) - 2


def test_usage_figures_are_the_runs_sums(database):
    seed()
    rollup_pass.catch_up()
    answer = usage.usage("job", "60d", "day", now=NOW)
    expected: dict = defaultdict(lambda: [0, 0.0, 0.0])
    for run in Run.select():
        day = run.received_at.strftime("%Y-%m-%d")
        entry = expected[(run.organization, run.repository, run.workflow, run.job, day)]
        entry[0] += 1
        entry[1] += run.job_cpu_seconds / 3600
        entry[2] += run.job_memory_bytes_peak / 2**30 * run.duration_seconds / 3600
    got = {
        (r["organization"], r["repository"], r["workflow"], r["job"], r["bucket"]): [
            r["runs"],
            r["cpu_hours"],
            r["gib_hours"],
        ]
        for r in answer["rows"]
    }
    assert approx(got) == approx({k: list(v) for k, v in expected.items()})
    assert answer["totals"]["runs"] == 60
    assert answer["since"].startswith((NOW - timedelta(days=60)).strftime("%Y-%m-%d"))


def test_usage_questions_that_cannot_be_answered(database):
    with pytest.raises(HistoryError, match="by"):
        usage.usage("team")
    with pytest.raises(HistoryError, match="granularity"):
        usage.usage("job", "7d", "week")
    with pytest.raises(HistoryError, match="period"):
        usage.usage("job", "0d")
