"""``resmon collect``: the sampling loop, its exit path, and wrapper mode.

Sidecar mode samples until SIGTERM or SIGINT; wrapper mode (``-- CMD ARGS``)
starts CMD, measures its process tree as a container, and ends when CMD does.
Either way the exit path is the same and is built for a CI cancellation, which
leaves about 2.5 s between SIGTERM and SIGKILL:

    last sample -> run summary -> budgets -> --summary-file / Markdown -> print
    run_summary -> spool the payload -> push (within --push-timeout) -> the server's
    comparison and the baseline budgets (Markdown, log) -> exit

so the summary is on disk and in the log before the network is touched, and the
payload is on disk before the first push attempt: a server that is down costs a
later delivery, never the run.  Budgets and the comparison: :mod:`resmon.collect.run_checks`.

A signal ends the loop's sleep at once, not at the next tick, and SIGCHLD wakes
it the same way when the wrapped command exits (see :mod:`resmon.collect.signals`).

Wrapper mode, in more detail (the command's side is :mod:`resmon.collect.command_run`):

- resmon makes itself the child subreaper of what it starts, so an orphan of the
  command's tree (a daemon, an immediate double fork) is reparented to resmon, not
  init: the sampler keeps it in the command's container, and resmon reaps it on the
  SIGCHLD wakeup, adding up its rusage (:mod:`resmon.collect.reaper`);
- when the command exits, before it is reaped, the tree's processes still there are
  read from /proc: their CPU so far counts, and those running are ``left_running``
  (named in a warning line and in ``command.left_running``; ended with
  ``--kill-left-running``, SIGTERM then SIGKILL within 0.5 s; else left alone);
- then the last sample, then the wait: the run's ``cpu_seconds`` is the kernel's
  rusage of the command plus its orphans' CPU, whatever the interval; the sampled
  figure stays beside it as ``command.sampled_cpu_seconds``, with the wait's
  ``ru_maxrss`` as ``command.rusage_maxrss_bytes``;
- the exit code is the command's (128+N when signal N killed it); resmon's own
  trouble costs a log line, never the job's exit code.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from resmon import __version__
from resmon.collect.logging_setup import log_fields
from resmon.collect.records import RecordWriter
from resmon.collect.run_identity import new_run_key, runner_host, spool_holds_something
from resmon.collect.signals import SIGTERM, Wakeup, installed, signal_name
from resmon.execution import missing_required

if TYPE_CHECKING:
    from resmon.collect.command_run import CommandRun
    from resmon.collect.live import LiveStream
    from resmon.collect.push import PushClient, PushResult
    from resmon.collect.run_checks import RunChecks
    from resmon.collect.spool import Spool, SpoolEntry

log = logging.getLogger(__name__)

# After forwarding SIGTERM, how long the wrapped command gets before resmon finishes
# without it: SIGKILL follows SIGTERM by 2.5 s on GitHub Actions, and the summary and
# push need the rest.
TERM_GRACE_SECONDS = 0.5
# A final sample right after a periodic one would turn one clock tick into a big
# percentage; waiting this long (at most) keeps the last interval meaningful.
MIN_FINAL_GAP_SECONDS = 0.25


@dataclass
class CollectConfig:
    """Everything ``resmon collect`` needs, already parsed and checked by the CLI."""

    interval: float = 2.0
    proc_path: str = "/proc"
    cgroup_path: str = "/sys/fs/cgroup"
    process_map: dict[str, str] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    top_n: int = 5
    log_format: str = "json"  # "json" | "text"
    sample_records: bool = True  # a metrics_collected record per sample (else the summary only)
    push_endpoint: str | None = None
    push_token: str | None = None
    push_timeout: float = 1.5
    spool_dir: Path | None = None
    summary_file: Path | None = None
    markdown_file: Path | None = None
    command: list[str] | None = None  # wrapper mode
    command_name: str = "command"  # the wrapped command's container
    kill_left_running: bool = False  # end what the command's tree left when it exits
    record_command: bool = False
    execution: dict[str, str] = field(default_factory=dict)
    budgets: list[Any] = field(default_factory=list)  # parsed --budget (collect.budgets.Budget)
    budget_action: str = "warn"  # "warn" | "fail" (wrapper mode: exit code 3, see budgets)
    workflow_commands: bool = False  # on GitHub/Forgejo: ::warning:: lines on stdout
    live_interval: float | None = None  # seconds between live batches; None: no streaming
    context: dict[str, str] = field(default_factory=dict)  # the run's context (summary.context)
    step: str | None = None  # --step: this run is one step of the job's run
    marks_file: Path | None = None  # --mark boundaries are read from here (collect.marks)


# --- the run --------------------------------------------------------------------


class Collector:
    """One ``resmon collect`` run; :meth:`run` returns the process exit code."""

    def __init__(
        self,
        config: CollectConfig,
        out: IO[bytes],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Only what sampling needs: a sidecar holds its imports for the whole job.
        from resmon.collect.accumulator import RunAccumulator
        from resmon.collect.sampler import Sampler, SamplerConfig

        self.config = config
        self.writer = RecordWriter(out, config.log_format)
        self.clock = clock
        self.wakeup = Wakeup()
        self._sampler_cls = Sampler
        self._sampler_config_cls = SamplerConfig
        self.accumulator = RunAccumulator(top_n=config.top_n)
        self.sampler: Any = None
        self.command_run: CommandRun | None = None
        # The last sample taken, and the command container's cpu_seconds in it.
        self._last_sample: Any = None
        self._sampled_command_cpu: float | None = None
        self.exit_started: float | None = None
        self._background: threading.Thread | None = None
        self.spool: Spool | None = None
        self._last_sample_at: float | None = None
        self.run_key, self.host = new_run_key(), runner_host()
        self.live: LiveStream | None = None
        if config.push_endpoint and config.live_interval:
            from resmon.collect.live import start_live

            self.live = start_live(config, self.run_key, self.host)
        self._checks: RunChecks | None = None
        self.segments: Any = None
        if config.marks_file is not None:
            from resmon.collect.marks import MarkReader, Segments

            self.segments = Segments(MarkReader(config.marks_file))

    @property
    def checks(self) -> RunChecks:
        """The run's budgets and the server's comparison (made at the exit path)."""
        if self._checks is None:
            from resmon.collect.run_checks import RunChecks

            self._checks = RunChecks.of(self.config)
        return self._checks

    # -- sampling --

    def _make_sampler(self, command_pid: int | None) -> Any:
        cfg = self.config
        return self._sampler_cls(
            self._sampler_config_cls(
                proc_path=cfg.proc_path,
                cgroup_path=cfg.cgroup_path,
                process_map=dict(cfg.process_map),
                limits=dict(cfg.limits),
                top_n=cfg.top_n,
                exclude_pids=frozenset({os.getpid()}),
                command_pid=command_pid,
                command_name=cfg.command_name,
            )
        )

    def _take_sample(self) -> Any:
        try:
            sample = self.sampler.sample()
        except (OSError, ValueError) as exc:
            # One unreadable reading (procfs unmounted under us, a torn file) costs one
            # sample, not the run and its summary.
            log.error("sample failed, skipped: %s", exc)
            return None
        self._last_sample_at = self.clock()
        self._last_sample = sample
        figures = sample.containers.get(self.config.command_name)
        if self.config.command is not None and figures is not None:
            self._sampled_command_cpu = figures.cpu_seconds
        self.accumulator.add(sample)
        if self.segments is not None:
            self._segment_sample(sample)
        if self.live is not None:
            self.live.append(sample)
        if self.config.sample_records:
            self.writer.write("metrics_collected", sample.record())
        return sample

    def _segment_sample(self, sample: Any) -> None:
        """The job's CPU-seconds so far and memory now, for the --mark segments."""
        names = self.accumulator.job_containers()
        memory = sum(
            sample.containers[n].memory_bytes or 0 for n in names if n in sample.containers
        )
        self.segments.sample(sample.timestamp, self.accumulator.cpu_seconds(), float(memory))

    def _final_sample(self) -> None:
        if self._last_sample_at is not None:
            gap = self.clock() - self._last_sample_at
            wait = min(self.config.interval, MIN_FINAL_GAP_SECONDS) - gap
            if wait > 0:
                time.sleep(wait)
        self._take_sample()

    # -- delivery of what earlier runs left --

    def _spool(self) -> Spool | None:
        """The run's one Spool: its ``skipped`` counts the start-up delivery's errors too."""
        if self.spool is None and self.config.spool_dir is not None:
            from resmon.collect.spool import Spool

            self.spool = Spool(self.config.spool_dir)
        return self.spool

    def _deliver_earlier(self) -> None:
        cfg = self.config
        if not cfg.push_endpoint or not spool_holds_something(cfg.spool_dir):
            return
        if (spool := self._spool()) is None:
            return
        started_ns = time.time_ns()

        def work() -> None:
            try:
                spool.tidy()
                # Only what earlier runs left: this run's own entry is the final push's.
                earlier = [e for e in spool.pending() if e.created_ns < started_ns]
                if not earlier:
                    return
                from resmon.collect.push import PushClient, deliver

                client = PushClient(cfg.push_endpoint or "", cfg.push_token)
                try:
                    deadline = time.monotonic() + cfg.push_timeout
                    report = deliver(spool, client, deadline, entries=earlier)
                finally:
                    client.close()
                if report.delivered:
                    log.info("delivered %d payload(s) left by earlier runs", len(report.delivered))
            except Exception as exc:  # a background nicety must never kill the run
                _unexpected("delivering earlier spooled payloads", exc)

        # In a thread: a slow or dead server, or a slow disk, must not delay the first
        # sample or the command.
        self._background = threading.Thread(target=work, name="resmon-spool", daemon=True)
        self._background.start()

    # -- the loop --

    def run(self) -> int:
        if self.config.push_endpoint:
            # Said at the start: the push at the end is too late to fix the job's setup.
            for variable in missing_required(self.config.execution):
                log.warning("%s is not set; the server will refuse the push", variable)
        with installed(self.wakeup, child=self.config.command is not None):
            self._deliver_earlier()
            if self.config.command is not None:
                return self._run_wrapper()
            return self._run_sidecar()

    def _advance(self, next_at: float) -> float:
        next_at += self.config.interval
        # A sample that took longer than the interval skips ticks rather than bunching them.
        return max(next_at, self.clock())

    def _run_sidecar(self) -> int:
        self.sampler = self._make_sampler(None)
        next_at = self.clock() + self.config.interval
        self._take_sample()
        while True:
            self.wakeup.wait(next_at - self.clock())
            if self.wakeup.stop_requested:
                self.exit_started = self.clock()
                log.info("received %s: finishing", signal_name(self.wakeup.received[0]))
                self._final_sample()
                break
            if self.clock() >= next_at:
                self._take_sample()
                next_at = self._advance(next_at)
        self._finish()
        return self.checks.exit_code(0, wrapper=False)

    def _run_wrapper(self) -> int:
        cfg = self.config
        from resmon.collect.command_run import CommandRun

        run = self.command_run = CommandRun(cfg.command or [], cfg.proc_path, cfg.kill_left_running)
        cannot = run.start()
        if cannot is not None:
            return cannot
        self.sampler = self._make_sampler(run.pid)
        forwarded = 0
        term_deadline: float | None = None
        next_at = self.clock() + cfg.interval
        self._take_sample()
        while True:
            if self.wakeup.take_child_exited():
                run.reap_orphans()
            if run.exited():
                self.exit_started = self.clock()
                # Not reaped yet: the zombie's /proc/PID/stat still holds its own times
                # and those of every child it reaped, so the last sample counts the
                # command to the tick; the wait's rusage then gives the run's total.
                run.at_exit(self._sampled_command_tree())
                self._final_sample()
                run.reap()
                break
            # Forward each new SIGINT/SIGTERM to the command; it decides how to end.
            for signum in self.wakeup.received[forwarded:]:
                log.info("forwarding %s to the command (pid %d)", signal_name(signum), run.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(run.pid, signum)
                if signum == SIGTERM and term_deadline is None:
                    term_deadline = self.clock() + TERM_GRACE_SECONDS
                forwarded += 1
            if term_deadline is not None and self.clock() >= term_deadline:
                # SIGKILL is coming for us too: report what we have rather than nothing.
                log.warning("the command did not exit after SIGTERM; finishing without it")
                self.exit_started = self.clock()
                self._final_sample()
                run.abandoned()
                run.exit_code = 128 + SIGTERM
                break
            if self.clock() >= next_at:
                self._take_sample()
                next_at = self._advance(next_at)
                continue  # check for exit and signals again before sleeping
            wake_at = next_at if term_deadline is None else min(next_at, term_deadline)
            self.wakeup.wait(wake_at - self.clock())
        run.finish()
        self._command_rusage()
        self._finish()
        return self.checks.exit_code(run.exit_code or 0, wrapper=True)

    def _sampled_command_tree(self) -> list[int]:
        """The pids the last sample placed in the command's container."""
        sample = self._last_sample
        if sample is None:
            return []
        name = self.config.command_name
        return [p.pid for p in sample.processes if p.container == name]

    def _command_rusage(self) -> None:
        """Hand the accumulator the reaped command's figures (before run_summary)."""
        if self.command_run is not None:
            self.command_run.hand_over(self.accumulator)

    # -- the exit path --

    def build_summary(self) -> dict[str, Any] | None:
        summary = self.accumulator.run_summary()
        if summary is None:
            return None
        summary["collector"] = {
            "version": __version__,
            "interval_seconds": self.config.interval,
            "run_key": self.run_key,  # the live batches' run_key: this push finishes that run
            "host": self.host,
            "sources": {
                "system": {"cpu": "procfs", "memory": "procfs"},
                "containers": self.accumulator.sources(),
            },
        }
        if self.config.context:
            summary["context"] = dict(self.config.context)
        if self.config.step:
            summary["step"] = {"name": self.config.step}
        if self.segments is not None and self.segments.segments:
            end = self.accumulator.end or 0.0
            summary["steps"] = self.segments.summary(end, self.accumulator.cpu_seconds())
            from resmon.collect.marks import annotate_timeline

            annotate_timeline(summary)
        if self.config.command is not None:
            argv = self.config.command
            command: dict[str, Any] = {
                "name": os.path.basename(argv[0]) if argv else "",
                "container": self.config.command_name,
            }
            if self.config.record_command:
                command["argv"] = list(argv)
            if self.command_run is not None:
                self.command_run.add_to_summary(
                    summary, command, self.config.command_name, self._sampled_command_cpu
                )
            summary["command"] = command
        return summary

    def _finish(self) -> None:
        cfg = self.config
        if self.live is not None:
            self.live.stop()  # no live batch holds up the final push: that one matters
        summary = self.build_summary()
        if summary is None:
            log.warning("no samples were taken: no run summary")
            return
        try:
            self.checks.before_push(summary)
        except Exception as exc:  # never the summary, nor the push
            _unexpected("checking the budgets", exc)
        if cfg.summary_file is not None:
            try:
                from resmon.collect.report import write_summary_file

                write_summary_file(cfg.summary_file, summary)
            except OSError as exc:
                log.error("cannot write --summary-file %s: %s", cfg.summary_file, exc)
        if cfg.markdown_file is not None:
            try:
                from resmon.collect.report import append_markdown, render_markdown

                append_markdown(cfg.markdown_file, render_markdown(summary, cfg.execution))
            except OSError as exc:
                log.error("cannot write the Markdown summary to %s: %s", cfg.markdown_file, exc)
        self.writer.write("run_summary", summary)
        answer: tuple[bool, Any] = (False, None)  # (delivered, the server's answer)
        if cfg.push_endpoint:
            try:
                answer = self._spool_and_push(summary)
            except Exception as exc:  # resmon's own trouble never changes the job's exit code
                _unexpected("pushing the run summary", exc)
        try:
            self.checks.after_push(summary, answer[1], answer[0])
        except Exception as exc:
            _unexpected("reading the server's comparison", exc)
        if self.exit_started is not None:
            log.debug("exit path took %.3f s", self.clock() - self.exit_started)

    def _spool_and_push(self, summary: dict[str, Any]) -> tuple[bool, Any]:
        """Whether this run was delivered, and the server's answer."""
        from resmon.collect.push import MAX_PUSH_BYTES, PushClient, fit_summary
        from resmon.schema import push_payload

        cfg = self.config
        deadline = time.monotonic() + cfg.push_timeout
        payload = push_payload(cfg.execution, fit_summary(summary, MAX_PUSH_BYTES))
        spool = self._spool()
        entry = self._spool_payload(spool, payload) if spool is not None else None
        client = PushClient(cfg.push_endpoint or "", cfg.push_token)
        try:
            if spool is not None and entry is not None:
                result = self._push_spooled(spool, client, entry, deadline)
            else:
                import uuid

                key = str(uuid.uuid4())
                body = orjson.dumps({**payload, "idempotency_key": key})
                result = client.send(body, key, deadline)
                if result.delivered:
                    _log_pushed(cfg.push_endpoint, result.response)
                else:
                    log.error("push to %s failed: %s", cfg.push_endpoint, result.describe())
            return (True, result.response) if result and result.delivered else (False, None)
        finally:
            client.close()
            if self._background is not None:
                # Its deliveries and their errors belong to this run's count; it gets
                # what the budget has left, no more.
                self._background.join(max(0.0, deadline - time.monotonic()))
            if spool is not None and spool.skipped:
                log.warning(
                    "spool %s: %d skipped this run, each logged above (not written, set aside "
                    "or not removed); the exit code is unchanged",
                    spool.directory,
                    spool.skipped,
                )

    def _spool_payload(self, spool: Spool, payload: dict[str, Any]) -> SpoolEntry | None:
        """The spooled entry, or None (logged and counted) when the spool cannot be written."""
        from resmon.collect.spool import SpoolError

        cfg = self.config
        try:
            return spool.add(
                payload, meta={"endpoint": cfg.push_endpoint or "", "token": cfg.push_token or ""}
            )
        except SpoolError as exc:
            spool.trouble("spool could not be written (%s); pushing this run from memory", exc)
            return None

    def _push_spooled(
        self, spool: Spool, client: PushClient, entry: SpoolEntry, deadline: float
    ) -> PushResult | None:
        """This run first, then whatever earlier runs left, within the same budget
        (unless the start-up delivery is still at them: one sender per entry)."""
        from resmon.collect.push import deliver

        busy = self._background is not None and self._background.is_alive()
        others = [] if busy else [e for e in spool.pending() if e.path != entry.path]
        report = deliver(spool, client, deadline, entries=[entry, *others])
        result = report.results.get(entry.name)
        if result is not None and result.delivered:
            _log_pushed(self.config.push_endpoint, result.response)
        elif any(e.path == entry.path for e, _ in report.left):
            log.error(
                "run summary not delivered yet; it is spooled in %s and the next "
                "`resmon collect` (or `resmon collect --flush-spool`) will deliver it",
                spool.directory,
            )
        return result


def _log_pushed(endpoint: str | None, response: Any) -> None:
    """The server's answer as data (``"response": {"id": 1, "status": "created"}``)."""
    log.info("run summary pushed to %s", endpoint, extra=log_fields(response=response))


def _unexpected(what: str, exc: Exception) -> None:
    """A bug, not a spool or network condition: one error line; the traceback at debug."""
    log.error("%s failed unexpectedly, skipped: %s: %s", what, type(exc).__name__, exc)
    log.debug("%s failed", what, exc_info=exc)
