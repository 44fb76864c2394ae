"""The resmon receiver as a Flask app: ``create_app(config)``.

``resmon serve`` builds the app once (which opens and migrates the database) and
hands it to the production WSGI server in :mod:`resmon.server.wsgi`; tests use
the same factory with Flask's test client.

Extension points for metrics and other observers (``app.extensions["resmon"]``,
a :class:`~resmon.server.config.ServerState`):

- ``state.hooks.push_result``: callables ``(outcome)`` called once per push with
  one of :data:`~resmon.server.config.PUSH_OUTCOMES`;
- ``state.hooks.request_done``: callables ``(route, method, status, seconds)``
  called after every request (``route`` is the URL rule template, or
  ``"<unmatched>"``: never a raw path, so it is safe as a metric label).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from flask import Flask, g, request
from flask.json.provider import JSONProvider

from resmon.server import metrics
from resmon.server.advice_api import bp as advice_bp
from resmon.server.alert_loop import init_app as init_alerts
from resmon.server.alerts_api import bp as alerts_bp
from resmon.server.api import bp as api_bp
from resmon.server.config import ServerConfig, ServerState, state
from resmon.server.errors import register_error_handlers
from resmon.server.events_api import bp as events_bp
from resmon.server.live_api import bp as live_bp
from resmon.server.live_api import init_app as init_live
from resmon.server.logs import log_request
from resmon.server.maintenance import init_app as init_maintenance
from resmon.server.read_api import bp as read_bp
from resmon.server.usage_api import bp as usage_bp
from resmon.store import db as dbmod
from resmon.web import init_app as init_web
from resmon.web.auth import init_app as init_web_auth

log = logging.getLogger(__name__)


class OrjsonProvider(JSONProvider):
    """Flask's JSON through orjson: faster, and strict (NaN is not JSON)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)


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

    app.register_blueprint(api_bp)
    app.register_blueprint(read_bp)
    app.register_blueprint(usage_bp)
    app.register_blueprint(advice_bp)
    app.register_blueprint(live_bp)
    init_live(app)
    init_maintenance(app)
    app.register_blueprint(events_bp)
    app.register_blueprint(alerts_bp)
    init_alerts(app)
    init_web_auth(app)
    init_web(app)
    register_error_handlers(app)
    _register_request_log(app)
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
