"""Live streaming as a user runs it: real `resmon collect` processes on the real /proc,
real signals, the local receiver (tests/collect_receiver.py) serving
POST /api/v1/metrics/live beside the push endpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import orjson
import pytest
from collect_receiver import Receiver, closed_port_url

pytestmark = pytest.mark.slow

RESMON = [sys.executable, "-m", "resmon", "collect"]
CI_ENV = {
    "GITHUB_REPOSITORY_OWNER": "acme",
    "GITHUB_REPOSITORY": "acme/widgets",
    "GITHUB_WORKFLOW": "ci.yml",
    "GITHUB_JOB": "build",
    "GITHUB_RUN_ID": "1234",
    "GITHUB_RUN_ATTEMPT": "2",
    "RUNNER_NAME": "runner-7",
}
SAMPLE_KEYS = {"t", "elapsed", "host", "job", "containers"}
CONTAINER_KEYS = {
    "cpu_cores",
    "memory_bytes",
    "cpu_seconds",
    "memory_kind",
    "limit_cpu_cores",
    "limit_memory_bytes",
}
# A measured container's disk I/O and network totals, and the job's sums.
IO_KEYS = {"io_read_bytes", "io_write_bytes", "net_rx_bytes", "net_tx_bytes"}


def sidecar(url: str, tmp_path, *args: str, run_for: float = 2.0, **popen):
    """A sidecar run for ``run_for`` seconds, then SIGTERM; (proc, stdout, stderr, the
    exit path's seconds from SIGTERM to exit)."""
    proc = subprocess.Popen(
        [
            *RESMON,
            "-interval=0.2s",
            f"--push-endpoint={url}",
            "--push-token=t0ken",
            f"--spool-dir={tmp_path / 'spool'}",
            "--no-samples",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **CI_ENV},
        **popen,
    )
    time.sleep(run_for)
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    exit_path = time.monotonic() - start
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err
    return proc, out, err.decode(), exit_path


def final_summary(receiver: Receiver) -> dict:
    [push] = receiver.requests
    return push.json()["run_summary"]


def live_lines(stderr: str) -> list[str]:
    return [x for x in stderr.splitlines() if '"logger":"resmon.collect.live"' in x]


def test_batches_arrive_in_order_with_the_contract_fields(tmp_path, receiver):
    sidecar(receiver.url, tmp_path, "-live-interval=0.5s", run_for=2.5)
    batches = [r.json() for r in receiver.live_requests]
    assert len(batches) >= 3
    seqs = [b["batch"]["seq"] for b in batches]
    assert seqs == list(range(len(batches)))
    run = batches[0]["run"]
    run_key = run["run_key"]
    assert uuid.UUID(run_key).version == 4
    for request, body in zip(receiver.live_requests, batches, strict=True):
        assert request.headers["Idempotency-Key"] == f"{run_key}:{body['batch']['seq']}"
        assert request.headers["Authorization"] == "Bearer t0ken"
        assert request.headers["Content-Type"] == "application/json"
        assert len(request.body) <= 256 * 1024
        assert body["run"] == run
        assert body["execution"] == {
            "organization": "acme",
            "repository": "acme/widgets",
            "workflow": "ci.yml",
            "job": "build",
            "run_id": "1234",
            "run_attempt": "2",
        }
    assert run["host"] == "runner-7"
    assert run["live_interval_seconds"] == 0.5 and run["interval_seconds"] == 0.2
    assert run["mode"] == "sidecar" and run["command_container"] is None
    samples = [s for b in batches for s in b["batch"]["samples"]]
    times = [s["t"] for s in samples]
    assert times == sorted(set(times))  # each sample once, in order
    assert samples[0]["elapsed"] is None and samples[0]["host"]["cpu_percent"] is None
    for s in samples:
        assert set(s) == SAMPLE_KEYS
        assert set(s["host"]) == {"cpu_percent", "mem_used_bytes", "mem_total_bytes"}
        assert set(s["job"]) - IO_KEYS == {"cpu_cores", "memory_bytes", "cpu_seconds"}
        assert s["containers"]
        for c in s["containers"].values():
            assert set(c) - IO_KEYS == CONTAINER_KEYS
            assert c["memory_kind"] in ("pss", "rss", "cgroup")
    job_seconds = [s["job"]["cpu_seconds"] for s in samples]
    assert job_seconds == sorted(job_seconds)
    # The final push names the same run, and the run starts where the summary does.
    summary = final_summary(receiver)
    assert summary["collector"]["run_key"] == run_key
    assert summary["collector"]["host"] == "runner-7"
    assert run["start_time"] == summary["start_time"] == times[0]


def test_the_wrappers_job_is_the_commands_container(tmp_path, receiver):
    busy = "import time\nend = time.time() + 1.2\nwhile time.time() < end: pass\n"
    proc = subprocess.run(
        [
            *RESMON,
            "--interval=0.2s",
            "--live-interval=0.3s",
            f"--push-endpoint={receiver.url}",
            f"--spool-dir={tmp_path / 'spool'}",
            "--",
            sys.executable,
            "-c",
            busy,
        ],
        capture_output=True,
        timeout=60,
        env={**os.environ, **CI_ENV},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    batches = [r.json() for r in receiver.live_requests]
    assert batches and [b["batch"]["seq"] for b in batches] == list(range(len(batches)))
    assert batches[0]["run"]["mode"] == "wrapper"
    assert batches[0]["run"]["command_container"] == "command"
    samples = [s for b in batches for s in b["batch"]["samples"]]
    for s in samples:
        command = s["containers"]["command"]
        # One container, so the job's I/O and network totals are its own too.
        assert s["job"] == {k: command[k] for k in ("cpu_cores", "memory_bytes", "cpu_seconds")} | {
            k: command[k] for k in IO_KEYS if k in command
        }
    assert max(s["job"]["cpu_cores"] or 0 for s in samples) > 0.5  # the busy loop
    assert final_summary(receiver)["collector"]["run_key"] == batches[0]["run"]["run_key"]


def test_the_first_batch_goes_early(tmp_path, receiver):
    """With a 30 s live interval the run still shows at once: the first batch goes at
    the first sample with a CPU rate (0.2 s in)."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [*RESMON, "--interval=0.2s", "--live-interval=30s", f"--push-endpoint={receiver.url}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **CI_ENV, "RESMON_SPOOL_DIR": str(tmp_path / "spool")},
    )
    try:
        while not receiver.live_requests and time.monotonic() - start < 10:
            time.sleep(0.02)
        first_after = time.monotonic() - start
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert receiver.live_requests, "no live batch within 10 s"
    # Interpreter start (about 0.3 s) and two samples; loose for busy shared cores.
    assert first_after < 3.0, first_after
    assert receiver.live_requests[0].json()["batch"]["seq"] == 0


def test_a_batch_retried_after_a_500_keeps_its_seq_and_key(tmp_path, receiver):
    receiver.live_script = [(500, b'{"error": "database is locked"}', {})]
    sidecar(receiver.url, tmp_path, "--live-interval=0.5s", run_for=2.0)
    failed, retried, *rest = receiver.live_requests
    assert failed.headers["Idempotency-Key"] == retried.headers["Idempotency-Key"]
    assert failed.body == retried.body  # the same batch, not a new one
    assert retried.json()["batch"]["seq"] == 0
    seqs = [r.json()["batch"]["seq"] for r in (retried, *rest)]
    assert seqs == list(range(len(seqs)))
    assert len(receiver.live_stored) == len(seqs)  # stored once each


@pytest.mark.parametrize(("status", "level"), [(404, "INFO"), (405, "INFO"), (401, "ERROR")])
def test_a_receiver_without_the_endpoint_gets_one_attempt_and_the_push_still_arrives(
    tmp_path, receiver, status, level
):
    receiver.live_status = status
    _, _, err, _ = sidecar(receiver.url, tmp_path, "--live-interval=0.3s", run_for=1.5)
    assert len(receiver.live_requests) == 1
    [line] = live_lines(err)
    record = orjson.loads(line)
    assert record["level"] == level and f"HTTP {status}" in record["msg"]
    if status == 401:
        assert "push token" in record["msg"]
    else:
        assert "streaming off for this run" in record["msg"]
    assert final_summary(receiver)["sample_count"] >= 5


def test_no_live_sends_none(tmp_path, receiver):
    sidecar(receiver.url, tmp_path, "-no-live", "--live-interval=0.2s", run_for=1.0)
    assert receiver.live_requests == []
    assert "run_key" in final_summary(receiver)["collector"]


def test_no_live_from_the_environment(tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("RESMON_NO_LIVE", "1")
    sidecar(receiver.url, tmp_path, "--live-interval=0.2s", run_for=1.0)
    assert receiver.live_requests == []
    assert len(receiver.requests) == 1


def test_a_hanging_live_endpoint_does_not_delay_the_exit_path(tmp_path, receiver, capsys):
    """Every live batch hangs 30 s at the server, the push answers at once: SIGTERM to
    exit takes what it takes without streaming."""
    receiver.live_delay = 30.0
    _, _, _, streaming = sidecar(receiver.url, tmp_path, "--live-interval=0.3s", run_for=1.5)
    assert receiver.live_requests and not receiver.live_stored  # one in flight at SIGTERM
    assert len(receiver.requests) == 1
    _, _, _, without = sidecar(receiver.url, tmp_path / "b", "--no-live", run_for=1.5)
    with capsys.disabled():
        print(f"\nexit path, live batch hanging: {streaming:.3f} s; --no-live: {without:.3f} s")
    assert streaming < max(without + 0.3, 1.0), (streaming, without)


def test_a_dead_server_does_not_delay_the_exit_path(tmp_path, capsys):
    """Connection refused for every batch and the push: the exit path is the push's
    budget (--push-timeout) with or without streaming.  Each mode twice, alternating,
    and the faster of each compared: two shared cores make single timings noisy, and
    the push's retries wait a random share of their backoff (full jitter), so either
    mode spends anywhere up to its 0.5 s budget on them (measured 0.19 to 0.58 s in
    either).  A live sender that held the exit (a batch's retry, a thread joined with
    a timeout) would add more than the budget on top."""
    url = closed_port_url()
    timings: dict[str, list[float]] = {"--live-interval=0.3s": [], "--no-live": []}
    for round_ in range(2):
        for mode, seconds in timings.items():
            spool = tmp_path / f"{mode}{round_}"
            _, _, err, took = sidecar(url, spool, mode, "--push-timeout=0.5s", run_for=2.0)
            assert "run summary not delivered yet" in err
            assert not live_lines(err)  # retries are quiet (debug); the push's error is the line
            seconds.append(round(took, 3))
    with capsys.disabled():
        print(f"\nexit path, dead server, --push-timeout=0.5s: {timings}")
    streaming, without = (min(x) for x in timings.values())
    budget = 0.5  # --push-timeout
    assert streaming < without + budget + 0.2, timings
