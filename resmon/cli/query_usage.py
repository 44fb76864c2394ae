"""``resmon query usage``: CPU-hours and GiB-hours per group and period.

A module of its own beside :mod:`resmon.cli.query`; registered on the ``query``
group in :mod:`resmon.cli`.
"""

from __future__ import annotations

import click

from resmon.cli.query import _period_option, _query_options


@click.command("usage", short_help="CPU-hours and GiB-hours per org, repo, workflow or job.")
@click.option(
    "--by",
    type=click.Choice(["org", "repo", "workflow", "job"]),
    default="job",
    show_default=True,
    help="One row per organization, repository, workflow or job (and period).",
)
@click.option(
    "--period",
    default="30d",
    show_default=True,
    callback=_period_option,
    metavar="PERIOD",
    help="How far back: 12h, 7d, 30d, 2w (from the start of that day or hour).",
)
@click.option(
    "--granularity",
    type=click.Choice(["day", "hour"]),
    default="day",
    show_default=True,
    help="One row per UTC day or hour (hourly rollups are kept 90 days by default).",
)
@click.option("--org", "organization", help="Only this organization's runs.")
@click.option("--repo", "repository", help="Only this repository's runs (org/repo or bare name).")
@click.pass_context
def usage(
    ctx, by, period, granularity, organization, repository, server, read_token, database, output
):
    """What the jobs used, for capacity planning and chargeback: per organization,
    repository, workflow or job, per UTC day or hour.

    \b
    CPU-hours: the CPU time the jobs' own processes used, in hours (one core busy
      for one hour is 1 CPU-hour; the machine's other work is not counted).
    GiB-hours: each run's job memory peak in GiB times its duration in hours,
      summed: what a runner sized to the run's peak held for the whole run.  It is
      not the integral of memory over time (run summaries do not carry one), so it
      is at or above what the run actually held on average.
    A run counts in the day (hour) it was received.  Running runs are not counted;
    lost runs are, with their partial figures.

    \b
    Examples:
      resmon query usage --by org --period 30d
      resmon query usage --by repo --org my-org --granularity hour --period 2d
      resmon query usage --by job -o csv > usage.csv
    """
    from click.core import ParameterSource

    from resmon.query.client import QueryError, open_source
    from resmon.query.render import make_console
    from resmon.query.usage_table import ask_usage, render_usage

    if database and ctx.get_parameter_source("server") == ParameterSource.COMMANDLINE:
        raise click.UsageError("give either --server or --db, not both")
    params = {
        "by": by,
        "period": period,
        "granularity": granularity,
        "organization": organization,
        "repository": repository,
    }
    try:
        source = open_source(server, read_token, database)
        try:
            body = ask_usage(source, params)
        finally:
            source.close()
    except QueryError as exc:
        raise click.ClickException(str(exc)) from None
    render_usage(body, output, make_console())


usage = _query_options(usage)
