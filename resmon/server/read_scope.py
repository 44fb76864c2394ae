"""Which organisation the current read request may see.

The server's read token sees every organisation (:func:`read_org` is None); a read
token scoped to one organisation sees only that one.  Every read endpoint and page
asks here before answering: a path naming another organisation is a 404 as for a
job that does not exist, and a list is filtered to the organisation."""

from __future__ import annotations


def read_org() -> str | None:
    """The organisation the current request is limited to, or None for all of them."""
    return None


def may_read(organization: str) -> bool:
    """Whether the current request may see ``organization``'s jobs and runs."""
    scoped = read_org()
    return scoped is None or scoped == organization
