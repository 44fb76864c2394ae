"""The OpenAPI 3.1 document of the whole HTTP API, built as a Python dict.

Each module here documents the routes of the server module of the same name
(:mod:`.api`, :mod:`.read_api`, :mod:`.advice_api`, :mod:`.metrics`); :mod:`.components` holds the
schemas they refer to and :mod:`.common` the responses they share.

``tests/server/test_server_openapi.py`` walks the app's URL map and fails when a
route or method is missing here, or documented but not served.  A route whose
Flask rule differs from its documented path says so with ``x-flask-rule``.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from resmon import __version__
from resmon.server.openapi import (
    advice_api,
    alerts_api,
    api,
    events_api,
    live_api,
    metrics,
    read_api,
    usage_api,
    web_auth,
    web_pages,
)
from resmon.server.openapi.components import COMPONENTS


def build_openapi() -> dict[str, Any]:
    """A fresh copy of the document (callers may change it)."""
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "resmon",
            "version": __version__,
            "description": (
                "Receiver of CI job resource summaries, wire-compatible with the Forgejo runner "
                "resource collector's receiver."
            ),
        },
        "paths": {
            **api.paths(),
            **read_api.paths(),
            **usage_api.paths(),
            **advice_api.paths(),
            **live_api.paths(),
            **events_api.paths(),
            **alerts_api.paths(),
            **metrics.paths(),
            **web_auth.paths(),
            **web_pages.paths(),
        },
        "components": {
            **COMPONENTS,
            "securitySchemes": {**COMPONENTS["securitySchemes"], **alerts_api.SECURITY_SCHEMES},
        },
    }
    # Built from module-level dicts: the copy keeps a caller's changes out of them,
    # and so out of the next document.
    return deepcopy(document)
