"""What a resmon app runs with: its :class:`ServerConfig`, and the :class:`ServerState`
kept in ``app.extensions["resmon"]`` (reached with :func:`state`).

A module of its own so that the blueprints and the metrics read the state without
importing the app factory (:func:`resmon.server.create_app`), which imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask
from peewee import Database

from resmon.server.alerts_config import AlertsConfig
from resmon.store import db as dbmod
from resmon.store.baseline import BaselineOptions

MIB = 1024 * 1024
DEFAULT_MAX_BODY = MIB
DEFAULT_METRICS_REFRESH = 15.0
PUSH_OUTCOMES = ("created", "duplicate", "rejected_auth", "rejected_input", "too_large")


@dataclass(frozen=True)
class ServerConfig:
    database: str = "metrics.db"
    read_token: str = ""
    # The first key mints; all of them verify (key rotation).
    hmac_keys: tuple[str, ...] = ()
    max_body: int = DEFAULT_MAX_BODY
    # create_app migrates the schema; ``resmon serve`` does it once before forking.
    migrate: bool = True
    # GET /metrics on the app's own listener, to the read token (--no-metrics-on-addr: off).
    metrics_path: bool = True
    # Seconds between background readings of the runs stored and the database size.
    metrics_refresh: float = DEFAULT_METRICS_REFRESH
    # Refuse push tokens without an expiry (v1): only v2 tokens verify.
    require_expiry: bool = False
    # How a pushed run is compared with its job's baseline (the push answer's
    # ``comparison``); runs=0: not compared.
    baseline: BaselineOptions = BaselineOptions()
    # Live runs (resmon.server.live_api): a running run without a batch for
    # max(3 x its live interval, live_timeout seconds) is lost; each worker looks
    # every live_check_period seconds (0: only before a live read; resmon serve sets it).
    live_timeout: float = 120.0
    live_check_period: float = 0.0
    # GET /api/v1/events (resmon.server.sse): subscribers per worker process (503
    # beyond), seconds between heartbeats, between reads of the events table, how
    # many unsent bytes a slow subscriber may have before it is dropped, and how
    # long a missing event id is waited for on PostgreSQL (resmon.server.event_feed).
    sse_max_subscribers: int = 500
    sse_heartbeat: float = 15.0
    sse_poll_interval: float = 0.25
    sse_buffer_limit: int = MIB
    events_gap_wait: float = 5.0
    # Alert rules, their admin API and webhooks (resmon.server.alert_loop).
    alerts: AlertsConfig = AlertsConfig()

    def __repr__(self) -> str:  # never print secrets, not even in a traceback
        return (
            f"ServerConfig(database={dbmod.describe_target(self.database)!r}, "
            f"read_token=***, hmac_keys=[{len(self.hmac_keys)} keys], max_body={self.max_body}, "
            f"require_expiry={self.require_expiry})"
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


def state(app: Flask) -> ServerState:
    return app.extensions["resmon"]
