"""``resmon query``: a group of read commands over the run history.

Each subcommand names its question; ``_ask`` opens the source (the read API, or
the database with ``--db``), asks it and renders the answer.  The client, the
renderers (rich) and the history parsers (peewee) are imported inside the
functions that use them, so ``resmon --help`` and the other commands never load them.
"""

from __future__ import annotations

import click


def _query_options(f, outputs=("table", "json", "csv"), output_help=None):
    """Where to read from and how to show it: shared by every `resmon query` command."""
    f = click.option(
        "--output",
        "-o",
        type=click.Choice(list(outputs)),
        default="table",
        show_default=True,
        help=output_help
        or "table for people; json or csv (raw numbers, API field names) for scripts.",
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
            help="Only runs received since: 7d, 12h, 2026-11-01 or 2026-11-01T12:00:00Z "
            "(before --until).",
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
    from resmon.store.history import HistoryError, parse_positive_period

    try:
        parse_positive_period(value)
    except HistoryError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _check_window(ctx, since, until):
    """--since must be before --until: a window the other way round (--since 1d
    --until 2d) holds no run, so it is a usage error rather than an empty table."""
    from resmon.store.history import HistoryError, parse_window

    try:
        parse_window(since, until, names=("--since", "--until"))
    except HistoryError as exc:
        raise click.UsageError(str(exc), ctx=ctx) from None


def _scope_option(f):
    """--scope: the job's own figures (the default) or the host's, the whole machine."""
    return click.option(
        "--scope",
        type=click.Choice(["job", "host"]),
        default="job",
        show_default=True,
        help="job: the job's own processes (CPU in cores, memory with its kind: pss, rss or "
        "cgroup); host: the whole machine it ran on (CPU percent, memory used by everything, "
        "other jobs included).  JSON and CSV carry both.",
    )(f)


def _ask(ctx, kind, server, read_token, database, output, question, scope="job"):
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
        if kind in ("runs", "trend", "recommend"):
            lines.append("(all jobs: `resmon query jobs`)")
        elif kind == "run":
            lines.append("(run ids: `resmon query runs ORG REPO WORKFLOW JOB`)")
        raise click.ClickException("\n".join(lines)) from None
    except QueryError as exc:
        raise click.ClickException(str(exc)) from None
    render(kind, body, output, make_console(), scope=scope)


@click.group(short_help="Show run history as tables, JSON or CSV.")
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
      resmon query recommend my-org my-repo ci.yml build -o yaml
      resmon query recommend --all --by risk
      resmon query regressions --since 7d
      resmon query runs my-org my-repo ci.yml build --db metrics.db -o csv > runs.csv

    REPO is org/repo or the bare name.  Tables use human units; --output json and
    csv carry raw numbers (bytes, cores, seconds) under the API's field names.
    """


@query.command("jobs", short_help="Every job, with its last run's figures.")
@click.option("--org", "organization", help="Only this organization's jobs.")
@click.option("--repo", "repository", help="Only this repository's jobs (org/repo or bare name).")
@_scope_option
@_query_options
@click.pass_context
def query_jobs(ctx, organization, repository, scope, server, read_token, database, output):
    """Every job, with its run count and its last run's figures: the job's own CPU
    (cores, CPU time) and memory peak, or with --scope host the machine's.

    \b
    Examples:
      resmon query jobs
      resmon query jobs --org my-org --repo my-repo -o json
      resmon query jobs --scope host
    """
    _ask(
        ctx,
        "jobs",
        server,
        read_token,
        database,
        output,
        lambda s: s.jobs(organization, repository),
        scope,
    )


@query.command("runs", short_help="The last runs of one job.")
@click.argument("org")
@click.argument("repo")
@click.argument("workflow")
@click.argument("job")
@_window_options(default_limit=20, limit_help="At most this many runs, newest first.")
@click.option("--branch", metavar="NAME", help="Only the runs that built this branch.")
@_scope_option
@_query_options
@click.pass_context
def query_runs(
    ctx,
    org,
    repo,
    workflow,
    job,
    limit,
    since,
    until,
    branch,
    scope,
    server,
    read_token,
    database,
    output,
):
    """The last runs of one job: duration, samples, the job's own CPU p95/peak (cores)
    and CPU time, memory p95/peak (with its kind); --scope host: the machine's.

    The ID column is what `resmon query show` takes.

    \b
    Examples:
      resmon query runs my-org my-repo ci.yml build
      resmon query runs my-org my-org/my-repo ci.yml build --since 7d --limit 50 -o csv
      resmon query runs my-org my-repo ci.yml build --branch main
    """
    _check_window(ctx, since, until)
    target = (org, repo, workflow, job)
    _ask(
        ctx,
        "runs",
        server,
        read_token,
        database,
        output,
        lambda s: s.runs(target, limit, since, until, branch),
        scope,
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
    help="One point per run, or per UTC day the runs started (the day's highest p95 and "
    "peak; a run without a start time counts on the day it was received).  With day, "
    "--since/--until select runs by that time too.",
)
@_window_options(default_limit=30, limit_help="The last this many points.")
@click.option("--branch", metavar="NAME", help="Only the runs that built this branch.")
@_scope_option
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
    branch,
    scope,
    server,
    read_token,
    database,
    output,
):
    """Is this job getting heavier?  p95 and peak of CPU and memory per run or per
    day, oldest first, with sparklines: the job's own, the machine's with --scope
    host, or one container's with --container.

    \b
    Examples:
      resmon query trend my-org my-repo ci.yml build
      resmon query trend my-org my-repo ci.yml build --container runner --by day --since 30d
      resmon query trend my-org my-repo ci.yml build --branch main
    """
    _check_window(ctx, since, until)
    if container and scope == "host":
        raise click.UsageError(
            "--container shows that container's own figures: give either --container or "
            "--scope host, not both",
            ctx=ctx,
        )
    target = (org, repo, workflow, job)
    _ask(
        ctx,
        "trend",
        server,
        read_token,
        database,
        output,
        lambda s: s.trend(target, container, by, limit, since, until, branch),
        scope,
    )


@query.command("top", short_help="Jobs ranked by CPU time, memory peak or duration.")
@click.option(
    "--metric",
    type=click.Choice(["cpu", "memory", "duration"]),
    default="cpu",
    show_default=True,
    help="cpu: the job's total CPU time (--scope host: the machine's mean CPU p95); "
    "memory: the highest peak (the job's, or the machine's memory used); duration: total "
    "run time.",
)
@click.option(
    "--period",
    default="7d",
    show_default=True,
    callback=_period_option,
    metavar="PERIOD",
    help="How far back: 30m, 12h, 7d, 2w (more than 0).",
)
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(1, 100),
    default=10,
    show_default=True,
    help="How many jobs.",
)
@_scope_option
@_query_options
@click.pass_context
def query_top(ctx, metric, period, limit, scope, server, read_token, database, output):
    """What costs the most?  Jobs ranked over a period by the job's own figures (or
    with --scope host by the machine's), with run counts.

    \b
    Examples:
      resmon query top
      resmon query top --metric memory --period 30d --limit 20
      resmon query top --scope host
    """
    _ask(
        ctx,
        "top",
        server,
        read_token,
        database,
        output,
        lambda s: s.top(metric, period, limit, scope),
        scope,
    )


def _advice_options(f):
    """The window a recommendation is made from: --since and --runs."""
    f = click.option(
        "--runs",
        type=click.IntRange(1, 1000),
        default=100,
        show_default=True,
        help="At most this many runs of a job, the newest.",
    )(f)
    f = click.option(
        "--until", callback=_when_option, metavar="WHEN", help="Only runs received before."
    )(f)
    f = click.option(
        "--since",
        default="30d",
        show_default=True,
        callback=_when_option,
        metavar="WHEN",
        help="Only runs received since: 30d, 12h, 2026-11-01 (before --until).",
    )(f)
    return f


@query.command("recommend", short_help="CPU and memory requests and limits, backtested.")
@click.argument("scope", nargs=-1, metavar="[ORG REPO WORKFLOW JOB]")
@click.option("--all", "fleet", is_flag=True, help="Every job, ranked (the fleet view).")
@click.option(
    "--by",
    type=click.Choice(["free", "risk"]),
    default="free",
    show_default=True,
    help="With --all: rank by what the recommended limits would free, or by the runs at "
    "risk (OOM-killed, throttled, within 10 % of their memory limit).",
)
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(1, 1000),
    default=50,
    show_default=True,
    help="With --all: how many jobs.",
)
@_advice_options
@click.pass_context
def query_recommend(ctx, scope, fleet, by, limit, since, until, runs, **source):
    """Requests and limits for a job and each of its containers, from its recent runs,
    backtested: each method is replayed on the job's own runs (sized from the runs
    before each run, checked on it) and its fit rate and waste shown beside CI
    Sizer's and VPA's.  Memory is never below the largest peak of the window; no
    recommendation from fewer than 3 runs.

    \b
    Examples:
      resmon query recommend my-org my-repo ci.yml build
      resmon query recommend my-org my-repo ci.yml build -o yaml > resources.yaml
      resmon query recommend --all --by risk --since 14d
    """
    _check_window(ctx, since, until)
    output = source.pop("output")
    if fleet == bool(scope) or (scope and len(scope) != 4):
        raise click.UsageError("give ORG REPO WORKFLOW JOB, or --all for every job", ctx=ctx)
    if fleet and output == "yaml":
        raise click.UsageError("-o yaml is one job's resources block: name the job", ctx=ctx)
    if fleet:
        kind, question = "fleet", lambda s: s.fleet(since, until, runs, by, limit)
    else:
        kind, question = "recommend", lambda s: s.recommend(tuple(scope), since, until, runs)
    _ask(ctx, kind, source["server"], source["read_token"], source["database"], output, question)


query_recommend = _query_options(
    query_recommend,
    ("table", "json", "csv", "yaml"),
    "table for people; json or csv for scripts; yaml: a Kubernetes resources block per "
    "container, to paste into a pod template.",
)


@query.command("regressions", short_help="Runs flagged as regressions when they were pushed.")
@click.option(
    "--since",
    default="7d",
    show_default=True,
    callback=_when_option,
    metavar="WHEN",
    help="Runs received since: 7d, 12h, 2026-11-01 (before --until).",
)
@click.option("--until", callback=_when_option, metavar="WHEN", help="Runs received before.")
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(1, 1000),
    default=100,
    show_default=True,
    help="At most this many runs, newest first.",
)
@_query_options
@click.pass_context
def query_regressions(ctx, since, until, limit, server, read_token, database, output):
    """Runs whose figures (CPU time, CPU p95, memory peak, duration; the job's or a
    container's) the server flagged when they were pushed: robustly unusual against
    the median and MAD of the job's earlier runs, and large (see `resmon serve
    --regression-mad` and `--regression-change`).

    \b
    Examples:
      resmon query regressions
      resmon query regressions --since 30d -o csv
    """
    _check_window(ctx, since, until)
    _ask(
        ctx,
        "regressions",
        server,
        read_token,
        database,
        output,
        lambda s: s.regressions(since, until, limit),
    )
