"""The web session and CSRF tokens: signed, stateless cookies, no table.

A person signs in on ``/login`` (:mod:`resmon.web.auth`) with a read token: the
server's, or an r1 token of one organisation.  The answer sets ``resmon_session``:

    s1.<expiry>.<scope>.<fingerprint>.<hex(HMAC(secret, "s1\\0" + expiry + "\\0" +
    scope + "\\0" + fingerprint))>

``scope`` is ``*`` (every organisation: signed in with the server's read token) or
the organisation in unpadded base64url.  ``expiry`` (Unix seconds) is at most
:data:`LIFETIME` after sign-in and never after the r1 token's own expiry.  For
``*`` the fingerprint is a MAC of the server's read token, so changing the read
token ends those sessions; for an organisation it is ``-``.  The token itself is
never in the cookie.

The secret is derived, not configured: ``HMAC(key, "resmon web session v1")`` for
each HMAC key (the first signs, every one verifies: the push tokens' rotation), or,
on a server without HMAC keys, the same of its read token.  Every replica with the
same keys accepts the same sessions, and dropping a key ends the sessions it signed.

CSRF: ``resmon_csrf`` holds a random value; a form carries ``HMAC(secret, "csrf\\0"
+ value)`` (a signed double submit: a cookie planted by a neighbouring host cannot
come with a valid form token).  Both cookies are HttpOnly, SameSite=Strict, Path=/,
and Secure when the request came over HTTPS (or a proxy says ``X-Forwarded-Proto:
https``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from flask import current_app, request

COOKIE = "resmon_session"
CSRF_COOKIE = "resmon_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
LIFETIME = 12 * 3600
CSRF_LIFETIME = 12 * 3600
_DERIVE = b"resmon web session v1"
_VALUE = re.compile(
    r"s1\.([1-9][0-9]{0,11})\.(\*|[A-Za-z0-9_-]{1,340})\.(-|[0-9a-f]{32})\.([0-9a-f]{64})"
)
_CSRF_VALUE = re.compile(r"[A-Za-z0-9_-]{32}")


@dataclass(frozen=True)
class Session:
    organization: str | None  # None: every organisation
    expires: int


def _secrets() -> tuple[bytes, ...]:
    config = current_app.extensions["resmon"].config
    return _derive(tuple(config.hmac_keys), config.read_token)


@functools.lru_cache(maxsize=8)
def _derive(hmac_keys: tuple[str, ...], read_token: str) -> tuple[bytes, ...]:
    """The session secrets of these keys (the first signs), then of the read token."""
    roots = [*hmac_keys, read_token] if read_token else [*hmac_keys]
    out = []
    for root in roots:
        raw = root if isinstance(root, bytes) else root.encode("utf-8", "surrogateescape")
        out.append(hmac.new(raw, _DERIVE, hashlib.sha256).digest())
    return tuple(out)


def available() -> bool:
    """Whether this server can sign sessions (it has an HMAC key or a read token)."""
    return bool(_secrets())


def _mac(secret: bytes, *parts: str) -> str:
    message = "\0".join(parts).encode("utf-8", "surrogateescape")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def _fingerprint(secret: bytes) -> str:
    read_token = current_app.extensions["resmon"].config.read_token
    return _mac(secret, "fp", read_token)[:32] if read_token else ""


def _b64(organization: str) -> str:
    raw = organization.encode("utf-8", "surrogateescape")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> str | None:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    organization = raw.decode("utf-8", "surrogateescape")
    return organization if organization and _b64(organization) == text else None


def sign(organization: str | None, token_expires: int | None, now: float | None = None) -> Session:
    """The session for a sign-in: every organisation (None) or one, ending after
    :data:`LIFETIME` or at the token's own expiry, whichever is first."""
    start = int(time.time() if now is None else now)
    expires = start + LIFETIME
    if token_expires is not None:
        expires = min(expires, token_expires)
    return Session(organization, expires)


def cookie_value(signed: Session) -> str:
    secret = _secrets()[0]
    scope = "*" if signed.organization is None else _b64(signed.organization)
    fingerprint = _fingerprint(secret) if signed.organization is None else "-"
    mac = _mac(secret, "s1", str(signed.expires), scope, fingerprint)
    return f"s1.{signed.expires}.{scope}.{fingerprint}.{mac}"


def verify(value: str | None, now: float | None = None) -> Session | None:
    """The session a cookie value carries, or None: malformed, signed with no current
    secret, expired, or (every organisation) signed under another read token."""
    if not value:
        return None
    m = _VALUE.fullmatch(value)
    if m is None:
        return None
    expires_text, scope, fingerprint, mac = m.groups()
    expires = int(expires_text)
    if expires <= (time.time() if now is None else now):
        return None
    organization = None if scope == "*" else _unb64(scope)
    if scope != "*" and organization is None:
        return None
    if (scope == "*") != (fingerprint != "-"):
        return None
    for secret in _secrets():
        expected = _mac(secret, "s1", expires_text, scope, fingerprint)
        if not hmac.compare_digest(mac, expected):
            continue
        if scope == "*" and not hmac.compare_digest(fingerprint, _fingerprint(secret)):
            return None
        return Session(organization, expires)
    return None


def current() -> Session | None:
    """The session of this request's cookie, or None."""
    value = request.cookies.get(COOKIE)
    if not value or not available():
        return None
    return verify(value)


def secure() -> bool:
    """Whether cookies set now get the Secure flag (the request came over HTTPS)."""
    return request.is_secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def cookie_options(max_age: int) -> dict:
    return {
        "max_age": max_age,
        "path": "/",
        "httponly": True,
        "samesite": "Strict",
        "secure": secure(),
    }


# --- CSRF ----------------------------------------------------------------------


def new_csrf_value() -> str:
    return secrets.token_urlsafe(24)  # 32 characters


def csrf_value_ok(value: str | None) -> bool:
    return bool(value) and _CSRF_VALUE.fullmatch(value) is not None  # type: ignore[arg-type]


def csrf_token_for(value: str) -> str:
    """The form token that goes with the ``resmon_csrf`` cookie ``value``."""
    return _mac(_secrets()[0], "csrf", value)


def csrf_valid(value: str | None, token: str | None) -> bool:
    """Whether ``token`` (the form's) goes with ``value`` (the cookie's) under any secret."""
    if not csrf_value_ok(value) or not token or len(token) != 64:
        return False
    ok = False
    for secret in _secrets():
        ok |= hmac.compare_digest(token, _mac(secret, "csrf", value))  # type: ignore[arg-type]
    return ok
