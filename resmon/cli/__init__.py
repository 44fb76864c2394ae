"""The ``resmon`` command: one click group, one module per command beside it.

Commands parse options and call the modules that do the work; domain errors
become click errors in this package and nowhere else.  The command modules import
only click at the top; heavy imports (flask, peewee, rich, requests) happen inside
the commands that need them, so ``resmon collect`` stays small in a sidecar.
"""

from __future__ import annotations

import click

from resmon import __version__
from resmon.cli import admin, collect, query, query_alerts, query_live, query_usage, serve, token


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="resmon")
def cli():
    """resmon: how much CPU and memory your CI jobs really use.

    `collect` samples a job and pushes one run summary to `serve`, which stores it;
    `token` mints the job's push token; `query` shows the history.

    \b
    Examples:
      export RECEIVER_READ_TOKEN="$(openssl rand -hex 32)" RECEIVER_HMAC_KEY="$(openssl rand -hex 32)"
      resmon serve --db metrics.db &
      export COLLECTOR_PUSH_TOKEN=$(resmon token --org my-org --repo my-org/my-repo \\
          --workflow ci.yml --job build)
      GITHUB_REPOSITORY_OWNER=my-org GITHUB_REPOSITORY=my-org/my-repo GITHUB_WORKFLOW=ci.yml \\
          GITHUB_JOB=build GITHUB_RUN_ID=1 resmon collect \\
          --push-endpoint http://127.0.0.1:8080/api/v1/metrics -- make -j2
      resmon query jobs
    """


cli.add_command(collect.collect)
cli.add_command(query.query)
query.query.add_command(query_live.live)
query.query.add_command(query_usage.usage)
query.query.add_command(query_alerts.alerts)
cli.add_command(serve.serve)
cli.add_command(token.token)
cli.add_command(admin.admin)
