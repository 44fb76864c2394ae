"""The resmon receiver as a Flask app: ``create_app(config)``.

``resmon serve`` builds the app once (which opens and migrates the database) and
hands it to the production WSGI server in :mod:`resmon.server.wsgi`; tests use
the same factory with Flask's test client.

Extension points for metrics and other observers (``app.extensions["resmon"]``,
a :class:`ServerState`):

- ``state.hooks.push_result``: callables ``(outcome)`` called once per push with
  one of :data:`PUSH_OUTCOMES`;
- ``state.hooks.request_done``: callables ``(route, method, status, seconds)``
  called after every request (``route`` is the URL rule template, or
  ``"<unmatched>"``: never a raw path, so it is safe as a metric label).
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from flask import Flask, g, request
from flask.json.provider import JSONProvider
from peewee import Database

from resmon.server.errors import register_error_handlers
from resmon.server.logs import log_request
from resmon.store import db as dbmod

log = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_MAX_BODY = MIB
DEFAULT_QUERY_CAP = 1000
PUSH_OUTCOMES = ("created", "duplicate", "rejected_auth", "rejected_input", "too_large")


@dataclass(frozen=True)
class ServerConfig:
    database: str = "metrics.db"
    read_token: str = ""
    # The first key mints; all of them verify (key rotation).
    hmac_keys: tuple[str, ...] = ()
    max_body: int = DEFAULT_MAX_BODY
    # Rows a query returns when it gives no limit (the Go receiver returned all).
    query_cap: int = DEFAULT_QUERY_CAP
    # create_app migrates the schema; ``resmon serve`` does it once before forking.
    migrate: bool = True
    # GET /metrics on the app's own listener (off when --metrics-addr serves them apart).
    metrics_path: bool = True

    def __repr__(self) -> str:  # never print secrets, not even in a traceback
        return (
            f"ServerConfig(database={dbmod.describe_target(self.database)!r}, "
            f"read_token=***, hmac_keys=[{len(self.hmac_keys)} keys], max_body={self.max_body}, "
            f"query_cap={self.query_cap})"
        )


@dataclass
class Hooks:
    push_result: list[Callable[[str], None]] = field(default_factory=list)
    request_done: list[Callable[[str, str, int, float], None]] = field(default_factory=list)

    def push(self, outcome: str) -> None:
        for hook in self.push_result:
            hook(outcome)


@dataclass
class ServerState:
    config: ServerConfig
    database: Database
    hooks: Hooks = field(default_factory=Hooks)
    # Set when the worker got SIGTERM: /readyz answers 503 while requests drain.
    draining: bool = False


class OrjsonProvider(JSONProvider):
    """Flask's JSON through orjson: faster, and strict (NaN is not JSON)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)


def state(app: Flask) -> ServerState:
    return app.extensions["resmon"]


def create_app(config: ServerConfig | None = None) -> Flask:
    config = config or ServerConfig()
    app = Flask("resmon.server")
    app.json = OrjsonProvider(app)
    # "a//b" must not be redirected: an empty scope segment is a 404, not a 308.
    app.url_map.merge_slashes = False
    database = dbmod.open_database(config.database)
    if config.migrate:
        dbmod.migrate(database)
        # No connection may cross a fork into gunicorn's workers: each worker
        # thread opens its own on first use and keeps it (see resmon.store.db).
        database.close()
    app.extensions["resmon"] = ServerState(config=config, database=database)

    from resmon.server.api import bp as api_bp

    app.register_blueprint(api_bp)
    # The read endpoints (helper E's resmon/server/read_api.py), once that module exists;
    # an error inside it still surfaces.
    if importlib.util.find_spec("resmon.server.read_api") is not None:
        from resmon.server.read_api import bp as read_bp

        app.register_blueprint(read_bp)
    register_error_handlers(app)
    _register_request_log(app)
    from resmon.server import metrics

    metrics.init_app(app, serve_path=config.metrics_path)
    return app


def _register_request_log(app: Flask) -> None:
    hooks = state(app).hooks

    @app.before_request
    def _start_timer() -> None:
        g.resmon_started = time.perf_counter()

    @app.after_request
    def _log(response):  # type: ignore[no-untyped-def]
        started = g.get("resmon_started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        # request.path: no query string, so no token or filter value is logged.
        seconds = log_request(request.method, request.path, route, response.status_code, started)
        for hook in hooks.request_done:
            hook(route, request.method, response.status_code, seconds)
        return response
