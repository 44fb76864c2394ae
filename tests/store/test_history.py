"""The read-side queries, on a real SQLite file and a real PostgreSQL database.

Runs are stored through the real write path (validate_push + store_push) with
chosen arrival times, then every question is asked and answered with the
numbers those runs carry.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from query_data import GiB, MiB, push_body, run_summary

from resmon.schema import validate_push
from resmon.store import history
from resmon.store.db import migrate, open_database
from resmon.store.write import store_push

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
BUILD = ("acme", "acme/widgets", "ci.yml", "build")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    if request.param == "sqlite":
        target = str(tmp_path / "history.db")
    else:
        target = request.getfixturevalue("postgres_url")
    database = open_database(target)
    migrate(database)
    yield database
    database.close()


def push(run_id: str, received_at: datetime, scope=BUILD, **summary_args) -> int:
    org, repo, workflow, job = scope
    start = received_at - timedelta(seconds=summary_args.get("duration", 200.0) + 5)
    body = push_body(
        run_id,
        run_summary(start=start, **summary_args),
        org=org,
        repo=repo,
        workflow=workflow,
        job=job,
    )
    return store_push(validate_push(body), received_at=received_at).id


@pytest.fixture
def seeded(db):
    """Five daily runs of acme/widgets build getting heavier, a sixth light one on the
    last day, two runs of a test job, and an old release job outside the 7-day window."""
    ids = []
    for i in range(5):
        ids.append(
            push(
                f"10{i}",
                NOW - timedelta(days=4 - i, hours=1),
                cpu_percent=20 + 10 * i,
                mem_bytes=GiB + i * 256 * MiB,
                builder_cores=0.5 + 0.3 * i,
                duration=100 + 50 * i,
                cpu_seconds=100.0 * (i + 1),
            )
        )
    ids.append(
        push(
            "105",
            NOW - timedelta(minutes=30),
            cpu_percent=10,
            mem_bytes=GiB // 2,
            builder_cores=0.1,
            duration=60,
            cpu_seconds=10.0,
        )
    )
    test_scope = ("acme", "acme/widgets", "ci.yml", "test")
    push(
        "200",
        NOW - timedelta(days=1),
        scope=test_scope,
        cpu_percent=90,
        mem_bytes=8 * GiB,
        duration=50,
        cpu_seconds=5000.0,
    )
    push(
        "201",
        NOW - timedelta(hours=3),
        scope=test_scope,
        cpu_percent=80,
        mem_bytes=6 * GiB,
        duration=40,
        cpu_seconds=4000.0,
    )
    push(
        "1",
        NOW - timedelta(days=20),
        scope=("other", "gadgets", "deploy.yml", "release"),
        cpu_seconds=99999.0,
    )
    return ids


def test_jobs_lists_every_job_with_its_last_run(seeded):
    body = history.list_jobs()
    names = [(j["repository"], j["workflow"], j["job"]) for j in body["jobs"]]
    assert names == [
        ("acme/widgets", "ci.yml", "build"),
        ("acme/widgets", "ci.yml", "test"),
        ("other/gadgets", "deploy.yml", "release"),
    ]
    build = body["jobs"][0]
    assert build["run_count"] == 6
    assert build["last_id"] == seeded[-1]
    assert build["last_run_id"] == "105"
    assert build["last_received_at"] == "2026-11-20T11:30:00Z"
    assert build["last_duration_seconds"] == 60
    assert build["last_cpu_percent_peak"] == pytest.approx(10)
    assert build["last_cpu_percent_p95"] == pytest.approx(10 * 19 / 20)
    assert build["last_mem_bytes_peak"] == GiB // 2
    assert build["last_cpu_seconds"] == 10.0


def test_jobs_filters_by_org_and_either_repository_spelling(seeded):
    assert {j["organization"] for j in history.list_jobs(organization="other")["jobs"]} == {"other"}
    for kwargs in (
        {"repository": "widgets"},
        {"repository": "acme/widgets"},
        {"organization": "acme", "repository": "widgets"},
    ):
        jobs = history.list_jobs(**kwargs)["jobs"]
        assert [j["job"] for j in jobs] == ["build", "test"], kwargs
    assert history.list_jobs(organization="nobody")["jobs"] == []


def test_runs_newest_first_with_limit_and_window(seeded):
    body = history.job_runs(*BUILD, limit=3, now=NOW)
    assert [r["run_id"] for r in body["runs"]] == ["105", "104", "103"]
    assert body["truncated"] is True and body["limit"] == 3
    r = body["runs"][1]
    assert r["id"] == seeded[4]
    assert r["received_at"] == "2026-11-20T11:00:00Z"
    assert r["duration_seconds"] == 300
    assert r["cpu_percent_peak"] == pytest.approx(60)
    assert r["mem_bytes_peak"] == GiB + 4 * 256 * MiB
    assert r["sample_count"] == 20

    window = history.job_runs(*BUILD, since="3d", until="1d", now=NOW)
    assert [r["run_id"] for r in window["runs"]] == ["103", "102"]
    assert window["truncated"] is False
    assert window["since"] == "2026-11-17T12:00:00Z"
    # The bare repository name under its organization is the same job.
    assert (
        history.job_runs("acme", "widgets", "ci.yml", "build", limit=1)["runs"][0]["run_id"]
        == "105"
    )
    # A known job with nothing in the window is an empty answer, not an error.
    assert history.job_runs(*BUILD, since="2026-01-01", until="2026-01-02", now=NOW)["runs"] == []


def test_unknown_job_names_the_closest_ones(seeded):
    with pytest.raises(history.NotFound) as err:
        history.job_runs("acme", "acme/widgets", "ci.yml", "biuld")
    assert err.value.message == (
        "no runs stored for job 'biuld' of workflow 'ci.yml' in acme/widgets"
    )
    # Pasteable after `resmon query runs`, quoted where the shell needs it.
    assert err.value.suggestions[0] == "acme acme/widgets ci.yml build"
    push("9", NOW, scope=("acme", "acme/widgets", "Nightly CI", "build"))
    with pytest.raises(history.NotFound) as err:
        history.job_runs("acme", "widgets", "Nightly", "build")
    assert err.value.suggestions[0] == "acme acme/widgets 'Nightly CI' build"


def test_get_run_has_containers_and_the_summary(seeded):
    run = history.get_run(seeded[2])
    assert run["run_id"] == "102" and run["repository"] == "acme/widgets"
    builder, db_container = run["containers"]
    assert builder["name"] == "builder" and db_container["name"] == "db"
    assert builder["cpu_cores_peak"] == pytest.approx(1.1)
    assert builder["cpu_cores_p50"] == pytest.approx(1.1 * 10 / 20)
    assert builder["limit_cpu_cores"] == 2.0 and builder["limit_memory_bytes"] == GiB
    assert db_container["limit_cpu_cores"] is None
    assert run["payload"]["top_cpu_processes"][0]["name"] == "cc1plus"
    with pytest.raises(history.NotFound):
        history.get_run(999999)


def test_trend_per_run_oldest_first(seeded):
    body = history.trend(*BUILD, limit=4, now=NOW)
    assert [p["run_id"] for p in body["points"]] == ["102", "103", "104", "105"]
    assert [p["cpu_percent_peak"] for p in body["points"]] == pytest.approx([40, 50, 60, 10])
    assert body["container"] is None and body["by"] == "run"


def test_trend_of_a_container_per_day(seeded):
    body = history.trend(*BUILD, container="builder", by="day", now=NOW)
    days = {p["day"]: p for p in body["points"]}
    assert list(days) == ["2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"]
    last = days["2026-11-20"]
    # Two runs that day: the heavier one's figures, the mean duration.
    assert last["runs"] == 2
    assert last["cpu_cores_peak"] == pytest.approx(1.7)
    assert last["cpu_cores_p95"] == pytest.approx(1.7 * 19 / 20)
    assert last["memory_bytes_peak"] == 900 * MiB
    assert last["limit_cpu_cores"] == 2.0
    assert last["duration_seconds"] == pytest.approx((300 + 60) / 2)
    assert days["2026-11-16"]["runs"] == 1


def test_trend_unknown_container_suggests_real_ones(seeded):
    with pytest.raises(history.NotFound) as err:
        history.trend(*BUILD, container="bulder")
    assert err.value.suggestions == ["builder"]
    with pytest.raises(history.HistoryError):
        history.trend(*BUILD, by="week")


def test_top_ranks_jobs_over_the_period(seeded):
    cpu = history.top("cpu", period="7d", now=NOW)
    assert [j["job"] for j in cpu["jobs"]] == ["test", "build"]  # release is 20 days old
    test_job, build = cpu["jobs"]
    assert test_job["runs"] == 2 and test_job["cpu_seconds_total"] == 9000.0
    assert build["runs"] == 6 and build["cpu_seconds_total"] == pytest.approx(1510.0)
    assert cpu["since"] == "2026-11-13T12:00:00Z"

    # The job's own memory (builder 900 MiB + db 100 MiB at their peaks) is the same
    # for both jobs; the machines they ran on were not.
    memory = history.top("memory", period="30d", now=NOW)
    assert memory["scope"] == "job" and memory["ranked_by"] == ["job_memory_bytes_peak_max"]
    assert [j["job_memory_bytes_peak_max"] for j in memory["jobs"][:2]] == [1000 * MiB] * 2
    assert isinstance(memory["jobs"][0]["job_memory_bytes_peak_max"], int)
    assert memory["jobs"][0]["job_memory_kind"] == "rss"
    memory = history.top("memory", scope="host", period="30d", now=NOW)
    assert [j["job"] for j in memory["jobs"]][:1] == ["test"]
    assert memory["jobs"][0]["mem_bytes_peak_max"] == 8 * GiB
    assert isinstance(memory["jobs"][0]["mem_bytes_peak_max"], int)

    duration = history.top("duration", period="30d", limit=1, now=NOW)
    assert [j["job"] for j in duration["jobs"]] == ["build"]
    assert duration["jobs"][0]["duration_seconds_total"] == pytest.approx(
        100 + 150 + 200 + 250 + 300 + 60
    )

    with pytest.raises(history.HistoryError):
        history.top("disk")
    with pytest.raises(history.HistoryError, match="scope: invalid scope 'machine'"):
        history.top("cpu", scope="machine")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", NOW - timedelta(days=7)),
        ("12h", NOW - timedelta(hours=12)),
        ("2w", NOW - timedelta(days=14)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T10:00:00+02:00", datetime(2026, 11, 1, 8, tzinfo=UTC)),
    ],
)
def test_parse_when(text, expected):
    assert history.parse_when(text, NOW) == expected.replace(tzinfo=None)


@pytest.mark.parametrize("text", ["yesterday", "7 days", "-3d", "2026-13-01"])
def test_parse_when_rejects_with_advice(text):
    with pytest.raises(history.HistoryError, match="7d"):
        history.parse_when(text, NOW)


def test_trend_per_day_groups_runs_by_the_day_they_started(db):
    """150 runs that ran from 20 Oct to 13 Nov and reached the server together (a
    spool pushed on 20 Nov) are 25 days of 6 runs, not one day of 150; a peer's run
    without a start time counts on the day it was received."""
    first = datetime(2026, 10, 20, 9, 0, tzinfo=UTC)
    for i in range(150):
        day, nth = divmod(i, 6)
        summary = run_summary(
            start=first + timedelta(days=day, hours=nth), cpu_percent=10 + day + nth / 10
        )
        received = NOW - timedelta(seconds=150 - i)
        store_push(validate_push(push_body(f"3{i:03}", summary)), received_at=received)
    no_start = run_summary(start=first, cpu_percent=99)
    del no_start["start_time"], no_start["end_time"]
    store_push(validate_push(push_body("peer", no_start)), received_at=NOW)

    points = history.trend(*BUILD, by="day", limit=100, now=NOW)["points"]
    assert len(points) == 26
    assert points[0]["day"] == "2026-10-20" and points[24]["day"] == "2026-11-13"
    assert {p["runs"] for p in points[:25]} == {6}
    assert points[12]["day"] == "2026-11-01"
    assert points[12]["cpu_percent_peak"] == pytest.approx(10 + 12 + 0.5)  # the day's highest
    assert (points[25]["day"], points[25]["runs"]) == ("2026-11-20", 1)

    # Per day, the window is of that time too: no day outside it is shown.
    window = history.trend(*BUILD, by="day", since="2026-11-01", until="2026-11-03", now=NOW)
    assert [(p["day"], p["runs"]) for p in window["points"]] == [
        ("2026-11-01", 6),
        ("2026-11-02", 6),
    ]
    # Per run it stays the runs' arrival, as in the runs list.
    per_run = history.trend(*BUILD, since="2026-11-01", until="2026-11-03", now=NOW)
    assert per_run["points"] == []
    assert len(history.trend(*BUILD, since="1h", limit=1000, now=NOW)["points"]) == 151


def test_trend_per_day_counts_a_run_whose_clock_is_ahead(db):
    """A runner's clock an hour ahead of the server's reports a start after the run's
    arrival; the index bound on arrival (a day before ``since``) still counts it."""
    received = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    summary = run_summary(start=received + timedelta(hours=1))
    store_push(validate_push(push_body("ahead", summary)), received_at=received)
    body = history.trend(*BUILD, by="day", since="2026-11-02T10:30:00Z", now=NOW)
    assert [(p["day"], p["runs"]) for p in body["points"]] == [("2026-11-02", 1)]


@pytest.mark.parametrize(
    ("since", "until", "words"),
    [
        ("1d", "2d", "since 1d (2026-11-19T12:00:00Z) is after until 2d (2026-11-18T12:00:00Z)"),
        ("2026-11-02", "2026-11-01", "is after until 2026-11-01"),
        ("2026-11-01", "2026-11-01T00:00:00Z", "is the same time as until"),
    ],
)
def test_a_window_that_ends_before_it_starts_is_refused(db, since, until, words):
    for ask in (history.job_runs, history.trend):
        with pytest.raises(history.HistoryError, match="since must be earlier than until") as err:
            ask(*BUILD, since=since, until=until, now=NOW)
        assert words in str(err.value)
    with pytest.raises(history.HistoryError, match="^--since 1d .* --until 2d .*--until$"):
        history.parse_window("1d", "2d", NOW, names=("--since", "--until"))
    # One side alone, or the right way round, is a window.
    assert history.parse_window("2d", "1d", NOW)[0] == datetime(2026, 11, 18, 12)
    assert history.parse_window(None, "2d", NOW) == (None, datetime(2026, 11, 18, 12))


@pytest.mark.parametrize("period", ["0d", "0s", "0.0000001s"])
def test_an_empty_period_is_refused(db, period):
    with pytest.raises(history.HistoryError, match=f"^period: '{period}' is an empty period"):
        history.top("cpu", period=period, now=NOW)
