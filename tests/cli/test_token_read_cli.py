"""``resmon token --read``: an organisation's read token, minted locally or through a server."""

from __future__ import annotations

import time

import requests
from server_proc import ServerProcess

from resmon.cli import cli
from resmon.tokens import check_read_token, parse_read_token

KEY = "resmon-v2-test-key-0123456789"


def test_local_mint_prints_the_vector(runner):
    result = runner.invoke(
        cli, ["token", "--read", "--org", "a.b/é"], env={"RECEIVER_HMAC_KEY": "0123456789abcdef"}
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "r1.0.YS5iL8Op.171848bdcad7dd8dfe7310541dd3be54b0f2326f67ff13e20e713db944e863e9\n"
    )


def test_local_mint_with_a_lifetime_prints_its_expiry_on_stderr(runner):
    result = runner.invoke(
        cli,
        ["token", "--read", "--org", "my-org", "--expires", "90d"],
        env={"RECEIVER_HMAC_KEY": KEY},
    )
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    org, expiry = parse_read_token(token)
    assert org == "my-org" and abs(expiry - (time.time() + 90 * 86400)) < 60
    assert check_read_token(token, [KEY]) == "my-org"
    assert result.stderr.startswith("expires 20")


def test_a_read_token_takes_no_job_scope_and_a_push_token_needs_it(runner):
    env = {"RECEIVER_HMAC_KEY": KEY}
    result = runner.invoke(cli, ["token", "--read", "--org", "o", "--repo", "o/r"], env=env)
    assert result.exit_code == 2 and "drop --repo" in result.output
    result = runner.invoke(cli, ["token", "--org", "o", "--repo", "o/r"], env=env)
    assert result.exit_code == 2 and "missing --workflow, --job" in result.output
    result = runner.invoke(cli, ["token", "--read", "--org", "a\tb"], env=env)
    assert result.exit_code == 2 and "--org" in result.output


def test_mint_through_a_server(runner, tmp_path):
    with ServerProcess(tmp_path / "m.db") as server:
        result = runner.invoke(
            cli,
            ["token", "--read", "--org", "acme", "--expires", "1h", "--server", server.url],
            env={"RECEIVER_READ_TOKEN": server.read_token, "RECEIVER_HMAC_KEY": ""},
        )
        assert result.exit_code == 0, result.output
        token = result.stdout.strip()
        assert check_read_token(token, [server.hmac_key]) == "acme"
        r = requests.get(
            server.url + "/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert r.status_code == 200 and r.json()["jobs"] == []
        # An organisation's token mints nothing, not even for itself.
        result = runner.invoke(
            cli,
            ["token", "--read", "--org", "acme", "--server", server.url],
            env={"RECEIVER_READ_TOKEN": token, "RECEIVER_HMAC_KEY": ""},
        )
        assert result.exit_code == 1 and "403" in result.output
