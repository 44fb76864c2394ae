"""``resmon token`` (local and through a server) and ``resmon serve``'s refusals."""

from __future__ import annotations

import pytest
from fixtures.token_vectors import VECTORS
from server_proc import ServerProcess, free_port

from resmon.cli import cli
from resmon.server.wsgi import AddressError, parse_addr

# Long-key vectors for the CLI (it refuses keys under 16 bytes, which all of the Go
# reference vectors are): computed apart with
# printf 'v1\0<org>\0<repo>\0<workflow>\0<job>' | openssl dgst -sha256 -hmac <key>
LONG_KEY = "resmon-test-hmac-key-0001"
CLI_VECTORS = [
    (
        LONG_KEY,
        "my-org",
        "my-org/my-repo",
        "ci.yml",
        "build",
        "f7c3606ebc07e55cf18c07877bebf13e49f91a01b4bd9a7e73ea337ea0b80b3f",
    ),
    (
        LONG_KEY,
        "org",
        "repo",
        "wf",
        "job",
        "5e2c342cd3853285e1c1438d767a3a921ba5144a963e73e0d8b25aa40ff01b2c",
    ),
    (
        "my secret key, with spaces",
        "my-org",
        "my-org/my-repo",
        "ci.yml",
        "build",
        "fe528df8479db4f5cd2375881f841ee12f2f8ed9f466d4d213747682a9075ad8",
    ),
]


def scope_args(org, repo, wf, job):
    return ["--org", org, "--repo", repo, "--workflow", wf, "--job", job]


@pytest.mark.parametrize("key, org, repo, wf, job, expected", CLI_VECTORS)
def test_local_mint_prints_the_vectors_from_every_key_source(
    runner, tmp_path, key, org, repo, wf, job, expected
):
    key_file = tmp_path / "hmac.key"
    key_file.write_text(key + "\n")
    for extra, env in (
        (["--hmac-key", key], {}),
        ([], {"RECEIVER_HMAC_KEY": key}),
        (["--hmac-key-file", str(key_file)], {}),
        ([], {"RESMON_HMAC_KEY_FILE": str(key_file)}),
    ):
        result = runner.invoke(cli, ["token", *extra, *scope_args(org, repo, wf, job)], env=env)
        assert result.exit_code == 0, result.output
        assert result.stdout == expected + "\n", (extra, env)


@pytest.mark.parametrize("key, org, repo, wf, job, expected", VECTORS)
def test_go_reference_vectors_have_keys_too_short_for_the_cli(
    runner, key, org, repo, wf, job, expected
):
    result = runner.invoke(
        cli, ["token", *scope_args(org, repo, wf, job)], env={"RECEIVER_HMAC_KEY": key}
    )
    assert result.exit_code == 2
    assert f"RECEIVER_HMAC_KEY is {len(key)} bytes" in result.output
    assert expected not in result.output


def test_local_mint_from_a_rotation_list_uses_its_first_key(runner):
    result = runner.invoke(
        cli,
        ["token", *scope_args("org", "repo", "wf", "job")],
        env={"RESMON_HMAC_KEYS": f"{LONG_KEY},some-older-key-0000"},
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == CLI_VECTORS[1][5]


def test_token_without_key_or_server_says_how(runner):
    result = runner.invoke(cli, ["token", *scope_args("o", "r", "w", "j")])
    assert result.exit_code == 2
    assert (
        "--hmac-key" in result.output
        and "RECEIVER_HMAC_KEY" in result.output
        and "--server" in result.output
    )


def test_token_rejects_both_modes_and_bad_scope(runner, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(LONG_KEY)
    for local in (["--hmac-key", LONG_KEY], ["--hmac-key-file", str(key_file)]):
        result = runner.invoke(
            cli,
            ["token", *local, "--server", "http://127.0.0.1:1", *scope_args("o", "r", "w", "j")],
        )
        assert result.exit_code == 2 and "not both" in result.output
    result = runner.invoke(
        cli, ["token", "--hmac-key", LONG_KEY, *scope_args("o", "r", "w", "j\x01")]
    )
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
    with ServerProcess(tmp_path / "m.db", hmac_keys=(LONG_KEY,)) as server:
        args = [
            "token",
            "--server",
            server.url,
            *scope_args("my-org", "my-org/my-repo", "ci.yml", "build"),
        ]
        result = runner.invoke(cli, [*args, "--read-token", server.read_token])
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == CLI_VECTORS[0][5]
        # The read token from the environment, or from a file, works the same way.
        result = runner.invoke(cli, args, env={"RECEIVER_READ_TOKEN": server.read_token})
        assert result.stdout.strip() == CLI_VECTORS[0][5]
        token_file = tmp_path / "read-token"
        token_file.write_text(server.read_token + "\n")
        result = runner.invoke(cli, [*args, "--read-token-file", str(token_file)])
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == CLI_VECTORS[0][5]
        result = runner.invoke(cli, [*args, "--read-token", "wrong"])
        assert result.exit_code == 1
        assert "rejected the read token (401)" in result.output


@pytest.mark.parametrize(
    "args, env, missing",
    [
        ([], {}, ["RECEIVER_READ_TOKEN", "RECEIVER_HMAC_KEY"]),
        (["--read-token", "r"], {}, ["RECEIVER_HMAC_KEY"]),
        ([], {"RECEIVER_HMAC_KEY": LONG_KEY}, ["RECEIVER_READ_TOKEN"]),
    ],
)
def test_serve_refuses_to_start_without_both_secrets(runner, tmp_path, args, env, missing):
    result = runner.invoke(cli, ["serve", "--db", str(tmp_path / "m.db"), *args], env=env)
    assert result.exit_code == 2
    for name in missing:
        assert name in result.output
    assert not (tmp_path / "m.db").exists()  # refused before touching anything


def test_serve_refuses_a_read_token_equal_to_an_hmac_key(runner, tmp_path):
    same = "the-same-secret-twice"
    result = runner.invoke(
        cli, ["serve", "--read-token", same, "--hmac-key", LONG_KEY, "--hmac-key", same]
    )
    assert result.exit_code == 2 and "must differ" in result.output


def test_serve_rejects_bad_addresses_and_sizes(runner, tmp_path):
    base = ["serve", "--db", str(tmp_path / "m.db"), "--read-token", "r", "--hmac-key", LONG_KEY]
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
            LONG_KEY,
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
        (":8080", ("", 8080)),
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
    result = runner.invoke(cli, ["token", "--hmac-key", LONG_KEY, *scope_args(*scope)])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {option}: must be non-empty" in result.output


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
                LONG_KEY,
            ],
        )
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.output
