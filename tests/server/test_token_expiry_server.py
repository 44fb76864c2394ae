"""A real server's mint with ``expires_in`` and ``--require-expiry`` (v1 refused)."""

from __future__ import annotations

import time

import pytest
import requests
from server_proc import ServerProcess, sample_payload

from resmon.cli import cli
from resmon.tokens import push_token, token_expiry

pytestmark = pytest.mark.slow

KEY = "resmon-expiry-test-key-0123"
SCOPE = {
    "organization": "my-org",
    "repository": "my-org/my-repo",
    "workflow": "ci.yml",
    "job": "build",
}


def push(server: ServerProcess, token: str, run_id: str) -> requests.Response:
    return requests.post(
        server.url + "/api/v1/metrics",
        json=sample_payload(run_id),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def mint(server: ServerProcess, **extra) -> requests.Response:
    return requests.post(
        server.url + "/api/v1/token",
        json={**SCOPE, **extra},
        headers=server.read_headers,
        timeout=10,
    )


def test_mint_with_expires_in(tmp_path):
    with ServerProcess(tmp_path / "m.db", hmac_keys=(KEY,)) as server:
        assert mint(server).json() == {"token": push_token(KEY, *SCOPE.values())}  # v1 by default
        before = int(time.time())
        body = mint(server, expires_in=3600).json()
        assert before + 3600 <= body["expires_at"] <= int(time.time()) + 3600
        assert body["token"] == push_token(KEY, *SCOPE.values(), expires=body["expires_at"])
        assert push(server, body["token"], "1").status_code == 201
        for bad in (59, 3661 * 86400, "90d", 1.5, True):
            r = mint(server, expires_in=bad)
            assert r.status_code == 400 and "expires_in" in r.json()["error"], bad


def test_require_expiry_refuses_v1_tokens(runner, tmp_path):
    with ServerProcess(
        tmp_path / "m.db", hmac_keys=(KEY,), extra_args=("--require-expiry",)
    ) as server:
        assert push(server, push_token(KEY, *SCOPE.values()), "1").status_code == 401
        v2 = push_token(KEY, *SCOPE.values(), expires=int(time.time()) + 60)
        assert push(server, v2, "2").status_code == 201
        r = mint(server)
        assert r.status_code == 400 and "expires_in" in r.json()["error"]
        result = runner.invoke(
            cli,
            [
                "token",
                "--server",
                server.url,
                "--expires",
                "1d",
                "--org",
                "my-org",
                "--repo",
                "my-org/my-repo",
                "--workflow",
                "ci.yml",
                "--job",
                "build",
            ],
            env={"RECEIVER_READ_TOKEN": server.read_token},
        )
        assert result.exit_code == 0, result.output
        assert token_expiry(result.stdout.strip()) is not None
        assert push(server, result.stdout.strip(), "3").status_code == 201
