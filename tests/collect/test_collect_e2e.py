"""`resmon collect` as a user runs it: a subprocess on the real /proc, real signals,
a real HTTP receiver on loopback, a real spool directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from collect_receiver import closed_port_url

from resmon.schema import STAT_FIELDS, validate_push, validate_run_summary
from resmon.stats import STAT_KEYS

pytestmark = pytest.mark.slow

RESMON = [sys.executable, "-m", "resmon"]
BUSY_NAME = "resmonbusy"
# Renames itself through /proc/self/comm (what /proc/PID/stat shows), then spins.
BUSY = f"open('/proc/self/comm', 'w').write('{BUSY_NAME}')\nwhile True: pass\n"
WIRE_SUMMARY_KEYS = {
    "start_time",
    "end_time",
    "duration_seconds",
    "sample_count",
    "cpu_total_percent",
    "mem_used_bytes",
    "mem_used_percent",
    "top_cpu_processes",
    "top_mem_processes",
    "containers",
}
CI_ENV = {
    "GITHUB_REPOSITORY_OWNER": "acme",
    "GITHUB_REPOSITORY": "acme/widgets",
    "GITHUB_WORKFLOW": "ci.yml",
    "GITHUB_JOB": "build",
    "GITHUB_RUN_ID": "1234",
    "GITHUB_RUN_ATTEMPT": "2",
}


@pytest.fixture
def busy():
    proc = subprocess.Popen([sys.executable, "-c", BUSY])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open(f"/proc/{proc.pid}/comm") as f:
            if f.read().strip() == BUSY_NAME:
                break
        time.sleep(0.02)
    yield proc
    proc.kill()
    proc.wait()


def _cpu_seconds(pid: int) -> float:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    rest = data[data.rfind(b")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def env_with(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def records(stdout: bytes) -> list[dict]:
    return [orjson.loads(line) for line in stdout.splitlines() if line.strip()]


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> tuple[bytes, bytes, float]:
    """Signal resmon and time how long its exit path takes."""
    start = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=10)
    return out, err, time.monotonic() - start


def wait_for_samples(path_or_proc, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            Path(path_or_proc).exists()
            and Path(path_or_proc).read_bytes().count(b"metrics_collected") >= count
        ):
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} samples within {timeout}s")


def test_sidecar_sigterm_prints_summary_pushes_it_and_exits_in_time(tmp_path, receiver, busy):
    out_file = tmp_path / "records.jsonl"
    summary_file = tmp_path / "summary.json"
    spool = tmp_path / "spool"
    proc = subprocess.Popen(
        [
            *RESMON,
            "collect",
            "--interval=0.5s",
            "--top=3",
            f"--push-endpoint={receiver.url}",
            f"--spool-dir={spool}",
            f"--summary-file={summary_file}",
            f"--output={out_file}",
        ],
        env=env_with(
            CGROUP_PROCESS_MAP=orjson.dumps({BUSY_NAME: "busy"}).decode(),
            CGROUP_LIMITS='{"busy": {"cpu": "2", "memory": "1Gi"}}',
            COLLECTOR_PUSH_TOKEN="push-token-1",
            **CI_ENV,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # The busy process's own CPU time, read after the first sample and just before the
    # last: a window inside the sampled run (the machine is shared: what the busy loop
    # got, not a fixed share of a core, is what resmon must report).
    wait_for_samples(out_file, 1)
    busy_cpu0, busy_t0 = _cpu_seconds(busy.pid), time.monotonic()
    wait_for_samples(out_file, 5)
    busy_cpu = _cpu_seconds(busy.pid) - busy_cpu0
    busy_cores = busy_cpu / (time.monotonic() - busy_t0)
    _, err, exit_seconds = stop(proc)
    assert proc.returncode == 0, err.decode()
    # SIGKILL follows SIGTERM by 2.5 s in CI: last sample, summary, files, spool and push
    # must all be done well inside that.
    assert exit_seconds < 2.0, (exit_seconds, err.decode())

    recs = records(out_file.read_bytes())
    assert {r["msg"] for r in recs[:-1]} == {"metrics_collected"}
    assert all(r["level"] == "INFO" and r["time"].endswith("Z") for r in recs)
    final = recs[-1]
    assert final["msg"] == "run_summary"
    summary = {k: v for k, v in final.items() if k not in ("time", "level", "msg")}
    assert set(summary) >= WIRE_SUMMARY_KEYS
    validate_run_summary(summary)
    for key in STAT_FIELDS:
        assert set(summary[key]) == set(STAT_KEYS)
    assert summary["sample_count"] == len(recs) - 1 >= 6  # the last sample taken on SIGTERM
    assert len(summary["top_cpu_processes"]) == 3

    busy_container = next(c for c in summary["containers"] if c["name"] == "busy")
    peak = busy_container["cpu_cores"]["peak"]
    print(f"busy: kernel gave {busy_cores:.2f} cores on average, resmon peak {peak:.2f}")
    # One process spinning: the container's busiest interval holds at least the busy
    # loop's average share over the run (half a tick's slack at 0.5 s) ...
    assert busy_cores > 0.1
    assert peak >= busy_cores - 0.05, busy_container
    # ... and no interval shows more than the whole machine was busy (double counting;
    # slack: a tick per busy process per interval, the readings a few ms apart).
    machine_cores = summary["cpu_total_percent"]["peak"] / 100 * os.cpu_count()
    assert peak <= machine_cores + 0.15, (busy_container, summary["cpu_total_percent"])
    assert busy_container["limit_cpu_cores"] == 2.0
    assert busy_container["limit_memory_bytes"] == 1024**3
    assert busy_container["cpu_seconds"] >= busy_cpu - 0.02
    assert summary["collector"]["interval_seconds"] == 0.5
    assert summary["collector"]["sources"]["containers"]["busy"]["cpu"]
    top_pids = {p["pid"] for p in summary["top_cpu_processes"] + summary["top_mem_processes"]}
    assert proc.pid not in top_pids  # resmon never counts itself

    assert orjson.loads(summary_file.read_bytes()) == summary

    # The receiver got exactly that summary, with the token and the CI scope.
    [req] = receiver.requests
    body = req.json()
    assert body["run_summary"] == summary
    assert body["execution"] == {
        "organization": "acme",
        "repository": "acme/widgets",
        "workflow": "ci.yml",
        "job": "build",
        "run_id": "1234",
        "run_attempt": "2",
    }
    assert req.headers["Authorization"] == "Bearer push-token-1"
    assert req.headers["Idempotency-Key"] == body["idempotency_key"]
    validate_push(body)
    assert list(spool.glob("*.json")) == []  # delivered, so removed


def test_server_down_keeps_the_payload_and_a_later_start_delivers_it(tmp_path, receiver):
    spool = tmp_path / "spool"
    common = ["collect", "--interval=0.2s", f"--spool-dir={spool}", "--push-timeout=1s"]
    env = env_with(COLLECTOR_PUSH_TOKEN="tok", **CI_ENV)
    first = subprocess.Popen(
        [
            *RESMON,
            *common,
            f"--push-endpoint={closed_port_url()}",
            f"--output={tmp_path / 'a.jsonl'}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for_samples(tmp_path / "a.jsonl", 2)
    _, err, exit_seconds = stop(first, signal.SIGINT)
    assert first.returncode == 0, err.decode()
    assert exit_seconds < 2.0  # the push budget (1 s) bounds the wait for a dead server
    err_text = err.decode()
    assert "connection error" in err_text and "spooled" in err_text
    [left] = list(spool.glob("*.json"))
    left_body = orjson.loads(left.read_bytes())
    assert left_body["execution"]["run_id"] == "1234"

    # The next run (any job on this host) delivers it, with its original key and token.
    second = subprocess.Popen(
        [*RESMON, *common, f"--push-endpoint={receiver.url}", f"--output={tmp_path / 'b.jsonl'}"],
        env=env_with(COLLECTOR_PUSH_TOKEN="other-jobs-token", **CI_ENV),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for_samples(tmp_path / "b.jsonl", 2)
    deadline = time.monotonic() + 5
    while not receiver.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    # Delivered at start, before the second run ends.
    assert (
        receiver.requests
        and receiver.requests[0].json()["idempotency_key"] == left_body["idempotency_key"]
    )
    assert receiver.requests[0].headers["Authorization"] == "Bearer tok"
    _, err, _ = stop(second)
    assert second.returncode == 0, err.decode()
    keys = [r.headers["Idempotency-Key"] for r in receiver.requests]
    assert len(receiver.stored) == 2 and len(set(keys)) == 2
    assert list(spool.glob("*.json")) == []


def test_markdown_report_goes_to_github_step_summary(tmp_path):
    step_summary = tmp_path / "step_summary.md"
    step_summary.write_text("## Build\n")
    proc = subprocess.Popen(
        [*RESMON, "collect", "--interval=0.2s", f"--output={tmp_path / 'r.jsonl'}"],
        env=env_with(GITHUB_STEP_SUMMARY=str(step_summary), **CI_ENV),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for_samples(tmp_path / "r.jsonl", 3)
    _, err, _ = stop(proc)
    assert proc.returncode == 0, err.decode()
    text = step_summary.read_text()
    assert text.startswith("## Build\n### Resource usage\n")
    assert "**acme/widgets/ci.yml/build** · run 1234 attempt 2" in text
    assert "```mermaid\nxychart-beta" in text


def test_text_format_prints_readable_lines(tmp_path):
    proc = subprocess.Popen(
        [
            *RESMON,
            "collect",
            "--interval=0.2s",
            "--log-format=text",
            f"--output={tmp_path / 'r.txt'}",
        ],
        env=env_with(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for_samples(tmp_path / "r.txt", 2)
    stop(proc)
    lines = (tmp_path / "r.txt").read_text().splitlines()
    assert all(line.startswith("time=") and " level=INFO msg=" in line for line in lines)
    assert "msg=run_summary" in lines[-1] and "cpu_total_percent.p95=" in lines[-1]
    assert "timeline_points=" in lines[-1]


def test_a_signal_ends_a_long_sleep_at_once(tmp_path):
    out = tmp_path / "r.jsonl"
    proc = subprocess.Popen(
        [*RESMON, "collect", "--interval=60s", f"--output={out}"],
        env=env_with(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for_samples(out, 1)
    time.sleep(0.3)  # well into the 60 s sleep
    _, err, exit_seconds = stop(proc)
    assert proc.returncode == 0, err.decode()
    assert exit_seconds < 1.0  # woken by the signal, not by the next tick
    summary = records(out.read_bytes())[-1]
    assert summary["msg"] == "run_summary" and summary["sample_count"] == 2
