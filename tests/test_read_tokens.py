"""r1 read tokens (resmon.tokens.read_token): the format, vectors computed apart, and
that no push token is a read token nor the reverse."""

from __future__ import annotations

import pytest

from resmon.tokens import (
    check_push_token,
    check_read_token,
    parse_read_token,
    push_token,
    read_token,
)

KEY = "resmon-v2-test-key-0123456789"
OTHER_KEY = "another-key-0123456789abcdef"
# (key, org, expiry or None, token): the MAC computed apart with
# printf 'r1\0<expiry or 0>\0<org>' | openssl dgst -sha256 -hmac <key>
VECTORS = [
    (
        KEY,
        "my-org",
        1798761600,  # 2027-01-01T00:00:00Z
        "r1.1798761600.bXktb3Jn.5bb99da85aaf0cb76fbf19946e209c2a97b9eb27a070f6879d48d8a87f4a63f6",
    ),
    (
        "0123456789abcdef",
        "a.b/é",  # dots and non-ASCII survive: the org is base64url in the token
        None,
        "r1.0.YS5iL8Op.171848bdcad7dd8dfe7310541dd3be54b0f2326f67ff13e20e713db944e863e9",
    ),
]
NOW = 1_700_000_000


@pytest.mark.parametrize("key, org, expiry, token", VECTORS)
def test_vectors(key, org, expiry, token):
    assert read_token(key, org, expires=expiry) == token
    assert parse_read_token(token) == (org, expiry)
    assert check_read_token(token, [key], now=NOW) == org


def test_rotation_every_key_verifies_the_first_mints():
    token = read_token(OTHER_KEY, "my-org", expires=NOW + 60)
    assert check_read_token(token, [KEY, OTHER_KEY], now=NOW) == "my-org"
    assert check_read_token(token, [KEY], now=NOW) is None


def test_expired_and_never_expiring():
    token = read_token(KEY, "my-org", expires=NOW + 60)
    assert check_read_token(token, [KEY], now=NOW + 59) == "my-org"
    assert check_read_token(token, [KEY], now=NOW + 60) is None
    forever = read_token(KEY, "my-org")
    assert check_read_token(forever, [KEY], now=NOW) == "my-org"
    assert check_read_token(forever, [KEY], require_expiry=True, now=NOW) is None


def test_tampering_breaks_it():
    token = read_token(KEY, "my-org", expires=NOW + 60)
    _, stamp, org, mac = token.split(".")
    other_org = read_token(KEY, "other", expires=NOW + 60).split(".")[2]
    for forged in (
        f"r1.{int(stamp) + 1000}.{org}.{mac}",  # a longer life
        f"r1.{stamp}.{other_org}.{mac}",  # another organisation
        f"r1.0.{org}.{mac}",  # no expiry
        f"r1.{stamp}.{org}.{mac[:-1]}0" if mac[-1] != "0" else f"r1.{stamp}.{org}.{mac[:-1]}1",
        f"r1.{stamp}.{org}=.{mac}",  # padding: not the canonical spelling
        token.upper(),
        token + " ",
        "",
    ):
        assert check_read_token(forged, [KEY], now=NOW) is None, forged


def test_push_tokens_are_not_read_tokens_and_the_reverse():
    scope = ("my-org", "my-org/my-repo", "ci.yml", "build")
    for push in (push_token(KEY, *scope), push_token(KEY, *scope, expires=NOW + 60)):
        assert parse_read_token(push) is None
        assert check_read_token(push, [KEY], now=NOW) is None
    read = read_token(KEY, "my-org", expires=NOW + 60)
    assert not check_push_token(read, [KEY], *scope, now=NOW)


@pytest.mark.parametrize("org", ["", "x" * 256, "é" * 128])
def test_refuses_what_no_push_could_carry(org):
    with pytest.raises(ValueError):
        read_token(KEY, org)
