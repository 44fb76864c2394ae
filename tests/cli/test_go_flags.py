"""Go's flag spellings (`-interval=2s`, `-push-endpoint URL`) on `resmon collect`.

The vectors parse through the real click command (make_context runs the same parser
and callbacks as a run); one real wrapped run takes a Go collector's command line whole.
"""

from __future__ import annotations

import os
import subprocess
import sys

import click
import orjson
import pytest

from resmon.cli import cli
from resmon.cli.collect import collect
from resmon.cli.go_flags import GoFlagCommand, go_spelling


def parsed(*args: str) -> dict:
    parent = cli.make_context("resmon", ["collect"])
    return collect.make_context("collect", list(args), parent=parent).params


# Every flag of the Go collector (REFERENCE.md), in each spelling Go's flag package takes.
GO_VECTORS = [
    (["-interval=2s"], "interval", 2.0),
    (["-interval", "2s"], "interval", 2.0),
    (["--interval=2s"], "interval", 2.0),
    (["--interval", "1m30s"], "interval", 90.0),
    (["-interval=500ms"], "interval", 0.5),
    (["-top=10"], "top", 10),
    (["-top", "10"], "top", 10),
    (["-log-format=text"], "log_format", "text"),
    (["-log-format", "json"], "log_format", "json"),
    (["-push-endpoint=http://resmon:8080/api/v1/metrics"], "push_endpoint", None),
    (["-push-endpoint", "http://resmon:8080/api/v1/metrics"], "push_endpoint", None),
    (["-push-token=T"], "push_token", "T"),
    (["-push-token", "T"], "push_token", "T"),
    (["-proc-path=/proc"], "proc_path", "/proc"),
    (["-proc-path", "/host/proc"], "proc_path", "/host/proc"),
    (["-log-level=debug"], "log_level", "debug"),
    (["-log-level", "warn"], "log_level", "warn"),
]


@pytest.mark.parametrize(("args", "name", "value"), GO_VECTORS)
def test_each_go_flag_spelling_sets_its_option(args, name, value):
    expected = "http://resmon:8080/api/v1/metrics" if name == "push_endpoint" else value
    assert parsed(*args)[name] == expected


def test_a_whole_go_manifest_line_parses():
    params = parsed(
        "-interval=5s",
        "-proc-path=/host/proc",
        "-log-level=debug",
        "-log-format=text",
        "-top=10",
        "-push-endpoint=http://receiver:8080/api/v1/metrics",
        "-push-token=abc",
    )
    assert (params["interval"], params["proc_path"], params["log_level"]) == (
        5.0,
        "/host/proc",
        "debug",
    )
    assert (params["log_format"], params["top"], params["push_token"]) == ("text", 10, "abc")
    assert params["push_endpoint"] == "http://receiver:8080/api/v1/metrics"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-record-command"], True),
        (["-record-command=true"], True),
        (["--record-command=True"], True),
        (["-record-command=1"], True),
        (["-record-command=false"], False),
        (["-record-command=F"], False),
        (["--record-command", "-record-command=false"], False),
    ],
)
def test_a_switch_takes_gos_true_and_false(args, expected):
    assert parsed(*args)["record_command"] is expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], None),
        (["-samples"], True),
        (["-samples=false"], False),
        (["-no-samples"], False),
        (["--no-samples=false"], True),
    ],
)
def test_an_on_off_switch_takes_gos_true_and_false(args, expected):
    assert parsed(*args)["samples"] is expected


def test_the_wrapped_commands_arguments_are_never_rewritten():
    params = parsed("-interval=1s", "--", "sh", "-c", "echo", "-interval=9s", "-x", "-top")
    assert params["interval"] == 1.0
    assert params["command"] == ("sh", "-c", "echo", "-interval=9s", "-x", "-top")
    # Without --: options stop at the first argument that is not one, as click's do.
    params = parsed("-top=3", "make", "-j2", "-interval=9s")
    assert params["top"] == 3 and params["interval"] == 2.0
    assert params["command"] == ("make", "-j2", "-interval=9s")


def test_an_options_value_is_never_rewritten():
    params = parsed("-name", "-interval", "-push-token", "-top=3")
    assert params["name"] == "-interval" and params["push_token"] == "-top=3"
    assert params["top"] == 5


def test_short_options_keep_their_meaning(tmp_path):
    out = tmp_path / "records"
    assert parsed("-o", str(out))["output"].name == str(out)
    assert parsed(f"-o{out}")["output"].name == str(out)
    assert parsed("-interval=1s", f"--output={out}")["output"].name == str(out)


def test_the_rewrite_is_the_rule_and_nothing_more():
    ctx = cli.make_context("resmon", ["collect"])
    sub = click.Context(collect, parent=ctx, info_name="collect")
    params = collect.get_params(sub)
    assert go_spelling(sub, params, ["-interval=2s", "-top", "3", "-o", "-x", "--", "-top=1"]) == [
        "--interval=2s",
        "--top",
        "3",
        "-o",
        "-x",
        "--",
        "-top=1",
    ]
    assert go_spelling(sub, params, ["-flush-spool=false", "-samples=0"]) == ["--no-samples"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-intervl=2s"], "No such option '-intervl'"),
        (["-push-endpont", "x"], "Did you mean one of: '--push-endpoint'"),
        (["-record-command=maybe"], "--record-command is a switch; give it alone, or =true"),
        (["-flush-spool=yes"], "=true / =false"),
    ],
)
def test_a_misspelt_go_flag_is_named_whole(runner, args, message):
    result = runner.invoke(cli, ["collect", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "No such option '-i'" not in result.output and "Traceback" not in result.output


def test_help_names_the_go_spelling(runner):
    for args in (["collect", "--help"], ["collect", "-help"], ["collect", "-h"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        text_of_help = " ".join(result.output.split())
        assert "Go flag spelling" in text_of_help
        for text in (
            "-interval=DURATION",
            "--interval=DURATION",
            "-interval DURATION",
            "nothing after -- is rewritten",
            "resmon collect -interval=2s -top=10 -push-endpoint=",
        ):
            assert text in text_of_help, text


def test_any_command_gets_it_with_one_line(runner):
    @click.command(cls=GoFlagCommand)
    @click.option("--addr", default=":8080", metavar="ADDR")
    @click.option("--hmac-key", multiple=True)
    @click.option("--require-expiry", is_flag=True)
    def serve_like(addr, hmac_key, require_expiry):
        click.echo(f"{addr} {list(hmac_key)} {require_expiry}")

    result = runner.invoke(
        serve_like, ["-addr=:9090", "-hmac-key", "k1", "-hmac-key=k2", "-require-expiry=true"]
    )
    assert result.exit_code == 0, result.output
    assert result.output == ":9090 ['k1', 'k2'] True\n"
    help_text = runner.invoke(serve_like, ["--help"]).output
    assert "-addr=ADDR" in help_text and "-require-expiry=true|false" in help_text


@pytest.mark.slow
def test_a_go_collector_command_line_runs_as_it_is(tmp_path, receiver):
    """The Go collector's flags, one dash each, on a real wrapped run that pushes."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "resmon",
            "collect",
            "-interval=0.2s",
            "-proc-path=/proc",
            "-log-level=debug",
            "-log-format",
            "text",
            "-top=2",
            f"-push-endpoint={receiver.url}",
            "-push-token=go-style-token",
            f"-spool-dir={tmp_path / 'spool'}",
            "--",
            "sh",
            "-c",
            'echo "hi $0"; sleep 0.5',
            "-interval=9s",
        ],
        capture_output=True,
        timeout=60,
        env={
            **os.environ,
            "GITHUB_REPOSITORY_OWNER": "o",
            "GITHUB_REPOSITORY": "o/r",
            "GITHUB_WORKFLOW": "w",
            "GITHUB_JOB": "j",
            "GITHUB_RUN_ID": "1",
        },
    )
    stderr = proc.stderr.decode()
    assert proc.returncode == 0, stderr
    out = proc.stdout.decode().splitlines()
    assert out[0] == "hi -interval=9s"  # the command's own argument, untouched
    assert len(out) == 2 and out[1].startswith("time=") and " msg=run_summary " in out[1]
    assert " collector.interval_seconds=0.2 " in out[1]
    assert "level=DEBUG" in stderr
    [request] = receiver.requests
    assert request.headers["Authorization"] == "Bearer go-style-token"
    summary = orjson.loads(request.body)["run_summary"]
    assert len(summary["top_cpu_processes"]) <= 2
