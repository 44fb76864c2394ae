"""Live runs end to end: a real `resmon collect --live-interval 1s` streaming to a real
`resmon serve --live-timeout 3s`, the collector and its command SIGKILLed together (no
final push), the server restarted in the middle; the live view and `resmon query live`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

import pytest
import requests
from server_proc import RESMON, ServerProcess

from resmon.store import db as dbmod
from resmon.store import live
from resmon.tokens import push_token

pytestmark = pytest.mark.slow

CI_ENV = {
    "GITHUB_REPOSITORY_OWNER": "acme",
    "GITHUB_REPOSITORY": "acme/widgets",
    "GITHUB_WORKFLOW": "ci.yml",
    "GITHUB_JOB": "build",
    "GITHUB_RUN_ID": "77",
    "RUNNER_NAME": "runner-e2e",
}
BUSY = "while :; do :; done"


def start_collect(server: ServerProcess, tmp_path, command: str = BUSY) -> subprocess.Popen:
    token = push_token(server.hmac_key, "acme", "acme/widgets", "ci.yml", "build")
    env = {**os.environ, **CI_ENV, "COLLECTOR_PUSH_TOKEN": token}
    return subprocess.Popen(
        [
            *RESMON,
            "collect",
            "--interval=0.5s",
            "--live-interval=1s",
            f"--push-endpoint={server.url}/api/v1/metrics",
            f"--spool-dir={tmp_path / 'spool'}",
            "--push-timeout=5s",
            "--",
            "sh",
            "-c",
            command,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # one process group: collector and command die together
    )


def get(server: ServerProcess, path: str) -> Any:
    r = requests.get(server.url + path, headers=server.read_headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(what, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s")


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def carried_cpu_seconds(target: str, run_pk: int) -> float:
    """The job's largest cumulative CPU seconds the stored batches carried."""
    database = dbmod.open_database(target)
    try:
        return max(s["job"]["cpu_seconds"] for s in live.run_samples(run_pk))
    finally:
        database.close()


def check_lost(server: ServerProcess, target: str, run_pk: int) -> dict:
    samples = wait_for(
        lambda: (b := get(server, f"/api/v1/runs/{run_pk}/samples"))["state"] == "lost" and b,
        timeout=15,
    )
    assert samples["partial"] is True
    run = get(server, f"/api/v1/runs/{run_pk}")
    payload = run["payload"]
    assert payload["partial"] is True
    carried = carried_cpu_seconds(target, run_pk)
    assert carried > 1.0
    assert abs(payload["cpu_seconds"] - carried) <= 0.05 * carried
    assert abs(run["job_cpu_seconds"] - carried) <= 0.05 * carried
    assert payload["job"]["cpu_cores"]["peak"] > 0.5  # the busy loop: about one core
    assert get(server, "/api/v1/live")["runs"] == []
    return payload


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_killed_job_becomes_a_lost_run_with_a_partial_summary(backend, tmp_path, request):
    target = (
        str(tmp_path / "metrics.db")
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    with ServerProcess(target, extra_args=("--live-timeout=3s",)) as server:
        started = time.monotonic()
        proc = start_collect(server, tmp_path)
        try:
            runs = wait_for(lambda: get(server, "/api/v1/live")["runs"], timeout=10)
            visible_after = time.monotonic() - started
            (run,) = runs
            assert run["host"] == "runner-e2e" and run["run_id"] == "77"
            # The first batch goes at the first sample with a CPU rate: within one live
            # interval of the collector's start (interpreter start-up included here).
            assert visible_after < 4.0, visible_after
            shown = subprocess.run(
                [*RESMON, "query", "live", "--once", f"--server={server.url}"],
                env={**os.environ, "RESMON_READ_TOKEN": server.read_token, "COLUMNS": "160"},
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert shown.returncode == 0, shown.stderr
            assert "acme/widgets ci.yml build" in shown.stdout and "runner-e2e" in shown.stdout
            time.sleep(3)  # a few batches of CPU
        finally:
            kill_group(proc)
        check_lost(server, target, run["id"])


def test_lost_after_the_server_restarted_in_the_middle(tmp_path):
    target = str(tmp_path / "metrics.db")
    server = ServerProcess(target, extra_args=("--live-timeout=3s",)).start()
    proc = start_collect(server, tmp_path)
    try:
        (run,) = wait_for(lambda: get(server, "/api/v1/live")["runs"], timeout=10)
        time.sleep(1.5)
        server.terminate()
        time.sleep(2)  # the collector keeps its samples and retries
        server = ServerProcess(
            target,
            port=server.port,
            read_token=server.read_token,
            hmac_keys=server.hmac_keys,
            extra_args=("--live-timeout=3s",),
        )
        server.start()
        # The batches held during the restart arrive, and new ones after them (the
        # run may have been found lost meanwhile: a batch makes it running again).
        before = carried_cpu_seconds(target, run["id"])
        wait_for(lambda: carried_cpu_seconds(target, run["id"]) > before + 1.0, timeout=10)
        assert [r["id"] for r in get(server, "/api/v1/live")["runs"]] == [run["id"]]
        kill_group(proc)
        payload = check_lost(server, target, run["id"])
        # No hole where the server was down: the samples cover the run's whole time.
        assert payload["sample_count"] >= 0.8 * payload["duration_seconds"] / 0.5
    finally:
        if proc.poll() is None:
            kill_group(proc)
        server.terminate()
        server.kill()


def test_a_finished_job_is_the_same_run_as_its_live_one(tmp_path):
    target = str(tmp_path / "metrics.db")
    with ServerProcess(target, extra_args=("--live-timeout=3s",)) as server:
        proc = start_collect(
            server, tmp_path, "end=$(($(date +%s)+3)); while [ $(date +%s) -lt $end ]; do :; done"
        )
        (run,) = wait_for(lambda: get(server, "/api/v1/live")["runs"], timeout=10)
        assert proc.wait(30) == 0, proc.stderr.read().decode() if proc.stderr else ""
        stored = get(server, "/api/v1/metrics/repo/acme/widgets/ci.yml/build")
        assert [r["id"] for r in stored] == [run["id"]]
        assert "partial" not in stored[0]["payload"]
        samples = get(server, f"/api/v1/runs/{run['id']}/samples")
        assert samples["state"] == "finished" and samples["buckets"]
        assert get(server, "/api/v1/live")["runs"] == []
