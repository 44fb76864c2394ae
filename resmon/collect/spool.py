"""The spool: payloads written to disk before any push is attempted.

A CI run happens once; if the server is down when the job ends, the payload
waits here and the next ``resmon collect`` on the host (or ``--flush-spool``)
delivers it.  The idempotency key is fixed when the entry is first written and
travels in the file name and the body, so every retry of the same run sends the
same key and the same bytes: the server stores it once.

An entry is whole or absent.  Its body and its ``.meta`` (endpoint and push
token) are both written and fsynced under temporary names first, then the meta
is renamed, then the body; the body's name is what makes an entry pending.  A
failure part-way (a full disk, a read-only mount) removes what was written; a
SIGKILL between the two renames leaves a ``.meta`` without a body, and
:meth:`Spool.tidy` removes such leftovers (and stale temporary files) on the next
start, with a log line.

Payloads the server refuses for good (a 4xx other than 408/429) move to
``failed/`` next to a ``.reason`` file, for a human to look at or to re-send
with a corrected token (``--retry-failed``).  The spool is bounded in count and
bytes; the oldest entries go first, with a log line.

The spool never costs the job.  Anything can end up in a directory a CI job can
write to, so an entry is read only as what resmon writes: a regular file, opened
with ``O_NOFOLLOW`` and ``O_NONBLOCK`` (a FIFO cannot hang the collector) and
checked with ``fstat`` (:mod:`resmon.collect.spool_files`).  Anything else under an entry's name (a symbolic link, a
directory, a FIFO, a file larger than any payload) moves to ``quarantine/`` with a
``.reason`` and is never read or sent.  ``failed/`` and ``quarantine/`` are opened
relative to the spool directory without following a link: one that is a link or
not a directory is logged and never written through.  (The configured spool
directory itself is followed: an administrator may point it anywhere.)  Every
error is one log line and a counted skip (:attr:`Spool.skipped`); none reaches
the collector as an exception except :class:`SpoolError` from :meth:`Spool.add`,
which the collector answers by pushing from memory.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

# default_spool_dir lives in run_identity (a sidecar need not import this module to know
# where the spool is); said here too, where a reader looks for it.
from resmon.collect.run_identity import default_spool_dir
from resmon.collect.spool_files import (
    TMP_PREFIX,
    NotAPayload,
    SpoolError,
    commit,
    fsync_dir,
    kind_of,
    open_dir,
    read_regular,
    unlink_quietly,
    write_atomic,
)

__all__ = ["NotAPayload", "Spool", "SpoolEntry", "SpoolError", "default_spool_dir"]

log = logging.getLogger(__name__)

DEFAULT_MAX_FILES = 100
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
# The collector's payloads stay under 1 MiB; anything much larger under an entry's
# name is not one, and reading it would cost a 64 MiB sidecar its memory.
MAX_ENTRY_BYTES = 8 * 1024 * 1024
FAILED_DIR = "failed"
QUARANTINE_DIR = "quarantine"
SUFFIX = ".json"
META_SUFFIX = ".meta"
REASON_SUFFIX = ".reason"
# A temporary file or a lone .meta younger than this may be another resmon's write in
# progress on the same host (it takes milliseconds); older ones are leftovers.
STALE_SECONDS = 60.0
# <creation time in ns, zero-padded so names sort by age>-<uuid4>.json
_NAME = re.compile(
    r"^(\d{20})-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.json$"
)


# --- entries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SpoolEntry:
    """One spooled payload: its file and the idempotency key fixed at first write.

    ``subdir`` is "" for a pending entry, ``failed`` for a refused one; every read goes
    through the spool directory's fd and that subdirectory opened without following.
    """

    path: Path
    idempotency_key: str
    created_ns: int
    subdir: str = ""

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def meta_path(self) -> Path:
        return self.path.with_name(self.path.name + META_SUFFIX)

    @property
    def spool_dir(self) -> Path:
        return self.path.parent.parent if self.subdir else self.path.parent

    def directory_fd(self) -> contextlib.AbstractContextManager[int]:
        """The fd of the directory holding this entry (a link for ``failed/`` is refused)."""
        return open_dir(self.spool_dir, self.subdir)

    def read_body(self) -> bytes:
        """The exact bytes to send; FileNotFoundError when gone, NotAPayload when not a file."""
        with self.directory_fd() as fd:
            data = read_regular(fd, self.name, MAX_ENTRY_BYTES)
        if data is None:
            raise FileNotFoundError(errno.ENOENT, "no longer in the spool", str(self.path))
        return data

    def read_meta(self) -> dict[str, str]:
        """Where and with which token this entry is to be delivered ({} when unknown).

        A ``.meta`` that is a link or not a regular file raises NotAPayload: its target
        could name another endpoint, so the entry is set aside rather than sent.
        """
        with self.directory_fd() as fd:
            data = read_regular(fd, self.name + META_SUFFIX, 64 * 1024)
        try:
            meta = orjson.loads(data) if data is not None else {}
        except orjson.JSONDecodeError:
            return {}
        return (
            {k: v for k, v in meta.items() if isinstance(v, str)} if isinstance(meta, dict) else {}
        )


class Spool:
    """A directory of payloads waiting for delivery, oldest first.

    Shared by threads (the start-up delivery and the final push): :attr:`skipped`
    counts every spool error of this process, each of which was logged once.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_files: int = DEFAULT_MAX_FILES,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.directory = Path(directory)
        self.failed_directory = self.directory / FAILED_DIR
        self.quarantine_directory = self.directory / QUARANTINE_DIR
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.skipped = 0
        self._lock = threading.Lock()

    def trouble(self, message: str, *args: Any) -> None:
        """One spool error: one log line, one counted skip, never an exception."""
        with self._lock:
            self.skipped += 1
        log.error(message, *args)

    def _dir(
        self, subdir: str = "", *, create: bool = False
    ) -> contextlib.AbstractContextManager[int]:
        return open_dir(self.directory, subdir, create=create)

    def add(self, payload: dict[str, Any], *, meta: Mapping[str, str] | None = None) -> SpoolEntry:
        """Write a payload with a new idempotency key; returns its entry.

        The key goes into the body as top-level ``idempotency_key`` (additive to the
        wire contract) as well as the file name, so the body alone identifies the run.
        ``meta`` (endpoint and push token) is kept beside the body: push tokens are
        scoped to one job, so a later run of another job must deliver this payload
        with this run's token, not its own.  Raises SpoolError when nothing was kept.
        """
        key = str(uuid.uuid4())
        created = time.time_ns()
        body = orjson.dumps({**payload, "idempotency_key": key})
        name = f"{created:020d}-{key}{SUFFIX}"
        try:
            with self._dir(create=True) as fd:
                commit(
                    fd, name, body, name + META_SUFFIX, orjson.dumps(dict(meta)) if meta else None
                )
        except OSError as exc:
            raise SpoolError(f"cannot write {self.directory / name}: {exc}") from exc
        log.debug("spooled %s (%d bytes)", name, len(body))
        path = self.directory / name
        self.enforce_bounds(keep=path)
        return SpoolEntry(path=path, idempotency_key=key, created_ns=created)

    def pending(self) -> list[SpoolEntry]:
        """Entries waiting for delivery, oldest first (stray files are ignored)."""
        return self._entries("")

    def failed(self) -> list[SpoolEntry]:
        return self._entries(FAILED_DIR)

    def _entries(self, subdir: str) -> list[SpoolEntry]:
        try:
            with self._dir(subdir) as fd:
                names = os.listdir(fd)
        except FileNotFoundError:
            return []
        except OSError as exc:
            self.trouble(
                "cannot list the spool directory %s, skipped: %s", self.directory / subdir, exc
            )
            return []
        entries = [self._entry(subdir, name) for name in names if _NAME.match(name)]
        entries.sort(key=lambda e: (e.created_ns, e.name))
        return entries

    def _entry(self, subdir: str, name: str) -> SpoolEntry:
        m = _NAME.match(name)
        return SpoolEntry(
            path=(self.directory / subdir if subdir else self.directory) / name,
            idempotency_key=m.group(2) if m else "",
            created_ns=int(m.group(1)) if m else 0,
            subdir=subdir,
        )

    def remove(self, entry: SpoolEntry) -> bool:
        """Forget a delivered entry (another process may have delivered it first).

        False, with a log line, when the spool cannot be changed (a read-only mount):
        the entry is sent again later and the server keeps one copy by its key.
        """
        try:
            with entry.directory_fd() as fd:
                for name in (entry.name, entry.name + META_SUFFIX, entry.name + REASON_SUFFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name, dir_fd=fd)
                fsync_dir(fd)
        except FileNotFoundError:
            return True
        except OSError as exc:
            self.trouble(
                "delivered %s but cannot remove it from the spool (%s); it will be sent "
                "again and the server keeps one copy (same idempotency key)",
                entry.path,
                exc,
            )
            return False
        return True

    def move_to_failed(self, entry: SpoolEntry, reason: str) -> Path | None:
        """Park an entry the server refused for good, with the reason beside it."""
        target = self._move(entry, FAILED_DIR, reason)
        if target is not None:
            self._bound(FAILED_DIR, self.failed(), keep=None, what="failed payload")
        return target

    def set_aside(self, entry: SpoolEntry, reason: str) -> Path | None:
        """Move what is not a payload to quarantine/ with the reason: never read, never sent."""
        target = self._move(entry, QUARANTINE_DIR, reason)
        if target is not None:
            self.trouble("spool: %s; moved to %s, never sent", reason, target)
        return target

    def note_refusal(self, entry: SpoolEntry, reason: str) -> None:
        """A failed/ entry refused again: its ``.reason`` says why, this time."""
        try:
            with entry.directory_fd() as fd:
                write_atomic(fd, entry.name + REASON_SUFFIX, reason.encode() + b"\n")
        except OSError as exc:
            self.trouble("cannot write the reason beside %s, skipped: %s", entry.path, exc)

    def _move(self, entry: SpoolEntry, subdir: str, reason: str) -> Path | None:
        """``entry`` (and its meta) into ``subdir`` beside a ``.reason``; None if it stays."""
        try:
            with entry.directory_fd() as src, self._dir(subdir, create=True) as dst:
                name = entry.name
                with contextlib.suppress(FileNotFoundError):
                    os.stat(name, dir_fd=dst, follow_symlinks=False)
                    name = f"{entry.name}.{time.time_ns()}"  # never over what is there
                write_atomic(dst, name + REASON_SUFFIX, reason.encode() + b"\n")
                try:
                    os.rename(entry.name, name, src_dir_fd=src, dst_dir_fd=dst)
                except FileNotFoundError:
                    unlink_quietly(dst, name + REASON_SUFFIX)
                    return None  # delivered or moved meanwhile by another resmon
                with contextlib.suppress(FileNotFoundError):
                    os.rename(
                        entry.name + META_SUFFIX, name + META_SUFFIX, src_dir_fd=src, dst_dir_fd=dst
                    )
                fsync_dir(dst)
                fsync_dir(src)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.trouble(
                "cannot move %s to %s/ (%s); it stays where it is", entry.path, subdir, exc
            )
            return None
        return self.directory / subdir / name

    def tidy(self) -> None:
        """Remove what interrupted writes left and set aside what is not a payload.

        Run at start: a temporary file or a ``.meta`` without its body older than
        STALE_SECONDS is a leftover (younger ones may be a write in progress).
        """
        for subdir in ("", FAILED_DIR):
            try:
                with self._dir(subdir) as fd:
                    self._tidy_dir(fd, subdir)
            except FileNotFoundError:
                continue
            except OSError as exc:
                self.trouble(
                    "cannot tidy the spool directory %s/%s: %s", self.directory, subdir, exc
                )

    def _tidy_dir(self, fd: int, subdir: str) -> None:
        names = set(os.listdir(fd))
        now = time.time()
        for name in sorted(names):
            entry_name = name.removesuffix(META_SUFFIX)
            lone_meta = name.endswith(META_SUFFIX) and entry_name not in names
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if _NAME.match(name) and not stat.S_ISREG(st.st_mode):
                    self.set_aside(self._entry(subdir, name), f"{name} is {kind_of(st.st_mode)}")
                    continue
                if not (name.startswith(TMP_PREFIX) or (lone_meta and _NAME.match(entry_name))):
                    continue
                if now - st.st_mtime < STALE_SECONDS:
                    continue
                os.unlink(name, dir_fd=fd)
            except FileNotFoundError:
                continue
            except OSError as exc:
                self.trouble("cannot remove the leftover %s from the spool: %s", name, exc)
                continue
            log.warning(
                "removed %s, left by an interrupted spool write", self._entry(subdir, name).path
            )

    def enforce_bounds(self, keep: Path | None = None) -> list[SpoolEntry]:
        """Drop the oldest pending entries beyond the count and byte limits; returns them."""
        return self._bound("", self.pending(), keep=keep, what="spooled payload")

    def _bound(
        self, subdir: str, entries: list[SpoolEntry], *, keep: Path | None, what: str
    ) -> list[SpoolEntry]:
        dropped: list[SpoolEntry] = []
        try:
            with self._dir(subdir) as fd:
                sizes = [_size(fd, e.name) for e in entries]
                total, count = sum(sizes), len(entries)
                for entry, size in zip(entries, sizes, strict=True):
                    if count <= self.max_files and total <= self.max_bytes:
                        break
                    if entry.path == keep or not self._drop(fd, entry):
                        continue
                    total, count = total - size, count - 1
                    dropped.append(entry)
                    log.warning(
                        "spool full (limit %d files, %d bytes): dropped the oldest %s %s",
                        self.max_files,
                        self.max_bytes,
                        what,
                        entry.path,
                    )
                if dropped:
                    fsync_dir(fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self.trouble("cannot keep the spool %s within its limits: %s", self.directory, exc)
        return dropped

    def _drop(self, fd: int, entry: SpoolEntry) -> bool:
        try:
            for name in (entry.name, entry.name + META_SUFFIX, entry.name + REASON_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)
        except OSError as exc:
            self.trouble("cannot drop %s to keep the spool within its limits: %s", entry.path, exc)
            return False
        return True


def _size(dir_fd: int, name: str) -> int:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_size
    except OSError:
        return 0
