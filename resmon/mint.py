"""``resmon token``: mint a push token locally (HMAC key) or through a server.

Locally it is :func:`resmon.tokens.push_token` with the first key; through a server
it is ``POST /api/v1/token`` with the read token, so an admin needs no HMAC key.
Either way a lifetime makes it a v2 token that expires (``--expires 90d``).

``resmon token --read --org ORG`` mints an r1 read token of one organisation the same
two ways (:func:`resmon.tokens.read_token`; ``"kind": "read"`` through a server).
"""

from __future__ import annotations

import re
import time

from resmon.tokens import (
    MAX_LIFETIME,
    MIN_LIFETIME,
    parse_read_token,
    push_token,
    token_expiry,
)
from resmon.tokens import read_token as org_read_token

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_V1 = re.compile(r"[0-9a-f]{64}")
_LIFETIME_PART = re.compile(r"(\d{1,9})([smhdw])")
_LIFETIME_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class MintError(Exception):
    """Minting failed; the message says why and what to do."""


class ScopeError(MintError):
    """One part of the scope cannot be signed; ``field`` names it (``organization``...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_scope(organization: str, repository: str, workflow: str, job: str) -> None:
    """Refuse a scope no push could carry: an empty part, or one with control characters
    (the server refuses those in a payload, so a token for them would never be used)."""
    for name, value in (
        ("organization", organization),
        ("repository", repository),
        ("workflow", workflow),
        ("job", job),
    ):
        if not value or _CONTROL.search(value):
            raise ScopeError(name, "must be non-empty, without control characters")


def parse_lifetime(text: str) -> int:
    """Seconds from a token lifetime: ``90d``, ``12h``, ``2w``, ``1d12h`` or plain
    seconds; between a minute and ten years.  Raises ``ValueError`` fit for a user."""
    s = text.strip()
    if s.isdigit() and len(s) <= 12:
        seconds = int(s)
    else:
        pos, seconds = 0, 0
        for m in _LIFETIME_PART.finditer(s):
            if m.start() != pos:
                break
            seconds += int(m.group(1)) * _LIFETIME_UNIT[m.group(2)]
            pos = m.end()
        if pos == 0 or pos != len(s):
            raise ValueError(f"invalid lifetime {text!r}: use e.g. 90d, 12h, 2w or 1d12h")
    if not MIN_LIFETIME <= seconds <= MAX_LIFETIME:
        raise ValueError(f"lifetime {text!r} out of range: between 1m and 3660d")
    return seconds


def mint_local(
    hmac_keys: list[str] | tuple[str, ...],
    organization: str,
    repository: str,
    workflow: str,
    job: str,
    *,
    expires: int | None = None,
) -> str:
    """The push token of the scope with the first key: v1, or v2 expiring at ``expires``
    (Unix seconds)."""
    if not hmac_keys or not hmac_keys[0]:
        raise MintError("no HMAC key: set RECEIVER_HMAC_KEY or pass --hmac-key-file")
    return push_token(hmac_keys[0], organization, repository, workflow, job, expires=expires)


def check_organization(organization: str) -> None:
    """Refuse an organisation no read token can name (empty, control characters, over
    255 bytes): :class:`ScopeError` for ``organization``."""
    if not organization or _CONTROL.search(organization):
        raise ScopeError("organization", "must be non-empty, without control characters")
    if len(organization.encode("utf-8", "surrogateescape")) > 255:
        raise ScopeError("organization", "must be at most 255 bytes (UTF-8)")


def mint_read_local(
    hmac_keys: list[str] | tuple[str, ...], organization: str, *, expires: int | None = None
) -> str:
    """The r1 read token of ``organization`` with the first key, expiring at ``expires``
    (Unix seconds) or never."""
    if not hmac_keys or not hmac_keys[0]:
        raise MintError("no HMAC key: set RECEIVER_HMAC_KEY or pass --hmac-key-file")
    return org_read_token(hmac_keys[0], organization, expires=expires)


def mint_remote(
    server: str,
    read_token: str,
    organization: str,
    repository: str = "",
    workflow: str = "",
    job: str = "",
    *,
    expires_in: int | None = None,
    timeout: float = 10.0,
    kind: str = "push",
) -> str:
    """``POST /api/v1/token`` on ``server``; with ``expires_in`` (seconds) the server is
    asked for a v2 token of that lifetime, and a server that ignores the field (it
    answers a v1 token) is an error, never a token that does not expire.  ``kind="read"``
    asks for the r1 read token of ``organization`` instead (the scope's other parts unused)."""
    import requests  # only this path needs it

    if not read_token:
        raise MintError("no read token: set RECEIVER_READ_TOKEN or pass --read-token-file")
    url = server.rstrip("/") + "/api/v1/token"
    body: dict[str, str | int]
    if kind == "read":
        body = {"kind": "read", "organization": organization}
    else:
        body = {
            "organization": organization,
            "repository": repository,
            "workflow": workflow,
            "job": job,
        }
    if expires_in is not None:
        body["expires_in"] = expires_in
    try:
        response = requests.post(
            url, json=body, headers={"Authorization": f"Bearer {read_token}"}, timeout=timeout
        )
    except requests.exceptions.InvalidURL as exc:
        raise MintError(f"invalid server URL {server!r}: {exc}") from None
    except requests.exceptions.MissingSchema:
        raise MintError(f"invalid server URL {server!r}: use http://HOST:PORT") from None
    except requests.exceptions.Timeout:
        raise MintError(f"server {server} did not answer within {timeout:g} s") from None
    except requests.exceptions.ConnectionError:
        raise MintError(f"cannot reach server {server}: is `resmon serve` running there?") from None
    if response.status_code == 401:
        raise MintError(
            f"server {server} rejected the read token (401): check RECEIVER_READ_TOKEN "
            "or --read-token-file"
        )
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code != 200:
        detail = data.get("error") if isinstance(data, dict) else response.text[:200]
        raise MintError(f"server {server} answered {response.status_code}: {detail}")
    token = data.get("token") if isinstance(data, dict) else None
    if kind == "read":
        return _checked_read_answer(server, token, organization, expires_in)
    if not isinstance(token, str) or not (_V1.fullmatch(token) or token_expiry(token)):
        raise MintError(
            f"server {server} answered 200 without a token: is it a resmon or Go receiver?"
        )
    if expires_in is not None and token_expiry(token) is None:
        raise MintError(
            f"server {server} minted a token that does not expire: it does not support "
            "expiring tokens (expires_in); mint locally with the HMAC key, or without --expires"
        )
    return token


def _checked_read_answer(
    server: str, token: object, organization: str, expires_in: int | None
) -> str:
    parsed = parse_read_token(token) if isinstance(token, str) else None
    if parsed is None or parsed[0] != organization:
        raise MintError(
            f"server {server} answered 200 without a read token of {organization!r}: "
            "does it mint org-scoped read tokens (kind read)?"
        )
    if expires_in is not None and parsed[1] is None:
        raise MintError(f"server {server} minted a read token that does not expire")
    return token  # type: ignore[return-value]


def expiry_after(seconds: int, now: float | None = None) -> int:
    """The Unix time ``seconds`` from now, for a v2 token's expiry."""
    return int(time.time() if now is None else now) + seconds
