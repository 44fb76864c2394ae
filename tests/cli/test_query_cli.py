"""`resmon query` end to end: a real `resmon serve` process, runs pushed over HTTP,
then every command asked through the server and straight from its database file.

Tables are captured at a fixed width (COLUMNS=100) and checked for the values
that matter; JSON and CSV are parsed back and compared with the pushed numbers.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from query_data import GiB, MiB, push_body, run_summary
from server_proc import ServerProcess, free_port

from resmon.cli import cli
from resmon.query.formats import fmt_bytes, fmt_percent

ORG, REPO, WORKFLOW = "acme", "acme/widgets", "ci.yml"
BUILD = [ORG, "widgets", WORKFLOW, "build"]  # the bare repository name works too
# (builder cores, builder memory, system CPU %, system memory, duration, CPU seconds)
BUILD_RUNS = [
    (0.8, 500 * MiB, 30.0, 1 * GiB, 100.0, 50.0),
    (1.5, 800 * MiB, 50.0, 2 * GiB, 200.0, 100.0),
    (1.9, 1000 * MiB, 70.0, 3 * GiB, 300.0, 150.0),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the module, holding three build runs, one test run and one
    run of another organization's job."""
    db = tmp_path_factory.mktemp("query") / "metrics.db"
    with ServerProcess(db) as srv:
        from query_data import now_utc

        start = now_utc() - timedelta(hours=1)
        if (start + timedelta(minutes=2)).date() != start.date():
            start -= timedelta(minutes=3)  # the build runs start on one day (trend --by day)
        srv.ids = []
        srv.summaries = []
        for i, (cores, mem, cpu, sys_mem, duration, cpu_s) in enumerate(BUILD_RUNS):
            summary = run_summary(
                start=start + timedelta(minutes=i),
                builder_cores=cores,
                builder_mem=mem,
                cpu_percent=cpu,
                mem_bytes=sys_mem,
                duration=duration,
                cpu_seconds=cpu_s,
            )
            response = srv.push(push_body(f"10{i}", summary))
            assert response.status_code == 201, response.text
            srv.ids.append(response.json()["id"])
            srv.summaries.append(summary)
        for body in (
            push_body("7", run_summary(start=start, cpu_seconds=1000.0), job="test"),
            push_body(
                "1",
                run_summary(start=start, cpu_seconds=1.0),
                org="other",
                repo="other/gadgets",
                workflow="deploy.yml",
                job="release",
            ),
        ):
            assert srv.push(body).status_code == 201
        yield srv


@pytest.fixture(params=["server", "db"])
def source(request, server):
    """How `resmon query` reaches the data: the env of a user of the server, or --db."""
    if request.param == "server":
        env = {"RESMON_SERVER": server.url, "RESMON_READ_TOKEN": server.read_token}
        return env, []
    return {}, ["--db", server.database]


def run(runner, source, *args):
    env, extra = source
    result = runner.invoke(cli, ["query", *args, *extra], env={"COLUMNS": "100", **env})
    return result


def ok(result) -> str:
    assert result.exit_code == 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.output


def line_with(text: str, needle: str) -> str:
    return next(line for line in text.splitlines() if needle in line)


def test_jobs(runner, source, server):
    text = ok(run(runner, source, "jobs", "--scope", "host"))  # the machine's figures
    build = line_with(text, " build ")
    last = BUILD_RUNS[-1]
    for cell in ("acme/widgets", "ci.yml", " 3 ", "just now", "5m 00s"):
        assert cell in build, (cell, build)
    assert fmt_percent(last[2] * 19 / 20) in build and fmt_bytes(last[3]) in build
    assert "other/gadgets" in text and "3 jobs" in text

    body = json.loads(ok(run(runner, source, "jobs", "--org", "acme", "-o", "json")))
    assert [j["job"] for j in body["jobs"]] == ["build", "test"]
    job = body["jobs"][0]
    assert (
        job["run_count"] == 3 and job["last_id"] == server.ids[-1] and job["last_run_id"] == "102"
    )
    assert job["last_mem_bytes_peak"] == last[3] and job["last_cpu_seconds"] == last[5]


def test_runs(runner, source, server):
    text = ok(run(runner, source, "runs", *BUILD, "--limit", "2", "--scope", "host"))
    assert "Runs of acme/widgets · ci.yml · build" in text
    newest = line_with(text, " 102 ")
    assert newest.split()[0] == str(server.ids[2])
    for cell in ("5m 00s", "20", "66%", "70%", "2.85 GiB", "3.00 GiB"):
        assert cell in newest, (cell, newest)
    assert str(server.ids[0]) + " " not in text.split("Runs of")[1].split("\n", 3)[3][:4]
    assert "newest 2 shown" in text

    body = json.loads(ok(run(runner, source, "runs", *BUILD, "-o", "json")))
    assert [r["id"] for r in body["runs"]] == server.ids[::-1]
    assert body["truncated"] is False
    for row, summary in zip(body["runs"], server.summaries[::-1], strict=True):
        assert row["cpu_percent_p95"] == summary["cpu_total_percent"]["p95"]
        assert row["cpu_percent_peak"] == summary["cpu_total_percent"]["peak"]
        assert row["mem_bytes_peak"] == summary["mem_used_bytes"]["peak"]
        assert row["duration_seconds"] == summary["duration_seconds"]
        assert row["cpu_seconds"] == summary["cpu_seconds"]

    rows = list(csv.DictReader(io.StringIO(ok(run(runner, source, "runs", *BUILD, "-o", "csv")))))
    assert [int(r["id"]) for r in rows] == server.ids[::-1]
    assert [int(r["mem_bytes_p95"]) for r in rows] == [
        s["mem_used_bytes"]["p95"] for s in server.summaries[::-1]
    ]
    assert rows[0]["run_id"] == "102" and rows[0]["repository"] == "acme/widgets"


def test_show(runner, source, server):
    run_pk = server.ids[2]
    text = ok(run(runner, source, "show", str(run_pk)))
    assert f"{run_pk} · run id 102" in text
    assert "5m 00s, 20 samples" in text
    builder = line_with(text, "builder")
    # 1.9 cores of 2 (95 %, red), 1000 MiB of 1 GiB (98 %)
    for cell in ("0.95", "1.80 90%", "1.90 95%", "2.00", "500 MiB", "950 MiB 93%", "0.98 GiB 98%"):
        assert cell in builder, (cell, builder)
    assert "%" not in line_with(text, " db ")
    assert "cc1plus" in text

    body = json.loads(ok(run(runner, source, "show", str(run_pk), "-o", "json")))
    assert body["id"] == run_pk and body["run_id"] == "102"
    stored = {c["name"]: c for c in server.summaries[2]["containers"]}
    for c in body["containers"]:
        for key in ("p50", "p95", "peak"):
            assert c[f"cpu_cores_{key}"] == stored[c["name"]]["cpu_cores"][key]
            assert c[f"memory_bytes_{key}"] == stored[c["name"]]["memory_bytes"][key]
    assert body["payload"] == server.summaries[2]

    rows = list(
        csv.DictReader(io.StringIO(ok(run(runner, source, "show", str(run_pk), "-o", "csv"))))
    )
    assert [r["name"] for r in rows] == ["builder", "db"]
    assert float(rows[0]["limit_cpu_cores"]) == 2.0 and int(rows[0]["limit_memory_bytes"]) == GiB


def test_trend(runner, source, server):
    text = ok(run(runner, source, "trend", *BUILD, "--container", "builder"))
    assert "Trend of container builder of acme/widgets · ci.yml · build, per run" in text
    # 0.76, 1.425, 1.805 cores, from the smallest to the largest
    assert "CPU p95  ▁▅█ 0.76..1.80" in text
    rows = [line_with(text, f" {i} ") for i in ("100", "101", "102")]
    assert "1.90 95%" in rows[2] and "0.80 40%" in rows[0]

    body = json.loads(ok(run(runner, source, "trend", *BUILD, "--by", "day", "-o", "json")))
    (day,) = body["points"]
    assert day["runs"] == 3
    assert day["cpu_percent_peak"] == 70.0 and day["mem_bytes_peak"] == 3 * GiB
    assert day["duration_seconds"] == pytest.approx(200.0)


def test_top(runner, source):
    text = ok(run(runner, source, "top"))
    first, second = (line_with(text, " test "), line_with(text, " build "))
    assert first.split()[0] == "1" and second.split()[0] == "2"
    assert "16m 40s" in first  # 1000 CPU seconds
    assert "5m 00s" in second  # 50 + 100 + 150

    rows = list(
        csv.DictReader(
            io.StringIO(ok(run(runner, source, "top", "--metric", "duration", "-o", "csv")))
        )
    )
    build = next(r for r in rows if r["job"] == "build")
    assert rows[0]["job"] == "build"
    assert int(build["runs"]) == 3 and float(build["duration_seconds_total"]) == 600.0


def test_server_and_database_give_the_same_answers(runner, server):
    via_server = ({"RESMON_SERVER": server.url, "RESMON_READ_TOKEN": server.read_token}, [])
    via_db = ({}, ["--db", server.database])
    for args in (
        ["jobs"],
        ["runs", *BUILD],
        ["show", str(server.ids[1])],
        ["trend", *BUILD, "--container", "db", "--by", "day"],
    ):
        a = json.loads(ok(run(runner, via_server, *args, "-o", "json")))
        b = json.loads(ok(run(runner, via_db, *args, "-o", "json")))
        assert a == b, args
    a = json.loads(ok(run(runner, via_server, "top", "-o", "json")))
    b = json.loads(ok(run(runner, via_db, "top", "-o", "json")))
    assert a["jobs"] == b["jobs"]


def test_unknown_job_names_the_closest(runner, source):
    result = run(runner, source, "runs", ORG, "widgets", WORKFLOW, "biuld")
    assert result.exit_code == 1
    assert "no runs stored for job 'biuld' of workflow 'ci.yml' in acme/widgets" in result.output
    assert "acme acme/widgets ci.yml build" in result.output
    assert "resmon query jobs" in result.output
    result = run(runner, source, "trend", *BUILD, "--container", "buildr")
    assert result.exit_code == 1 and "builder" in result.output
    result = run(runner, source, "show", "999999")
    assert result.exit_code == 1 and "no run with id 999999" in result.output


def test_bad_options_are_named(runner, source):
    for args, words in (
        (["runs", *BUILD, "--since", "yesterday"], "'--since'"),
        (["runs", *BUILD, "--limit", "0"], "'--limit'"),
        (["top", "--period", "forever"], "'--period'"),
        (["top", "--metric", "disk"], "'--metric'"),
        (["show", "abc"], "'ID'"),
    ):
        result = run(runner, source, *args)
        assert result.exit_code == 2, result.output
        assert words in result.output, result.output


def test_read_token_problems(runner, server):
    result = run(runner, ({"RESMON_SERVER": server.url, "RESMON_READ_TOKEN": "wrong"}, []), "jobs")
    assert result.exit_code == 1 and "rejected the read token" in result.output
    result = run(runner, ({"RESMON_SERVER": server.url}, []), "jobs")
    assert result.exit_code == 1 and "no read token" in result.output
    # The server's own variable works as a fallback, as on the server's host.
    result = run(
        runner,
        ({"RESMON_SERVER": server.url, "RECEIVER_READ_TOKEN": server.read_token}, []),
        "jobs",
    )
    assert result.exit_code == 0, result.output


def test_unreachable_server_and_missing_database(runner, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = run(runner, ({"RESMON_SERVER": url, "RESMON_READ_TOKEN": "x"}, []), "jobs")
    assert result.exit_code == 1
    assert f"cannot reach a resmon server at {url}" in result.output and "--db" in result.output
    result = run(runner, ({}, ["--db", str(tmp_path / "nope.db")]), "jobs")
    assert result.exit_code == 1 and "no database file at" in result.output
    assert not (tmp_path / "nope.db").exists()  # reading never creates a database
    result = runner.invoke(cli, ["query", "jobs", "--server", url, "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 2 and "either --server or --db" in result.output


def test_database_that_is_not_resmons(runner, tmp_path):
    path = tmp_path / "other.db"
    import sqlite3

    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    result = run(runner, ({}, ["--db", str(path)]), "jobs")
    assert result.exit_code == 1, result.output
    assert "schema" in result.output and "resmon serve" in result.output
    assert result.output.count("\n") == 1, result.output  # one line: what it is not


@pytest.mark.slow
def test_a_file_that_is_no_database_is_one_error_line(tmp_path):
    """`--db` on a text file (as `--db /etc/passwd`), in a subprocess as a user runs it:
    one error line on stderr saying what the file is not, exit code 1, nothing else
    (the store's log line for a server's log used to print first)."""
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n" * 40)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESMON_")}
    for args in (["jobs"], ["show", "1", "-o", "json"]):
        done = subprocess.run(
            [sys.executable, "-m", "resmon", "query", *args, "--db", str(passwd)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done.stderr
        assert done.stdout == ""
        assert done.stderr.splitlines() == [
            f"Error: cannot read {passwd} as a database (file is not a database): give the "
            "file `resmon serve --db` uses, or a postgresql:// URL of a running PostgreSQL "
            "that accepts this user"
        ]


@pytest.mark.slow
def test_as_a_user_runs_it(server):
    """The installed command in a subprocess: a table on stdout, an error on stderr,
    exit codes, and never a traceback."""
    env = {
        **os.environ,
        "RESMON_SERVER": server.url,
        "RESMON_READ_TOKEN": server.read_token,
        "COLUMNS": "100",
    }
    cmd = [sys.executable, "-m", "resmon", "query"]
    done = subprocess.run(
        [*cmd, "runs", *BUILD], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Runs of acme/widgets · ci.yml · build" in done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) <= 100
    done = subprocess.run(
        [*cmd, "jobs"],
        env={**env, "RESMON_SERVER": f"http://127.0.0.1:{free_port()}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot reach a resmon server" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_server_and_database(runner, postgres_url):  # noqa: F811
    """The same questions against `resmon serve --db postgresql://...` and `--db` on it."""
    from query_data import now_utc

    with ServerProcess(postgres_url) as srv:
        start = now_utc() - timedelta(days=2)
        for i in range(3):
            summary = run_summary(start=start + timedelta(hours=i), builder_cores=0.6 * (i + 1))
            assert srv.push(push_body(f"5{i}", summary)).status_code == 201
        via_server = ({"RESMON_SERVER": srv.url, "RESMON_READ_TOKEN": srv.read_token}, [])
        via_db = ({}, ["--db", postgres_url])
        for args in (
            ["jobs"],
            ["runs", *BUILD],
            ["trend", *BUILD, "--container", "builder", "--by", "day"],
            ["top", "--metric", "memory"],
        ):
            a = json.loads(ok(run(runner, via_server, *args, "-o", "json")))
            b = json.loads(ok(run(runner, via_db, *args, "-o", "json")))
            for body in (a, b):
                body.pop("since", None)  # "now" minus the period: differs by milliseconds
            assert a == b, args
        trend = json.loads(
            ok(
                run(
                    runner,
                    via_db,
                    "trend",
                    *BUILD,
                    "--container",
                    "builder",
                    "--by",
                    "day",
                    "-o",
                    "json",
                )
            )
        )
        assert sum(p["runs"] for p in trend["points"]) == 3
        assert max(p["cpu_cores_peak"] for p in trend["points"]) == pytest.approx(1.8)
        text = ok(run(runner, via_db, "show", "3"))
        assert "1.80 90%" in line_with(text, "builder")


@pytest.mark.slow
def test_two_wrapped_steps_of_one_job_are_two_rows(tmp_path):
    """`resmon collect --name compile -- ...` then `--name unit-tests -- ...` in one job
    run, pushed to a real `resmon serve`: `resmon query runs` shows two rows that differ
    by their step, in the table (Step column) and in JSON and CSV."""
    from resmon.tokens import push_token

    with ServerProcess(tmp_path / "steps.db") as srv:
        env = {
            **os.environ,
            "GITHUB_REPOSITORY_OWNER": ORG,
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_WORKFLOW": WORKFLOW,
            "GITHUB_JOB": "steps",
            "GITHUB_RUN_ID": "4711",
            "COLLECTOR_PUSH_TOKEN": push_token(srv.hmac_key, ORG, REPO, WORKFLOW, "steps"),
            "RESMON_SPOOL_DIR": str(tmp_path / "spool"),
        }
        for step, command in (
            ("compile", ["sh", "-c", "sleep 0.3"]),
            ("unit-tests", ["sleep", "0.3"]),
        ):
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "resmon",
                    "collect",
                    "--interval=0.1s",
                    f"--name={step}",
                    f"--push-endpoint={srv.url}/api/v1/metrics",
                    "--",
                    *command,
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
        query_env = {
            **env,
            "RESMON_SERVER": srv.url,
            "RESMON_READ_TOKEN": srv.read_token,
            "COLUMNS": "100",
        }
        job = [ORG, REPO, WORKFLOW, "steps"]
        cmd = [sys.executable, "-m", "resmon", "query", "runs", *job]
        table = subprocess.run(cmd, env=query_env, capture_output=True, text=True, timeout=60)
        assert table.returncode == 0, table.stderr
        rows = [line for line in table.stdout.splitlines() if " 4711 " in line]
        assert len(rows) == 2, table.stdout
        assert "unit-tests" in rows[0] and "compile" in rows[1], table.stdout
        assert "Step" in table.stdout
        body = json.loads(
            subprocess.run(
                [*cmd, "-o", "json"], env=query_env, capture_output=True, text=True, timeout=60
            ).stdout
        )
        assert [(r["run_id"], r["command_container"], r["command_name"]) for r in body["runs"]] == [
            ("4711", "unit-tests", "sleep"),
            ("4711", "compile", "sh"),
        ]
        csv_rows = list(
            csv.DictReader(
                io.StringIO(
                    subprocess.run(
                        [*cmd, "-o", "csv"],
                        env=query_env,
                        capture_output=True,
                        text=True,
                        timeout=60,
                    ).stdout
                )
            )
        )
        assert [r["command_container"] for r in csv_rows] == ["unit-tests", "compile"]


@pytest.mark.parametrize(
    "args",
    [
        ["runs", *BUILD, "--since", "1d", "--until", "2d"],
        ["trend", *BUILD, "--since", "2026-11-02", "--until", "2026-11-01"],
        ["trend", *BUILD, "--by", "day", "--until", "7d", "--since", "7d"],
    ],
)
def test_a_window_that_ends_before_it_starts_is_a_usage_error(runner, source, args):
    result = run(runner, source, *args)
    assert result.exit_code == 2, result.output
    assert "Usage: " in result.output
    assert "--since must be earlier than --until" in result.output
    assert "Error: --since " in result.output


@pytest.mark.parametrize("period", ["0d", "0s", "0.0000001s"])
def test_an_empty_period_is_a_usage_error(runner, source, period):
    result = run(runner, source, "top", "--period", period)
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--period'" in result.output
    assert "empty period: use one above 0" in result.output


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("jobs/acme/acme%2Fwidgets/ci.yml/build/runs?since=1d&until=2d", "since 1d ("),
        ("jobs/acme/acme%2Fwidgets/ci.yml/build/trend?since=2d&until=2d", "same time as until"),
        ("top?period=0d", "period: '0d' is an empty period"),
    ],
)
def test_the_server_refuses_them_too(server, query, words):
    import requests

    response = requests.get(f"{server.url}/api/v1/{query}", headers=server.read_headers, timeout=10)
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/json")
    assert words in response.json()["error"]
