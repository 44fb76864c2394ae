"""The ``resmon`` command: one click group, one module per command beside it.

Commands parse options and call the modules that do the work; domain errors
become click errors in this package and nowhere else.  The command modules import
only click at the top; heavy imports (flask, peewee, rich, requests) happen inside
the commands that need them, so ``resmon collect`` stays small in a sidecar.
"""

from __future__ import annotations

import importlib

import click

from resmon import __version__
from resmon.cli import collect

# The commands other than collect are imported when one of them is asked for (or
# for --help): a collecting sidecar never loads query, serve, token or admin, about
# 0.46 MiB of its resident memory.
LAZY_COMMANDS = {
    "query": "resmon.cli.query:query",
    "serve": "resmon.cli.serve:serve",
    "token": "resmon.cli.token:token",
    "admin": "resmon.cli.admin:admin",
}
# Subcommands of query kept in modules of their own.
QUERY_SUBCOMMANDS = (
    "resmon.cli.query_live:live",
    "resmon.cli.query_usage:usage",
    "resmon.cli.query_alerts:alerts",
)


def _load(spec: str) -> click.Command:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


class LazyGroup(click.Group):
    """A group whose commands but ``collect`` are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            command = _load(LAZY_COMMANDS[cmd_name])
            if cmd_name == "query" and isinstance(command, click.Group):
                for spec in QUERY_SUBCOMMANDS:
                    command.add_command(_load(spec))
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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
