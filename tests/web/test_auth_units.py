"""The sign-in's pure parts: where a sign-in may send the browser, the failed sign-in
limit over its window, and the session cookie's signature, expiry and key rotation."""

from __future__ import annotations

import pytest

from resmon.server import ServerConfig, create_app, session, state
from resmon.web import auth


@pytest.mark.parametrize(
    "value, expected",
    [
        ("/jobs", "/jobs"),
        ("/job?org=a&repo=a/b", "/job?org=a&repo=a/b"),
        ("/runs/12#top", "/runs/12#top"),
        (None, "/"),
        ("", "/"),
        ("jobs", "/"),
        ("//evil.example", "/"),
        ("///evil.example", "/"),
        ("/\\evil.example", "/"),
        ("/jobs\\..", "/"),
        ("https://evil.example/jobs", "/"),
        ("javascript:alert(1)", "/"),
        ("/jobs\nX: y", "/"),
        ("/jobs\t", "/"),
        ("/login", "/"),
        ("/login?next=/jobs", "/"),
        ("/" + "a" * 3000, "/"),
    ],
)
def test_safe_next(value, expected):
    assert auth.safe_next(value) == expected


def test_the_limit_counts_failures_in_its_window():
    limiter = auth.FailureLimiter(limit=3, window=60)
    for t in (0, 1, 2):
        assert limiter.retry_after("a", now=t) == 0
        limiter.failed("a", now=t)
    assert limiter.retry_after("a", now=3) == 58  # the first failure leaves at 60
    assert limiter.retry_after("b", now=3) == 0  # per address
    assert limiter.retry_after("a", now=60.5) == 0


def test_the_limit_forgets_addresses_when_full(monkeypatch):
    monkeypatch.setattr(auth, "MAX_TRACKED_CLIENTS", 4)
    limiter = auth.FailureLimiter(limit=2, window=10)
    for i in range(10):
        limiter.failed(f"c{i}", now=i)
    assert len(limiter._failures) <= 4
    assert limiter.retry_after("c9", now=9) == 0  # one failure of two


@pytest.fixture
def app(tmp_path):
    def make(**config):
        app = create_app(ServerConfig(database=str(tmp_path / "m.db"), migrate=True, **config))
        apps.append(app)
        return app

    apps: list = []
    yield make
    for app in apps:
        state(app).database.close()


KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-0123456789abcdef"


def test_a_session_verifies_until_its_expiry(app):
    a = app(read_token="read-token-0123456789", hmac_keys=(KEY_A,))
    with a.test_request_context():
        value = session.cookie_value(session.sign("acme", None, now=1000))
        assert session.verify(value, now=1000 + session.LIFETIME - 1) == session.Session(
            "acme", 1000 + session.LIFETIME
        )
        assert session.verify(value, now=1000 + session.LIFETIME) is None
        capped = session.sign(None, 1600, now=1000)
        assert capped.expires == 1600  # never past the token's own expiry
        parts = value.split(".")
        for forged in (
            ".".join([parts[0], str(int(parts[1]) + 100), *parts[2:]]),
            ".".join([parts[0], parts[1], "Z2xvYmV4", *parts[3:]]),  # "globex"
            ".".join([parts[0], parts[1], "*", *parts[3:]]),
            value[:-1] + ("0" if value[-1] != "0" else "1"),
            "",
            "s1",
        ):
            assert session.verify(forged, now=1000) is None, forged


def test_sessions_follow_key_rotation_and_the_read_token(app):
    old = app(read_token="read-token-0123456789", hmac_keys=(KEY_A,))
    with old.test_request_context():
        org_value = session.cookie_value(session.sign("acme", None, now=1000))
        all_value = session.cookie_value(session.sign(None, None, now=1000))
    rotated = app(read_token="read-token-0123456789", hmac_keys=(KEY_B, KEY_A))
    with rotated.test_request_context():
        assert session.verify(org_value, now=1000).organization == "acme"
        assert session.verify(all_value, now=1000).organization is None
    dropped = app(read_token="read-token-0123456789", hmac_keys=(KEY_B,))
    with dropped.test_request_context():
        assert session.verify(org_value, now=1000) is None
    new_read = app(read_token="another-read-token-01", hmac_keys=(KEY_A,))
    with new_read.test_request_context():
        assert session.verify(all_value, now=1000) is None  # the read token changed
        assert session.verify(org_value, now=1000).organization == "acme"


def test_csrf_tokens_go_with_their_cookie(app):
    a = app(read_token="read-token-0123456789", hmac_keys=(KEY_A,))
    with a.test_request_context():
        value = session.new_csrf_value()
        token = session.csrf_token_for(value)
        assert session.csrf_valid(value, token)
        assert not session.csrf_valid(session.new_csrf_value(), token)
        assert not session.csrf_valid(value, token[:-1])
        assert not session.csrf_valid(None, token)
        assert not session.csrf_valid("short", session.csrf_token_for("short"))
