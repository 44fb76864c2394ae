"""The spool's file operations: relative to an open directory, never through a link.

A spool directory can hold anything a CI job (or anyone with its user) put there,
so every name in it is opened relative to the spool directory's fd: an entry with
``O_NOFOLLOW`` and ``O_NONBLOCK`` and checked with ``fstat`` before a byte is read,
a subdirectory (``failed/``, ``quarantine/``) with ``O_NOFOLLOW | O_DIRECTORY``.
Writes go to a new temporary file (``O_EXCL | O_NOFOLLOW``), are fsynced, and get
their name by a rename, so a name holds a whole file or nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

TMP_PREFIX = ".tmp-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class SpoolError(OSError):
    """The spool directory cannot be created or written."""


class NotAPayload(SpoolError):
    """A name in the spool holds something resmon never writes there (a link, a directory,
    a FIFO, an oversized file), or a subdirectory is a link: it is never read or followed."""


_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
}


def kind_of(mode: int) -> str:
    """What an ``lstat`` mode says a name is, in a log line's words."""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def read_regular(dir_fd: int, name: str, limit: int) -> bytes | None:
    """The bytes of the regular file ``name`` in ``dir_fd``, or None when it is gone.

    Raises :class:`NotAPayload` for anything else, without opening it when ``lstat``
    already tells (a device node is never opened), and when it was swapped between
    ``lstat`` and ``open``.
    """
    try:
        before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(before.st_mode):
        raise NotAPayload(f"{name} is {kind_of(before.st_mode)}")
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotAPayload(f"{name} is a symbolic link") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not os.path.samestat(st, before):
            raise NotAPayload(f"{name} was replaced while it was being opened")
        if st.st_size > limit:
            raise NotAPayload(f"{name} is larger than any payload ({limit} bytes)")
        chunks, total = [], 0
        while chunk := os.read(fd, 1 << 16):
            total += len(chunk)
            if total > limit:
                raise NotAPayload(f"{name} is larger than any payload ({limit} bytes)")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def open_subdir(parent_fd: int, name: str, *, create: bool) -> int:
    """A subdirectory of the spool as a directory fd, created if asked, never through a link."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=parent_fd)
    try:
        return os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise NotAPayload(
                f"{name}/ is a symbolic link or not a directory: not followed"
            ) from None
        raise


@contextlib.contextmanager
def open_dir(spool_dir: Path, subdir: str = "", *, create: bool = False) -> Iterator[int]:
    """The spool directory's fd (its configured path is followed), or a subdirectory's (never)."""
    if create:
        # 0o700: payloads name repositories and jobs; nobody else needs to read them.
        spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    spool_fd = os.open(spool_dir, _DIR_FLAGS)
    try:
        if not subdir:
            yield spool_fd
            return
        sub_fd = open_subdir(spool_fd, subdir, create=create)
        try:
            yield sub_fd
        finally:
            os.close(sub_fd)
    finally:
        os.close(spool_fd)


def fsync_dir(fd: int) -> None:
    # A rename is durable only once the directory entry is on disk.
    with contextlib.suppress(OSError):
        os.fsync(fd)


def unlink_quietly(dir_fd: int, name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)


def _write_temp(dir_fd: int, data: bytes) -> str:
    """``data`` whole and fsynced under a new temporary name in ``dir_fd``; returns the name."""
    name = f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
    fd = os.open(name, _CREATE_FLAGS, 0o600, dir_fd=dir_fd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        unlink_quietly(dir_fd, name)
        raise
    return name


def write_atomic(dir_fd: int, name: str, data: bytes) -> None:
    tmp = _write_temp(dir_fd, data)
    try:
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        unlink_quietly(dir_fd, tmp)
        raise
    fsync_dir(dir_fd)


def commit(dir_fd: int, name: str, body: bytes, meta_name: str, meta: bytes | None) -> None:
    """Write an entry whole or not at all.

    Both files are written and fsynced under temporary names before either gets its
    name; the meta is renamed first, so a pending body always has its delivery details.
    Whatever fails part-way, every name written so far is removed again.
    """
    written: list[str] = []
    try:
        if meta is not None:
            written.append(_write_temp(dir_fd, meta))
        written.append(_write_temp(dir_fd, body))
        if meta is not None:
            os.replace(written[0], meta_name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            written[0] = meta_name
        os.replace(written[-1], name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        written.clear()
    finally:
        for leftover in written:
            unlink_quietly(dir_fd, leftover)
    fsync_dir(dir_fd)
