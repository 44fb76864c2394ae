"""``resmon query alerts``: the alert rules and the state of each for each matched job.

A module of its own beside :mod:`resmon.cli.query`, registered on the ``query`` group
in :mod:`resmon.cli`.
"""

from __future__ import annotations

import click

from resmon.cli.query import _query_options


@click.command("alerts", short_help="Alert rules and which jobs are alerting.")
@click.option("--org", "organization", help="Only this organization's states.")
@click.option("--alerting", is_flag=True, help="Only the states that are not normal.")
@click.option("--rules", "rules_only", is_flag=True, help="Only the rules (and -o csv: the rules).")
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=None,
    help="At most this many states, the most recently changed first [default: 1000].",
)
@click.pass_context
def alerts(ctx, organization, alerting, rules_only, limit, server, read_token, database, output):
    """The state of every alert rule for every job (and container) it matched:
    normal, cpu_alert, mem_alert or both_alert, with the last figures seen against
    their limits and the breaches in a row; then the rules (from serve --alert-rules
    or the admin API).  -o json is the whole answer; -o csv the states, or the rules
    with --rules.

    \b
    Examples:
      resmon query alerts
      resmon query alerts --alerting --org my-org
      resmon query alerts --rules -o csv > rules.csv
      resmon query alerts --db metrics.db -o json | jq '.states[] | select(.state != "normal")'
    """
    from click.core import ParameterSource

    from resmon.query.alert_tables import alerts_view, csv_rows, fetch
    from resmon.query.client import QueryError, open_source
    from resmon.query.render import make_console, to_csv, to_json

    if database and ctx.get_parameter_source("server") == ParameterSource.COMMANDLINE:
        raise click.UsageError("give either --server or --db, not both")
    console = make_console()
    try:
        source = open_source(server, read_token, database)
        try:
            body = fetch(source, organization, alerting, limit)
        finally:
            source.close()
    except QueryError as exc:
        raise click.ClickException(str(exc)) from None
    if rules_only:
        body = {"rules": body["rules"]}
    if output == "json":
        console.file.write(to_json(body) + "\n")
    elif output == "csv":
        console.file.write(to_csv(*csv_rows(body, rules_only)))
    else:
        console.print(alerts_view(body, console.width, rules_only=rules_only))


alerts = _query_options(alerts)
