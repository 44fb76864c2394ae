"""The spool on a real directory: atomic entries, stable keys, bounds, failed/, and what\nresmon never writes there (links, FIFOs, directories) or cannot finish writing."""

from __future__ import annotations

import errno
import logging
import os
import stat
import time

import orjson
import pytest
from collect_receiver import spool_payload

from resmon.collect.spool import (
    MAX_ENTRY_BYTES,
    STALE_SECONDS,
    NotAPayload,
    Spool,
    SpoolError,
    default_spool_dir,
)


def test_default_dir_follows_xdg_state_home(tmp_path):
    assert default_spool_dir({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "resmon" / "spool"
    home = default_spool_dir({})
    assert home.parts[-4:] == (".local", "state", "resmon", "spool")


def test_add_writes_whole_file_with_key_inside_and_private_mode(tmp_path):
    spool = Spool(tmp_path / "spool")
    entry = spool.add(spool_payload(), meta={"endpoint": "http://x/api/v1/metrics", "token": "t"})
    body = orjson.loads(entry.read_body())
    assert body["idempotency_key"] == entry.idempotency_key
    assert body["execution"]["run_id"] == "1"
    assert entry.read_meta() == {"endpoint": "http://x/api/v1/metrics", "token": "t"}
    assert stat.S_IMODE(entry.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(entry.meta_path.stat().st_mode) == 0o600
    # No temp files left behind, and listing sees exactly this entry with the same key.
    assert sorted(p.name for p in spool.directory.iterdir()) == sorted(
        [entry.name, entry.meta_path.name]
    )
    [again] = spool.pending()
    assert again.idempotency_key == entry.idempotency_key


def test_pending_is_oldest_first_and_ignores_stray_files(tmp_path):
    spool = Spool(tmp_path)
    a = spool.add(spool_payload("a"))
    b = spool.add(spool_payload("b"))
    (tmp_path / ".tmp-123-abc").write_bytes(b"half")
    (tmp_path / "notes.txt").write_text("hi")
    assert [e.name for e in spool.pending()] == [a.name, b.name]


def test_bounds_drop_oldest_by_count_with_a_log_line(tmp_path, caplog):
    spool = Spool(tmp_path, max_files=3)
    entries = [spool.add(spool_payload(str(i))) for i in range(3)]
    with caplog.at_level(logging.WARNING, logger="resmon.collect.spool"):
        newest = spool.add(spool_payload("3"))
    names = [e.name for e in spool.pending()]
    assert names == [entries[1].name, entries[2].name, newest.name]
    assert "dropped the oldest" in caplog.text and entries[0].name in caplog.text


def test_bounds_drop_oldest_by_bytes_but_never_the_new_entry(tmp_path):
    spool = Spool(tmp_path, max_bytes=5000)
    old = spool.add(spool_payload("old", pad=3000))
    new = spool.add(spool_payload("new", pad=3000))
    assert [e.name for e in spool.pending()] == [new.name]
    assert not old.path.exists()
    # A single entry over the limit is still kept: the newest run matters most.
    huge = spool.add(spool_payload("huge", pad=10000))
    assert [e.name for e in spool.pending()] == [huge.name]


def test_move_to_failed_keeps_body_and_reason(tmp_path):
    spool = Spool(tmp_path)
    entry = spool.add(spool_payload(), meta={"endpoint": "http://x", "token": "t"})
    target = spool.move_to_failed(entry, "HTTP 401: invalid push token")
    assert target is not None and target.parent == tmp_path / "failed"
    assert spool.pending() == []
    assert [e.name for e in spool.failed()] == [entry.name]
    assert (
        tmp_path / "failed" / (entry.name + ".reason")
    ).read_text() == "HTTP 401: invalid push token\n"
    assert orjson.loads(target.read_bytes())["idempotency_key"] == entry.idempotency_key


def test_remove_tolerates_an_entry_already_delivered_elsewhere(tmp_path):
    spool = Spool(tmp_path)
    entry = spool.add(spool_payload(), meta={"token": "t"})
    os.unlink(entry.path)
    spool.remove(entry)  # no error
    assert not entry.meta_path.exists()


# --- what resmon never writes, and writes that fail part-way ------------------------------

OLD = "00000000000000000001-11111111-1111-4111-8111-111111111111.json"


def test_an_entry_that_is_a_link_is_never_read(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b'{"token": "SECRET"}')
    spool = Spool(tmp_path / "spool")
    spool.directory.mkdir()
    (spool.directory / OLD).symlink_to(secret)
    (spool.directory / "other.json.meta").symlink_to(secret)
    [entry] = spool.pending()
    with pytest.raises(NotAPayload, match="is a symbolic link"):
        entry.read_body()


def test_a_meta_that_is_a_link_is_refused_not_followed(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b'{"endpoint": "http://attacker.invalid/", "token": "SECRET"}')
    spool = Spool(tmp_path / "spool")
    entry = spool.add(spool_payload())
    entry.meta_path.symlink_to(secret)
    assert orjson.loads(entry.read_body())["idempotency_key"] == entry.idempotency_key
    with pytest.raises(NotAPayload, match=r"\.meta is a symbolic link"):
        entry.read_meta()


def test_a_fifo_swapped_in_after_lstat_is_refused_without_blocking(tmp_path, monkeypatch):
    # lstat says "regular file" (the race), then the name is a FIFO with no writer:
    # O_NONBLOCK makes the open return at once and fstat tells the truth.
    spool = Spool(tmp_path)
    os.mkfifo(tmp_path / OLD)
    regular = os.stat(tmp_path / "..", follow_symlinks=False)
    real_stat = os.stat

    def racing_stat(path, *args, **kwargs):
        st = real_stat(path, *args, **kwargs)
        if path == OLD:
            return os.stat_result((stat.S_IFREG | 0o600, *regular[1:]))
        return st

    monkeypatch.setattr(os, "stat", racing_stat)
    [entry] = spool.pending()
    start = time.monotonic()
    with pytest.raises(NotAPayload, match="was replaced"):
        entry.read_body()
    assert time.monotonic() - start < 1


def test_an_oversized_entry_is_refused_before_it_is_read(tmp_path):
    spool = Spool(tmp_path)
    with open(tmp_path / OLD, "wb") as f:
        f.truncate(MAX_ENTRY_BYTES + 1)  # sparse: the size says it all
    [entry] = spool.pending()
    with pytest.raises(NotAPayload, match="larger than any payload"):
        entry.read_body()


def test_set_aside_moves_the_entry_and_its_meta_and_never_overwrites(tmp_path, caplog):
    spool = Spool(tmp_path)
    (tmp_path / OLD).mkdir()
    (tmp_path / (OLD + ".meta")).write_text("{}")
    (tmp_path / "quarantine").mkdir()
    (tmp_path / "quarantine" / OLD).write_text("set aside earlier")
    [entry] = spool.pending()
    with caplog.at_level(logging.ERROR, logger="resmon.collect.spool"):
        target = spool.set_aside(entry, f"{OLD} is a directory")
    assert target is not None and target.parent == tmp_path / "quarantine"
    assert target.name.startswith(OLD + ".") and target.is_dir()
    assert (tmp_path / "quarantine" / OLD).read_text() == "set aside earlier"
    assert (target.parent / (target.name + ".meta")).read_text() == "{}"
    assert (target.parent / (target.name + ".reason")).read_text() == f"{OLD} is a directory\n"
    assert spool.pending() == [] and spool.skipped == 1
    assert f"{OLD} is a directory; moved to {target}, never sent" in caplog.text


def test_a_failed_dir_that_is_a_file_is_logged_and_the_entry_stays(tmp_path, caplog):
    spool = Spool(tmp_path)
    entry = spool.add(spool_payload())
    (tmp_path / "failed").write_text("not a directory")
    with caplog.at_level(logging.ERROR, logger="resmon.collect.spool"):
        assert spool.move_to_failed(entry, "HTTP 401") is None
    assert "failed/ is a symbolic link or not a directory: not followed" in caplog.text
    assert [e.name for e in spool.pending()] == [entry.name] and spool.skipped == 1
    assert (tmp_path / "failed").read_text() == "not a directory"
    assert spool.failed() == []


def test_a_full_disk_part_way_leaves_no_file(tmp_path, monkeypatch):
    spool = Spool(tmp_path)
    real_write = os.write
    calls = []

    def write(fd, data):
        calls.append(len(data))
        if len(calls) == 2:  # the meta went through; the body meets a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(SpoolError, match="No space left on device"):
        spool.add(spool_payload(), meta={"token": "t"})
    assert os.listdir(tmp_path) == []


def test_a_rename_failing_after_the_meta_took_its_name_removes_the_meta(tmp_path, monkeypatch):
    spool = Spool(tmp_path)
    real_replace = os.replace

    def replace(src, dst, **kwargs):
        if str(dst).endswith(".json"):
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(SpoolError):
        spool.add(spool_payload(), meta={"token": "t"})
    assert os.listdir(tmp_path) == []


def test_tidy_removes_stale_leftovers_in_the_spool_and_failed(tmp_path, caplog):
    spool = Spool(tmp_path)
    kept = spool.add(spool_payload(), meta={"token": "t"})
    (tmp_path / "failed").mkdir()
    stale = time.time() - STALE_SECONDS - 1
    leftovers = [tmp_path / (OLD + ".meta"), tmp_path / "failed" / ".tmp-9-x"]
    fresh = tmp_path / ".tmp-8-y"
    for path in [*leftovers, fresh]:
        path.write_text("x")
    for path in leftovers:
        os.utime(path, (stale, stale))
    os.utime(kept.meta_path, (stale, stale))  # a meta with its body is not a leftover
    with caplog.at_level(logging.WARNING, logger="resmon.collect.spool"):
        spool.tidy()
    assert not any(p.exists() for p in leftovers)
    assert fresh.exists() and kept.meta_path.exists() and kept.path.exists()
    for path in leftovers:
        assert f"removed {path}, left by an interrupted spool write" in caplog.text
    assert spool.skipped == 0  # cleaning up is not a skip


def test_tidy_sets_aside_what_is_not_a_payload(tmp_path):
    spool = Spool(tmp_path)
    os.mkfifo(tmp_path / OLD)
    spool.tidy()
    assert stat.S_ISFIFO(os.lstat(tmp_path / "quarantine" / OLD).st_mode)
    assert spool.pending() == [] and spool.skipped == 1


def test_bounds_survive_an_entry_that_cannot_be_dropped(tmp_path, caplog):
    spool = Spool(tmp_path, max_files=1)
    (tmp_path / OLD).mkdir()
    with caplog.at_level(logging.ERROR, logger="resmon.collect.spool"):
        entry = spool.add(spool_payload())
    assert f"cannot drop {tmp_path / OLD}" in caplog.text
    assert [e.name for e in spool.pending()] == [OLD, entry.name]
