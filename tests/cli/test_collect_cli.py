"""`resmon collect` option handling and --flush-spool, through the real click command."""

from __future__ import annotations

import sys

import orjson
import pytest
from collect_receiver import closed_port_url, spool_payload

from resmon.cli import cli
from resmon.collect.spool import Spool


@pytest.mark.parametrize("value", ["2x", "", "-1s", "0", "1m30"])
def test_bad_interval_is_a_click_error(runner, value):
    result = runner.invoke(cli, ["collect", f"--interval={value}"])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--interval'" in result.output
    assert "Traceback" not in result.output


def test_bad_push_timeout_is_a_click_error(runner):
    result = runner.invoke(cli, ["collect", "--push-timeout", "soon"])
    assert result.exit_code == 2 and "--push-timeout" in result.output


def test_malformed_cgroup_limits_env_names_the_variable_and_value(runner, monkeypatch):
    monkeypatch.setenv("CGROUP_LIMITS", '{"runner": {"cpu": "two"}}')
    result = runner.invoke(cli, ["collect"])
    assert result.exit_code == 1, result.output
    assert "CGROUP_LIMITS" in result.output and "two" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_malformed_process_map_json(runner, monkeypatch):
    monkeypatch.setenv("CGROUP_PROCESS_MAP", "{node: runner}")
    result = runner.invoke(cli, ["collect"])
    assert result.exit_code == 1
    assert "CGROUP_PROCESS_MAP" in result.output and "{node: runner}" in result.output


def test_the_flag_spelling_is_named_when_the_flag_was_used(runner):
    result = runner.invoke(cli, ["collect", "--limits", "[1]"])
    assert result.exit_code == 1 and "--limits" in result.output


def test_help_explains_options_env_and_examples(runner):
    result = runner.invoke(cli, ["collect", "--help"])
    assert result.exit_code == 0
    for text in (
        "--interval",
        "--push-endpoint",
        "COLLECTOR_PUSH_TOKEN",
        "CGROUP_PROCESS_MAP",
        "GITEA_RUN_ID",
        "GITHUB_STEP_SUMMARY",
        "resmon collect --interval 1s -o resmon.log -- make -j2",
    ):
        assert text in result.output


def test_flush_spool_delivers_everything_and_exits_0(runner, receiver, tmp_path):
    spool = Spool(tmp_path / "spool")
    a = spool.add(spool_payload("1"))
    b = spool.add(spool_payload("2"), meta={"endpoint": receiver.url, "token": "old-token"})
    result = runner.invoke(
        cli,
        [
            "collect",
            "--flush-spool",
            f"--spool-dir={spool.directory}",
            f"--push-endpoint={receiver.url}",
        ],
        env={"COLLECTOR_PUSH_TOKEN": "tok"},
    )
    assert result.exit_code == 0, result.output
    assert "2 delivered, 0 refused (moved to failed/), 0 left" in result.output
    assert spool.pending() == []
    sent = {r.headers["Idempotency-Key"]: r.headers["Authorization"] for r in receiver.requests}
    assert sent == {a.idempotency_key: "Bearer tok", b.idempotency_key: "Bearer old-token"}


def test_flush_spool_exits_1_when_anything_is_left(runner, tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.add(spool_payload("1"))
    result = runner.invoke(
        cli,
        [
            "collect",
            "--flush-spool",
            f"--spool-dir={spool.directory}",
            f"--push-endpoint={closed_port_url()}",
            "--push-timeout=300ms",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "0 delivered, 0 refused (moved to failed/), 1 left" in result.output
    assert "connection error" in result.output  # the reason, on stderr
    assert len(spool.pending()) == 1


def test_flush_spool_refused_payload_exits_1_and_is_parked(runner, receiver, tmp_path):
    receiver.script = [(401, b'{"error": "invalid push token"}', {})]
    spool = Spool(tmp_path / "spool")
    entry = spool.add(spool_payload("1"))
    result = runner.invoke(
        cli,
        [
            "collect",
            "--flush-spool",
            f"--spool-dir={spool.directory}",
            f"--push-endpoint={receiver.url}",
        ],
    )
    assert result.exit_code == 1
    assert "HTTP 401: invalid push token" in result.output
    assert [e.name for e in spool.failed()] == [entry.name]
    assert orjson.loads(receiver.requests[0].body)["idempotency_key"] == entry.idempotency_key


def test_collect_path_stays_light(tmp_path):
    # A sidecar's memory matters: running `resmon collect` (here, wrapping `true` without
    # a push) must not import the server, the ORM, rich, or requests.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from resmon.cli import cli\n"
        f"try:\n    cli(['collect', '--interval=0.1s', '--output={tmp_path / 'r.jsonl'}', '--', 'true'])\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'flask', 'peewee', 'rich', 'requests'})\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", proc.stdout


def test_unreadable_proc_path_is_a_click_error_before_anything_runs(runner, tmp_path):
    marker = tmp_path / "ran"
    result = runner.invoke(cli, ["collect", f"--proc-path={tmp_path}", "--", "touch", str(marker)])
    assert result.exit_code == 2, result.output
    assert "--proc-path" in result.output and "stat" in result.output
    assert not marker.exists()


@pytest.mark.parametrize("value", ["2s", "500ms", "1m30s", "1.5", "--interval=3"])
def test_go_duration_spellings_are_accepted(runner, tmp_path, value):
    args = [value] if value.startswith("--") else [f"--interval={value}"]
    result = runner.invoke(cli, ["collect", *args, "--flush-spool", f"--spool-dir={tmp_path}"])
    assert result.exit_code == 0, result.output
    assert "0 delivered, 0 refused (moved to failed/), 0 left" in result.output


def test_a_push_without_run_id_is_warned_about_at_the_start(runner, receiver, tmp_path):
    result = runner.invoke(
        cli,
        [
            "collect",
            "--interval=0.1s",
            "--log-format=text",
            f"--spool-dir={tmp_path / 'spool'}",
            f"--push-endpoint={receiver.url}",
            f"--output={tmp_path / 'records'}",
            "--",
            sys.executable,
            "-c",
            "pass",
        ],
        env={"GITHUB_REPOSITORY": "o/r"},
    )
    assert result.exit_code == 0, result.output
    warning = "GITHUB_RUN_ID (or GITEA_RUN_ID) is not set; the server will refuse the push"
    assert warning in result.stderr
    # Before the run, not with the push at its end.
    assert result.stderr.index(warning) < result.stderr.index("pushed")


def test_no_warning_when_the_run_id_is_set_or_nothing_is_pushed(runner, receiver, tmp_path):
    common = ["collect", "--interval=0.1s", f"--spool-dir={tmp_path / 'spool'}"]
    command = ["--output", str(tmp_path / "records"), "--", sys.executable, "-c", "pass"]
    pushed = runner.invoke(
        cli, [*common, f"--push-endpoint={receiver.url}", *command], env={"GITHUB_RUN_ID": "7"}
    )
    local = runner.invoke(cli, [*common, *command])
    for result in (pushed, local):
        assert result.exit_code == 0, result.output
        assert "is not set" not in result.stderr


def test_retry_failed_needs_flush_spool_and_is_explained_in_help(runner, tmp_path):
    result = runner.invoke(cli, ["collect", "--retry-failed", f"--spool-dir={tmp_path}"])
    assert result.exit_code == 2, result.output
    assert "--retry-failed works with --flush-spool" in result.output
    help_text = " ".join(runner.invoke(cli, ["collect", "--help"]).output.split())
    assert "--retry-failed" in help_text and "failed/ with the current push token" in help_text
    assert "resmon collect --flush-spool --retry-failed" in help_text


def test_flush_spool_with_retry_failed_resends_with_the_current_token(runner, receiver, tmp_path):
    spool = Spool(tmp_path / "spool")
    entry = spool.add(spool_payload("1"), meta={"endpoint": receiver.url, "token": "expired"})
    spool.move_to_failed(entry, "HTTP 401: invalid push token")
    result = runner.invoke(
        cli,
        ["collect", "--flush-spool", "--retry-failed", f"--spool-dir={spool.directory}"],
        env={"COLLECTOR_PUSH_TOKEN": "renewed"},
    )
    assert result.exit_code == 0, result.output
    assert "0 delivered, 0 refused (moved to failed/), 0 left, 0 skipped" in result.output
    assert "failed/: 1 delivered, 0 refused again" in result.output
    [request] = receiver.requests
    assert request.headers["Authorization"] == "Bearer renewed"
    assert request.headers["Idempotency-Key"] == entry.idempotency_key
    assert spool.failed() == []


def test_flush_spool_counts_what_it_set_aside_and_exits_1(runner, receiver, tmp_path):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / "00000000000000000001-11111111-1111-4111-8111-111111111111.json").mkdir()
    args = [
        "collect",
        "--flush-spool",
        f"--spool-dir={spool_dir}",
        f"--push-endpoint={receiver.url}",
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert "0 delivered, 0 refused (moved to failed/), 0 left, 1 skipped" in result.output
    assert "is a directory; moved to" in result.output
    again = runner.invoke(cli, args)  # set aside once: the next flush is clean
    assert again.exit_code == 0 and "0 left, 0 skipped" in again.output
    assert receiver.requests == []


def test_help_says_what_the_push_budget_means_on_an_ephemeral_runner(runner):
    help_text = " ".join(runner.invoke(cli, ["collect", "--help"]).output.split())
    for text in (
        "--push-timeout DURATION",
        "[default: 1.5s]",  # short: inside a CI cancellation's SIGTERM-to-SIGKILL
        "(SIGINT, SIGTERM 7.5 s later, SIGKILL 2.5 s after that)",
        "stays in the spool for the next run",
        "spool is lost with its machine",
        "the Go collector waited 30 s",
        "--push-timeout 30s",
    ):
        assert text in help_text, text


def test_help_says_wrapper_mode_keeps_the_build_log_the_commands(runner):
    help_text = " ".join(runner.invoke(cli, ["collect", "--help"]).output.split())
    for text in (
        "The build log keeps CMD's own output and one `run_summary` record at the end",
        "--samples / --no-samples",
        "[default: on in sidecar mode; in wrapper mode only with -o",
    ):
        assert text in help_text, text
