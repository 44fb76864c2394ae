"""Steps and the run's context, end to end: `resmon collect --step NAME -- CMD` three
times in one job against a real `resmon serve` (SQLite file), the steps merged into
one run; a retried step push stored once; a Go-style push beside them unchanged; the
context columns filled from the CI environment, and read back by branch; a sidecar's
`--mark` segments."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time

import orjson
import pytest
import requests
from server_proc import ServerProcess, sample_payload

from resmon.tokens import push_token

pytestmark = pytest.mark.slow

RESMON = [sys.executable, "-m", "resmon"]
SCOPE = ("acme", "acme/widgets", "ci.yml", "build")
CI_ENV = {
    "GITHUB_REPOSITORY_OWNER": "acme",
    "GITHUB_REPOSITORY": "acme/widgets",
    "GITHUB_WORKFLOW": "ci.yml",
    "GITHUB_JOB": "build",
    "GITHUB_RUN_ID": "901",
    "GITHUB_RUN_ATTEMPT": "2",
    "GITHUB_REF": "refs/heads/feature/steps",
    "GITHUB_REF_NAME": "feature/steps",
    "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
    "GITHUB_EVENT_NAME": "push",
    "RUNNER_NAME": "runner-7",
    "RUNNER_LABELS": "linux, x64",
    "RESMON_POD_NAME": "build-pod-abc",
    "RESMON_POD_NAMESPACE": "ci",
    "RESMON_NODE_NAME": "node-3",
}
# A CPU-bound workload of about a second, different per step.
WORK = "for i in $(seq {n}); do awk 'BEGIN{{for(i=0;i<1500000;i++)s+=i}}'; done"
# Variables of the machine running the tests that would change the context.
LEAKY = ("CI_", "POD_", "NODE_", "MY_POD", "MY_NODE", "KUBERNETES_", "RUNNER_")


def _env(server: ServerProcess, **extra: str) -> dict[str, str]:
    token = push_token(server.hmac_key, *SCOPE)
    base = {k: v for k, v in os.environ.items() if not k.startswith(LEAKY)}
    return {**base, **CI_ENV, "COLLECTOR_PUSH_TOKEN": token, **extra}


def _step(server, tmp_path, name: str, n: int) -> dict:
    summary_file = tmp_path / f"{name}.json"
    proc = subprocess.run(
        [
            *RESMON,
            "collect",
            "--interval=0.2s",
            f"--push-endpoint={server.url}/api/v1/metrics",
            f"--spool-dir={tmp_path / 'spool'}",
            f"--summary-file={summary_file}",
            "--push-timeout=10s",
            "--step",
            name,
            "--",
            "sh",
            "-c",
            WORK.format(n=n),
        ],
        env=_env(server),
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return orjson.loads(summary_file.read_bytes())


def _get(server, path: str, **params) -> dict:
    r = requests.get(server.url + path, headers=server.read_headers, params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_three_steps_are_one_run_whose_cpu_seconds_add_up(tmp_path):
    with ServerProcess(tmp_path / "metrics.db") as server:
        summaries = [
            _step(server, tmp_path, name, n)
            for name, n in (("build", 6), ("test", 3), ("package", 2))
        ]
        assert [s["step"] for s in summaries] == [
            {"name": "build"},
            {"name": "test"},
            {"name": "package"},
        ]
        jobs = "/api/v1/jobs/acme/acme%2Fwidgets/ci.yml/build"
        runs = _get(server, jobs + "/runs")["runs"]
        assert len(runs) == 1, runs
        run = _get(server, f"/api/v1/runs/{runs[0]['id']}")
        assert [s["name"] for s in run["steps"]] == ["build", "test", "package"]
        step_cpu = [s["cpu_seconds"] for s in run["steps"]]
        assert all(c > 0.05 for c in step_cpu), step_cpu
        # Each step's figure is its own summary's job CPU-seconds, as pushed.
        assert step_cpu == pytest.approx([s["job"]["cpu_seconds"] for s in summaries])
        # The run's CPU-seconds are the steps' sum (within 2 %), its memory peak their max.
        assert run["job_cpu_seconds"] == pytest.approx(sum(step_cpu), rel=0.02)
        assert run["cpu_seconds"] == pytest.approx(
            sum(s["cpu_seconds"] for s in summaries), rel=0.02
        )
        assert run["job_memory_bytes_peak"] == max(s["memory_bytes_peak"] for s in run["steps"])
        # start = the first step's start, end = the last step's end.
        payload = run["payload"]
        assert payload["start_time"] == summaries[0]["start_time"]
        assert payload["end_time"] == summaries[-1]["end_time"]
        assert run["sample_count"] == sum(s["sample_count"] for s in summaries)
        assert run["run_id"] == "901" and run["run_attempt"] == "2"
        # One container per step, named after it (beside the rest of the machine's).
        assert {"build", "test", "package"} <= {c["name"] for c in run["containers"]}
        assert payload["job"]["containers"] == ["build", "package", "test"]

        # The context, from the CI environment, in queryable columns.
        assert run["branch"] == "feature/steps"
        assert run["git_ref"] == "refs/heads/feature/steps"
        assert run["commit_sha"] == CI_ENV["GITHUB_SHA"]
        assert run["event_name"] == "push"
        assert run["runner_name"] == "runner-7"
        assert run["runner_labels"] == "linux,x64"
        assert (run["pod_name"], run["pod_namespace"], run["node_name"]) == (
            "build-pod-abc",
            "ci",
            "node-3",
        )

        # A retried step push is stored once: the same body with its key, or another key.
        body = {
            "execution": {
                "organization": "acme",
                "repository": "acme/widgets",
                "workflow": "ci.yml",
                "job": "build",
                "run_id": "901",
                "run_attempt": "2",
            },
            "run_summary": summaries[1],
        }
        for key in ("retry-1", "retry-1", "retry-2"):
            r = server.push(body, headers={"Idempotency-Key": key})
            assert r.status_code in (200, 201), r.text
        assert r.status_code == 200 and r.json()["status"] == "duplicate"
        assert r.json()["id"] == run["id"]
        # Another summary for the same step (same name and start) is a conflict.
        changed = {**body, "run_summary": {**summaries[1], "cpu_seconds": 999.0}}
        r = server.push(changed, headers={"Idempotency-Key": "retry-3"})
        assert r.status_code == 409, r.text
        again = _get(server, f"/api/v1/runs/{run['id']}")
        assert len(again["steps"]) == 3
        assert again["job_cpu_seconds"] == run["job_cpu_seconds"]

        # A Go-style single push of another run is stored as always, without steps.
        go = sample_payload("902", organization="acme", repository="acme/widgets")
        r = server.push(go)
        assert r.status_code == 201, r.text
        go_run = _get(server, f"/api/v1/runs/{r.json()['id']}")
        assert go_run["steps"] == [] and go_run["branch"] is None
        assert go_run["duration_seconds"] == 600.0

        # Runs and trends of one branch.
        assert [
            r["run_id"] for r in _get(server, jobs + "/runs", branch="feature/steps")["runs"]
        ] == ["901"]
        assert _get(server, jobs + "/runs", branch="main")["runs"] == []
        assert len(_get(server, jobs + "/runs")["runs"]) == 2
        trend = _get(server, jobs + "/trend", branch="feature/steps")
        assert [p["run_id"] for p in trend["points"]] == ["901"]
        assert trend["points"][0]["branch"] == "feature/steps"

        # The same through resmon query.
        env = {**os.environ, "RESMON_READ_TOKEN": server.read_token}
        query = [*RESMON, "query"]
        at = ["--server", server.url]
        out = subprocess.run(
            [*query, "runs", *SCOPE, *at, "--branch", "feature/steps", "-o", "json"],
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr.decode()
        assert [r["run_id"] for r in orjson.loads(out.stdout)["runs"]] == ["901"]
        out = subprocess.run(
            [*query, "trend", *SCOPE, *at, "--branch", "main", "-o", "json"],
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr.decode()
        assert orjson.loads(out.stdout)["points"] == []
        out = subprocess.run(
            [*query, "show", str(run["id"]), *at], env=env, capture_output=True, timeout=60
        )
        assert out.returncode == 0, out.stderr.decode()
        text = out.stdout.decode()
        for word in ("build", "test", "package", "feature/steps", "0123456", "runner-7", "node-3"):
            assert word in text, text


def test_sidecar_marks_make_segments_of_its_run(tmp_path):
    with ServerProcess(tmp_path / "metrics.db") as server:
        _sidecar_with_marks(tmp_path, server)


def _sidecar_with_marks(tmp_path, server):
    marks = tmp_path / "shared" / "marks"
    summary_file = tmp_path / "summary.json"
    env = _env(server, GITHUB_RUN_ID="950", RESMON_MARKS_FILE=str(marks))
    sidecar = subprocess.Popen(
        [
            *RESMON,
            "collect",
            "--interval=0.2s",
            "--no-samples",
            "--live-interval=0.5s",
            "--push-timeout=10s",
            f"--push-endpoint={server.url}/api/v1/metrics",
            f"--summary-file={summary_file}",
            f"--spool-dir={tmp_path / 'spool'}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    work: list[float] = []  # each segment's workload's own CPU-seconds
    try:
        time.sleep(1.0)
        for name, n in (("compile", 4), ("unit-tests", 2)):
            mark = subprocess.run(
                [*RESMON, "collect", "--mark", name], env=env, capture_output=True, timeout=60
            )
            assert mark.returncode == 0, mark.stderr.decode()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(["sh", "-c", WORK.format(n=n)], check=True, timeout=60)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            work.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        time.sleep(0.5)
    finally:
        sidecar.send_signal(signal.SIGTERM)
        _, err = sidecar.communicate(timeout=60)
    assert sidecar.returncode == 0, err.decode()
    summary = orjson.loads(summary_file.read_bytes())
    segments = summary["steps"]
    assert [s["name"] for s in segments] == ["compile", "unit-tests"]
    assert segments[0]["end_time"] == segments[1]["start_time"]
    assert segments[1]["end_time"] == summary["end_time"]
    for s in segments:
        assert s["source"] == "mark"
        assert s["duration_seconds"] > 0.1
        assert s["sample_count"] >= 1
        assert s["memory_bytes_peak"] > 0
    # Each segment holds its workload's CPU time (the sidecar sees every process on the
    # machine, so other load may add to it; the boundaries are interpolated between samples).
    for segment, own in zip(segments, work, strict=True):
        assert segment["cpu_seconds"] >= 0.8 * own, (segments, work)
    # The segments' CPU-seconds are the job's after the first mark: at most its total.
    assert sum(s["cpu_seconds"] for s in segments) <= summary["job"]["cpu_seconds"] + 0.01
    # The timeline's points say which segment they fall in.
    named = [p.get("step") for p in summary["timeline"]]
    assert named[0] is None and named[-1] == "unit-tests"
    assert named.index("compile") < named.index("unit-tests")
    # And the Markdown report shows them (rendered from the summary as the collector does).
    from resmon.collect.report import render_markdown

    text = render_markdown(summary)
    assert "compile" in text and "unit-tests" in text
    # Streamed live, finished by the final push: the run's steps are the segments.
    [row] = _get(server, "/api/v1/jobs/acme/acme%2Fwidgets/ci.yml/build/runs")["runs"]
    run = _get(server, f"/api/v1/runs/{row['id']}")
    assert run["state"] == "finished" and run["run_id"] == "950"
    assert [(s["name"], s["cpu_seconds"]) for s in run["steps"]] == [
        (s["name"], s["cpu_seconds"]) for s in segments
    ]
    assert run["branch"] == "feature/steps"
