"""A spool that holds what resmon never wrote, or cannot be written: the job's exit
code is unchanged, nothing is followed or sent, nothing outside the spool is written.

Every case runs a real ``resmon collect`` (a subprocess, as a CI job runs it) against
the ``receiver`` fixture, a real HTTP server, and asserts the exit code, the log line,
what the receiver got and that the files outside the spool are untouched.

Root ignores file modes, and these tests run as root in CI, so an unwritable spool is
made in ways that fail for root too: the immutable attribute (``chattr +i``, set here
with the FS_IOC_SETFLAGS ioctl; a plain chmod for a user who is not root, checked
with a probe either way), a regular file where the spool directory should be, and
RLIMIT_FSIZE for a disk that fills between the ``.meta`` and the body (the kernel
refuses the write past the limit with EFBIG, as a full disk does with ENOSPC).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from collect_receiver import closed_port_url, spool_payload

from resmon.collect.spool import STALE_SECONDS, Spool

pytestmark = pytest.mark.slow

RESMON = [sys.executable, "-m", "resmon", "collect", "--interval=0.1s", "--log-format=text"]
RUN_ENV = {"GITHUB_REPOSITORY": "o/r", "GITHUB_WORKFLOW": "ci", "GITHUB_JOB": "build"}
SECRET = b'{"endpoint": "http://attacker.invalid/", "token": "SECRET-do-not-send"}'
# An entry name that sorts first: the oldest, so delivered (or tripped over) first.
OLD = "00000000000000000001-11111111-1111-4111-8111-111111111111.json"

FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_IMMUTABLE_FL = 0x80086601, 0x40086602, 0x10


def collect(tmp_path: Path, spool: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, **RUN_ENV, **kwargs.pop("env", {})}
    output = kwargs.pop("output", tmp_path / "records.jsonl")
    return subprocess.run(
        [*RESMON, f"--output={output}", f"--spool-dir={spool}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        **kwargs,
    )


def snapshot(root: Path, *spared: Path) -> dict[str, tuple[int, int, int]]:
    """Every name under ``root`` but ``spared`` (the spool, the records): type, size, mtime."""
    spared_set = {str(p) for p in spared}
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in spared_set]
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if path in spared_set:
                continue
            st = os.lstat(path)
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def world(tmp_path):
    """A spool and, outside it, a secret file: (spool, secret, outside snapshot taker)."""
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.json"
    secret.write_bytes(SECRET)

    def untouched() -> dict:
        return snapshot(tmp_path, spool, tmp_path / "records.jsonl")

    return spool, secret, untouched


def plant(spool: Path, kind: str, secret: Path, name: str = OLD) -> Path:
    """Something resmon never writes, under a spool entry's name."""
    entry = spool / name
    if kind == "directory":
        entry.mkdir()
        (entry / "inside").write_text("x")
    elif kind == "symlink loop":
        entry.symlink_to(spool / "loop")
        (spool / "loop").symlink_to(entry)
    elif kind == "symlink to a secret":
        entry.symlink_to(secret)
    elif kind == "fifo":
        os.mkfifo(entry)
    elif kind == "meta linked to a secret":
        entry.write_bytes(orjson.dumps({**spool_payload("planted"), "idempotency_key": "k"}))
        (spool / (name + ".meta")).symlink_to(secret)
    return entry


HOSTILE = ["directory", "symlink loop", "symlink to a secret", "fifo", "meta linked to a secret"]


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_entry_is_set_aside_and_the_exit_code_is_the_commands(world, receiver, kind):
    spool, secret, untouched = world
    plant(spool, kind, secret)
    before = untouched()
    runs = [
        collect(spool.parent, spool, f"--push-endpoint={receiver.url}", "--", "sh", "-c", "exit 3")
        for _ in range(2)  # and the next run: nothing left to trip over, nothing logged
    ]
    for proc in runs:
        assert proc.returncode == 3, proc.stderr
        assert "Traceback" not in proc.stderr
    assert f"; moved to {spool}/quarantine/{OLD}, never sent" in runs[0].stderr
    assert "spool " + str(spool) + ": 1 skipped this run" in runs[0].stderr
    assert "moved to" not in runs[1].stderr and "skipped this run" not in runs[1].stderr
    quarantined = spool / "quarantine" / OLD
    assert os.path.lexists(quarantined) and not os.path.lexists(spool / OLD)
    reason = (spool / "quarantine" / (OLD + ".reason")).read_text()
    assert any(f"is a {what}" in reason for what in ("symbolic link", "directory", "FIFO"))
    # The receiver got the two runs and nothing of the secret or the planted entry.
    assert len(receiver.requests) == 2
    for request in receiver.requests:
        assert b"SECRET" not in request.body and b"planted" not in request.body
        assert "SECRET" not in request.headers.get("Authorization", "")
    assert untouched() == before and secret.read_bytes() == SECRET


def test_the_set_aside_is_logged_with_the_count(world, receiver):
    spool, secret, untouched = world
    for i, kind in enumerate(["directory", "symlink to a secret", "fifo"]):
        plant(spool, kind, secret, OLD.replace("1.json", f"{i + 2}.json"))
    before = untouched()
    proc = collect(spool.parent, spool, f"--push-endpoint={receiver.url}", "--", "true")
    assert proc.returncode == 0, proc.stderr
    for kind in ("is a directory", "is a symbolic link", "is a FIFO"):
        assert f"{kind}; moved to {spool}/quarantine/" in proc.stderr
    assert "3 skipped this run" in proc.stderr and "the exit code is unchanged" in proc.stderr
    assert len(receiver.requests) == 1 and untouched() == before


def test_a_sidecar_exits_0_after_sigterm_whatever_the_spool_holds(world, receiver):
    spool, secret, untouched = world
    plant(spool, "fifo", secret)
    plant(spool, "symlink to a secret", secret, OLD.replace("1.json", "2.json"))
    before = untouched()
    records = spool.parent / "records.jsonl"
    proc = subprocess.Popen(
        [*RESMON, f"--output={records}", f"--spool-dir={spool}", f"--push-endpoint={receiver.url}"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **RUN_ENV},
    )
    deadline = time.monotonic() + 30
    while not (records.exists() and records.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "is a FIFO; moved to" in stderr and "is a symbolic link; moved to" in stderr
    assert len(receiver.requests) == 1 and b"SECRET" not in receiver.requests[0].body
    assert untouched() == before


@contextlib.contextmanager
def unwritable(directory: Path):
    """``directory`` refuses new names and removals, for root as for anyone."""
    if os.geteuid() != 0:
        directory.chmod(0o500)
        undo = lambda: directory.chmod(0o700)  # noqa: E731
    else:
        # Root ignores modes; the immutable attribute (chattr +i) binds root too.
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        flags = bytearray(8)
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags)
        old = struct.unpack("i", flags[:4])[0]
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", old | FS_IMMUTABLE_FL) + bytes(4))

        def undo() -> None:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", old) + bytes(4))
            os.close(fd)

    try:
        with pytest.raises(OSError):  # the probe: this really cannot be written
            (directory / "probe").write_text("x")
        yield
    finally:
        undo()


def test_a_read_only_spool_still_pushes_from_memory(world, receiver):
    spool, _, untouched = world
    earlier = Spool(spool).add(spool_payload("earlier"), meta={"token": "t-earlier"})
    listing = sorted(os.listdir(spool))
    before = untouched()
    with unwritable(spool):
        proc = collect(
            spool.parent,
            spool,
            f"--push-endpoint={receiver.url}",
            "--push-timeout=1.5s",
            "--",
            "sh",
            "-c",
            "exit 4",
            env={"GITHUB_RUN_ID": "this-run"},
        )
        assert sorted(os.listdir(spool)) == listing
    assert proc.returncode == 4, proc.stderr
    assert "spool could not be written" in proc.stderr
    assert "pushing this run from memory" in proc.stderr
    assert f"delivered {earlier.path} but cannot remove it from the spool" in proc.stderr
    assert "skipped this run" in proc.stderr and "Traceback" not in proc.stderr
    run_ids = sorted(r.json()["execution"]["run_id"] for r in receiver.requests)
    assert "this-run" in run_ids and "earlier" in run_ids
    assert untouched() == before


def test_a_file_where_the_spool_should_be_still_pushes(world, receiver):
    spool, _, untouched = world
    spool.rmdir()
    spool.write_text("not a directory")
    before = untouched()
    for args in (["--", "sh", "-c", "exit 0"], ["--", "sh", "-c", "exit 2"]):
        proc = collect(spool.parent, spool / "inner", f"--push-endpoint={receiver.url}", *args)
        assert proc.returncode == int(args[-1][-1]), proc.stderr
        assert "spool could not be written" in proc.stderr and "Traceback" not in proc.stderr
    assert len(receiver.requests) == 2
    assert spool.read_text() == "not a directory" and untouched() == before


def test_a_failed_dir_that_is_a_link_is_never_written_through(world, receiver):
    spool, secret, untouched = world
    target = secret.parent / "elsewhere"
    target.mkdir()
    (spool / "failed").symlink_to(target)
    receiver.script = [(401, b'{"error": "invalid push token"}', {})] * 2
    before = untouched()
    proc = collect(spool.parent, spool, f"--push-endpoint={receiver.url}", "--", "true")
    assert proc.returncode == 0, proc.stderr
    assert "failed/ is a symbolic link or not a directory: not followed" in proc.stderr
    assert "it stays where it is" in proc.stderr and "Traceback" not in proc.stderr
    assert list(target.iterdir()) == [] and untouched() == before
    assert len(Spool(spool).pending()) == 1  # kept, to be sent (and refused) again


def test_a_disk_that_fills_between_meta_and_body_leaves_no_orphan(world, receiver):
    spool, _, untouched = world
    before = untouched()
    limit = 2000  # the .meta (~100 bytes) fits, the body (a run summary, > 2 KB) does not

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = collect(
        spool.parent,
        spool,
        f"--push-endpoint={receiver.url}",
        "--push-token=tok",
        "--",
        "sh",
        "-c",
        "exit 6",
        preexec_fn=small_disk,
        output="-",  # records to the pipe: the limit is for files
    )
    assert proc.returncode == 6, proc.stderr
    assert "File too large" in proc.stderr and "pushing this run from memory" in proc.stderr
    assert os.listdir(spool) == []  # no .meta without a body, no temporary file
    [request] = receiver.requests
    assert len(request.body) > limit  # so the body is what the limit refused
    assert request.headers["Authorization"] == "Bearer tok"
    assert untouched() == before


def test_leftovers_of_an_interrupted_write_are_cleaned_at_the_next_start(world, receiver):
    spool, _, untouched = world
    orphan = spool / (OLD + ".meta")
    orphan.write_bytes(b'{"token": "t"}')
    temp = spool / ".tmp-1-abc"
    temp.write_bytes(b"half a body")
    fresh = spool / ".tmp-2-def"  # a write in progress by another resmon: kept
    fresh.write_bytes(b"in progress")
    stale = time.time() - STALE_SECONDS - 5
    for path in (orphan, temp):
        os.utime(path, (stale, stale))
    before = untouched()
    proc = collect(spool.parent, spool, f"--push-endpoint={receiver.url}", "--", "true")
    assert proc.returncode == 0, proc.stderr
    for path in (orphan, temp):
        assert not path.exists()
        assert f"removed {path}, left by an interrupted spool write" in proc.stderr
    assert fresh.exists() and untouched() == before


def test_retry_failed_resends_with_the_corrected_token_and_the_same_key(world, receiver):
    spool, _, untouched = world
    store = Spool(spool)
    a = store.add(spool_payload("a"), meta={"endpoint": receiver.url, "token": "expired"})
    b = store.add(spool_payload("b"), meta={"endpoint": receiver.url, "token": "expired"})
    flush = ["--flush-spool", f"--push-endpoint={receiver.url}"]
    receiver.script = [(401, b'{"error": "invalid push token"}', {})] * 2
    refused = collect(spool.parent, spool, *flush)
    assert refused.returncode == 1 and "2 refused (moved to failed/)" in refused.stderr
    bodies = {r.headers["Idempotency-Key"]: r.body for r in receiver.requests}
    receiver.requests.clear()
    before = untouched()

    # The corrected token from the environment; b is refused again, for another reason.
    receiver.script = [(201, b'{"id": 1, "status": "created"}', {}), (403, b"scope closed", {})]
    proc = collect(
        spool.parent, spool, *flush, "--retry-failed", env={"COLLECTOR_PUSH_TOKEN": "fixed"}
    )
    assert proc.returncode == 1, proc.stderr
    assert "failed/: 1 delivered, 1 refused again" in proc.stderr
    assert "push refused again, payload stays in" in proc.stderr
    sent = [(r.headers["Idempotency-Key"], r.headers["Authorization"]) for r in receiver.requests]
    assert sent == [(a.idempotency_key, "Bearer fixed"), (b.idempotency_key, "Bearer fixed")]
    assert all(r.body == bodies[r.headers["Idempotency-Key"]] for r in receiver.requests)
    assert [e.name for e in store.failed()] == [b.name]
    assert "HTTP 403: scope closed" in (spool / "failed" / (b.name + ".reason")).read_text()

    receiver.requests.clear()
    again = collect(
        spool.parent, spool, *flush, "--retry-failed", env={"COLLECTOR_PUSH_TOKEN": "fixed"}
    )
    assert again.returncode == 0, again.stderr
    assert "failed/: 1 delivered, 0 refused again" in again.stderr
    assert os.listdir(spool / "failed") == [] and untouched() == before


def test_retry_failed_leaves_an_entry_in_failed_when_the_server_is_down(world):
    spool, _, untouched = world
    store = Spool(spool)
    entry = store.add(spool_payload("a"), meta={"token": "expired"})
    store.move_to_failed(entry, "HTTP 401: invalid push token")
    before = untouched()
    proc = collect(
        spool.parent,
        spool,
        "--flush-spool",
        "--retry-failed",
        f"--push-endpoint={closed_port_url()}",
        "--push-timeout=300ms",
    )
    assert proc.returncode == 1, proc.stderr
    assert "failed/: 0 delivered, 0 refused again" in proc.stderr and "1 left" in proc.stderr
    assert [e.name for e in store.failed()] == [entry.name]
    reason = (spool / "failed" / (entry.name + ".reason")).read_text()
    assert reason == "HTTP 401: invalid push token\n"  # the refusal is still what it says
    assert untouched() == before


def test_an_unexpected_error_in_the_spool_costs_one_line_not_the_exit_code(
    tmp_path, receiver, monkeypatch, caplog
):
    # A bug, not a disk condition: the exit path's guard still keeps the command's code.
    from resmon.collect.collector import CollectConfig, Collector

    def broken_add(self, payload, *, meta=None):
        raise RuntimeError("a bug in the spool")

    monkeypatch.setattr(Spool, "add", broken_add)
    config = CollectConfig(
        interval=0.1,
        push_endpoint=receiver.url,
        spool_dir=tmp_path / "spool",
        command=["sh", "-c", "exit 7"],
    )
    with (tmp_path / "records.jsonl").open("wb") as out, caplog.at_level("ERROR"):
        assert Collector(config, out).run() == 7
    assert (
        "pushing the run summary failed unexpectedly, skipped: RuntimeError: a bug in the spool"
        in caplog.text
    )
