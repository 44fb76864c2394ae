"""The ``resmon`` command: one click group, four thin commands.

Commands parse options and call the modules that do the work; domain errors
become click errors here and nowhere else.  Heavy imports (flask, peewee, rich,
requests) happen inside the commands that need them, so ``resmon collect`` stays
small in a sidecar.
"""

from __future__ import annotations

import click

from resmon import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="resmon")
def cli():
    """resmon: how much CPU and memory your CI jobs really use.

    \b
      resmon collect   sample /proc inside a job, push a run summary at the end
      resmon serve     store run summaries, answer queries, mint push tokens
      resmon token     mint a push token scoped to org/repo/workflow/job
      resmon query     show run history as tables, JSON or CSV
    """


# --- collect ---------------------------------------------------------------


# --- serve -----------------------------------------------------------------


# --- token -----------------------------------------------------------------


# --- query -----------------------------------------------------------------
