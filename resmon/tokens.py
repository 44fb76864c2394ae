"""Push tokens: HMAC-SHA256 over the execution scope, and bearer-token checks.

Token = lowercase hex of HMAC-SHA256(key, "v1\\0" + org + "\\0" + repo + "\\0" +
workflow + "\\0" + job) over the repository exactly as given (wire contract and
its test vectors).  Minting signs what it is given, byte-compatible with the Go
receiver; verifying accepts both spellings of a repository (``my-repo`` and
``my-org/my-repo`` under org ``my-org``), since the Go receiver's own docs mix
them and its users get a 401 for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# hashlib and hmac are imported where they are used: they load OpenSSL (about 3.5 MB
# of RSS), and the collector imports this module (through schema) but never signs.


def split_keys(*values: str) -> list[str]:
    """The HMAC keys in ``--hmac-key`` values or ``RECEIVER_HMAC_KEY``: each value holds
    one or more keys separated by commas or whitespace; order is kept (the first key
    mints, every key verifies, so a rotation lists the new key first)."""
    return [key for value in values for key in re.split(r"[,\s]+", value) if key]


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
    key: str | bytes, organization: str, repository: str, workflow: str, job: str
) -> str:
    """The push token for a scope, over the repository exactly as given."""
    import hashlib
    import hmac

    if isinstance(key, str):
        key = key.encode()
    message = "\0".join(("v1", organization, repository, workflow, job)).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def check_push_token(
    token: str,
    keys: Iterable[str | bytes],
    organization: str,
    repository: str,
    workflow: str,
    job: str,
) -> bool:
    """True when ``token`` is the push token of the scope under any of ``keys`` (rotation)
    and either spelling of the repository."""
    import hmac

    ok = False
    presented = token.encode()
    for key in keys:
        for spelling in repository_spellings(organization, repository):
            # No early exit: every candidate is compared, so timing tells nothing.
            ok |= hmac.compare_digest(
                presented, push_token(key, organization, spelling, workflow, job).encode()
            )
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
