"""The production server: gunicorn, embedded, gthread workers behind a buffering front.

Why gunicorn with gthread (each point has an end-to-end test in
tests/server/test_server_e2e.py or tests/server/test_slow_clients.py):

- SIGTERM drains: the arbiter closes the listeners, each worker stops accepting,
  finishes the requests in flight (up to ``graceful_timeout``) and the process
  exits 0.  waitress 3.0.2 does not: the same in-flight push got an empty reply
  and the process died with -15 (tried here with waitress.serve(create_app(...))).
- Idle and slow clients cost no thread: each worker's main loop gathers a whole
  request before a thread sees it, under a total deadline (resmon.server.front,
  which says why and how).  Stock gthread gives a connection a thread at once.
  gunicorn's gevent worker, measured instead (same load, 2 workers, 32 pushing
  clients): a little less CPU per push, but a push p99 of 750-1,600 ms, since
  every SQLite call and the writer lock's ``flock`` stop the worker's whole event
  loop; and its only deadline is on the headers, so slow bodies stayed open for
  all 60 s of bench/slow_clients.py.
- Several worker processes use both cores for JSON and HMAC work, while threads
  cover the time a request waits on the database.

``resmon serve`` migrates the database in the master before forking (once, not
per worker); workers inherit the app and open their own connections.

Hook for Prometheus: with several workers, prometheus_client needs its
multiprocess mode -- ``PROMETHEUS_MULTIPROC_DIR`` set in the master before the
workers fork, and ``mark_process_dead`` when one exits.  Callables appended to
:data:`ON_STARTING` run in the master before the first fork, those in
:data:`ON_CHILD_EXIT` get ``(worker_pid)`` when a worker exits.
"""

from __future__ import annotations

import logging
import math
import os
import re
import resource
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask
from gunicorn import glogging
from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication
from gunicorn.http.errors import ParseException
from gunicorn.workers.gthread import ThreadWorker

from resmon.server import sse
from resmon.server.framing import error_response
from resmon.server.front import BufferingFront
from resmon.server.logs import gunicorn_logconfig

log = logging.getLogger(__name__)

ON_STARTING: list[Callable[[], None]] = []
ON_CHILD_EXIT: list[Callable[[int], None]] = []

DEFAULT_WORKERS = 2  # one per core on the 2-core machines this targets
DEFAULT_THREADS = 8
# How long a thread that wants the GIL waits before asking the running one to let
# go (CPython's default: 5 ms).  A push holds the SQLite writer lock across several
# calls that release the GIL (flock, BEGIN, INSERTs, COMMIT) and must get it back
# after each while the worker's other threads parse requests: at 5 ms a handful of
# such waits made every queued writer's p99 tens of ms.  Measured with
# bench/server_load.py (2 workers x 8 threads): push p99 66-77 -> ~51 ms.
GIL_SWITCH_INTERVAL = 0.001
DEFAULT_GRACEFUL_TIMEOUT = 30.0
DEFAULT_IO_TIMEOUT = 30.0
DEFAULT_REQUEST_TIMEOUT = 30.0
# Connections one worker holds at most (gunicorn's default is 1000): an idle one
# costs a file descriptor and a few hundred bytes in the front, not a thread.
MAX_CONNECTIONS = 10_000
# Set in the master before the workers fork (see ResmonServer.load_config).
_io_timeout = DEFAULT_IO_TIMEOUT
_request_timeout = DEFAULT_REQUEST_TIMEOUT


class AddressError(ValueError):
    """An --addr that is not ``:PORT``, ``HOST:PORT`` or ``[IPV6]:PORT``."""


def parse_addr(addr: str) -> tuple[str, int]:
    """Go's listen address forms -> (host, port); ``:8080`` gives host ``""``, every
    address, IPv4 and IPv6 alike, as Go listens (see :func:`listen_binds`)."""
    text = addr.strip()
    m = re.fullmatch(r"\[([0-9A-Fa-f:.%a-zA-Z]+)\]:(\d+)", text) or re.fullmatch(
        r"([^:\[\]\s]*):(\d+)", text
    )
    if not m:
        raise AddressError(
            f"invalid address {addr!r}: use :PORT, HOST:PORT or [IPV6]:PORT, e.g. :8080"
        )
    host, port = m.group(1), int(m.group(2))
    if not 0 <= port <= 65535:
        raise AddressError(f"invalid port {port} in {addr!r}: must be 0-65535")
    return host, port


def _ipv6_usable() -> bool:
    """Whether this host can listen on IPv6 at all (a container may have it off)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::", 0))
    except OSError:
        return False
    return True


def _v6_sockets_are_v6_only() -> bool:
    """net.ipv6.bindv6only: when set, a socket on ``::`` takes no IPv4 clients."""
    try:
        with open("/proc/sys/net/ipv6/bindv6only", "rb") as f:
            return f.read().strip() == b"1"
    except OSError:
        return False


def listen_hosts(host: str) -> list[str]:
    """The hosts to listen on for a parsed --addr host.

    ``""`` (``:8080``) is every address, as Go's ``:8080`` is: one IPv6 socket on
    ``::``, which Linux makes dual-stack (IPv4 clients arrive as ``::ffff:a.b.c.d``),
    plus ``0.0.0.0`` where the host's sockets are IPv6-only; IPv4 alone where the
    host has no IPv6.  Any other host is listened on as given."""
    if host:
        return [host]
    if not _ipv6_usable():
        return ["0.0.0.0"]
    return ["0.0.0.0", "::"] if _v6_sockets_are_v6_only() else ["::"]


def check_listen(host: str, port: int) -> None:
    """Fail fast with a clear message when the address cannot be bound (gunicorn
    would retry for 5 s and exit with log lines)."""
    for each in listen_hosts(host):
        _check_one(each, port)


def _check_one(host: str, port: int) -> None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise AddressError(f"cannot resolve {host!r}: {exc.strerror}") from None
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            raise AddressError(
                f"cannot listen on {gunicorn_bind(host, port)}: {exc.strerror}"
            ) from None


def gunicorn_bind(host: str, port: int) -> str:
    """gunicorn's spelling of one address; ``""`` (every address) as Go writes it."""
    if not host:
        return f":{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _json_write_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own error answers (a request line over 4094 bytes: 414, too many or
    too large headers: 431, an unparseable request: 400) as JSON like every other
    error of resmon, instead of gunicorn's HTML page.  The message is the fixed
    reason phrase: gunicorn's detail quotes the client's bytes back."""
    gunicorn_util.write_nonblock(sock, error_response(status_int, reason))


# gunicorn's workers call util.write_error by module attribute; this process only
# ever runs resmon's app, so the JSON version replaces it here.
gunicorn_util.write_error = _json_write_error


class QuietAccessLogger(glogging.Logger):
    """gunicorn's logger without its access log: resmon writes its own request line
    (resmon.server.logs), and gunicorn would otherwise build its access-log fields
    for every request only to drop them."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None


class DrainingThreadWorker(BufferingFront, ThreadWorker):
    """gthread worker with the buffering front (resmon.server.front), which marks the
    app as draining on SIGTERM, so /readyz says 503 to a load balancer while the
    requests in flight finish."""

    io_timeout = DEFAULT_IO_TIMEOUT
    request_timeout = DEFAULT_REQUEST_TIMEOUT

    def init_process(self) -> None:
        self.io_timeout = _io_timeout
        self.request_timeout = _request_timeout
        super().init_process()

    def _keepalive_after(self, conn: Any, keepalive: bool) -> bool:
        """gunicorn drains a body the app left unread before keeping the connection;
        when that body does not parse (a GET /health with a bad chunk), where the next
        request starts is unknown: close, instead of letting the parse error answer
        a second, unrequested 400 after the app's answer."""
        try:
            return bool(super()._keepalive_after(conn, keepalive))  # type: ignore[misc]
        except (ParseException, OSError):
            return False

    def handle_exit(self, sig: int, frame: Any) -> None:
        app = self.wsgi
        extensions = getattr(app, "extensions", None)
        if extensions and "resmon" in extensions:
            extensions["resmon"].draining = True
            sse.stop_hub(app)  # streams end now: their clients reconnect elsewhere
        super().handle_exit(sig, frame)

    def set_accept_enabled(self, enabled: bool) -> None:
        """On shutdown, also close the listening sockets right away.

        gunicorn's worker only stops polling them and closes them after the drain,
        so meanwhile the kernel keeps completing handshakes into the backlog and
        new clients hang until the worker exits.  Connections already in the
        backlog are taken in and served (their clients may have sent a request);
        after that the port refuses connections, so clients and load balancers
        fail over at once.
        """
        super().set_accept_enabled(enabled)
        if enabled or self.alive:
            return
        for listener in self.sockets:
            listener.setblocking(False)
            while True:
                try:
                    client_sock, client_addr = listener.accept()
                except OSError:  # EAGAIN: the backlog is empty
                    break
                self.nr_conns += 1
                self.take(client_sock, client_addr, listener.getsockname())
            listener.close()


@dataclass(frozen=True)
class ServeOptions:
    host: str = ""  # every address (--addr :PORT)
    port: int = 8080
    workers: int = DEFAULT_WORKERS
    threads: int = DEFAULT_THREADS
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT
    io_timeout: float = DEFAULT_IO_TIMEOUT
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    log_level: str = "info"


class ResmonServer(BaseApplication):
    """gunicorn running an already built app (BaseApplication: no gunicorn CLI parsing)."""

    def __init__(self, app: Flask, options: ServeOptions) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        global _io_timeout, _request_timeout
        o = self.options
        _io_timeout = o.io_timeout
        _request_timeout = o.request_timeout
        settings: dict[str, Any] = {
            "bind": [gunicorn_bind(h, o.port) for h in listen_hosts(o.host)],
            "workers": o.workers,
            "threads": o.threads,
            "worker_class": f"{__name__}.DrainingThreadWorker",
            "logger_class": f"{__name__}.QuietAccessLogger",
            "graceful_timeout": math.ceil(o.graceful_timeout),  # gunicorn takes whole seconds
            # gthread workers heartbeat from their main loop, so this only catches hung workers.
            "timeout": max(30, int(o.graceful_timeout) + 5),
            "keepalive": 5,
            "worker_connections": max_connections(),
            "proc_name": "resmon-serve",
            "accesslog": None,
            "errorlog": "-",
            "loglevel": o.log_level,
            "logconfig_dict": gunicorn_logconfig(o.log_level),
            # gunicorn 24+ opens a control socket under $HOME by default: nothing of
            # resmon uses it, and an extra admin socket is an attack surface.
            "control_socket_disable": True,
            "on_starting": _on_starting,
            "child_exit": _child_exit,
            # Default request-line and header limits stay (4094 bytes, 100 fields).
        }
        for key, value in settings.items():
            if key in self.cfg.settings:  # control_socket_disable is gunicorn 24+
                self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def _on_starting(_server: Any) -> None:
    for hook in ON_STARTING:
        hook()


def _child_exit(_server: Any, worker: Any) -> None:
    for hook in ON_CHILD_EXIT:
        hook(worker.pid)


def max_connections() -> int:
    """Connections per worker: MAX_CONNECTIONS, as far as the open-files limit allows
    (raised to its hard limit first, as Go's runtime does), with room for the
    database, the logs and the listeners."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_CONNECTIONS + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(64, min(MAX_CONNECTIONS, soft - 256))


def run(app: Flask, options: ServeOptions) -> None:
    """Serve ``app`` until SIGTERM/SIGINT; returns after a graceful stop."""
    log.info(
        "resmon serve listening",
        extra={
            "addr": gunicorn_bind(options.host, options.port),
            "workers": options.workers,
            "threads": options.threads,
            "pid": os.getpid(),
        },
    )
    # Inherited by the workers across the fork.  See GIL_SWITCH_INTERVAL.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    ResmonServer(app, options).run()
