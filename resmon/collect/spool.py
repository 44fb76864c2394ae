"""The spool: payloads written to disk before any push is attempted.

A CI run happens once; if the server is down when the job ends, the payload
waits here and the next ``resmon collect`` on the host (or ``--flush-spool``)
delivers it.  Each entry is one file holding the exact request body, written
atomically (temp file, fsync, rename, fsync of the directory) so a SIGKILL
mid-write leaves either nothing or a whole file.  The idempotency key is fixed
when the entry is first written and travels in the file name and the body, so
every retry of the same run sends the same key and the same bytes: the server
stores it once.

Payloads the server refuses for good (a 4xx other than 408/429) move to
``failed/`` next to a ``.reason`` file, for a human to look at.  The spool is
bounded in count and bytes; the oldest entries go first, with a log line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

DEFAULT_MAX_FILES = 100
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
FAILED_DIR = "failed"
SUFFIX = ".json"
META_SUFFIX = ".meta"
# <creation time in ns, zero-padded so names sort by age>-<uuid4>.json
_NAME = re.compile(
    r"^(\d{20})-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.json$"
)


def default_spool_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/resmon/spool``, else ``~/.local/state/resmon/spool``."""
    env = os.environ if env is None else env
    state = env.get("XDG_STATE_HOME", "").strip()
    base = Path(state) if state else Path.home() / ".local" / "state"
    return base / "resmon" / "spool"


@dataclass(frozen=True)
class SpoolEntry:
    """One spooled payload: its file and the idempotency key fixed at first write."""

    path: Path
    idempotency_key: str
    created_ns: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def meta_path(self) -> Path:
        return self.path.with_name(self.path.name + META_SUFFIX)

    def read_body(self) -> bytes:
        return self.path.read_bytes()

    def read_meta(self) -> dict[str, str]:
        """Where and with which token this entry is to be delivered ({} when unknown)."""
        try:
            meta = orjson.loads(self.meta_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return {}
        return (
            {k: v for k, v in meta.items() if isinstance(v, str)} if isinstance(meta, dict) else {}
        )

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0


class SpoolError(OSError):
    """The spool directory cannot be created or written."""


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class Spool:
    """A directory of payloads waiting for delivery, oldest first."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_files: int = DEFAULT_MAX_FILES,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.directory = Path(directory)
        self.failed_directory = self.directory / FAILED_DIR
        self.max_files = max_files
        self.max_bytes = max_bytes

    def _ensure(self) -> None:
        try:
            # 0o700: payloads name repositories and jobs; nobody else needs to read them.
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SpoolError(f"cannot create spool directory {self.directory}: {exc}") from exc

    def add(self, payload: dict[str, Any], *, meta: Mapping[str, str] | None = None) -> SpoolEntry:
        """Write a payload with a new idempotency key; returns its entry.

        The key goes into the body as top-level ``idempotency_key`` (additive to the
        wire contract) as well as the file name, so the body alone identifies the run.
        ``meta`` (endpoint and push token) is kept beside the body: push tokens are
        scoped to one job, so a later run of another job must deliver this payload
        with this run's token, not its own.
        """
        self._ensure()
        key = str(uuid.uuid4())
        created = time.time_ns()
        body = orjson.dumps({**payload, "idempotency_key": key})
        path = self.directory / f"{created:020d}-{key}{SUFFIX}"
        try:
            if meta:
                # Written first: a body is never visible without its delivery details.
                _atomic_write(path.with_name(path.name + META_SUFFIX), orjson.dumps(dict(meta)))
            _atomic_write(path, body)
        except OSError as exc:
            raise SpoolError(f"cannot write spool file {path}: {exc}") from exc
        log.debug("spooled %s (%d bytes)", path.name, len(body))
        self.enforce_bounds(keep=path)
        return SpoolEntry(path=path, idempotency_key=key, created_ns=created)

    def pending(self) -> list[SpoolEntry]:
        """Entries waiting for delivery, oldest first (stray files are ignored)."""
        return self._entries(self.directory)

    def failed(self) -> list[SpoolEntry]:
        return self._entries(self.failed_directory)

    @staticmethod
    def _entries(directory: Path) -> list[SpoolEntry]:
        try:
            names = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return []
        entries = []
        for name in names:
            m = _NAME.match(name)
            if m:
                entries.append(
                    SpoolEntry(
                        path=directory / name,
                        idempotency_key=m.group(2),
                        created_ns=int(m.group(1)),
                    )
                )
        entries.sort(key=lambda e: (e.created_ns, e.name))
        return entries

    def remove(self, entry: SpoolEntry) -> None:
        """Forget a delivered entry (another process may have delivered it first)."""
        with contextlib.suppress(FileNotFoundError):
            entry.path.unlink()
        with contextlib.suppress(FileNotFoundError):
            entry.meta_path.unlink()
        _fsync_dir(entry.path.parent)

    def move_to_failed(self, entry: SpoolEntry, reason: str) -> Path | None:
        """Park an entry the server refused for good, with the reason beside it."""
        try:
            self.failed_directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            target = self.failed_directory / entry.name
            _atomic_write(target.with_name(target.name + ".reason"), reason.encode() + b"\n")
            os.replace(entry.path, target)
            with contextlib.suppress(FileNotFoundError):
                os.replace(entry.meta_path, target.with_name(target.name + META_SUFFIX))
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("cannot move %s to %s: %s", entry.name, self.failed_directory, exc)
            return None
        _fsync_dir(self.directory)
        self._bound(self.failed_directory, self.failed(), keep=None, what="failed payload")
        return target

    def enforce_bounds(self, keep: Path | None = None) -> list[SpoolEntry]:
        """Drop the oldest pending entries beyond the count and byte limits; returns them."""
        return self._bound(self.directory, self.pending(), keep=keep, what="spooled payload")

    def _bound(
        self, directory: Path, entries: list[SpoolEntry], *, keep: Path | None, what: str
    ) -> list[SpoolEntry]:
        sizes = [e.size() for e in entries]
        total = sum(sizes)
        dropped: list[SpoolEntry] = []
        i = 0
        while i < len(entries) and (
            len(entries) - len(dropped) > self.max_files or total > self.max_bytes
        ):
            entry = entries[i]
            if entry.path != keep:
                with contextlib.suppress(FileNotFoundError):
                    entry.path.unlink()
                for extra in (".reason", META_SUFFIX):
                    with contextlib.suppress(FileNotFoundError):
                        entry.path.with_name(entry.name + extra).unlink()
                total -= sizes[i]
                dropped.append(entry)
                log.warning(
                    "spool full (limit %d files, %d bytes): dropped the oldest %s %s",
                    self.max_files,
                    self.max_bytes,
                    what,
                    entry.path,
                )
            i += 1
        if dropped:
            _fsync_dir(directory)
        return dropped
