"""Reading VmHWM and PSS: fixture files with the nasty cases, and this process live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from resmon import procfs
from resmon.collect import proc_memory

FIXTURES = Path(__file__).parents[1] / "fixtures"


def test_high_water_mark_and_pss_readers(tmp_path):
    status = (FIXTURES / "proc" / "12568" / "status").read_bytes()
    assert proc_memory.parse_vm_hwm(status) == 1808 * 1024
    assert proc_memory.parse_vm_hwm(b"Name:\tkthreadd\nState:\tS\nThreads:\t1\n") is None
    rollup = b"5630ab5c8000-7fffe456f000 ---p 00000000 00:00 0  [rollup]\nRss: 1616 kB\nPss:  157 kB\nPss_Dirty: 116 kB\n"
    assert proc_memory.parse_pss(rollup) == 157 * 1024
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "stat").write_text("7 (x) S 1")
    (tmp_path / "7" / "status").write_bytes(status)
    (tmp_path / "8").mkdir()
    (tmp_path / "8" / "stat").write_text("8 (y) S 1")
    (tmp_path / "8" / "smaps_rollup").write_bytes(rollup)
    (tmp_path / "9").mkdir()
    (tmp_path / "9" / "stat").write_text("9 (z) Z 1")
    (tmp_path / "9" / "smaps_rollup").write_bytes(b"")
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert proc_memory.read_vm_hwm_at(dir_fd, 7) == 1808 * 1024
        assert proc_memory.read_vm_hwm_at(dir_fd, 6) is None  # vanished
        assert proc_memory.read_pss_at(dir_fd, 8) == 157 * 1024
        assert proc_memory.read_pss_at(dir_fd, 6) is None  # vanished: nothing to say
        assert proc_memory.read_pss_at(dir_fd, 9) is None  # a zombie's file is empty
        with pytest.raises(proc_memory.PssUnreadable):
            proc_memory.read_pss_at(dir_fd, 7)  # there, but no smaps_rollup (kernel < 4.14)
    finally:
        os.close(dir_fd)


def test_live_pss_of_this_process():
    dir_fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    try:
        pss = proc_memory.read_pss_at(dir_fd, os.getpid())
        hwm = proc_memory.read_vm_hwm_at(dir_fd, os.getpid())
    finally:
        os.close(dir_fd)
    status = procfs.read_pid_status(os.getpid())
    assert status is not None and hwm is not None and hwm >= status.vm_rss_bytes > 0
    assert pss is not None and 0 < pss <= hwm
