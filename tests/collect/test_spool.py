"""The spool on a real directory: atomic entries, stable keys, bounds, failed/."""

from __future__ import annotations

import logging
import os
import stat

import orjson
from collect_receiver import spool_payload

from resmon.collect.spool import Spool, default_spool_dir


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
