"""The push client: deliver spooled payloads to ``POST /api/v1/metrics``.

Every payload is in the spool before the first attempt (see ``resmon.collect.spool``),
so a push that runs out of time loses nothing: the next ``resmon collect`` start
or ``--flush-spool`` delivers it.  What is retried here, within one total time
budget (a CI cancellation leaves about 2.5 s between SIGTERM and SIGKILL):
connection errors and timeouts, 408, 429 and 5xx, with exponential backoff and
full jitter, honouring ``Retry-After``.  Any other 4xx means the server will never
take this body: it moves to ``failed/`` with the reason.

Two ways to speak HTTP, one retry loop: :mod:`resmon.collect.http_lite` (the stdlib
socket; ``ssl`` only for https) for every push and live batch, and ``requests`` only
for a URL the environment sends through a proxy (``HTTP(S)_PROXY``/``ALL_PROXY``, not
``NO_PROXY``), which http_lite does not speak.  A sidecar under a 64 MiB limit holds
neither requests' 16 MiB while it streams nor takes them at the final push.  This
module imports neither at the top, nor the spool, nor ``email``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from resmon import __version__
from resmon.collect.logging_setup import log_fields

if TYPE_CHECKING:
    from resmon.collect.spool import Spool, SpoolEntry

log = logging.getLogger(__name__)

USER_AGENT = f"resmon-collect/{__version__}"
DEFAULT_PUSH_TIMEOUT = 1.5
BACKOFF_BASE = 0.1
BACKOFF_CAP = 2.0
# Below this much time left, another attempt cannot complete: stop.
MIN_ATTEMPT_SECONDS = 0.05
MESSAGE_LIMIT = 300
# resmon serve takes bodies up to 1 MiB by default; stay clear of it.
MAX_PUSH_BYTES = 900 * 1024


def is_retryable(status: int) -> bool:
    return status in (408, 429) or 500 <= status <= 599


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    when = _http_date(value)
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when - now)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _http_date(value: str) -> float | None:
    """The timestamp of an HTTP date: IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``,
    what servers send) here; the obsolete forms through ``email.utils``, imported only
    then (the email package costs about 6 MiB)."""
    parts = value.split()
    try:
        if len(parts) == 6 and parts[0].endswith(",") and parts[5] == "GMT":
            hour, minute, second = (int(x) for x in parts[4].split(":"))
            month = _MONTHS.index(parts[2]) + 1
            when = datetime(int(parts[3]), month, int(parts[1]), hour, minute, second, tzinfo=UTC)
            return when.timestamp()
    except ValueError:
        return None
    import email.utils

    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return None if parsed is None else parsed.timestamp()


def server_message(reply: Reply) -> str:
    """What the server said, short: the JSON ``error``/``message``, else the body text."""
    try:
        body = json.loads(reply.body)
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "message", "detail", "status"):
            if isinstance(body.get(key), str):
                return body[key][:MESSAGE_LIMIT]
    text = reply.body[: MESSAGE_LIMIT * 4].decode("utf-8", "replace").strip().replace("\n", " ")
    return text[:MESSAGE_LIMIT] or reply.reason


@dataclass
class Reply:
    """An HTTP answer, whichever client got it: header names in lower case."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes


class PushError(Exception):
    """No HTTP answer came (refused, timed out, not HTTP): the message says why."""


class _RequestsHTTP:
    """``requests``, for a URL behind a proxy: about 16 MiB, imported only then."""

    def __init__(self) -> None:
        import requests  # only here: the collector does not import it unless it pushes

        self._requests = requests
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> Reply:
        try:
            r = self.session.post(
                url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            )
        except self._requests.RequestException as exc:
            raise PushError(_short_error(exc)) from None
        lower = {k.lower(): v for k, v in r.headers.items()}
        return Reply(r.status_code, r.reason or "", lower, r.content)

    def close(self) -> None:
        self.session.close()


class _LiteHTTP:
    """:mod:`resmon.collect.http_lite`: the stdlib socket, a kept-alive connection."""

    def __init__(self) -> None:
        from resmon.collect import http_lite

        self._error = http_lite.HttpError
        self.client = http_lite.HttpClient({"User-Agent": USER_AGENT})

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> Reply:
        try:
            r = self.client.post(url, body, headers, timeout=timeout)
        except self._error as exc:
            raise PushError(str(exc)[:MESSAGE_LIMIT]) from None
        return Reply(r.status, r.reason, r.headers, r.body)

    def close(self) -> None:
        self.client.close()


@dataclass
class PushResult:
    """How one payload's delivery ended."""

    delivered: bool
    attempts: int
    status: int | None = None  # last HTTP status, None when no response came
    message: str = ""  # the server's message or the connection error
    permanent: bool = False  # refused for good (moved to failed/)
    response: Any = None  # the decoded 2xx body, e.g. {"id": 1, "status": "created"}

    def describe(self) -> str:
        if self.status is None:
            return f"connection error: {self.message}"
        return f"HTTP {self.status}: {self.message}" if self.message else f"HTTP {self.status}"


class PushClient:
    """POSTs payload bodies with the bearer token and idempotency key, retrying within a deadline."""

    def __init__(
        self, endpoint: str, token: str | None = None, *, lite: bool | None = None
    ) -> None:
        self.endpoint = endpoint
        self.token = token
        # True: http_lite; False: requests; None: http_lite unless a proxy is set for the
        # URL.  Each made at its first send.
        self.lite = lite
        self._lite: _LiteHTTP | None = None
        self._requests: _RequestsHTTP | None = None

    def close(self) -> None:
        for http in (self._lite, self._requests):
            if http is not None:
                http.close()

    def _http(self, url: str) -> _LiteHTTP | _RequestsHTTP:
        lite = self.lite
        if lite is None:
            from resmon.collect.http_lite import proxy_configured

            lite = not proxy_configured(url)
        if lite:
            self._lite = self._lite or _LiteHTTP()
            return self._lite
        self._requests = self._requests or _RequestsHTTP()
        return self._requests

    def send(
        self,
        body: bytes,
        idempotency_key: str,
        deadline: float,
        *,
        endpoint: str | None = None,
        token: str | None = None,
    ) -> PushResult:
        """Send one body until it is taken, refused for good, or ``deadline`` (monotonic) passes."""
        url = endpoint or self.endpoint
        token = token or self.token
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        result = PushResult(delivered=False, attempts=0)
        if not url:
            result.message = "no push endpoint (set --push-endpoint)"
            return result
        while True:
            remaining = deadline - time.monotonic()
            if remaining < MIN_ATTEMPT_SECONDS:
                if result.attempts == 0:
                    result.message = "no time left in the push budget"
                return result
            result.attempts += 1
            retry_after = None
            try:
                # The request's timeout is whatever the budget has left: one slow server
                # cannot hold the exit path past the deadline.
                reply = self._http(url).post(url, body, headers, remaining)
            except PushError as exc:
                result.status, result.message = None, str(exc)
                log.debug("push attempt %d to %s failed: %s", result.attempts, url, result.message)
            else:
                result.status = reply.status
                if 200 <= reply.status < 300:
                    result.delivered, result.message = True, ""
                    try:
                        # The stdlib's json, as requests': big integers stay exact.
                        result.response = json.loads(reply.body)
                    except ValueError:
                        result.response = None
                    return result
                result.message = server_message(reply)
                if 300 <= reply.status < 400:
                    location = reply.headers.get("location", "")
                    result.message = f"redirected to {location!r}; use that URL as --push-endpoint"
                    return result
                if not is_retryable(reply.status):
                    result.permanent = True
                    return result
                retry_after = retry_after_seconds(reply.headers.get("retry-after"))
                log.debug("push attempt %d to %s: %s", result.attempts, url, result.describe())
            import random  # at the first retry only: random's C modules cost ~0.2 MiB of RSS

            delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (result.attempts - 1)))
            if retry_after is not None:
                delay = max(delay, retry_after)
            if time.monotonic() + delay + MIN_ATTEMPT_SECONDS > deadline:
                # The server asked for (or backoff needs) more time than the budget has;
                # the payload stays spooled for the next run.
                return result
            time.sleep(delay)


def _short_error(exc: Exception) -> str:
    # requests nests urllib3 errors three deep; the innermost reason is what a user needs.
    reason: BaseException = exc
    while reason.args and isinstance(reason.args[0], BaseException):
        reason = reason.args[0]
    reason_obj = getattr(reason, "reason", None)
    if isinstance(reason_obj, BaseException):
        reason = reason_obj
    text = str(reason) or type(reason).__name__
    return f"{type(exc).__name__}: {text}"[:MESSAGE_LIMIT]


@dataclass
class DeliveryReport:
    delivered: list[SpoolEntry] = field(default_factory=list)
    failed: list[tuple[SpoolEntry, PushResult]] = field(default_factory=list)
    left: list[tuple[SpoolEntry, PushResult | None]] = field(default_factory=list)
    # Not sent: not a payload (set aside to quarantine/) or unreadable; each was logged.
    skipped: list[SpoolEntry] = field(default_factory=list)
    results: dict[str, PushResult] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.left


def deliver(
    spool: Spool,
    client: PushClient,
    deadline: float,
    *,
    entries: Iterable[SpoolEntry] | None = None,
) -> DeliveryReport:
    """Deliver ``entries`` (default: everything pending, oldest first) before ``deadline``.

    Each entry goes with the push token it was spooled with (tokens are scoped to one
    job, and an earlier run may have been another job), falling back to the client's;
    to the client's endpoint (the current configuration: a server may have moved since),
    falling back to the one it was spooled with.  A delivered entry is removed; a refused
    one moves to failed/; one that is not a payload moves to quarantine/ unsent; the rest
    stay.  Once the server is unreachable the remaining entries are not tried: they would
    only spend the budget on the same error.  No spool error is raised.
    """
    todo = spool.pending() if entries is None else list(entries)
    return _deliver_each(spool, client, deadline, todo, from_failed=False)


def retry_failed(spool: Spool, client: PushClient, deadline: float) -> DeliveryReport:
    """Re-send what failed/ holds, oldest first, with the client's (the current) token.

    For a payload refused because its token was wrong or expired: each goes with the
    same bytes and idempotency key as before (a server that took it meanwhile answers
    200 duplicate), with the client's token, else the one it was spooled with.  A
    delivered entry leaves failed/; one refused again stays there with the new reason;
    one the server did not answer stays for the next retry.
    """
    return _deliver_each(spool, client, deadline, spool.failed(), from_failed=True)


def _deliver_each(
    spool: Spool,
    client: PushClient,
    deadline: float,
    todo: list[SpoolEntry],
    *,
    from_failed: bool,
) -> DeliveryReport:
    report = DeliveryReport()
    unreachable: PushResult | None = None
    for entry in todo:
        if unreachable is not None or time.monotonic() + MIN_ATTEMPT_SECONDS > deadline:
            report.left.append((entry, unreachable))
            continue
        loaded = _load(spool, entry, report)
        if loaded is None:
            continue
        body, meta = loaded
        endpoint = client.endpoint or meta.get("endpoint")
        token = (client.token or meta.get("token")) if from_failed else meta.get("token")
        result = client.send(body, entry.idempotency_key, deadline, endpoint=endpoint, token=token)
        report.results[entry.name] = result
        if result.delivered:
            spool.remove(entry)
            report.delivered.append(entry)
            log.info("pushed %s", entry.name, extra=log_fields(response=result.response))
        elif result.permanent:
            report.failed.append((entry, result))
            _refused(spool, entry, f"{endpoint}: {result.describe()}", from_failed=from_failed)
        else:
            report.left.append((entry, result))
            log.error("push failed, payload kept in spool as %s: %s", entry.path, result.describe())
            if result.status is None and result.attempts > 0:
                unreachable = result
    return report


def _load(
    spool: Spool, entry: SpoolEntry, report: DeliveryReport
) -> tuple[bytes, dict[str, str]] | None:
    """An entry's body and meta, or None (gone, set aside, unreadable: logged and counted)."""
    from resmon.collect.spool import NotAPayload

    try:
        return entry.read_body(), entry.read_meta()
    except FileNotFoundError:
        return None  # delivered or moved meanwhile by another resmon on this host
    except NotAPayload as exc:
        spool.set_aside(entry, str(exc))
    except OSError as exc:
        spool.trouble("cannot read spool entry %s, skipped: %s", entry.path, exc)
    report.skipped.append(entry)
    return None


def _refused(spool: Spool, entry: SpoolEntry, reason: str, *, from_failed: bool) -> None:
    if from_failed:
        spool.note_refusal(entry, reason)
        log.error("push refused again, payload stays in %s: %s", entry.path, reason)
        return
    target = spool.move_to_failed(entry, reason)
    if target is not None:
        log.error("push refused, payload moved to %s: %s", target, reason)
    else:
        log.error("push refused: %s", reason)


@dataclass
class FlushCounts:
    """What one pass over the spool (or over failed/) did with its entries."""

    delivered: int = 0
    refused: int = 0
    left: int = 0
    skipped: int = 0

    @classmethod
    def of(cls, report: DeliveryReport) -> FlushCounts:
        return cls(len(report.delivered), len(report.failed), len(report.left), len(report.skipped))


def deliver_spool(
    spool_dir: Path,
    endpoint: str,
    token: str | None,
    budget: float,
    *,
    failed_too: bool = False,
) -> tuple[FlushCounts, FlushCounts | None, int]:
    """Deliver everything spooled, then (``failed_too``) re-send failed/ with ``token``.

    Returns the counts of the pending pass, of the failed/ pass (None when not asked)
    and the spool errors logged on the way (leftovers cleaned do not count).
    """
    from resmon.collect.spool import Spool

    spool = Spool(spool_dir)
    spool.tidy()
    deadline = time.monotonic() + budget
    client = PushClient(endpoint, token)
    try:
        pending = FlushCounts.of(deliver(spool, client, deadline))
        failed = FlushCounts.of(retry_failed(spool, client, deadline)) if failed_too else None
    finally:
        client.close()
    return pending, failed, spool.skipped


def fit_summary(summary: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """The summary, with its timeline thinned until the JSON fits in ``max_bytes``.

    A host with many containers makes a 300-point timeline large; a server refuses an
    oversized body for good (413), so the chart's resolution goes first, never the run.
    """
    if len(orjson.dumps(summary)) <= max_bytes:
        return summary
    out = dict(summary)
    timeline = list(summary.get("timeline") or [])
    while timeline and len(timeline) > 2:
        # Keep every other point, and always the last one (the end of the run).
        timeline = timeline[::2] if len(timeline) % 2 else [*timeline[:-1:2], timeline[-1]]
        out["timeline"] = timeline
        if len(orjson.dumps(out)) <= max_bytes:
            log.warning("payload too large: timeline thinned to %d points", len(timeline))
            return out
    out.pop("timeline", None)
    log.warning("payload too large: timeline left out of the push")
    return out
