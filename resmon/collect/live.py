"""Live streaming: the run's samples sent in batches while the job runs.

With a push endpoint (``…/api/v1/metrics``), ``resmon collect`` also POSTs batches of
compact samples (:mod:`resmon.collect.live_samples`) to ``…/api/v1/metrics/live``
every ``--live-interval``, so the server shows the run while it runs and still has
its figures when the pod is killed before the final push.  The body:

    {"execution": {...the push's...},
     "run": {"run_key", "start_time", "host", "live_interval_seconds",
             "interval_seconds", "mode", "command_container"},
     "batch": {"seq": 0, "samples": [{"t", "elapsed", "host", "job", "containers"}]}}

with the job's push token and ``Idempotency-Key: <run_key>:<seq>``.  ``run_key`` is a
uuid4 made once per run, also sent in the final push as ``run_summary.collector.run_key``
(with ``host``) so the server finishes the same run.

What it never does:

- delay sampling: the sampling thread makes the compact sample and appends it to a
  bounded buffer under a lock; a daemon thread does the HTTP;
- grow without bound: the buffer keeps at most :data:`BUFFER_CAP` samples (the
  oldest go, counted, one warning per run) and the sender holds at most one batch's
  worth (:data:`MAX_BATCH_SAMPLES`) taken out of it;
- delay the exit path: nothing is flushed before the final push (the spool's is what
  matters); :meth:`LiveStream.stop` asks the thread to stop and waits at most
  :data:`STOP_WAIT_SECONDS`.  A request in flight then is abandoned with the thread.
- weigh on the sidecar: the thread speaks HTTP with :mod:`resmon.collect.http_lite`
  (the stdlib socket), not ``requests`` (16 MiB, for the whole job); only through a
  proxy, which http_lite does not speak, does it take requests.

A batch is sent until it is taken, with the same seq and key (a retried batch is
stored once): network errors and 408/429/5xx are retried with backoff.  404 or 405
(a receiver without the endpoint, e.g. the Go one) and 401/403 (the token) turn
streaming off for the run with one log line; 413 splits the batch; another 4xx drops
that batch (one error line per run).  The first batch goes early: at the first
sample with a CPU rate, or after ``min(live interval, 5 s)``, so the run shows at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson

from resmon.collect.live_samples import LiveBuffer, SampleCompactor
from resmon.collect.run_identity import new_run_key, runner_host  # noqa: F401 - said here too

if TYPE_CHECKING:
    from resmon.collect.push import PushClient
    from resmon.collect.samples import Sample

log = logging.getLogger(__name__)

DEFAULT_LIVE_INTERVAL = 15.0
BUFFER_CAP = 2000  # samples: 66 min at the default 2 s interval
MAX_BATCH_SAMPLES = 250
MAX_BATCH_BYTES = 256 * 1024  # the contract's limit; larger batches are split
FIRST_BATCH_WAIT = 5.0
# One batch's attempts (PushClient retries within it), each request's timeout included.
ATTEMPT_BUDGET = 5.0
STOP_WAIT_SECONDS = 0.05
# Network errors or 5xx: wait this long, doubling per failure, at most the live interval.
BACKOFF_START = 0.5

_SENT, _RETRY, _SPLIT, _DROP, _OFF = "sent", "retry", "split", "drop", "off"


def live_url(push_endpoint: str) -> str:
    """``…/api/v1/metrics`` -> ``…/api/v1/metrics/live`` (any query string kept)."""
    base, sep, query = push_endpoint.partition("?")
    return f"{base.rstrip('/')}/live{sep}{query}"


class LiveStream:
    """One run's streaming: :meth:`append` from the sampling thread, :meth:`stop` at exit."""

    def __init__(
        self,
        *,
        push_endpoint: str,
        push_token: str | None,
        execution: dict[str, str],
        run: dict[str, Any],
        live_interval: float,
        cap: int = BUFFER_CAP,
    ) -> None:
        self.url = live_url(push_endpoint)
        self.token = push_token
        self.execution = dict(execution)
        self.run = dict(run)  # run_key, host, intervals, mode, command_container
        self.live_interval = live_interval
        self.buffer = LiveBuffer(cap)
        self.compactor = SampleCompactor()
        self.on = True
        self.seq = 0  # the seq of the batch at the head of _pending
        self.sent_batches = 0
        self.sent_samples = 0
        self.refused_batches = 0
        self._pending: deque[list[dict[str, Any]]] = deque()  # split parts, head first
        self._failures = 0
        self._stopping = False
        self._wake = threading.Event()
        self._first_sent = False
        self._thread: threading.Thread | None = None

    # -- the sampling thread --

    def append(self, sample: Sample) -> None:
        """Buffer one sample (never raises, never does I/O but one log line per run)."""
        if not self.on:
            return
        try:
            item = self.compactor.compact(sample)
            if "start_time" not in self.run:
                self.run["start_time"] = item["t"]  # == run_summary.start_time
            if self.buffer.append(item) and self.buffer.dropped == 1:
                log.warning(
                    "live: the server has not taken the batches; keeping the newest %d "
                    "samples, dropping the oldest (the run summary at the end is complete)",
                    self.buffer.cap,
                )
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="resmon-live", daemon=True)
                self._thread.start()
            if not self._first_sent and sample.cpu_total_percent is not None:
                self._wake.set()
        except Exception as exc:  # resmon's own trouble: streaming off, the run goes on
            self._off("live: streaming failed unexpectedly, off for this run: %s: %s", exc)

    def stop(self) -> None:
        """End streaming without delaying the exit path (at most STOP_WAIT_SECONDS)."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(STOP_WAIT_SECONDS)
        if self.on and self.sent_batches:
            log.info(
                "live: %d batch(es), %d sample(s) sent to %s; %d dropped",
                self.sent_batches,
                self.sent_samples,
                self.url,
                self.buffer.dropped,
            )
        elif self.on:
            log.debug("live: no batch delivered to %s before the end", self.url)

    # -- the sender thread --

    def _run(self) -> None:
        from resmon.collect.push import PushClient

        client: PushClient | None = None
        try:
            # http_lite, not requests (unless through a proxy): the sender lives as long
            # as the job, and requests would hold 16 MiB of a sidecar's memory all along.
            client = PushClient(self.url, self.token)
            self._wake.wait(min(self.live_interval, FIRST_BATCH_WAIT))
            while self.on and not self._stopping:
                delivered = self._send_waiting(client)
                self._first_sent = True
                if delivered:
                    self._failures = 0
                    delay = self.live_interval
                else:
                    self._failures += 1
                    delay = min(self.live_interval, BACKOFF_START * 2 ** (self._failures - 1))
                    # Imported at the first failure only: random and its C modules
                    # are ~0.2 MiB of a sidecar that streams without one.
                    import random

                    delay *= random.uniform(0.5, 1.0)
                self._wake.clear()
                self._wake.wait(delay)
        except Exception as exc:
            self._off("live: streaming failed unexpectedly, off for this run: %s: %s", exc)
        finally:
            if client is not None:
                client.close()

    def _send_waiting(self, client: PushClient) -> bool:
        """Send what waits, batch by batch; False when a batch is to be retried later."""
        while self.on and not self._stopping:
            if not self._pending:
                samples = self.buffer.take(MAX_BATCH_SAMPLES)
                if not samples:
                    return True
                self._pending.extend(self._fit(samples))
            samples = self._pending[0]
            outcome = self._post(client, samples)
            if outcome == _RETRY:
                return False
            if outcome == _OFF:
                return True  # _off emptied the buffer and _pending
            self._pending.popleft()
            if outcome == _SPLIT:
                # Refused whole, so its seq was not stored: the first half takes it.
                half = len(samples) // 2
                self._pending.extendleft([samples[half:], samples[:half]])
            elif outcome in (_SENT, _DROP):
                self.seq += 1
        return True

    def _body(self, seq: int, samples: list[dict[str, Any]]) -> bytes:
        batch = {"seq": seq, "samples": samples}
        return orjson.dumps({"execution": self.execution, "run": self.run, "batch": batch})

    def _fit(self, samples: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """``samples`` in parts whose bodies are within MAX_BATCH_BYTES (one sample
        larger than that goes alone; the server's 413 then drops it)."""
        if len(samples) <= 1 or len(self._body(self.seq, samples)) <= MAX_BATCH_BYTES - 32:
            return [samples]
        half = len(samples) // 2
        return self._fit(samples[:half]) + self._fit(samples[half:])

    def _post(self, client: PushClient, samples: list[dict[str, Any]]) -> str:
        key = f"{self.run['run_key']}:{self.seq}"
        budget = min(ATTEMPT_BUDGET, max(1.0, self.live_interval))
        result = client.send(self._body(self.seq, samples), key, time.monotonic() + budget)
        status = result.status
        if result.delivered:
            self.sent_batches += 1
            self.sent_samples += len(samples)
            return _SENT
        if status in (404, 405):
            self._off(
                "live: %s does not take live batches (HTTP %s): streaming off for this "
                "run; the run summary is pushed at the end as usual",
                self.url,
                status,
                level=logging.INFO,
            )
            return _OFF
        if status in (401, 403):
            self._off(
                "live: batch refused (HTTP %s: %s): the push token (--push-token, "
                "COLLECTOR_PUSH_TOKEN) is missing, wrong or not for this job's scope; "
                "streaming off for this run",
                status,
                result.message,
                level=logging.ERROR,
            )
            return _OFF
        if status == 413 and len(samples) > 1:
            return _SPLIT
        if status is not None and 300 <= status < 400:
            self._off("live: %s: %s; streaming off", self.url, result.message)
            return _OFF
        if result.permanent:
            self.refused_batches += 1
            if self.refused_batches == 1:
                log.error("live: batch %d refused, dropped: %s", self.seq, result.describe())
            return _DROP
        log.debug("live: batch %d not taken yet: %s", self.seq, result.describe())
        return _RETRY

    def _off(self, message: str, *args: Any, level: int = logging.WARNING) -> None:
        if not self.on:
            return
        self.on = False
        if args and isinstance(args[-1], BaseException):
            exc = args[-1]
            args = (*args[:-1], type(exc).__name__, exc)
            log.debug("live streaming failed", exc_info=exc)
        log.log(level, message, *args)
        self._wake.set()
        self.buffer.clear()
        self._pending.clear()


def start_live(config: Any, run_key: str, host: str) -> LiveStream | None:
    """The run's LiveStream, or None: no push endpoint, or ``--no-live``.  The thread
    starts with the first sample."""
    if not config.push_endpoint or not config.live_interval:
        return None
    wrapper = config.command is not None
    return LiveStream(
        push_endpoint=config.push_endpoint,
        push_token=config.push_token,
        execution=config.execution,
        run={
            "run_key": run_key,
            "host": host,
            "live_interval_seconds": config.live_interval,
            "interval_seconds": config.interval,
            "mode": "wrapper" if wrapper else "sidecar",
            "command_container": config.command_name if wrapper else None,
        },
        live_interval=config.live_interval,
    )
