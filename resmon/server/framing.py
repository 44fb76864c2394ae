"""One HTTP/1.1 request's bytes, for the buffering front (resmon.server.front).

:class:`Framing` tells, as bytes arrive, whether a request is whole: its header
block, then its body by ``Content-Length`` or by chunked framing to the last chunk
and the trailers.  It only finds where the request ends; gunicorn's parser, in the
worker thread, still reads and checks everything, so a request whose framing is
malformed or over a limit is simply declared ready and rejected there with
gunicorn's own answer (or the app's 413).

:class:`RequestSocket` is what the thread serves that request on.
"""

from __future__ import annotations

import contextlib
import errno
import re
import socket
import struct
import time
from typing import Any

import orjson

MAX_HEADER_BYTES = 64 * 1024
MAX_REQUEST_LINE = 4094 + 2  # gunicorn's limit_request_line with its CRLF: longer gets 414
MAX_CHUNK_LINE = 8190 + 2  # gunicorn's limit for a chunk-size line
DEFAULT_BODY_LIMIT = 1024 * 1024
SEND_SLICE = 256 * 1024
# An answer has --request-timeout plus one second per 64 KiB it holds: a large
# streamed read over a slow link finishes, a client that reads a byte now and then
# frees the thread.
MIN_ANSWER_RATE = 64 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_HEX = b"0123456789abcdefABCDEF"
# The headers that frame a body, in a lower-cased header block (a name with
# blanks before its colon is none of them: gunicorn refuses it anyway).
_FRAMING_HEADERS = re.compile(rb"\r\n(content-length|transfer-encoding|expect):([^\r\n]*)")

WAIT, READY, HEAD_TOO_LARGE = 0, 1, 2


def error_response(status: int, reason: str, message: str | None = None) -> bytes:
    """A closing JSON error answer: ``{"error": message}``, the reason in lower case
    by default (never the client's bytes quoted back)."""
    body = orjson.dumps({"error": message or reason.lower()})
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class Framing:
    """Where the buffered request ends, worked out a little more as each piece arrives."""

    __slots__ = (
        "head_end",
        "searched",
        "length",
        "chunked",
        "scan",
        "in_trailers",
        "body_bytes",
        "expect_continue",
    )

    def __init__(self) -> None:
        self.head_end = -1  # offset of the body, once the header block is complete
        self.searched = 0
        self.length = 0
        self.chunked = False
        self.scan = 0  # the chunk-size line (or trailers) to read next
        self.in_trailers = False
        self.body_bytes = 0
        self.expect_continue = False  # the client waits for "100 Continue" before its body

    def check(self, buf: bytearray, body_limit: int) -> int:
        """WAIT for more bytes, READY for a thread, or HEAD_TOO_LARGE."""
        if self.head_end < 0:
            state = self._head(buf, body_limit)
            if state != WAIT or self.head_end < 0:
                return state
        if self.chunked:
            return self._chunks(buf, body_limit)
        return READY if len(buf) - self.head_end >= self.length else WAIT

    @property
    def needs_body(self) -> bool:
        return self.head_end >= 0 and (self.chunked or self.length > 0)

    def _head(self, buf: bytearray, body_limit: int) -> int:
        end = buf.find(b"\r\n\r\n", max(0, self.searched - 3))
        if end < 0:
            self.searched = len(buf)
            if buf.count(b"\n") != buf.count(b"\r\n"):
                return READY  # a bare LF: gunicorn answers 400
            if len(buf) > MAX_REQUEST_LINE and buf.find(b"\r\n", 0, MAX_REQUEST_LINE) < 0:
                return READY  # gunicorn answers 414
            return HEAD_TOO_LARGE if len(buf) > MAX_HEADER_BYTES else WAIT
        if end > MAX_HEADER_BYTES:
            return HEAD_TOO_LARGE
        self.head_end = end + 4
        head = bytes(buf[:end]).lower()
        lengths: list[bytes] = []
        codings: list[bytes] = []
        for name, value in _FRAMING_HEADERS.findall(head):
            if name == b"content-length":
                lengths.append(value.strip())
            elif name == b"transfer-encoding":
                codings += [c.strip() for c in value.split(b",")]
            else:
                self.expect_continue = value.strip() == b"100-continue"
        if self.expect_continue:
            self.expect_continue = head[: head.find(b"\r\n")].endswith(b"http/1.1")
        if codings:
            if lengths or codings[-1] != b"chunked":
                return READY  # gunicorn rejects both, or a coding it cannot frame
            self.chunked, self.scan = True, self.head_end
        elif lengths:
            text = lengths[0]
            if len(lengths) > 1 or not text.isdigit() or len(text) > 18:
                return READY  # gunicorn answers 400, or the app 413
            self.length = int(text)
            if self.length > body_limit:
                return READY  # the app answers 413 from the header alone
        return WAIT

    def _chunks(self, buf: bytearray, body_limit: int) -> int:
        pos = self.scan
        while True:
            if self.in_trailers:
                if buf.startswith(b"\r\n", pos) or buf.find(b"\r\n\r\n", pos) >= 0:
                    return READY
                self.scan = pos
                return READY if len(buf) - pos > MAX_HEADER_BYTES else WAIT
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                self.scan = pos
                return READY if len(buf) - pos > MAX_CHUNK_LINE else WAIT
            size_text = bytes(buf[pos:line_end]).split(b";", 1)[0].rstrip(b" \t")
            if not size_text or size_text.strip(_HEX):
                return READY  # a bad chunk size: gunicorn's parser rejects it
            size = int(size_text, 16)
            if size == 0:
                self.in_trailers, pos = True, line_end + 2
                continue
            if self.body_bytes + size > body_limit:
                return READY  # over the limit: the app answers 413
            end = line_end + 2 + size + 2
            if len(buf) < end:
                self.scan = pos
                return WAIT
            self.body_bytes += size
            pos = end


class RequestSocket:
    """The socket a worker thread serves one request on.

    Reads come from the bytes the front gathered and end there, so a thread never
    waits for a client; writes go to the client's socket, each send bounded by
    ``SO_SNDTIMEO`` and the whole answer by ``total`` seconds from its first byte
    plus one second per ``MIN_ANSWER_RATE`` bytes sent.
    Everything else is the real socket's.

    ``detached``: the app took the connection over after its first bytes (an SSE
    stream, :mod:`resmon.server.sse`); what gunicorn still writes (its last chunk)
    goes nowhere, and the front lets go of the connection without closing it.
    """

    __slots__ = ("raw", "data", "pos", "silence", "total", "deadline", "closing", "detached")

    def __init__(self, raw: socket.socket, data: bytes, silence: float, total: float) -> None:
        self.raw = raw
        self.data = data
        self.pos = 0
        self.silence = silence
        self.total = total
        self.deadline = 0.0
        self.closing = False
        self.detached = False

    def recv(self, size: int) -> bytes:
        if self.pos >= len(self.data):
            # After an answer that closes, gunicorn drains what the client sent.
            return self.raw.recv(size) if self.closing else b""
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        return chunk

    def unread(self) -> bytes:
        return self.data[self.pos :]

    def send(self, data: bytes) -> int:
        if data == CONTINUE:  # the front already answered the Expect header
            return len(data)
        self.sendall(data)
        return len(data)

    def sendall(self, data: bytes) -> None:
        if self.detached:
            return
        now = time.monotonic()
        if not self.deadline:
            self.deadline = now + self.total
        view = memoryview(data)
        while view:
            left = self.deadline - now
            if left <= 0:
                raise TimeoutError(errno.ETIMEDOUT, "answer not taken within --request-timeout")
            if left + 1.0 < self.silence:  # a send may not wait past the deadline (1 s slack)
                set_send_timeout(self.raw, left)
                self.silence = left
            sent = self.raw.send(view[:SEND_SLICE])
            view = view[sent:]
            self.deadline += sent / MIN_ANSWER_RATE
            now = time.monotonic()

    def shutdown(self, how: int) -> None:
        if self.detached:
            return
        self.closing = True
        self.raw.shutdown(how)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


def set_send_timeout(sock: socket.socket, seconds: float) -> None:
    """``SO_SNDTIMEO``: a blocking send gives up when the client reads nothing that long.

    A socket option, not a Python timeout, because gunicorn switches the socket to
    blocking mode for each request, which resets a Python-level timeout."""
    if seconds <= 0:
        return
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    with contextlib.suppress(OSError):  # the client is gone: the request fails on its own
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
