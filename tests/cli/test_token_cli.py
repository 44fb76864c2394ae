"""``resmon token`` (local and through a server) and ``resmon serve``'s refusals."""

from __future__ import annotations

import pytest
from fixtures.token_vectors import VECTORS
from server_proc import ServerProcess, free_port

from resmon.cli import cli
from resmon.server.wsgi import AddressError, parse_addr


def scope_args(org, repo, wf, job):
    return ["--org", org, "--repo", repo, "--workflow", wf, "--job", job]


@pytest.mark.parametrize("key, org, repo, wf, job, expected", VECTORS)
def test_local_mint_prints_the_reference_vectors(runner, key, org, repo, wf, job, expected):
    result = runner.invoke(cli, ["token", "--hmac-key", key, *scope_args(org, repo, wf, job)])
    assert result.exit_code == 0, result.output
    assert result.output == expected + "\n"


def test_local_mint_from_the_environment_uses_the_first_key(runner):
    result = runner.invoke(
        cli,
        ["token", *scope_args("org", "repo", "wf", "job")],
        env={"RECEIVER_HMAC_KEY": "key,older-key"},
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == VECTORS[0][5]


def test_token_without_key_or_server_says_how(runner):
    result = runner.invoke(cli, ["token", *scope_args("o", "r", "w", "j")])
    assert result.exit_code == 2
    assert (
        "--hmac-key" in result.output
        and "RECEIVER_HMAC_KEY" in result.output
        and "--server" in result.output
    )


def test_token_rejects_both_modes_and_bad_scope(runner):
    result = runner.invoke(
        cli,
        [
            "token",
            "--hmac-key",
            "k",
            "--server",
            "http://127.0.0.1:1",
            *scope_args("o", "r", "w", "j"),
        ],
    )
    assert result.exit_code == 2 and "not both" in result.output
    result = runner.invoke(cli, ["token", "--hmac-key", "k", *scope_args("o", "r", "w", "j\x01")])
    assert result.exit_code == 2 and "--job" in result.output


def test_remote_mint_unreachable_server_is_a_clear_error(runner):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = runner.invoke(
        cli, ["token", "--server", url, "--read-token", "t", *scope_args("o", "r", "w", "j")]
    )
    assert result.exit_code == 1
    assert f"cannot reach server {url}" in result.output
    assert "Traceback" not in result.output


def test_remote_mint_needs_a_read_token(runner):
    result = runner.invoke(
        cli, ["token", "--server", "http://127.0.0.1:1", *scope_args("o", "r", "w", "j")]
    )
    assert result.exit_code == 1 and "RECEIVER_READ_TOKEN" in result.output


@pytest.mark.slow
def test_remote_mint_through_a_real_server(runner, tmp_path):
    with ServerProcess(tmp_path / "m.db", hmac_keys=("my-hmac-key", "old")) as server:
        args = [
            "token",
            "--server",
            server.url,
            *scope_args("my-org", "my-org/my-repo", "ci.yml", "build"),
        ]
        result = runner.invoke(cli, [*args, "--read-token", server.read_token])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == VECTORS[1][5]
        # The read token from the environment works the same way.
        result = runner.invoke(cli, args, env={"RECEIVER_READ_TOKEN": server.read_token})
        assert result.output.strip() == VECTORS[1][5]
        result = runner.invoke(cli, [*args, "--read-token", "wrong"])
        assert result.exit_code == 1
        assert "rejected the read token (401)" in result.output


@pytest.mark.parametrize(
    "args, env, missing",
    [
        ([], {}, ["RECEIVER_READ_TOKEN", "RECEIVER_HMAC_KEY"]),
        (["--read-token", "r"], {}, ["RECEIVER_HMAC_KEY"]),
        ([], {"RECEIVER_HMAC_KEY": "k"}, ["RECEIVER_READ_TOKEN"]),
    ],
)
def test_serve_refuses_to_start_without_both_secrets(runner, tmp_path, args, env, missing):
    result = runner.invoke(cli, ["serve", "--db", str(tmp_path / "m.db"), *args], env=env)
    assert result.exit_code == 2
    for name in missing:
        assert name in result.output
    assert not (tmp_path / "m.db").exists()  # refused before touching anything


def test_serve_refuses_a_read_token_equal_to_an_hmac_key(runner, tmp_path):
    result = runner.invoke(
        cli, ["serve", "--read-token", "same", "--hmac-key", "other", "--hmac-key", "same"]
    )
    assert result.exit_code == 2 and "must differ" in result.output


def test_serve_rejects_bad_addresses_and_sizes(runner, tmp_path):
    base = ["serve", "--db", str(tmp_path / "m.db"), "--read-token", "r", "--hmac-key", "k"]
    result = runner.invoke(cli, [*base, "--addr", "8080"])
    assert result.exit_code == 2 and ":PORT" in result.output
    result = runner.invoke(cli, [*base, "--max-body", "lots"])
    assert result.exit_code == 2 and "--max-body" in result.output


def test_serve_reports_an_unreachable_database_clearly(runner):
    result = runner.invoke(
        cli,
        [
            "serve",
            "--read-token",
            "r",
            "--hmac-key",
            "k",
            "--db",
            f"postgresql://nobody:pw@127.0.0.1:{free_port()}/x",
        ],
    )
    assert result.exit_code == 1
    assert "cannot open database postgresql://nobody:***@127.0.0.1" in result.output
    assert ":pw@" not in result.output


@pytest.mark.parametrize(
    "addr, expected",
    [
        (":8080", ("0.0.0.0", 8080)),
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("[::1]:8080", ("::1", 8080)),
        ("localhost:0", ("localhost", 0)),
        ("[::]:9", ("::", 9)),
    ],
)
def test_parse_addr_accepts_go_forms(addr, expected):
    assert parse_addr(addr) == expected


@pytest.mark.parametrize("addr", ["8080", "::1:8080", "host:", "host:99999", "[::1]", ""])
def test_parse_addr_rejects_the_rest(addr):
    with pytest.raises(AddressError):
        parse_addr(addr)


@pytest.mark.parametrize(
    "position, option", list(enumerate(["--org", "--repo", "--workflow", "--job"]))
)
@pytest.mark.parametrize("bad", ["", "a\nb", "\x7f"])
def test_a_bad_scope_part_names_its_option(runner, position, option, bad):
    scope = ["o", "o/r", "w", "j"]
    scope[position] = bad
    result = runner.invoke(cli, ["token", "--hmac-key", "k", *scope_args(*scope)])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {option}: must be non-empty" in result.output


def test_hmac_key_env_list_splits_on_commas_and_spaces():
    from resmon.cli.serve import _hmac_keys_option

    assert _hmac_keys_option(None, None, ("a,b", "c d\te")) == ("a", "b", "c", "d", "e")


def test_serve_on_a_busy_port_fails_fast_with_a_clear_message(runner, tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(
            cli,
            [
                "serve",
                "--addr",
                f"127.0.0.1:{port}",
                "--db",
                str(tmp_path / "m.db"),
                "--read-token",
                "r",
                "--hmac-key",
                "k",
            ],
        )
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.output
