"""``resmon collect``: the sampler's command, in a sidecar or wrapping a CI step.

This is the sidecar's import path: nothing here, nor in what the command imports,
may pull in flask, peewee or rich (tests/collect/test_collector_cost.py checks it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from resmon.cli.go_flags import GoFlagCommand

if TYPE_CHECKING:
    from resmon.collect.collector import CollectConfig


def _duration_option(ctx, param, value):
    if value is None:
        return None
    from resmon.units import parse_duration

    try:
        seconds = parse_duration(str(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter(f"must be more than zero, got {value!r}")
    return seconds


class _BudgetList(click.types.StringParamType):
    """RESMON_BUDGET holds several expressions, one a line or separated by ';'."""

    name = "expr"

    def split_envvar_value(self, rv: str) -> list[str]:
        return [part for part in re.split(r"[;\n]", rv or "") if part.strip()]


def _budgets_option(ctx, param, value):
    """Every --budget parsed now: a bad one is a usage error before the command starts."""
    if not value:
        return []  # budgets' module is the exit path's: not imported without a budget
    from click.core import ParameterSource

    from resmon.collect.budgets import parse_budget

    source = ctx.get_parameter_source(param.name)
    where = " (from RESMON_BUDGET)" if source == ParameterSource.ENVIRONMENT else ""
    budgets = []
    for text in value or ():
        for part in re.split(r"[;\n]", text):
            if not part.strip():
                continue
            try:
                budgets.append(parse_budget(part))
            except ValueError as exc:
                raise click.BadParameter(f"{exc}{where}") from None
    return budgets


def _config_from(ctx, name: str, value: str | None, env: str, parse):
    """Parse a CGROUP_* value; the error names where the value came from."""
    from click.core import ParameterSource

    from resmon.collect.containers import ConfigError

    source = (
        env
        if ctx.get_parameter_source(name) == ParameterSource.ENVIRONMENT
        else f"--{name.replace('_', '-')}"
    )
    try:
        return parse(value, source=source)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.command(
    "collect",
    cls=GoFlagCommand,
    context_settings={"allow_interspersed_args": False},
    short_help="Sample /proc in a CI job; print and push a run summary at the end.",
)
@click.option(
    "--interval",
    default="2s",
    show_default=True,
    metavar="DURATION",
    callback=_duration_option,
    help="Time between samples: 500ms, 2s, 1m30s or plain seconds.",
)
@click.option(
    "--proc-path",
    default="/proc",
    show_default=True,
    metavar="DIR",
    help="procfs root (e.g. /host/proc).",
)
@click.option(
    "--cgroup-path",
    default="/sys/fs/cgroup",
    show_default=True,
    metavar="DIR",
    help="cgroupfs root; exact kernel counters are used where readable.",
)
@click.option(
    "--process-map",
    envvar="CGROUP_PROCESS_MAP",
    metavar="JSON",
    help='Process name -> container name, e.g. {"node": "runner"}.',
)
@click.option(
    "--limits",
    envvar="CGROUP_LIMITS",
    metavar="JSON",
    help='Container limits in Kubernetes quantities, e.g. {"runner": {"cpu": "2", "memory": "1Gi"}}.',
)
@click.option(
    "--top",
    default=5,
    show_default=True,
    type=click.IntRange(0, 1000),
    help="Top processes to report.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warn", "warning", "error"], case_sensitive=False),
    help="Level of diagnostics on stderr.",
)
@click.option(
    "--log-format",
    default="json",
    show_default=True,
    type=click.Choice(["json", "text"], case_sensitive=False),
    help="Records (stdout) and diagnostics (stderr) as JSON lines or key=value text.",
)
@click.option(
    "-o",
    "--output",
    default="-",
    show_default=True,
    type=click.File("wb"),
    help="Where the records go. In wrapper mode, giving it also turns the per-sample "
    "records on, in that file and out of the command's output.",
)
@click.option(
    "--samples/--no-samples",
    default=None,
    help="Write a metrics_collected record per interval [default: on in sidecar mode; in "
    "wrapper mode only with -o, so the build log holds the command's output and one "
    "run_summary line].",
)
@click.option(
    "--push-endpoint",
    envvar="RESMON_PUSH_ENDPOINT",
    metavar="URL",
    help="POST the run summary here at the end, e.g. http://resmon:8080/api/v1/metrics.",
)
@click.option(
    "--push-token",
    envvar="COLLECTOR_PUSH_TOKEN",
    metavar="TOKEN",
    help="Push token for the job's scope.",
)
@click.option(
    "--push-timeout",
    default="1.5s",
    show_default=True,
    metavar="DURATION",
    callback=_duration_option,
    help="Total time for the push at the end, retries included. The default fits a CI "
    "cancellation (SIGINT, SIGTERM 7.5 s later, SIGKILL 2.5 s after that). A summary not "
    "pushed in time stays in the spool for the next run, but an ephemeral (hosted) runner's "
    "spool is lost with its machine: with a slow receiver, raise it there (the Go collector "
    "waited 30 s), e.g. --push-timeout 30s.",
)
@click.option(
    "--live-interval",
    envvar="RESMON_LIVE_INTERVAL",
    default="15s",
    show_default=True,
    metavar="DURATION",
    callback=_duration_option,
    help="With --push-endpoint: send the samples taken so far to the server's "
    "/api/v1/metrics/live (the push endpoint + /live) this often, so the run shows while it "
    "runs and survives a killed pod. A receiver without it (404) turns streaming off for "
    "the run; the run summary is pushed at the end either way.",
)
@click.option(
    "--no-live",
    is_flag=True,
    envvar="RESMON_NO_LIVE",
    help="Do not stream samples while the job runs; push the run summary at the end only.",
)
@click.option(
    "--spool-dir",
    envvar="RESMON_SPOOL_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Payloads wait here until delivered [default: $XDG_STATE_HOME/resmon/spool, "
    "else ~/.local/state/resmon/spool].",
)
@click.option(
    "--flush-spool",
    is_flag=True,
    help="Only deliver spooled payloads, then exit (1 if any is refused, left or skipped).",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="With --flush-spool: also re-send the payloads in the spool's failed/ with the "
    "current push token (--push-token or COLLECTOR_PUSH_TOKEN), each with its own "
    "Idempotency-Key; those refused again stay in failed/ with the new reason.",
)
@click.option(
    "--summary-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the run summary as JSON to this file.",
)
@click.option(
    "--markdown-file",
    envvar="GITHUB_STEP_SUMMARY",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append a Markdown report (tables and charts) to this file.",
)
@click.option(
    "--name", default="command", show_default=True, help="Container name of the wrapped command."
)
@click.option(
    "--record-command",
    is_flag=True,
    help="Record the wrapped command's full arguments (default: its base name only; arguments can hold secrets).",
)
@click.option(
    "--kill-left-running",
    is_flag=True,
    help="Wrapper mode: when CMD exits, end the processes its tree left running (daemons, "
    "background jobs): SIGTERM, then SIGKILL to those still there 0.4 s later. Off by "
    "default: they are named in a warning and in the summary (left_running), and keep "
    "running after resmon exits. Either way their CPU until CMD exited counts.",
)
@click.option(
    "--budget",
    "budgets",
    multiple=True,
    envvar="RESMON_BUDGET",
    type=_BudgetList(),
    callback=_budgets_option,
    metavar="EXPR",
    help="Check the job's figure at the end (repeatable; RESMON_BUDGET: one a line or "
    "';'-separated): memory<=90% (of the job's memory limit), memory<=2GiB, cpu<=1.5 "
    "(CPU p95, cores; or cpu<=80% of the limit), cpu-seconds<=600, duration<=20m, or "
    "against the server's baseline (the median of the job's earlier runs, from the "
    "push's answer): memory<=baseline+25%, cpu-seconds<=baseline+30%, "
    "duration<=baseline+20%. Results: the summary's budgets (static ones), the log, "
    "the Markdown and, on GitHub/Forgejo, a ::warning:: or ::error:: line.",
)
@click.option(
    "--budget-action",
    envvar="RESMON_BUDGET_ACTION",
    default="warn",
    show_default=True,
    type=click.Choice(["warn", "fail"], case_sensitive=False),
    help="fail: in wrapper mode, exit 3 when a budget is exceeded and CMD exited 0 (a "
    "failing CMD's exit code always wins; a budget not checked never fails). warn: the "
    "exit code is CMD's.",
)
@click.option(
    "--step",
    metavar="NAME",
    help="Wrapper mode: this command is step NAME of the job. Each step pushes its own "
    "summary; the server merges the steps of one run id and attempt into one run with a "
    "step breakdown (its CPU-seconds their sum, its memory peak their largest). The "
    "command's container is named NAME unless --name is given. No live streaming.",
)
@click.option(
    "--mark",
    metavar="NAME",
    help="Mark the start of step NAME in the running collector (a sidecar) and exit: one "
    "line appended to the marks file, which the collector reads at each sample. Its run "
    "summary lists the segments (steps) and their CPU-seconds and memory peaks.",
)
@click.option(
    "--marks-file",
    envvar="RESMON_MARKS_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where --mark writes and the collector reads the marks [default: marks beside "
    "the spool directory; a sidecar always watches it, a wrapper only when given]. In a "
    "pod: a file on a volume both containers mount.",
)
@click.option(
    "--context",
    "context",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a field of the run's context (repeatable): ref, branch, sha, event, "
    "run_attempt, runner_name, runner_labels, pod, namespace, node. Read from the CI "
    "environment otherwise (GITHUB_REF_NAME, GITHUB_SHA, ... see Environment); an empty "
    "VALUE leaves the field out.",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD [ARGS]...]")
@click.pass_context
def collect(ctx, **options):
    """Sample CPU and memory from /proc (and cgroupfs) until stopped, or while CMD runs.

    Sidecar mode: samples every process it can see, groups them into containers by
    cgroup, prints one `metrics_collected` record per interval and, on SIGTERM or
    SIGINT, a `run_summary` record; then writes it to the spool and pushes it.

    Wrapper mode (`-- CMD ARGS`): runs CMD, measures its whole process tree as the
    container `--name` (exact CPU total: resmon is its reaper, and the subreaper of
    the orphans its tree leaves, so a daemon or a double fork is counted too),
    forwards SIGINT and SIGTERM to it, and exits with CMD's exit code (128+N if
    signal N killed it). What CMD's tree leaves running when CMD exits is named
    (`left_running`); `--kill-left-running` ends it. The
    build log keeps CMD's own output and one `run_summary` record at the end; the
    per-sample records go to `-o FILE`, or with `--samples` to stdout.

    \b
    Exit codes (wrapper mode): CMD's own; 126 or 127 when CMD cannot be started;
    3 when --budget-action fail and a budget was exceeded while CMD exited 0;
    2 for a usage error (a bad --budget among them), before CMD starts.

    A summary that cannot be pushed stays in the spool; every later start, or
    `--flush-spool`, delivers it (each payload has an Idempotency-Key: no duplicates).
    The spool never changes the exit code: a spool that cannot be written, or that
    holds links, directories or FIFOs, costs a log line each (the push is made from
    memory; what is not a payload moves to quarantine/, never read or sent).

    \b
    Environment:
      COLLECTOR_PUSH_TOKEN     push token (--push-token)
      CGROUP_PROCESS_MAP       JSON, process name -> container (--process-map)
      CGROUP_LIMITS            JSON, container -> {"cpu", "memory"} (--limits)
      GITHUB_REPOSITORY_OWNER GITHUB_REPOSITORY GITHUB_WORKFLOW GITHUB_JOB GITHUB_RUN_ID
      GITHUB_RUN_ATTEMPT       the run's scope; each falls back to GITEA_REPO_OWNER,
                               GITEA_REPO, GITEA_WORKFLOW, GITEA_JOB, GITEA_RUN_ID,
                               GITEA_RUN_ATTEMPT
      GITHUB_STEP_SUMMARY      Markdown report file (--markdown-file)
      RESMON_PUSH_ENDPOINT     --push-endpoint
      RESMON_LIVE_INTERVAL     --live-interval
      RESMON_NO_LIVE=1         --no-live
      RUNNER_NAME              the runner's name sent with the run (else the hostname)
      GITHUB_REF GITHUB_REF_NAME GITHUB_HEAD_REF GITHUB_SHA GITHUB_EVENT_NAME RUNNER_LABELS
                               the run's context (--context); GitLab's CI_COMMIT_REF_NAME,
                               CI_COMMIT_BRANCH, CI_COMMIT_SHA, CI_PIPELINE_SOURCE,
                               CI_RUNNER_DESCRIPTION, CI_RUNNER_TAGS otherwise
      RESMON_POD_NAME RESMON_POD_NAMESPACE RESMON_NODE_NAME (or POD_NAME, POD_NAMESPACE,
      NODE_NAME)               Kubernetes: set them with the Downward API (docs/kubernetes.md)
      RESMON_MARKS_FILE        --marks-file
      RESMON_SPOOL_DIR         --spool-dir
      RESMON_BUDGET            --budget, one a line or ';'-separated
      RESMON_BUDGET_ACTION     --budget-action
      GITHUB_ACTIONS=true, GITEA_ACTIONS=true, FORGEJO_ACTIONS=true
                               budgets also said as workflow commands on stdout

    \b
    Examples:
      # sidecar sharing the job's PID namespace
      resmon collect --interval=2s --top=10 \\
          --push-endpoint=http://resmon:8080/api/v1/metrics
      # the same with the Go collector's spelling, as its manifests have it
      resmon collect -interval=2s -top=10 -push-endpoint=http://resmon:8080/api/v1/metrics
      # wrap a build step; records to a file, report on the job page
      resmon collect --interval 1s -o resmon.log -- make -j2
      # fail the step when the build's memory peak passes 90 % of its limit, or
      # its CPU time grows by more than 30 % over the job's usual
      resmon collect --budget 'memory<=90%' --budget 'cpu-seconds<=baseline+30%' \\
          --budget-action fail -- make -j2
      # one run, three steps: each wrapped on its own, merged by the server
      resmon collect --step build -- make -j2
      resmon collect --step test -- make check
      # mark steps for a sidecar that shares the marks file (RESMON_MARKS_FILE)
      resmon collect --mark test
      # deliver what earlier runs could not
      resmon collect --flush-spool --push-endpoint=http://resmon:8080/api/v1/metrics
      # re-send what was refused, with a corrected token from the environment
      COLLECTOR_PUSH_TOKEN=... resmon collect --flush-spool --retry-failed
    """
    from resmon.collect.collector import Collector
    from resmon.collect.logging_setup import configure_logging
    from resmon.collect.run_identity import default_spool_dir

    log_level, log_format = options["log_level"].lower(), options["log_format"].lower()
    level = "WARNING" if log_level in ("warn", "warning") else log_level.upper()
    ctx.call_on_close(configure_logging(level, log_format))
    spool_dir = options["spool_dir"] or default_spool_dir()

    if options["flush_spool"]:
        if options["command"]:
            raise click.UsageError("--flush-spool takes no command")
        ctx.exit(_flush(options, spool_dir))
    if options["retry_failed"]:
        raise click.UsageError("--retry-failed works with --flush-spool")
    if options["mark"] is not None:
        ctx.exit(_mark(options, spool_dir))
    if options["step"] is not None and not options["command"]:
        raise click.UsageError("--step names a wrapped command: --step NAME -- CMD [ARGS]")
    if options["step"] is not None:
        _check_name(options["step"], "--step")

    proc_path = options["proc_path"]
    try:
        # Fail before anything starts (the wrapped command, above all) when /proc is wrong.
        from resmon.procfs import read_cpu_times

        read_cpu_times(proc_path)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(
            f"cannot read {proc_path}/stat: {exc}", param_hint="--proc-path"
        ) from None

    config = _collect_config(ctx, options, spool_dir, log_format)
    _drop_parse_only_modules()
    ctx.exit(Collector(config, options["output"]).run())


def _drop_parse_only_modules() -> None:
    """Forget the modules only the option parsing used, before a run that lasts the job.

    click translates its texts through gettext, whose every lookup imports ``locale``
    (a function-local import: nothing keeps a reference) when a language variable such
    as LANG is set, as on CI runners; its tables are 0.16 MiB of a sidecar's memory for
    the whole job.  A later lookup (a click error) imports it again.
    """
    import gc
    import sys

    if sys.modules.pop("locale", None) is not None:
        gc.collect()  # the module's functions and dict hold each other: a cycle


def _check_name(value: str, option: str) -> None:
    if not value.strip() or len(value) > 255 or any(ch < " " or ch == "\x7f" for ch in value):
        raise click.BadParameter(
            "a name of 1 to 255 characters without control characters", param_hint=option
        )


def _mark(options: dict[str, Any], spool_dir: Path) -> int:
    """``--mark NAME``: append the mark for the running collector, then exit."""
    import time

    from resmon.collect.marks import default_marks_file, write_mark

    if options["command"]:
        raise click.UsageError("--mark takes no command")
    _check_name(options["mark"], "--mark")
    path = options["marks_file"] or default_marks_file(spool_dir)
    try:
        write_mark(path, options["mark"], time.time())
    except OSError as exc:
        raise click.ClickException(f"cannot write the mark to {path}: {exc}") from None
    return 0


def _context(values: tuple[str, ...]) -> dict[str, str]:
    """The run's context: the CI environment's, with the --context overrides."""
    from resmon.execution import context_from_env, parse_context_option

    overrides = {}
    for text in values:
        try:
            key, value = parse_context_option(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--context") from None
        overrides[key] = value
    return context_from_env(overrides=overrides)


def _flush(options: dict[str, Any], spool_dir: Path) -> int:
    """``--flush-spool``: one line per pass on stderr; 1 if anything is refused, left or skipped."""
    from resmon.collect.push import deliver_spool

    pending, failed, skipped = deliver_spool(
        spool_dir,
        options["push_endpoint"] or "",
        options["push_token"],
        options["push_timeout"],
        failed_too=options["retry_failed"],
    )
    click.echo(
        f"spool {spool_dir}: {pending.delivered} delivered, {pending.refused} refused "
        f"(moved to failed/), {pending.left} left, {skipped} skipped",
        err=True,
    )
    passes = [pending]
    if failed is not None:
        passes.append(failed)
        click.echo(
            f"failed/: {failed.delivered} delivered, {failed.refused} refused again "
            f"(kept in failed/ with the new reason), {failed.left} left",
            err=True,
        )
    return 1 if skipped or any(p.refused or p.left for p in passes) else 0


def _sample_records(ctx: click.Context, options: dict[str, Any]) -> bool:
    """A metrics_collected record per interval: as asked, else always in sidecar mode (as
    the Go collector) and in wrapper mode only when -o sends the records elsewhere: there
    stdout is the build log, and 8 KB per interval would bury the command's output."""
    from click.core import ParameterSource

    if options["samples"] is not None:
        return bool(options["samples"])
    return not options["command"] or ctx.get_parameter_source("output") != ParameterSource.DEFAULT


def _collect_config(
    ctx: click.Context, options: dict[str, Any], spool_dir: Path, log_format: str
) -> CollectConfig:
    """The collector's settings from the options, the CGROUP_* JSON and the CI environment.

    Called only for a run, after the /proc check: ``--flush-spool`` needs none of it, so
    a malformed CGROUP_* variable never stops a flush.
    """
    from click.core import ParameterSource

    from resmon.collect.collector import CollectConfig
    from resmon.collect.containers import parse_limits, parse_process_map
    from resmon.execution import execution_from_env

    command = options["command"]
    step = options["step"]
    marks_file = options["marks_file"]
    if marks_file is None and not command:
        from resmon.collect.marks import default_marks_file

        marks_file = default_marks_file(spool_dir)  # a sidecar always watches for marks
    name = options["name"]
    if step and ctx.get_parameter_source("name") == ParameterSource.DEFAULT:
        name = step
    return CollectConfig(
        interval=options["interval"],
        proc_path=options["proc_path"],
        cgroup_path=options["cgroup_path"],
        process_map=_config_from(
            ctx, "process_map", options["process_map"], "CGROUP_PROCESS_MAP", parse_process_map
        ),
        limits=_config_from(ctx, "limits", options["limits"], "CGROUP_LIMITS", parse_limits),
        top_n=options["top"],
        log_format=log_format,
        sample_records=_sample_records(ctx, options),
        push_endpoint=options["push_endpoint"] or None,
        push_token=options["push_token"] or None,
        push_timeout=options["push_timeout"],
        spool_dir=spool_dir,
        summary_file=options["summary_file"],
        markdown_file=options["markdown_file"],
        command=list(command) if command else None,
        command_name=name,
        kill_left_running=options["kill_left_running"],
        record_command=options["record_command"],
        execution=execution_from_env(),
        budgets=options["budgets"],
        budget_action=options["budget_action"].lower(),
        workflow_commands=_workflow_commands(),
        # A step's run is merged by the server from the steps' pushes: no live run of its own.
        live_interval=None if options["no_live"] or step else options["live_interval"],
        context=_context(options["context"]),
        step=step,
        marks_file=marks_file,
    )


def _workflow_commands() -> bool:
    """GitHub Actions and Forgejo/Gitea Actions read ::warning:: lines on a step's stdout."""
    return any(
        os.environ.get(name, "").lower() == "true"
        for name in ("GITHUB_ACTIONS", "GITEA_ACTIONS", "FORGEJO_ACTIONS")
    )
