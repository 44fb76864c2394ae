"""``resmon serve``'s secrets: HMAC keys verbatim (flag, RECEIVER_HMAC_KEY), rotation
lists (RESMON_HMAC_KEYS), key and read-token files, the 16-byte minimum, and the
flags that reach the server's configuration (--require-expiry, the metrics ones)."""

from __future__ import annotations

import re

import pytest
import requests
from server_proc import ServerProcess, sample_payload

from resmon.cli import cli
from resmon.tokens import push_token

SCOPE = ("my-org", "my-org/my-repo", "ci.yml", "build")
KEY_WITH_SPACES = "my secret key, with spaces"
KEY_WITH_COMMA = "x,LongSecret-0123456789"


def push_with(server: ServerProcess, key: str, run_id: str) -> int:
    payload = sample_payload(run_id)
    token = push_token(key, *SCOPE)
    return requests.post(
        server.url + "/api/v1/metrics",
        json=payload,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).status_code


def minted(server: ServerProcess, read_token: str | None = None) -> str:
    scope = dict(zip(("organization", "repository", "workflow", "job"), SCOPE, strict=True))
    response = requests.post(
        server.url + "/api/v1/token",
        json=scope,
        headers={"Authorization": f"Bearer {read_token or server.read_token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["token"]


# --- real servers ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_key_from_the_environment_is_used_whole(tmp_path):
    # ServerProcess hands the key to the server in RECEIVER_HMAC_KEY.
    with ServerProcess(tmp_path / "m.db", hmac_keys=(KEY_WITH_SPACES,)) as server:
        assert push_with(server, KEY_WITH_SPACES, "1") == 201
        for part in ("my", "my secret key", "with spaces"):
            assert push_with(server, part, "2") == 401, part
        assert minted(server) == push_token(KEY_WITH_SPACES, *SCOPE)


@pytest.mark.slow
def test_a_key_from_the_flag_is_used_whole_and_mints(tmp_path):
    with ServerProcess(
        tmp_path / "m.db",
        hmac_keys=(KEY_WITH_COMMA,),
        extra_args=("--hmac-key", KEY_WITH_COMMA),
    ) as server:
        assert push_with(server, KEY_WITH_COMMA, "1") == 201
        assert push_with(server, "x", "2") == 401
        assert push_with(server, "LongSecret-0123456789", "3") == 401
        assert minted(server) == push_token(KEY_WITH_COMMA, *SCOPE)


@pytest.mark.slow
def test_rotation_from_key_files_and_the_rotation_list(tmp_path):
    minting = "current-key-0123456789"
    from_file = "file-key, with a comma and spaces"
    listed = ["older-key-0123456789", "oldest-key-0123456789"]
    key_file = tmp_path / "hmac.key"
    key_file.write_text(from_file + "\n")  # as `echo "$KEY" > file` leaves it
    with ServerProcess(
        tmp_path / "m.db",
        hmac_keys=(minting,),
        extra_args=("--hmac-key-file", str(key_file)),
        env={"RESMON_HMAC_KEYS": "\n".join(listed) + "\n"},
    ) as server:
        for i, key in enumerate([minting, from_file, *listed]):
            assert push_with(server, key, str(i)) == 201, key
        assert push_with(server, "some-other-key-0123456789", "x") == 401
        assert push_with(server, from_file + "\n", "y") == 401  # the newline is not the key's
        # The key of RECEIVER_HMAC_KEY comes first, so it mints.
        assert minted(server) == push_token(minting, *SCOPE)


@pytest.mark.slow
def test_the_read_token_file_overrides_the_variable(tmp_path):
    token_file = tmp_path / "read-token"
    token_file.write_text("read-token-from-the-file\n")
    with ServerProcess(
        tmp_path / "m.db",
        read_token="read-token-from-the-variable",
        extra_args=("--read-token-file", str(token_file)),
    ) as server:
        url = server.url + "/api/v1/metrics/repo/my-org/my-repo/ci.yml/build"
        ok = requests.get(url, headers={"Authorization": "Bearer read-token-from-the-file"})
        assert ok.status_code == 200
        env_token = {"Authorization": f"Bearer {server.read_token}"}
        assert requests.get(url, headers=env_token).status_code == 401
        assert minted(server, "read-token-from-the-file") == push_token(server.hmac_key, *SCOPE)


# --- refusals (before anything is opened) -----------------------------------------------


def serve(runner, tmp_path, args, env=None):
    return runner.invoke(
        cli,
        ["serve", "--db", str(tmp_path / "m.db"), "--addr", "127.0.0.1:1", *args],
        env={"RECEIVER_READ_TOKEN": "read-token-0123456789", **(env or {})},
    )


@pytest.mark.parametrize(
    "args, env, source",
    [
        (["--hmac-key", "short"], {}, "--hmac-key is 5 bytes"),
        (["--hmac-key", "x" * 20, "--hmac-key", "x"], {}, "--hmac-key #2 is 1 bytes"),
        ([], {"RECEIVER_HMAC_KEY": "fifteen-bytes.."}, "RECEIVER_HMAC_KEY is 15 bytes"),
        ([], {"RESMON_HMAC_KEYS": "y" * 16 + ",tiny"}, "RESMON_HMAC_KEYS item 2 is 4 bytes"),
    ],
)
def test_short_keys_are_refused_naming_their_source(runner, tmp_path, args, env, source):
    result = serve(runner, tmp_path, args, env)
    assert result.exit_code == 2, result.output
    assert source in result.output and "at least 16 bytes" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "m.db").exists()


def test_a_short_key_file_is_refused_without_showing_the_key(runner, tmp_path):
    key_file = tmp_path / "k"
    key_file.write_text("hunter2\n")
    result = serve(runner, tmp_path, ["--hmac-key-file", str(key_file)])
    assert result.exit_code == 2
    assert f"--hmac-key-file {key_file} is 7 bytes" in result.output
    assert "hunter2" not in result.output


@pytest.mark.parametrize("what", ["missing", "empty", "directory"])
@pytest.mark.parametrize("option", ["--hmac-key-file", "--read-token-file"])
def test_unusable_secret_files_are_usage_errors(runner, tmp_path, what, option):
    path = tmp_path / "secret"
    if what == "empty":
        path.write_text("\n")
    elif what == "directory":
        path.mkdir()
    args = [option, str(path)]
    if option == "--read-token-file":
        args += ["--hmac-key", "k" * 16]
    result = runner.invoke(
        cli, ["serve", "--db", str(tmp_path / "m.db"), *args], env={"RECEIVER_HMAC_KEY": ""}
    )
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and option in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "m.db").exists()


def test_both_read_token_sources_from_one_place_are_refused(runner, tmp_path):
    token_file = tmp_path / "t"
    token_file.write_text("file-token-0123456789")
    key = ["--hmac-key", "k" * 16]
    result = runner.invoke(
        cli, ["serve", "--read-token", "x", "--read-token-file", str(token_file), *key]
    )
    assert result.exit_code == 2 and "not both" in result.output
    result = runner.invoke(
        cli,
        ["serve", *key],
        env={"RECEIVER_READ_TOKEN": "x", "RESMON_READ_TOKEN_FILE": str(token_file)},
    )
    assert result.exit_code == 2 and "not both" in result.output


def test_secrets_on_the_command_line_get_a_warning(runner, tmp_path):
    result = serve(runner, tmp_path, ["--hmac-key", "short", "--read-token", "r" * 20])
    assert "warning: --hmac-key on the command line is visible" in result.stderr
    assert "warning: --read-token on the command line is visible" in result.stderr
    result = serve(runner, tmp_path, [], {"RECEIVER_HMAC_KEY": "short"})
    assert "warning" not in result.stderr


@pytest.mark.parametrize("command", [["serve"], ["token"], []])
def test_help_examples_keep_secrets_off_the_command_line(runner, command):
    text = runner.invoke(cli, [*command, "--help"]).output
    examples = text.split("Examples:", 1)[1].split("Options:", 1)[0]
    assert examples.strip()
    # A secret option with a value (not its -file form), or a password in a URL.
    assert not re.search(r"--(hmac-key|read-token)[ =]", examples), examples
    assert not re.search(r"postgresql://[^:@\s]+:(?!\$)[^@\s]+@", examples), examples


# --- flags that reach the server's configuration -------------------------------------------


@pytest.fixture
def started(monkeypatch):
    """The arguments resmon serve starts the server with (nothing is started)."""
    from resmon.server import main

    calls: list[tuple] = []
    monkeypatch.setattr(main, "serve", lambda *a, **kw: calls.append((a, kw)))
    return calls


def test_defaults_reach_the_server(runner, tmp_path, started):
    result = serve(runner, tmp_path, [], {"RECEIVER_HMAC_KEY": "k" * 16})
    assert result.exit_code == 0, result.output
    (config, options, metrics_listen), kwargs = started[0]
    assert config.hmac_keys == ("k" * 16,) and config.read_token == "read-token-0123456789"
    assert config.require_expiry is False
    assert config.metrics_path is True and config.metrics_refresh == 15.0
    assert metrics_listen is None and kwargs == {"metrics_timeout": 10.0}


@pytest.mark.parametrize(
    "args, env, expected",
    [
        (["--require-expiry"], {}, {"require_expiry": True}),
        ([], {"RESMON_REQUIRE_EXPIRY": "1"}, {"require_expiry": True}),
        (["--metrics-addr", ":9100"], {}, {"metrics_path": False, "listen": ("127.0.0.1", 9100)}),
        (["--metrics-addr", "0.0.0.0:9100"], {}, {"listen": ("0.0.0.0", 9100)}),
        (["--metrics-addr", "[::1]:9100", "--metrics-on-addr"], {}, {"metrics_path": True}),
        (["--no-metrics-on-addr"], {}, {"metrics_path": False, "listen": None}),
        (["--metrics-refresh", "1m"], {}, {"metrics_refresh": 60.0}),
        (["--io-timeout", "2"], {}, {"timeout": 2.0}),
    ],
)
def test_flags_reach_the_server(runner, tmp_path, started, args, env, expected):
    result = serve(runner, tmp_path, args, {"RECEIVER_HMAC_KEY": "k" * 16, **env})
    assert result.exit_code == 0, result.output
    (config, _options, metrics_listen), kwargs = started[0]
    got = {
        "require_expiry": config.require_expiry,
        "metrics_path": config.metrics_path,
        "metrics_refresh": config.metrics_refresh,
        "listen": metrics_listen,
        "timeout": kwargs["metrics_timeout"],
    }
    assert {k: got[k] for k in expected} == expected


@pytest.mark.parametrize("value", ["0", "50ms", "2h", "soon"])
def test_bad_metrics_refresh_is_a_usage_error(runner, tmp_path, started, value):
    result = serve(runner, tmp_path, ["--metrics-refresh", value], {"RECEIVER_HMAC_KEY": "k" * 16})
    assert result.exit_code == 2 and "--metrics-refresh" in result.output
    assert started == []
