"""resmon serve's rollup and retention options: keep times as people write them,
0/off to keep forever, and a usage error naming the option otherwise."""

from __future__ import annotations

from datetime import timedelta

import pytest

from resmon.cli import cli
from resmon.cli.serve_options import _keep_option, resolve_maintenance


@pytest.mark.parametrize(
    ("text", "keep"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(days=14)),
        ("2y", timedelta(days=730)),
        ("0.5y", timedelta(days=182.5)),
        ("off", None),
        ("0", None),
        ("0d", None),
    ],
)
def test_keep_times(text, keep):
    assert _keep_option(None, None, text) == keep


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--retention-runs", "soon"], "is not a keep time"),
        (["--retention-daily-rollups", "1000y"], "at most 100y"),
        (["--rollup-interval", "2h"], "between 0 (off) and 1h"),
    ],
)
def test_bad_values_are_usage_errors(runner, args, words):
    result = runner.invoke(cli, ["serve", *args], env={"RECEIVER_READ_TOKEN": "r" * 32})
    assert result.exit_code == 2, result.output
    assert words in result.output


def test_defaults():
    options = {
        "rollup_interval": 1.0,
        "retention_interval": 60.0,
        "retention_samples": timedelta(days=7),
        "retention_runs": timedelta(days=180),
        "retention_hourly_rollups": timedelta(days=90),
        "retention_daily_rollups": timedelta(days=730),
        "retention_events": None,
    }
    resolved = resolve_maintenance(options)
    assert resolved.rollup_interval == 1.0 and resolved.policy.events is None
    assert resolved.policy.runs == timedelta(days=180)


def test_help_names_every_keep_time(runner):
    result = runner.invoke(cli, ["serve", "--help"])
    text = " ".join(result.output.split())
    for option in (
        "--retention-samples",
        "--retention-runs",
        "--retention-hourly-rollups",
        "--retention-daily-rollups",
        "--retention-events",
        "--retention-interval",
        "--rollup-interval",
    ):
        assert option in text
    assert "rollups outlive them" in text
