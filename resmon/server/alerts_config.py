"""What ``resmon serve`` gives the alerts: the rules file, the admin token, the webhook
targets and their secret and format, and how often the background loops look
(:mod:`resmon.server.alert_loop`, :mod:`resmon.server.webhooks`)."""

from __future__ import annotations

from dataclasses import dataclass, field

WEBHOOK_FORMATS = ("json", "slack")


@dataclass(frozen=True)
class AlertsConfig:
    # TOML or JSON (resmon.store.alerts.read_rules_file); re-read when it changes.
    rules_file: str | None = None
    # Bearer token of the admin API's writes (rules); empty: writes are refused (403).
    admin_token: str = field(default="", repr=False)
    webhook_urls: tuple[str, ...] = ()
    # HMAC-SHA256 key of X-Resmon-Signature; empty: deliveries are not signed.
    webhook_secret: str = field(default="", repr=False)
    webhook_format: str = "json"
    webhook_timeout: float = 5.0
    webhook_backoff: float = 1.0  # seconds before the second attempt, doubled each time
    # Seconds between reads of the events table and of the outbox.
    poll_interval: float = 1.0
    # Run the evaluator and the sender in each worker (resmon serve); off in tests that
    # build the app for Flask's test client.
    background: bool = False
