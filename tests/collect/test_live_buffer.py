"""Live streaming's parts, in-process: the bounded buffer, the compact samples, batch
splitting and seqs against the local receiver, and what one append costs."""

from __future__ import annotations

import logging
import time

import pytest
from collect_receiver import closed_port_url

from resmon.collect import live
from resmon.collect.live import LiveStream, live_url, runner_host
from resmon.collect.live_samples import LiveBuffer, SampleCompactor
from resmon.collect.push import PushClient
from resmon.collect.samples import ContainerSample, Sample


def container(name: str, cores=0.5, seconds=1.0, rss=100, pss=None, cgroup=None, limit=None):
    return ContainerSample(
        name=name,
        cpu_cores=cores,
        memory_bytes=cgroup if cgroup is not None else rss,
        process_count=1,
        cpu_seconds=seconds,
        limit_cpu_cores=limit,
        memory_rss_bytes=rss,
        memory_pss_bytes=pss,
        memory_cgroup_bytes=cgroup,
        cpu_seconds_procfs=seconds,
    )


def sample(t: float, *containers: ContainerSample, command: str | None = None, cpu=12.5):
    return Sample(
        timestamp=1_790_000_000.0 + t,
        elapsed=None if t == 0 else 2.0,
        cpu_total_percent=None if t == 0 else cpu,
        mem_total_bytes=1000,
        mem_used_bytes=400,
        mem_used_percent=40.0,
        cpu_seconds_total=t,
        top_cpu=[],
        top_mem=[],
        processes=[],
        containers={c.name: c for c in containers},
        command_container=command,
    )


def stream(url: str, cap: int = 100) -> LiveStream:
    return LiveStream(
        push_endpoint=url,
        push_token="t",
        execution={"organization": "o", "repository": "o/r", "workflow": "w", "job": "j"},
        run={"run_key": "k", "host": "h", "live_interval_seconds": 1.0},
        live_interval=1.0,
        cap=cap,
    )


# --- the buffer ----------------------------------------------------------------------


def test_the_buffer_keeps_the_newest_cap_samples_and_counts_the_drops():
    buffer = LiveBuffer(cap=100)
    dropped = [buffer.append({"i": i}) for i in range(10_000)]
    assert len(buffer) == 100
    assert buffer.dropped == 9_900 == sum(dropped)
    assert [x["i"] for x in buffer.take(1_000)] == list(range(9_900, 10_000))
    assert len(buffer) == 0


def test_a_dead_server_never_grows_the_stream_past_its_cap(caplog, monkeypatch):
    """10,000 samples against a closed port: the buffer stays at its cap, the sender
    holds at most one batch, one warning says samples are dropped."""
    monkeypatch.setattr(live, "ATTEMPT_BUDGET", 0.1)
    s = stream(closed_port_url(), cap=200)
    client = PushClient(s.url, "t", lite=True)
    caplog.set_level(logging.INFO, logger="resmon.collect.live")
    try:
        s._thread = object()  # type: ignore[assignment]  # no thread: the test drives it
        for i in range(10_000):
            s.append(sample(float(i), container("c")))
            if i % 1_000 == 999:
                assert not s._send_waiting(client)  # refused connection: retry later
                assert len(s.buffer) <= 200
                assert sum(len(p) for p in s._pending) <= live.MAX_BATCH_SAMPLES
        held = sum(len(p) for p in s._pending)
        assert held and s.buffer.dropped == 10_000 - 200 - held
        assert s.seq == 0  # the same batch waits with its seq
    finally:
        client.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "dropping the oldest" in warnings[0].getMessage()


def test_one_append_costs_microseconds(capsys):
    """The sampling thread's share: a compact sample made and appended (the figure
    goes to the report; the bound is loose for two busy shared cores)."""
    s = stream(closed_port_url(), cap=2_000)
    s._thread = object()  # type: ignore[assignment]
    samples = [sample(float(i), *(container(f"c{j}") for j in range(5))) for i in range(1, 5_001)]
    start = time.perf_counter()
    for x in samples:
        s.append(x)
    per_append = (time.perf_counter() - start) / len(samples)
    with capsys.disabled():
        print(f"\nlive append, 5 containers: {per_append * 1e6:.1f} us per sample")
    assert per_append < 500e-6


# --- compact samples --------------------------------------------------------------------


def test_memory_kind_is_the_most_telling_and_only_goes_down():
    compactor = SampleCompactor()
    first = compactor.compact(sample(0, container("c", cgroup=300, pss=200, rss=250)))
    assert first["containers"]["c"]["memory_kind"] == "cgroup"
    assert first["containers"]["c"]["memory_bytes"] == 300
    # The cgroup figure is missing once: PSS from then on, even when it comes back.
    second = compactor.compact(sample(2, container("c", pss=210, rss=260)))
    third = compactor.compact(sample(4, container("c", cgroup=320, pss=220, rss=270)))
    assert [x["containers"]["c"]["memory_kind"] for x in (second, third)] == ["pss", "pss"]
    assert third["containers"]["c"]["memory_bytes"] == 220
    # No reading at all (only zombies): no value, the kind unchanged.
    fourth = compactor.compact(sample(6, container("c", rss=None)))
    assert fourth["containers"]["c"]["memory_bytes"] is None
    assert fourth["containers"]["c"]["memory_kind"] == "pss"


def test_the_job_is_the_commands_container_in_wrapper_mode_and_all_in_sidecar_mode():
    a = container("command", cores=1.5, seconds=3.0, rss=100)
    b = container("other", cores=0.25, seconds=9.0, rss=50, limit=2.0)
    wrapper = SampleCompactor().compact(sample(2, a, b, command="command"))
    assert wrapper["job"] == {"cpu_cores": 1.5, "memory_bytes": 100, "cpu_seconds": 3.0}
    sidecar = SampleCompactor().compact(sample(2, a, b))
    assert sidecar["job"] == {"cpu_cores": 1.75, "memory_bytes": 150, "cpu_seconds": 12.0}
    assert sidecar["containers"]["other"] == {
        "cpu_cores": 0.25,
        "memory_bytes": 50,
        "cpu_seconds": 9.0,
        "memory_kind": "rss",
        "limit_cpu_cores": 2.0,
        "limit_memory_bytes": None,
    }
    assert sidecar["host"] == {"cpu_percent": 12.5, "mem_used_bytes": 400, "mem_total_bytes": 1000}
    assert sidecar["t"].endswith("Z") and sidecar["elapsed"] == 2.0


def test_the_jobs_cpu_seconds_never_go_down_when_a_container_ends():
    compactor = SampleCompactor()
    compactor.compact(sample(0, container("a", seconds=5.0), container("b", seconds=2.0)))
    later = compactor.compact(sample(2, container("a", seconds=6.0)))
    assert later["job"]["cpu_seconds"] == 8.0
    assert later["job"]["cpu_cores"] == 0.5  # a rate is this sample's containers only


# --- sending: seqs, keys, splitting -----------------------------------------------------


def _drive(s: LiveStream, items: int) -> None:
    for i in range(items):
        s.buffer.append(SampleCompactor().compact(sample(float(i + 1), container("c"))))
    client = PushClient(s.url, "t", lite=True)
    try:
        assert s._send_waiting(client)
    finally:
        client.close()


def test_a_413_splits_the_batch_and_the_first_half_keeps_its_seq(receiver):
    receiver.live_script = [(413, b'{"error": "too large"}', {})]
    s = stream(receiver.url)
    _drive(s, 8)
    [refused, *stored] = receiver.live_requests
    assert len(refused.json()["batch"]["samples"]) == 8
    batches = [r.json()["batch"] for r in stored]
    assert [b["seq"] for b in batches] == [0, 1]
    assert [r.headers["Idempotency-Key"] for r in stored] == ["k:0", "k:1"]
    sent = [x["t"] for b in batches for x in b["samples"]]
    assert sent == [x["t"] for x in refused.json()["batch"]["samples"]]
    assert s.sent_batches == 2 and s.sent_samples == 8


def test_a_batch_over_the_size_limit_is_split_before_it_is_sent(receiver, monkeypatch):
    monkeypatch.setattr(live, "MAX_BATCH_BYTES", 2_000)
    s = stream(receiver.url)
    _drive(s, 20)
    sizes = [len(r.body) for r in receiver.live_requests]
    assert len(sizes) > 1 and max(sizes) <= 2_000
    assert [r.json()["batch"]["seq"] for r in receiver.live_requests] == list(range(len(sizes)))
    assert sum(len(r.json()["batch"]["samples"]) for r in receiver.live_requests) == 20


@pytest.mark.parametrize(
    ("status", "level", "words"),
    [
        (404, logging.INFO, "does not take live batches"),
        (405, logging.INFO, "does not take live batches"),
        (401, logging.ERROR, "push token"),
        (403, logging.ERROR, "push token"),
    ],
)
def test_a_receiver_without_the_endpoint_or_the_token_turns_streaming_off(
    receiver, caplog, status, level, words
):
    receiver.live_status = status
    caplog.set_level(logging.DEBUG, logger="resmon.collect.live")
    s = stream(receiver.url)
    _drive(s, 3)
    assert not s.on and len(s.buffer) == 0
    s.buffer.append({"late": True})  # nothing more is sent: append is a no-op now
    s.append(sample(9, container("c")))
    assert len(receiver.live_requests) == 1
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) == 1 and lines[0].levelno == level and words in lines[0].getMessage()


def test_live_url_and_runner_host():
    assert live_url("http://x:8080/api/v1/metrics") == "http://x:8080/api/v1/metrics/live"
    assert live_url("http://x/api/v1/metrics/?a=1") == "http://x/api/v1/metrics/live?a=1"
    assert runner_host({"RUNNER_NAME": "runner-7"}) == "runner-7"
    assert runner_host({}) == runner_host({"RUNNER_NAME": " "}) != ""
