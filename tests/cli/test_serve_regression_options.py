"""resmon serve's regression options: --regression-shift and --regression-shift-runs
(with their environment variables) reach the thresholds the server compares with."""

from __future__ import annotations

import pytest

from resmon.analysis.regressions import Thresholds
from resmon.cli import cli

SECRETS = {"RECEIVER_READ_TOKEN": "read-token", "RECEIVER_HMAC_KEY": "0123456789abcdef-key"}


@pytest.fixture
def started(monkeypatch):
    """The config resmon serve would start with, instead of starting."""
    from resmon.server import main

    seen = []
    monkeypatch.setattr(main, "serve", lambda config, *args, **kwargs: seen.append(config))
    return seen


def test_defaults_are_the_analysis_defaults(runner, started, tmp_path):
    result = runner.invoke(cli, ["serve", "--db", str(tmp_path / "m.db")], env=SECRETS)
    assert result.exit_code == 0, result.output
    assert started[0].baseline.thresholds == Thresholds()
    assert (Thresholds().shift, Thresholds().shift_runs) == (3.0, 5)


def test_flags_and_environment_set_the_shift_test(runner, started, tmp_path):
    args = ["serve", "--db", str(tmp_path / "m.db")]
    result = runner.invoke(
        cli, [*args, "--regression-shift", "4.5", "--regression-shift-runs", "3"], env=SECRETS
    )
    assert result.exit_code == 0, result.output
    env = {**SECRETS, "RESMON_REGRESSION_SHIFT": "2.5", "RESMON_REGRESSION_SHIFT_RUNS": "0"}
    result = runner.invoke(cli, [*args, "--regression-mad", "4"], env=env)
    assert result.exit_code == 0, result.output
    first, second = (config.baseline.thresholds for config in started)
    assert (first.shift, first.shift_runs, first.mad) == (4.5, 3, 3.5)
    assert (second.shift, second.shift_runs, second.mad) == (2.5, 0, 4.0)


@pytest.mark.parametrize(
    "args",
    [["--regression-shift", "-1"], ["--regression-shift-runs", "51"], ["--regression-shift", "x"]],
)
def test_out_of_range_values_are_refused(runner, started, args):
    result = runner.invoke(cli, ["serve", *args], env=SECRETS)
    assert result.exit_code == 2 and not started
    assert args[0] in result.output


def test_help_explains_both(runner):
    text = " ".join(runner.invoke(cli, ["serve", "--help"], terminal_width=200).output.split())
    for words in (
        "--regression-shift K",
        "RESMON_REGRESSION_SHIFT",
        "--regression-shift-runs N",
        "RESMON_REGRESSION_SHIFT_RUNS",
        "standard errors",
        "no shift test",
    ):
        assert words in text, words
