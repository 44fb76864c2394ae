"""``resmon token``: mint a push token locally (HMAC key) or through a server.

Locally it is :func:`resmon.tokens.push_token` with the first key; through a server
it is ``POST /api/v1/token`` with the read token, so an admin needs no HMAC key.
"""

from __future__ import annotations

import re

from resmon.tokens import push_token

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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


def mint_local(
    hmac_keys: list[str] | tuple[str, ...],
    organization: str,
    repository: str,
    workflow: str,
    job: str,
) -> str:
    if not hmac_keys or not hmac_keys[0]:
        raise MintError("no HMAC key: pass --hmac-key or set RECEIVER_HMAC_KEY")
    return push_token(hmac_keys[0], organization, repository, workflow, job)


def mint_remote(
    server: str,
    read_token: str,
    organization: str,
    repository: str,
    workflow: str,
    job: str,
    *,
    timeout: float = 10.0,
) -> str:
    import requests  # only this path needs it

    if not read_token:
        raise MintError("no read token: pass --read-token or set RECEIVER_READ_TOKEN")
    url = server.rstrip("/") + "/api/v1/token"
    body = {
        "organization": organization,
        "repository": repository,
        "workflow": workflow,
        "job": job,
    }
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
        raise MintError(f"server {server} rejected the read token (401): check --read-token")
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code != 200:
        detail = data.get("error") if isinstance(data, dict) else response.text[:200]
        raise MintError(f"server {server} answered {response.status_code}: {detail}")
    token = data.get("token") if isinstance(data, dict) else None
    if not isinstance(token, str) or len(token) != 64:
        raise MintError(
            f"server {server} answered 200 without a token: is it a resmon or Go receiver?"
        )
    return token
