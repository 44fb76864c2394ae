"""``resmon query live``: the running jobs, refreshed like ``kubectl top``.

A module of its own beside :mod:`resmon.cli.query` (which is near its size bound);
registered on the ``query`` group in :mod:`resmon.cli`.
"""

from __future__ import annotations

import click

from resmon.cli.query import _query_options


@click.command("live", short_help="Running jobs now, refreshed (like kubectl top).")
@click.option("--org", "organization", help="Only this organization's runs.")
@click.option("--repo", "repository", help="Only this repository's runs (org/repo).")
@click.option("--workflow", help="Only this workflow's runs.")
@click.option("--job", help="Only this job's runs.")
@click.option("--once", is_flag=True, help="Print the table once and exit (for scripts).")
@click.option(
    "--every",
    type=click.FloatRange(0.5, 3600),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between refreshes.",
)
@click.pass_context
def live(
    ctx, organization, repository, workflow, job, once, every, server, read_token, database, output
):
    """Every running job (its collector streams batches: `resmon collect
    --live-interval`), with the job's CPU in cores and memory from its latest
    sample, how long it has run and how old its last batch is; then each runner
    host's CPU and memory.  Refreshed every --every seconds until Ctrl-C; --once
    prints one table, -o json one answer.

    \b
    Examples:
      resmon query live
      resmon query live --once --org my-org
      resmon query live -o json | jq '.runs[].snapshot.job'
    """
    from click.core import ParameterSource

    from resmon.query.client import QueryError, open_source
    from resmon.query.live_table import live_view, watch
    from resmon.query.render import make_console, to_json

    if database and ctx.get_parameter_source("server") == ParameterSource.COMMANDLINE:
        raise click.UsageError("give either --server or --db, not both")
    if repository and "/" not in repository and organization:
        repository = f"{organization}/{repository}"
    scope = {
        name: value
        for name, value in (
            ("organization", organization),
            ("repository", repository),
            ("workflow", workflow),
            ("job", job),
        )
        if value
    }
    console = make_console()
    try:
        source = open_source(server, read_token, database)
        try:
            if output == "json":
                console.file.write(to_json(source.live(scope)) + "\n")
            elif once:
                console.print(live_view(source.live(scope), console.width))
            else:
                watch(lambda: source.live(scope), console, every)
        finally:
            source.close()
    except QueryError as exc:
        raise click.ClickException(str(exc)) from None


live = _query_options(
    live, outputs=("table", "json"), output_help="table for people; json (one answer)."
)
