"""Push tokens: HMAC-SHA256 over the execution scope, the HMAC keys, and bearer-token checks.

Two token formats, both lowercase hex of HMAC-SHA256 with the server's key:

- v1 (the wire contract, byte-compatible with the Go receiver; vectors in
  ``tests/fixtures/token_vectors.py``): ``hex(HMAC(key, "v1\\0" + org + "\\0" +
  repo + "\\0" + workflow + "\\0" + job))``, 64 characters; it never expires;
- v2 (resmon's own): ``v2.<expiry>.<hex(HMAC(key, "v2\\0" + expiry + "\\0" + org +
  "\\0" + repo + "\\0" + workflow + "\\0" + job))>``, where ``expiry`` is the Unix
  time in seconds (decimal, no sign, no leading zero) from which it is refused.
  The expiry is inside the MAC, so changing it breaks the token.

A third format is not a push token at all:

- r1 (read token scoped to one organisation): ``r1.<expiry>.<org>.<hex(HMAC(key,
  "r1\\0" + expiry + "\\0" + organization))>``, where ``<org>`` is the organisation in
  unpadded base64url (any name survives the dots) and ``expiry`` is the Unix time in
  seconds from which it is refused, or ``0`` for a token that never expires.  It reads
  (API and web pages) only that organisation's jobs and runs; it never pushes, mints
  or reads server-wide figures.  The ``r1\\0`` message prefix keeps the three MACs
  apart: no push token verifies as a read token, nor the reverse.

Minting signs the repository exactly as given; verifying accepts both spellings
of a repository (``my-repo`` and ``my-org/my-repo`` under org ``my-org``), since
the Go receiver's own docs mix them and its users get a 401 for it.

Keys are taken verbatim, as the Go receiver takes ``RECEIVER_HMAC_KEY``; only a
rotation list (``RESMON_HMAC_KEYS``) is split, by :func:`split_keys`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence

# hashlib and hmac are imported where they are used: they load OpenSSL (about 3.5 MB
# of RSS), and the collector imports this module (through schema) but never signs.

# HMAC-SHA256 keys shorter than this are guessable offline from one token.
MIN_KEY_BYTES = 16
# The lifetimes a v2 token may be minted with, in seconds: a minute to ten years and
# some (a key should not live longer; a token for longer is a v1 token).
MIN_LIFETIME = 60
MAX_LIFETIME = 3660 * 86400
# A v2 token: the expiry (at most 12 digits: beyond the year 33000) and the MAC.
_V2 = re.compile(r"v2\.([1-9][0-9]{0,11})\.([0-9a-f]{64})")
# An r1 read token: expiry (0: never), the organisation in base64url, the MAC.
READ_PREFIX = "r1."
_R1 = re.compile(r"r1\.(0|[1-9][0-9]{0,11})\.([A-Za-z0-9_-]{1,340})\.([0-9a-f]{64})")
# An organisation a read token may name: what a push may carry (schema.MAX_SCOPE_LEN
# bytes of UTF-8; schema imports this module, so the figure is repeated here).
MAX_ORG_BYTES = 255


def key_bytes(key: str | bytes) -> bytes:
    """A key as the bytes HMAC uses.  ``surrogateescape``: a key read from a file or
    the environment that is not UTF-8 is used as its raw bytes, as Go does."""
    return key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape")


def split_keys(value: str) -> list[str]:
    """The keys of a rotation list (``RESMON_HMAC_KEYS``): one key a line when the value
    has several lines, else comma-separated; spaces around a key and empty items are
    dropped; order is kept (the first key mints, so a rotation lists the new key first)."""
    items = value.splitlines() if "\n" in value.strip() else value.split(",")
    return [item.strip() for item in items if item.strip()]


def check_keys(keys: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The keys of ``(source, key)`` pairs in order, without repeats, each at least
    :data:`MIN_KEY_BYTES` long.  Raises ``ValueError`` naming the source (never the key)."""
    out: list[str] = []
    for source, key in keys:
        size = len(key_bytes(key))
        if size < MIN_KEY_BYTES:
            raise ValueError(
                f"the HMAC key from {source} is {size} bytes; keys must be at least "
                f"{MIN_KEY_BYTES} bytes (e.g. openssl rand -hex 32)"
            )
        if key not in out:
            out.append(key)
    return tuple(out)


def read_secret_file(path: str) -> str:
    """A secret stored in a file, as Docker and Kubernetes mount them: the whole content
    with its trailing newline(s) removed.  Raises ``OSError`` or ``ValueError`` (empty)."""
    with open(path, "rb") as f:
        data = f.read()
    secret = data.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
    if not secret:
        raise ValueError("is empty")
    return secret


def secret_from_file(path: str, option: str) -> str:
    """:func:`read_secret_file`, every failure a ``ValueError`` naming ``option`` and
    the path (never the content)."""
    try:
        return read_secret_file(path)
    except OSError as exc:
        raise ValueError(f"cannot read {option} {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise ValueError(f"{option} {path} is empty") from None


def gather_keys(
    flag_keys: Sequence[str],
    key_files: Sequence[str],
    key_list: str = "",
    flag_name: str = "--hmac-key",
) -> tuple[str, ...]:
    """The HMAC keys in minting order, checked by :func:`check_keys`: each ``--hmac-key``
    (or ``RECEIVER_HMAC_KEY``, ``flag_name``) verbatim, then each ``--hmac-key-file``,
    then the rotation list ``key_list`` (``RESMON_HMAC_KEYS``).  The first key mints,
    every key verifies.  Raises ``ValueError`` with a message naming the source."""
    pairs: list[tuple[str, str]] = []
    for i, key in enumerate(flag_keys, 1):
        pairs.append((flag_name if len(flag_keys) == 1 else f"{flag_name} #{i}", key))
    for path in key_files:
        pairs.append((f"--hmac-key-file {path}", secret_from_file(path, "--hmac-key-file")))
    for i, key in enumerate(split_keys(key_list), 1):
        pairs.append((f"RESMON_HMAC_KEYS item {i}", key))
    return check_keys(pairs)


def canonical_repository(organization: str, repository: str) -> str:
    """The full ``org/repo`` form: a bare ``repo`` under ``org`` becomes ``org/repo``.

    The Go receiver's docs mix both spellings; resmon treats them as one scope.
    """
    if "/" in repository or not organization:
        return repository
    return f"{organization}/{repository}"


def repository_spellings(organization: str, repository: str) -> tuple[str, ...]:
    """The spellings of one repository scope: the full ``org/repo`` and, if any, the bare name."""
    full = canonical_repository(organization, repository)
    prefix = f"{organization}/"
    if organization and full.startswith(prefix) and "/" not in full[len(prefix) :]:
        return (full, full[len(prefix) :])
    return (full,)


def push_token(
    key: str | bytes,
    organization: str,
    repository: str,
    workflow: str,
    job: str,
    *,
    expires: int | None = None,
) -> str:
    """The push token for a scope, over the repository exactly as given: v1 (never
    expires, the Go format), or v2 when ``expires`` (Unix seconds) is given."""
    import hashlib
    import hmac

    scope = (organization, repository, workflow, job)
    if expires is None:
        message = "\0".join(("v1", *scope))
    else:
        if not 0 < expires < 10**12:
            raise ValueError(f"expiry {expires} out of range (Unix seconds, 1 to 10^12 - 1)")
        message = "\0".join(("v2", str(expires), *scope))
    # hmac.digest: OpenSSL's one-shot HMAC, the same bytes as hmac.new(...).digest().
    mac = hmac.digest(key_bytes(key), message.encode(), hashlib.sha256).hex()
    return mac if expires is None else f"v2.{expires}.{mac}"


def token_expiry(token: str) -> int | None:
    """The expiry (Unix seconds) a v2 token carries, or None for any other token.
    Read from the token, not verified: use :func:`check_push_token` for that."""
    m = _V2.fullmatch(token)
    return int(m.group(1)) if m else None


def check_push_token(
    token: str,
    keys: Iterable[str | bytes],
    organization: str,
    repository: str,
    workflow: str,
    job: str,
    *,
    require_expiry: bool = False,
    now: float | None = None,
) -> bool:
    """True when ``token`` is the push token of the scope under any of ``keys`` (rotation)
    and either spelling of the repository, and, for a v2 token, ``now`` (default: the
    current time) is before its expiry.  ``require_expiry`` refuses v1 tokens."""
    import hmac

    expires = token_expiry(token)
    if expires is None and require_expiry:
        return False
    ok = False
    presented = token.encode("utf-8", "replace")
    for key in keys:
        for spelling in repository_spellings(organization, repository):
            expected = push_token(key, organization, spelling, workflow, job, expires=expires)
            # No early exit: every candidate is compared, so timing tells nothing.
            ok |= hmac.compare_digest(presented, expected.encode())
    if expires is not None:
        # The expiry is public (it is in the token), so checking it last leaks nothing.
        ok &= (time.time() if now is None else now) < expires
    return ok


def check_bearer(presented: str, expected: str) -> bool:
    """Constant-time equality of a presented bearer token and the expected one."""
    import hmac

    return hmac.compare_digest(presented.encode(), expected.encode())


def bearer_from_header(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


# --- read tokens (r1) ---------------------------------------------------------


def _b64_org(organization: str) -> str:
    import base64

    raw = organization.encode("utf-8", "surrogateescape")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _org_from_b64(text: str) -> str | None:
    import base64
    import binascii

    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    organization = raw.decode("utf-8", "surrogateescape")
    # Only the canonical spelling: one organisation, one token text.
    return organization if organization and _b64_org(organization) == text else None


def _read_mac(key: str | bytes, organization: str, expires: int) -> str:
    import hashlib
    import hmac

    message = "\0".join(("r1", str(expires), organization)).encode("utf-8", "surrogateescape")
    return hmac.new(key_bytes(key), message, hashlib.sha256).hexdigest()


def read_token(key: str | bytes, organization: str, *, expires: int | None = None) -> str:
    """The r1 read token of ``organization``: it reads that organisation's jobs and runs
    only; ``expires`` (Unix seconds) or never."""
    if not organization or len(organization.encode("utf-8", "surrogateescape")) > MAX_ORG_BYTES:
        raise ValueError(f"organization must be 1 to {MAX_ORG_BYTES} bytes (UTF-8)")
    if expires is not None and not 0 < expires < 10**12:
        raise ValueError(f"expiry {expires} out of range (Unix seconds, 1 to 10^12 - 1)")
    stamp = 0 if expires is None else expires
    return f"{READ_PREFIX}{stamp}.{_b64_org(organization)}.{_read_mac(key, organization, stamp)}"


def parse_read_token(token: str) -> tuple[str, int | None] | None:
    """``(organization, expiry or None)`` as an r1 token states them, or None for any
    other text.  Read, not verified: use :func:`check_read_token` for that."""
    m = _R1.fullmatch(token)
    if m is None:
        return None
    organization = _org_from_b64(m.group(2))
    if organization is None:
        return None
    stamp = int(m.group(1))
    return organization, (stamp or None)


def check_read_token(
    token: str,
    keys: Iterable[str | bytes],
    *,
    require_expiry: bool = False,
    now: float | None = None,
) -> str | None:
    """The organisation an r1 read token reads, when its MAC verifies under any of
    ``keys`` (rotation) and it has not expired; else None.  ``require_expiry`` refuses
    the r1 tokens that never expire, as it refuses v1 push tokens."""
    import hmac

    parsed = parse_read_token(token)
    if parsed is None:
        return None
    organization, expires = parsed
    if expires is None and require_expiry:
        return None
    presented = token.rsplit(".", 1)[1].encode()
    ok = False
    for key in keys:
        expected = _read_mac(key, organization, expires or 0)
        ok |= hmac.compare_digest(presented, expected.encode())
    if expires is not None:
        ok &= (time.time() if now is None else now) < expires
    return organization if ok else None
