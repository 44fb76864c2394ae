"""A minimal HTTP/1.1 client for the live sender: POST a body, read the answer.

``requests`` costs a collector about 16 MiB of RSS and ``http.client`` about 6 (the
``email`` package it parses headers with); a sidecar under a 64 MiB limit streams for
the whole job, so its sender speaks HTTP itself, on ``_socket`` (the C module: the
``socket`` wrapper's enums cost another 0.6 MiB) and, for https URLs only, ``ssl``
(imported then).  What it does:

- ``POST`` with ``Content-Length``, ``Host``, the caller's headers; one connection
  kept alive and reused, made again once when the server closed it while idle (the
  caller's bodies carry an Idempotency-Key, so a resend is stored once);
- one deadline per request (connect, send and answer together);
- the answer: status line, headers, a body framed by ``Content-Length`` or chunked
  (or read to the close), 1xx answers skipped;
- every read bounded (:data:`MAX_LINE`, :data:`MAX_HEADERS`, :data:`MAX_BODY`): a
  hostile or broken server costs an :class:`HttpError` with a clear message, never a
  traceback nor unbounded memory.

No proxies, redirects, cookies or compression: the live sender falls back to
``requests`` when a proxy is configured for its URL (:func:`proxy_configured`).
"""

from __future__ import annotations

import _socket
import contextlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_LINE = 8 * 1024  # a status line, a header line, a chunk-size line
MAX_HEADERS = 100  # header lines in one answer
MAX_BODY = 1024 * 1024  # an answer body (the receiver answers with a few hundred bytes)
RECV_SIZE = 16 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}


class HttpError(Exception):
    """The request did not get an HTTP answer: the message says why, for a log line."""


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes = b""
    version: str = "HTTP/1.1"
    keep_alive: bool = field(default=True, repr=False)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # the request target: path and query

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def split_url(url: str) -> Target:
    """``scheme://host[:port]/path?query`` (http or https; no user info)."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        raise HttpError(f"not an http(s) URL: {url[:100]!r}")
    rest = rest.split("#", 1)[0]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    if "@" in authority:
        raise HttpError("user info in the URL is not supported; use the push token")
    if authority.startswith("["):
        host, _, port_text = authority[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = authority.partition(":")
    if not host:
        raise HttpError(f"no host in the URL: {url[:100]!r}")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise HttpError(f"bad port in the URL: {port_text[:20]!r}")
        port = int(port_text)
    else:
        port = DEFAULT_PORTS[scheme]
    path = path if path.startswith("/") else "/" + path
    if any(c in path for c in "\r\n\0 "):
        raise HttpError("the URL's path holds spaces or control characters")
    return Target(scheme, host, port, path)


def proxy_configured(url: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment routes ``url`` through a proxy (``HTTP(S)_PROXY`` or
    ``ALL_PROXY``, not excluded by ``NO_PROXY``), as requests would."""
    env = os.environ if env is None else env
    try:
        target = split_url(url)
    except HttpError:
        return False

    def get(name: str) -> str:
        return (env.get(name.lower()) or env.get(name.upper()) or "").strip()

    if not (get(f"{target.scheme}_proxy") or get("all_proxy")):
        return False
    host = target.host.lower()
    for entry in get("no_proxy").replace(" ", "").split(","):
        entry = entry.lower()
        if entry == "*":
            return False
        name, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if port and port != str(target.port):
            continue
        name = name.lstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return False
    return True


class _Reader:
    """Bounded reads from a socket until the request's deadline."""

    def __init__(self, sock: Any, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = bytearray()
        self.closed = False  # the server closed its side

    def _fill(self) -> bool:
        if self.closed:
            return False
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        self.sock.settimeout(remaining)
        data = self.sock.recv(RECV_SIZE)
        if not data:
            self.closed = True
            return False
        self.buffer += data
        return True

    def line(self, what: str) -> bytes | None:
        """One CRLF (or LF) terminated line without it; None at a clean close."""
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                if end > MAX_LINE:
                    break
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 1]
                return line.removesuffix(b"\r")
            if len(self.buffer) > MAX_LINE:
                break
            if not self._fill():
                if self.buffer:
                    raise HttpError(f"the server closed the connection in the middle of {what}")
                return None
        raise HttpError(f"{what} longer than {MAX_LINE} bytes")

    def exact(self, n: int, what: str) -> bytes:
        while len(self.buffer) < n:
            if not self._fill():
                raise HttpError(
                    f"the server closed the connection in the middle of {what} "
                    f"({len(self.buffer)} of {n} bytes)"
                )
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def to_close(self, limit: int) -> bytes:
        while self._fill():
            if len(self.buffer) > limit:
                raise HttpError(f"answer body larger than {limit} bytes")
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


def _status_line(line: bytes) -> tuple[str, int, str]:
    version, _, rest = line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if (
        version not in (b"HTTP/1.1", b"HTTP/1.0")
        or len(code) != 3
        or not code.isdigit()
        or code.startswith(b"0")
    ):
        raise HttpError(f"not an HTTP answer: {line[:60]!r}")
    return version.decode(), int(code), reason.decode("latin-1").strip()


def _headers(reader: _Reader) -> dict[str, str]:
    headers: dict[str, str] = {}
    last = ""
    for _ in range(MAX_HEADERS + 1):
        line = reader.line("a header line")
        if line is None:
            raise HttpError("the server closed the connection in the middle of the headers")
        if not line:
            return headers
        text = line.decode("latin-1")
        if text[0] in " \t" and last:  # obsolete line folding: part of the last value
            headers[last] = f"{headers[last]} {text.strip()}"
            continue
        name, colon, value = text.partition(":")
        name = name.strip().lower()
        if not colon or not name or " " in name:
            raise HttpError(f"malformed header line: {line[:60]!r}")
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
        last = name
    raise HttpError(f"more than {MAX_HEADERS} header lines")


def _content_length(value: str) -> int:
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not (text := values.pop()).isdigit():
        raise HttpError(f"bad Content-Length: {value[:40]!r}")
    return int(text)


def _chunked(reader: _Reader, limit: int) -> bytes:
    body = bytearray()
    while True:
        line = reader.line("a chunk size")
        if line is None:
            raise HttpError("the server closed the connection in the middle of a chunked body")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpError(f"bad chunk size: {line[:40]!r}") from None
        if size < 0 or len(body) + size > limit:
            raise HttpError(f"answer body larger than {limit} bytes")
        if size == 0:
            _headers(reader)  # the trailer, bounded like headers, then the blank line
            return bytes(body)
        body += reader.exact(size, "a chunk")
        if reader.exact(2, "a chunk's end") != b"\r\n":
            raise HttpError("a chunk does not end with CRLF")


def read_response(reader: _Reader, *, limit: int = MAX_BODY) -> Response | None:
    """The next answer (1xx skipped), None when the connection closed before any byte."""
    while True:
        line = reader.line("the status line")
        if line is None:
            return None
        version, status, reason = _status_line(line)
        headers = _headers(reader)
        if status == 101:
            raise HttpError("the server switched protocols (HTTP 101)")
        if status >= 200:
            break
    connection = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    keep_alive = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
    coding = headers.get("transfer-encoding", "").lower()
    if status in (204, 304):
        body = b""
    elif coding:
        if coding.rsplit(",", 1)[-1].strip() != "chunked":
            raise HttpError(f"unsupported Transfer-Encoding: {coding[:40]!r}")
        body = _chunked(reader, limit)
    elif "content-length" in headers:
        length = _content_length(headers["content-length"])
        if length > limit:
            raise HttpError(f"answer body larger than {limit} bytes ({length})")
        body = reader.exact(length, "the body")
    else:
        body, keep_alive = reader.to_close(limit), False
    return Response(status, reason, headers, body, version, keep_alive)


def _connect(target: Target, deadline: float, cafile: str | None) -> Any:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out")
    if target.scheme == "https":
        import socket  # ssl imports it anyway
        import ssl  # only for https URLs: OpenSSL costs about 3.5 MiB

        sock = socket.create_connection((target.host, target.port), timeout=remaining)
        try:
            context = ssl.create_default_context(cafile=cafile)
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            return context.wrap_socket(sock, server_hostname=target.host)
        except BaseException:
            sock.close()
            raise
    error: OSError | None = None
    # An ASCII name as bytes: a str goes through the idna codec (unicodedata, 1 MiB).
    host: str | bytes = target.host.encode() if target.host.isascii() else target.host
    infos = _socket.getaddrinfo(host, target.port, 0, _socket.SOCK_STREAM)
    for family, kind, proto, _, address in infos:
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError(f"no address for {target.host}")


def _request_head(target: Target, headers: Mapping[str, str], length: int) -> bytes:
    lines = [f"POST {target.path} HTTP/1.1", f"Host: {target.host_header}"]
    for name, value in headers.items():
        if any(c in f"{name}{value}" for c in "\r\n\0") or ":" in name:
            raise HttpError(f"header {name[:40]!r} holds a line break or a colon")
        lines.append(f"{name}: {value}")
    lines += [f"Content-Length: {length}", "Accept-Encoding: identity", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _ca_bundle() -> str | None:
    """The CA bundle requests would use, so the live sender and the final push trust the
    same servers: the one a CI setup named, else certifi's (found, not imported: its
    import pulls importlib.resources), else None (the system's)."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if os.environ.get(name):
            return os.environ[name]
    import importlib.util

    try:
        spec = importlib.util.find_spec("certifi")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    bundle = os.path.join(os.path.dirname(spec.origin), "cacert.pem")
    return bundle if os.path.isfile(bundle) else None


class HttpClient:
    """POSTs to one server over one kept-alive connection (not thread-safe)."""

    def __init__(self, headers: Mapping[str, str] | None = None, *, max_body: int = MAX_BODY):
        self.headers = dict(headers or {})
        self.max_body = max_body
        self._sock: Any = None
        self._key: tuple[str, str, int] | None = None
        self.connections = 0  # how many were opened (tests: keep-alive works)

    def close(self) -> None:
        sock, self._sock, self._key = self._sock, None, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def post(
        self, url: str, body: bytes, headers: Mapping[str, str] | None = None, *, timeout: float
    ) -> Response:
        """POST ``body`` to ``url`` within ``timeout`` seconds; raise HttpError otherwise."""
        target = split_url(url)
        deadline = time.monotonic() + timeout
        head = _request_head(target, {**self.headers, **(headers or {})}, len(body))
        key = (target.scheme, target.host, target.port)
        if self._key != key:
            self.close()
        phase = "connecting to"
        try:
            for attempt in (0, 1):
                reused = self._sock is not None
                if not reused:
                    self._sock = _connect(target, deadline, _ca_bundle())
                    self._key = key
                    self.connections += 1
                phase = "sending to"
                answer = self._exchange(head, body, deadline, reused)
                if answer is None and reused and attempt == 0:
                    # The server closed the idle connection: once more on a new one.
                    self.close()
                    phase = "connecting to"
                    continue
                if answer is None:
                    raise HttpError("the server closed the connection without answering")
                if not answer.keep_alive:
                    self.close()
                return answer
            raise HttpError("the server closed the connection without answering")
        except HttpError:
            self.close()
            raise
        except TimeoutError:
            self.close()
            raise HttpError(
                f"timed out {phase} {target.host_header} after {timeout:.2f} s"
            ) from None
        except OSError as exc:
            self.close()
            raise HttpError(f"{phase} {target.host_header}: {_os_error(exc)}") from None
        except (UnicodeError, ValueError) as exc:  # a host name IDNA or the resolver refuses
            self.close()
            raise HttpError(f"{phase} {target.host_header[:100]}: {exc}") from None

    def _exchange(self, head: bytes, body: bytes, deadline: float, reused: bool) -> Response | None:
        """Send the request and read the answer; None when a reused connection turned out
        closed before any answer byte (the caller sends again on a new one)."""
        sock = self._sock
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out")
            sock.settimeout(remaining)
            sock.sendall(head + body if len(body) < 64 * 1024 else head)
            if len(body) >= 64 * 1024:
                sock.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            if reused:
                return None
            raise
        reader = _Reader(sock, deadline)
        try:
            answer = read_response(reader, limit=self.max_body)
        except ConnectionResetError:
            if reused and not reader.buffer:
                return None
            raise
        return answer


def _os_error(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, _socket.gaierror):
        return f"cannot resolve the host ({exc.strerror or exc})"
    text = exc.strerror or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"
