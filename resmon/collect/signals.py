"""Signals for ``resmon collect``: waking the loop at once, and the exit code they leave.

Signal handlers only record the signal.  The loop sleeps in ``select`` on a
self-pipe that the interpreter writes to when a signal arrives
(``signal.set_wakeup_fd``), so a signal ends the sleep at once rather than at
the next tick.  (A ``threading.Event`` set from a handler can deadlock if the
signal lands while the main thread holds the Event's lock; the pipe cannot.)
SIGCHLD wakes the loop the same way when the wrapped command exits, and when an
orphan of its tree that resmon adopted as subreaper exits
(:meth:`Wakeup.take_child_exited` tells the loop to reap it).
"""

from __future__ import annotations

# _signal, the C module: the signal wrapper's enums (Signals, Handlers, Sigmasks) are
# ~45 KiB of a sidecar's memory for the whole job, and a handler needs none of them.
import _signal as signal
import contextlib
import os
import select
from collections.abc import Iterator
from typing import Any

SIGTERM = signal.SIGTERM
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGCHLD: "SIGCHLD"}


def signal_name(signum: int) -> str:
    """``SIGTERM`` for a signal the collector handles (as ``signal.Signals(n).name``)."""
    return _NAMES.get(signum, f"signal {signum}")


class Wakeup:
    """Signal flags plus a self-pipe the interpreter writes to on every signal."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.child_exited = False
        self._r, self._w = os.pipe()
        for fd in (self._r, self._w):
            os.set_blocking(fd, False)
        self._old_handlers: dict[int, Any] = {}
        self._old_wakeup_fd: int | None = None

    def _handler(self, signum: int, frame: Any) -> None:
        # Only record it: the loop does the work, outside the handler.
        if signum == signal.SIGCHLD:
            self.child_exited = True
        else:
            self.received.append(signum)

    def install(self, child: bool = False) -> None:
        self._old_wakeup_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        for sig in (*STOP_SIGNALS, *((signal.SIGCHLD,) if child else ())):
            self._old_handlers[sig] = signal.signal(sig, self._handler)

    def restore(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
        if self._old_wakeup_fd is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self._old_wakeup_fd = None
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds; any signal ends the sleep early.

        Only the pipe decides: a signal that arrived since the last wait left a byte in
        it, so nothing is missed, and a signal already handled does not keep waking us.
        """
        if timeout > 0:
            with contextlib.suppress(InterruptedError):
                select.select([self._r], [], [], timeout)
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._r, 512):
                pass

    def take_child_exited(self) -> bool:
        """Whether a SIGCHLD came since the last call (and forget it).

        Cleared before the caller reaps: a child that exits while it reaps sets it
        again, so no exit waits for the next one to be noticed."""
        came, self.child_exited = self.child_exited, False
        return came

    @property
    def stop_requested(self) -> bool:
        return bool(self.received)


@contextlib.contextmanager
def installed(wakeup: Wakeup, child: bool = False) -> Iterator[Wakeup]:
    """The handlers for the run only: the old ones come back even when the run raises."""
    wakeup.install(child=child)
    try:
        yield wakeup
    finally:
        wakeup.restore()


def exit_code_from_status(status: int) -> int:
    """The shell convention: the exit status, or 128+N when signal N killed it."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
