"""The ``resmon`` command: one click group, four thin commands.

Commands parse options and call the modules that do the work; domain errors
become click errors here and nowhere else.  Heavy imports (flask, peewee, rich,
requests) happen inside the commands that need them, so ``resmon collect`` stays
small in a sidecar.
"""

from __future__ import annotations

from pathlib import Path

import click

from resmon import __version__
from resmon.cli import serve, token


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="resmon")
def cli():
    """resmon: how much CPU and memory your CI jobs really use.

    `collect` samples a job and pushes one run summary to `serve`, which stores it;
    `token` mints the job's push token; `query` shows the history.

    \b
    Examples:
      export RECEIVER_READ_TOKEN=read-secret RECEIVER_HMAC_KEY=hmac-secret
      resmon serve --db metrics.db &
      export COLLECTOR_PUSH_TOKEN=$(resmon token --org my-org --repo my-org/my-repo \\
          --workflow ci.yml --job build)
      GITHUB_REPOSITORY_OWNER=my-org GITHUB_REPOSITORY=my-org/my-repo GITHUB_WORKFLOW=ci.yml \\
          GITHUB_JOB=build GITHUB_RUN_ID=1 resmon collect \\
          --push-endpoint http://127.0.0.1:8080/api/v1/metrics -- make -j2
      resmon query jobs
    """


# --- collect ---------------------------------------------------------------


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


@cli.command(
    "collect",
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
    help="Where the records go (wrapper mode: keep them apart from the command's output).",
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
    help="Total time for pushing, retries included (SIGKILL follows SIGTERM by 2.5 s in CI).",
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
    help="Only deliver spooled payloads, then exit (1 if any is left).",
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
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD [ARGS]...]")
@click.pass_context
def collect(
    ctx,
    interval,
    proc_path,
    cgroup_path,
    process_map,
    limits,
    top,
    log_level,
    log_format,
    output,
    push_endpoint,
    push_token,
    push_timeout,
    spool_dir,
    flush_spool,
    summary_file,
    markdown_file,
    name,
    record_command,
    command,
):
    """Sample CPU and memory from /proc (and cgroupfs) until stopped, or while CMD runs.

    Sidecar mode: samples every process it can see, groups them into containers by
    cgroup, prints one `metrics_collected` record per interval and, on SIGTERM or
    SIGINT, a `run_summary` record; then writes it to the spool and pushes it.

    Wrapper mode (`-- CMD ARGS`): runs CMD, measures its whole process tree as the
    container `--name` (exact CPU total: resmon is its reaper), forwards SIGINT and
    SIGTERM to it, and exits with CMD's exit code (128+N if signal N killed it).

    A summary that cannot be pushed stays in the spool; every later start, or
    `--flush-spool`, delivers it (each payload has an Idempotency-Key: no duplicates).

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
      RESMON_SPOOL_DIR         --spool-dir

    \b
    Examples:
      # sidecar sharing the job's PID namespace
      resmon collect --interval=2s --top=10 \\
          --push-endpoint=http://resmon:8080/api/v1/metrics
      # wrap a build step; records to a file, report on the job page
      resmon collect --interval 1s -o resmon.log -- make -j2
      # deliver what earlier runs could not
      resmon collect --flush-spool --push-endpoint=http://resmon:8080/api/v1/metrics
    """
    from resmon.collect.collector import CollectConfig, Collector, configure_logging, deliver_spool
    from resmon.collect.containers import parse_limits, parse_process_map
    from resmon.collect.spool import default_spool_dir
    from resmon.execution import execution_from_env

    level = "WARNING" if log_level.lower() in ("warn", "warning") else log_level.upper()
    ctx.call_on_close(configure_logging(level, log_format.lower()))
    spool_dir = spool_dir or default_spool_dir()

    if flush_spool:
        if command:
            raise click.UsageError("--flush-spool takes no command")
        delivered, refused, left = deliver_spool(
            spool_dir, push_endpoint or "", push_token, push_timeout
        )
        click.echo(
            f"spool {spool_dir}: {delivered} delivered, {refused} refused (moved to failed/), {left} left",
            err=True,
        )
        ctx.exit(0 if refused == 0 and left == 0 else 1)

    try:
        # Fail before anything starts (the wrapped command, above all) when /proc is wrong.
        from resmon.procfs import read_cpu_times

        read_cpu_times(proc_path)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(
            f"cannot read {proc_path}/stat: {exc}", param_hint="--proc-path"
        ) from None

    config = CollectConfig(
        interval=interval,
        proc_path=proc_path,
        cgroup_path=cgroup_path,
        process_map=_config_from(
            ctx, "process_map", process_map, "CGROUP_PROCESS_MAP", parse_process_map
        ),
        limits=_config_from(ctx, "limits", limits, "CGROUP_LIMITS", parse_limits),
        top_n=top,
        log_format=log_format.lower(),
        push_endpoint=push_endpoint or None,
        push_token=push_token or None,
        push_timeout=push_timeout,
        spool_dir=spool_dir,
        summary_file=summary_file,
        markdown_file=markdown_file,
        command=list(command) if command else None,
        command_name=name,
        record_command=record_command,
        execution=execution_from_env(),
    )
    ctx.exit(Collector(config, output).run())


# --- query -----------------------------------------------------------------


def _query_options(f):
    """Where to read from and how to show it: shared by every `resmon query` command."""
    f = click.option(
        "--output",
        "-o",
        type=click.Choice(["table", "json", "csv"]),
        default="table",
        show_default=True,
        help="table for people; json or csv (raw numbers, API field names) for scripts.",
    )(f)
    f = click.option(
        "--db",
        "database",
        metavar="PATH|URL",
        envvar="RESMON_DB",
        help="Read this database directly (a SQLite file or postgresql:// URL), no server.  "
        "[env: RESMON_DB]",
    )(f)
    f = click.option(
        "--read-token",
        envvar=["RESMON_READ_TOKEN", "RECEIVER_READ_TOKEN"],
        metavar="TOKEN",
        help="The server's read token.  [env: RESMON_READ_TOKEN, else RECEIVER_READ_TOKEN]",
    )(f)
    f = click.option(
        "--server",
        envvar="RESMON_SERVER",
        metavar="URL",
        help="resmon server to ask [default: http://127.0.0.1:8080].  [env: RESMON_SERVER]",
    )(f)
    return f


def _when_option(ctx, param, value):
    """Check --since/--until here, so a typo is named before any request is sent."""
    if value is None:
        return None
    from resmon.store.history import HistoryError, parse_when

    try:
        parse_when(value)
    except HistoryError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _window_options(default_limit: int, limit_help: str):
    """--limit, --since and --until: which runs of one job (`runs`, `trend`)."""

    def decorate(f):
        f = click.option(
            "--until", callback=_when_option, metavar="WHEN", help="Only runs received before."
        )(f)
        f = click.option(
            "--since",
            callback=_when_option,
            metavar="WHEN",
            help="Only runs received since: 7d, 12h, 2026-11-01 or 2026-11-01T12:00:00Z.",
        )(f)
        f = click.option(
            "--limit",
            "-n",
            type=click.IntRange(1, 1000),
            default=default_limit,
            show_default=True,
            help=limit_help,
        )(f)
        return f

    return decorate


def _period_option(ctx, param, value):
    from resmon.store.history import HistoryError, parse_period

    try:
        parse_period(value)
    except HistoryError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _ask(ctx, kind, server, read_token, database, output, question):
    """Open the source, ask, render; every failure becomes a message that says what to do."""
    from click.core import ParameterSource

    from resmon.query.client import NotFoundError, QueryError, open_source
    from resmon.query.render import make_console, render

    if database and ctx.get_parameter_source("server") == ParameterSource.COMMANDLINE:
        raise click.UsageError("give either --server or --db, not both")
    try:
        source = open_source(server, read_token, database)
        try:
            body = question(source)
        finally:
            source.close()
    except NotFoundError as exc:
        lines = [str(exc)]
        if exc.suggestions:
            lines.append("closest matches:")
            lines.extend(f"  {s}" for s in exc.suggestions)
        if kind in ("runs", "trend"):
            lines.append("(all jobs: `resmon query jobs`)")
        elif kind == "run":
            lines.append("(run ids: `resmon query runs ORG REPO WORKFLOW JOB`)")
        raise click.ClickException("\n".join(lines)) from None
    except QueryError as exc:
        raise click.ClickException(str(exc)) from None
    render(kind, body, output, make_console())


@cli.group(short_help="Show run history as tables, JSON or CSV.")
def query():
    """Show run history from a resmon server (or straight from its database).

    \b
    Examples:
      export RESMON_SERVER=http://resmon:8080 RESMON_READ_TOKEN=...
      resmon query jobs
      resmon query runs my-org my-org/my-repo ci.yml build --since 7d
      resmon query show 42
      resmon query trend my-org my-repo ci.yml build --container runner --by day
      resmon query top --metric memory --period 30d
      resmon query runs my-org my-repo ci.yml build --db metrics.db -o csv > runs.csv

    REPO is org/repo or the bare name.  Tables use human units; --output json and
    csv carry raw numbers (bytes, cores, seconds) under the API's field names.
    """


@query.command("jobs", short_help="Every job, with its last run's figures.")
@click.option("--org", "organization", help="Only this organization's jobs.")
@click.option("--repo", "repository", help="Only this repository's jobs (org/repo or bare name).")
@_query_options
@click.pass_context
def query_jobs(ctx, organization, repository, server, read_token, database, output):
    """Every job, with its run count and its last run's figures.

    \b
    Examples:
      resmon query jobs
      resmon query jobs --org my-org --repo my-repo -o json
    """
    _ask(
        ctx,
        "jobs",
        server,
        read_token,
        database,
        output,
        lambda s: s.jobs(organization, repository),
    )


@query.command("runs", short_help="The last runs of one job.")
@click.argument("org")
@click.argument("repo")
@click.argument("workflow")
@click.argument("job")
@_window_options(default_limit=20, limit_help="At most this many runs, newest first.")
@_query_options
@click.pass_context
def query_runs(
    ctx, org, repo, workflow, job, limit, since, until, server, read_token, database, output
):
    """The last runs of one job: duration, samples, CPU and memory p95/peak.

    The ID column is what `resmon query show` takes.

    \b
    Examples:
      resmon query runs my-org my-repo ci.yml build
      resmon query runs my-org my-org/my-repo ci.yml build --since 7d --limit 50 -o csv
    """
    scope = (org, repo, workflow, job)
    _ask(
        ctx,
        "runs",
        server,
        read_token,
        database,
        output,
        lambda s: s.runs(scope, limit, since, until),
    )


@query.command("show", short_help="One run, per container, against its limits.")
@click.argument("run_id", metavar="ID", type=click.IntRange(min=1))
@_query_options
@click.pass_context
def query_show(ctx, run_id, server, read_token, database, output):
    """One run: duration, samples, system CPU and memory, each container's CPU and
    memory p50/p95/peak against its limit (green < 70 %, yellow to 90 %, red above),
    and the top processes.

    ID is the stored run's id, as `resmon query runs` lists it.

    \b
    Examples:
      resmon query show 42
      resmon query show 42 -o json | jq '.containers[] | {name, cpu_cores_p95}'
    """
    _ask(ctx, "run", server, read_token, database, output, lambda s: s.run(run_id))


@query.command("trend", short_help="p95 and peak per run or per day: is a job getting heavier?")
@click.argument("org")
@click.argument("repo")
@click.argument("workflow")
@click.argument("job")
@click.option(
    "--container", metavar="NAME", help="One container's cores and bytes instead of the system's."
)
@click.option(
    "--by",
    type=click.Choice(["run", "day"]),
    default="run",
    show_default=True,
    help="One point per run, or per UTC day (the day's highest p95 and peak).",
)
@_window_options(default_limit=30, limit_help="The last this many points.")
@_query_options
@click.pass_context
def query_trend(
    ctx,
    org,
    repo,
    workflow,
    job,
    container,
    by,
    limit,
    since,
    until,
    server,
    read_token,
    database,
    output,
):
    """Is this job getting heavier?  p95 and peak of CPU and memory per run or per
    day, oldest first, with sparklines.

    \b
    Examples:
      resmon query trend my-org my-repo ci.yml build
      resmon query trend my-org my-repo ci.yml build --container runner --by day --since 30d
    """
    scope = (org, repo, workflow, job)
    _ask(
        ctx,
        "trend",
        server,
        read_token,
        database,
        output,
        lambda s: s.trend(scope, container, by, limit, since, until),
    )


@query.command("top", short_help="Jobs ranked by CPU time, memory peak or duration.")
@click.option(
    "--metric",
    type=click.Choice(["cpu", "memory", "duration"]),
    default="cpu",
    show_default=True,
    help="cpu: total CPU time; memory: highest peak; duration: total run time.",
)
@click.option(
    "--period",
    default="7d",
    show_default=True,
    callback=_period_option,
    metavar="PERIOD",
    help="How far back: 30m, 12h, 7d, 2w.",
)
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(1, 100),
    default=10,
    show_default=True,
    help="How many jobs.",
)
@_query_options
@click.pass_context
def query_top(ctx, metric, period, limit, server, read_token, database, output):
    """What costs the most?  Jobs ranked over a period, with run counts.

    \b
    Examples:
      resmon query top
      resmon query top --metric memory --period 30d --limit 20
    """
    _ask(ctx, "top", server, read_token, database, output, lambda s: s.top(metric, period, limit))


cli.add_command(serve.serve)
cli.add_command(token.token)
