"""Expiring push tokens: ``resmon token --expires``, locally and through a server, and
a real server's answer to v2 tokens (valid, expired, tampered)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from server_proc import ServerProcess, sample_payload

from resmon.cli import cli
from resmon.mint import parse_lifetime
from resmon.tokens import check_push_token, push_token, token_expiry

KEY = "resmon-expiry-test-key-0123"
SCOPE = ("my-org", "my-org/my-repo", "ci.yml", "build")
SCOPE_ARGS = ["--org", SCOPE[0], "--repo", SCOPE[1], "--workflow", SCOPE[2], "--job", SCOPE[3]]
DAY = 86400


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90d", 90 * DAY),
        ("12h", 12 * 3600),
        ("2w", 14 * DAY),
        ("1d12h", DAY + 12 * 3600),
        ("1m", 60),
        ("3600", 3600),
        (" 30d ", 30 * DAY),
        ("3660d", 3660 * DAY),
    ],
)
def test_lifetimes(text, seconds):
    assert parse_lifetime(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "0d", "59s", "59", "3661d", "10y", "90 d", "d", "1.5d", "-1d", "9" * 13, "1d1"]
)
def test_bad_lifetimes(text):
    with pytest.raises(ValueError):
        parse_lifetime(text)


def test_local_mint_with_expires_prints_a_v2_token_and_its_expiry(runner):
    before = int(time.time())
    result = runner.invoke(
        cli, ["token", "--expires", "90d", *SCOPE_ARGS], env={"RECEIVER_HMAC_KEY": KEY}
    )
    after = int(time.time())
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    expiry = token_expiry(token)
    assert expiry is not None and before + 90 * DAY <= expiry <= after + 90 * DAY
    assert token == push_token(KEY, *SCOPE, expires=expiry)
    assert check_push_token(token, [KEY], *SCOPE, require_expiry=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiry))
    assert result.stderr.strip() == f"expires {stamp}"


def test_local_mint_without_expires_is_v1(runner):
    result = runner.invoke(cli, ["token", *SCOPE_ARGS], env={"RECEIVER_HMAC_KEY": KEY})
    assert result.stdout.strip() == push_token(KEY, *SCOPE)
    assert result.stderr == ""


@pytest.mark.parametrize("value", ["0d", "forever", "10y"])
def test_bad_expires_is_a_usage_error(runner, value):
    result = runner.invoke(
        cli, ["token", "--expires", value, *SCOPE_ARGS], env={"RECEIVER_HMAC_KEY": KEY}
    )
    assert result.exit_code == 2
    assert "--expires" in result.output and "Traceback" not in result.output


# --- through a server ---------------------------------------------------------------------


class FakeMint:
    """A mint endpoint answering a fixed token; records the bodies it got."""

    def __init__(self, token: str) -> None:
        bodies = self.bodies = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                data = json.dumps({"token": token}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def __enter__(self) -> FakeMint:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_remote_mint_asks_for_the_lifetime_and_prints_the_v2_token(runner):
    v2 = push_token(KEY, *SCOPE, expires=4102444800)
    with FakeMint(v2) as server:
        result = runner.invoke(
            cli,
            ["token", "--server", server.url, "--expires", "2w", *SCOPE_ARGS],
            env={"RECEIVER_READ_TOKEN": "read"},
        )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == v2
    assert result.stderr.strip() == "expires 2100-01-01T00:00:00Z"
    assert server.bodies[0]["expires_in"] == 14 * DAY


def test_remote_mint_refuses_a_token_that_does_not_expire(runner):
    with FakeMint(push_token(KEY, *SCOPE)) as server:
        result = runner.invoke(
            cli,
            ["token", "--server", server.url, "--expires", "90d", *SCOPE_ARGS],
            env={"RECEIVER_READ_TOKEN": "read"},
        )
        assert result.exit_code == 1
        assert "does not expire" in result.output and "expires_in" in result.output
        assert push_token(KEY, *SCOPE) not in result.stdout
        # Without --expires the same answer is what was asked for, and no field is sent.
        result = runner.invoke(
            cli, ["token", "--server", server.url, *SCOPE_ARGS], env={"RECEIVER_READ_TOKEN": "read"}
        )
    assert result.exit_code == 0 and result.stdout.strip() == push_token(KEY, *SCOPE)
    assert "expires_in" not in server.bodies[-1]


# --- a real server ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_server_takes_v2_tokens_until_they_expire(runner, tmp_path):
    with ServerProcess(tmp_path / "m.db", hmac_keys=(KEY,)) as server:

        def push(token: str, run_id: str) -> requests.Response:
            return requests.post(
                server.url + "/api/v1/metrics",
                json=sample_payload(run_id),
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )

        minted = runner.invoke(
            cli, ["token", "--expires", "1d", *SCOPE_ARGS], env={"RECEIVER_HMAC_KEY": KEY}
        )
        assert push(minted.stdout.strip(), "1").status_code == 201
        # v1 still verifies (no --require-expiry).
        assert push(push_token(KEY, *SCOPE), "2").status_code == 201

        expired = push_token(KEY, *SCOPE, expires=int(time.time()) - 1)
        response = push(expired, "3")
        wrong = push(push_token("another-key-0123456789", *SCOPE, expires=4102444800), "3")
        # An expired token is refused exactly like a wrong one.
        assert (response.status_code, response.json()) == (wrong.status_code, wrong.json())
        assert response.status_code == 401

        _, expiry, mac = minted.stdout.strip().split(".")
        assert push(f"v2.{int(expiry) + DAY}.{mac}", "4").status_code == 401  # expiry moved
