"""resmon serve's command line: Go's flag spellings, log levels, --help naming every
environment variable, and flags kept for command lines that still pass them."""

from __future__ import annotations

import re

import pytest

from resmon.cli import cli

SECRETS = {"RECEIVER_READ_TOKEN": "read-token", "RECEIVER_HMAC_KEY": "0123456789abcdef-key"}


@pytest.mark.parametrize(
    "args",
    [
        ["-addr=nonsense"],
        ["-addr", "nonsense"],
        ["--addr=nonsense"],
        ["-db=x.db", "-addr=nonsense"],
    ],
)
def test_go_spellings_of_the_receiver_flags(runner, args):
    """Go's flag package accepts -addr=X and -addr X; a manifest written for the Go
    receiver reaches the same check as --addr (here: a malformed address)."""
    result = runner.invoke(cli, ["serve", *args], env=SECRETS)
    assert result.exit_code == 2, result.output
    assert "Invalid value for --addr: invalid address 'nonsense'" in result.output


@pytest.mark.parametrize("level", ["warn", "WARN", "warning", "debug"])
def test_log_level_accepts_what_collect_accepts(runner, level):
    result = runner.invoke(cli, ["serve", "--log-level", level, "--addr", "nonsense"], env=SECRETS)
    assert "Invalid value for '--log-level'" not in result.output
    assert "invalid address" in result.output


def test_query_cap_is_still_accepted(runner):
    """The runs of a scope now come whole (streamed): the flag no longer limits them,
    but a command line that passes it still starts."""
    result = runner.invoke(cli, ["serve", "--query-cap", "5", "--addr", "nonsense"], env=SECRETS)
    assert "invalid address" in result.output
    assert "--query-cap" not in runner.invoke(cli, ["serve", "--help"]).output


def test_help_names_every_environment_variable(runner):
    from resmon.cli.serve import serve

    text = " ".join(runner.invoke(cli, ["serve", "--help"], terminal_width=200).output.split())
    for param in serve.params:
        if getattr(param, "envvar", None) and not param.hidden:
            for name in re.findall(r"[A-Z][A-Z_]+", str(param.envvar)):
                assert name in text, (param.name, name)
    assert "RESMON_METRICS_ADDR" in text and "RESMON_DB" in text
