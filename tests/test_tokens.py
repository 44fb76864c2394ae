import pytest
from fixtures.token_vectors import VECTORS

from resmon.tokens import (
    MIN_KEY_BYTES,
    bearer_from_header,
    canonical_repository,
    check_keys,
    check_push_token,
    push_token,
    read_secret_file,
    split_keys,
    token_expiry,
)

# v2 vectors: (key, org, repo, workflow, job, expiry, token), the MAC computed apart with
# printf 'v2\0<expiry>\0<org>\0<repo>\0<workflow>\0<job>' | openssl dgst -sha256 -hmac <key>
V2_VECTORS = [
    (
        "resmon-v2-test-key-0123456789",
        "my-org",
        "my-org/my-repo",
        "ci.yml",
        "build",
        1798761600,  # 2027-01-01T00:00:00Z
        "v2.1798761600.63f5af730fdc7da121e993cbe1868a64c14e01836632dce0fe5dded618bc3a85",
    ),
    (
        "0123456789abcdef",
        "org",
        "repo",
        "wf",
        "job",
        4102444800,  # 2100-01-01T00:00:00Z
        "v2.4102444800.93a3024f40da16e7f575f8699a7a08b0e696f57366fc0e2027d11e90d6e3b067",
    ),
]
KEY = "resmon-v2-test-key-0123456789"
SCOPE = ("my-org", "my-org/my-repo", "ci.yml", "build")


@pytest.mark.parametrize("key,org,repo,wf,job,expected", VECTORS)
def test_token_vectors(key, org, repo, wf, job, expected):
    assert push_token(key, org, repo, wf, job) == expected


@pytest.mark.parametrize("key,org,repo,wf,job,expiry,expected", V2_VECTORS)
def test_v2_token_vectors(key, org, repo, wf, job, expiry, expected):
    assert push_token(key, org, repo, wf, job, expires=expiry) == expected
    assert token_expiry(expected) == expiry
    assert check_push_token(expected, [key], org, repo, wf, job, now=expiry - 1)


def test_token_for_bare_name_verifies_a_push_with_full_name():
    bare = push_token("k", "my-org", "my-repo", "ci.yml", "build")
    full = push_token("k", "my-org", "my-org/my-repo", "ci.yml", "build")
    assert bare != full
    for token in (bare, full):
        for repo in ("my-repo", "my-org/my-repo"):
            assert check_push_token(token, ["k"], "my-org", repo, "ci.yml", "build")
    assert not check_push_token(bare, ["k"], "other-org", "my-org/my-repo", "ci.yml", "build")


def test_short_and_full_repository_are_one_scope():
    assert canonical_repository("my-org", "my-repo") == "my-org/my-repo"
    assert canonical_repository("my-org", "my-org/my-repo") == "my-org/my-repo"


def test_rotation_any_key_verifies():
    token = push_token("old", "o", "o/r", "w", "j")
    assert check_push_token(token, ["new", "old"], "o", "o/r", "w", "j")
    assert not check_push_token(token, ["new"], "o", "o/r", "w", "j")
    assert not check_push_token(token, ["old"], "o", "o/r", "w", "other")


def test_v2_token_is_refused_from_its_expiry_on():
    token = push_token(KEY, *SCOPE, expires=2000)
    assert check_push_token(token, [KEY], *SCOPE, now=1999.9)
    assert not check_push_token(token, [KEY], *SCOPE, now=2000)
    assert not check_push_token(token, [KEY], *SCOPE, now=3000)
    # The real clock: a token that expired in 1970 is refused, one for 2100 accepted.
    assert not check_push_token(token, [KEY], *SCOPE)
    assert check_push_token(push_token(KEY, *SCOPE, expires=4102444800), [KEY], *SCOPE)


def test_v2_expiry_is_inside_the_mac():
    token = push_token(KEY, *SCOPE, expires=2000)
    _, _, mac = token.split(".")
    for forged in (f"v2.4102444800.{mac}", f"v2.02000.{mac}", f"v2.2000.{mac.upper()}"):
        assert not check_push_token(forged, [KEY], *SCOPE, now=1000), forged
    # Nor does the v2 MAC pass as a v1 token, or a v1 token dressed as v2.
    assert not check_push_token(mac, [KEY], *SCOPE, now=1000)
    v1 = push_token(KEY, *SCOPE)
    assert not check_push_token(f"v2.2000.{v1}", [KEY], *SCOPE, now=1000)


def test_v2_token_checks_scope_spellings_and_rotation():
    token = push_token("old-key-0123456789", "my-org", "my-repo", "ci.yml", "build", expires=2000)
    keys = ["new-key-0123456789", "old-key-0123456789"]
    assert check_push_token(token, keys, *SCOPE, now=1000)  # the full spelling
    assert not check_push_token(token, keys[:1], *SCOPE, now=1000)
    assert not check_push_token(token, keys, "my-org", "my-org/my-repo", "ci.yml", "test", now=1)


def test_require_expiry_refuses_v1_only():
    v1 = push_token(KEY, *SCOPE)
    v2 = push_token(KEY, *SCOPE, expires=4102444800)
    assert check_push_token(v1, [KEY], *SCOPE)
    assert not check_push_token(v1, [KEY], *SCOPE, require_expiry=True)
    assert check_push_token(v2, [KEY], *SCOPE, require_expiry=True)


@pytest.mark.parametrize("expires", [0, -5, 10**12])
def test_v2_expiry_out_of_range_is_refused_when_minting(expires):
    with pytest.raises(ValueError):
        push_token(KEY, *SCOPE, expires=expires)


@pytest.mark.parametrize(
    "token", ["", "v2", "v2..", "v2.1.", "v2.x." + "0" * 64, "v2.1." + "0" * 63, "v2.1." + "0" * 65]
)
def test_malformed_tokens_verify_false_and_carry_no_expiry(token):
    assert token_expiry(token) is None
    assert not check_push_token(token, [KEY], *SCOPE)


def test_non_utf8_key_is_used_as_its_bytes():
    raw = b"\xff\xfe binary key material"
    as_text = raw.decode("utf-8", "surrogateescape")  # as os.environ and key files give it
    assert push_token(as_text, *SCOPE) == push_token(raw, *SCOPE)


def test_bearer_header():
    assert bearer_from_header("Bearer abc") == "abc"
    assert bearer_from_header("bearer  abc ") == "abc"
    assert bearer_from_header("Basic abc") is None
    assert bearer_from_header("Bearer ") is None
    assert bearer_from_header(None) is None


def test_split_keys_lines_or_commas():
    assert split_keys("new-key, old-key") == ["new-key", "old-key"]
    assert split_keys(" a ,, b ,") == ["a", "b"]
    # One key a line: a key may then hold commas and inner spaces.
    assert split_keys("new,key\n\n old key \n") == ["new,key", "old key"]
    assert split_keys("only one key\n") == ["only one key"]
    assert split_keys("") == [] and split_keys(" , \n ") == []


def test_check_keys_refuses_short_keys_naming_the_source_not_the_key():
    long_a, long_b = "a" * MIN_KEY_BYTES, "b" * 40
    assert check_keys([("x", long_a), ("y", long_b), ("z", long_a)]) == (long_a, long_b)
    with pytest.raises(ValueError) as info:
        check_keys([("x", long_a), ("--hmac-key #2", "tiny-secret")])
    message = str(info.value)
    assert "--hmac-key #2" in message and "11 bytes" in message and "16" in message
    assert "tiny-secret" not in message
    # Bytes, not characters: 8 two-byte characters are 16 bytes.
    assert check_keys([("x", "é" * 8)]) == ("é" * 8,)


def test_read_secret_file_strips_the_trailing_newline_only(tmp_path):
    path = tmp_path / "key"
    path.write_bytes(b"  a key, with spaces  \n")
    assert read_secret_file(str(path)) == "  a key, with spaces  "
    path.write_bytes(b"crlf-key\r\n")
    assert read_secret_file(str(path)) == "crlf-key"
    path.write_bytes(b"\n")
    with pytest.raises(ValueError, match="empty"):
        read_secret_file(str(path))
    with pytest.raises(OSError):
        read_secret_file(str(tmp_path / "missing"))
