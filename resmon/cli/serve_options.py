"""The option groups of ``resmon serve`` beyond its listener and secrets: how a pushed
run is compared with its job's baseline, live runs, and the event stream.  Each is a
decorator; their values reach :func:`resmon.cli.serve._run` by name."""

from __future__ import annotations

import click


def _window_option(ctx, param, value):
    from resmon.store.scope import HistoryError, parse_positive_period

    try:
        window = parse_positive_period(value)
    except HistoryError as exc:
        raise click.BadParameter(str(exc)) from None
    if window.days > 3650:
        raise click.BadParameter("must be at most 3650d")
    return window


def _change_option(ctx, param, value):
    """A share written as a percent (``20%``) or a fraction (``0.2``)."""
    text = value.strip()
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a share: use e.g. 20% or 0.2") from None
    if not 0 <= share <= 100:
        raise click.BadParameter("must be between 0% and 10000%")
    return share


def baseline_options(f):
    """How a pushed run is compared with its job's baseline (the push answer's comparison)."""
    f = click.option(
        "--regression-change",
        default="20%",
        metavar="SHARE",
        envvar="RESMON_REGRESSION_CHANGE",
        callback=_change_option,
        help="A figure is a regression only if it is also this much above the baseline's "
        "median (20% or 0.2).",
    )(f)
    f = click.option(
        "--regression-mad",
        default=3.5,
        type=click.FloatRange(0, 1000),
        metavar="K",
        envvar="RESMON_REGRESSION_MAD",
        help="A figure is robustly unusual when it is over the baseline's median by more "
        "than K x 1.4826 x MAD (median absolute deviation).",
    )(f)
    f = click.option(
        "--regression-shift",
        default=3.0,
        type=click.FloatRange(0, 1000),
        metavar="K",
        envvar="RESMON_REGRESSION_SHIFT",
        help="A step that stays is flagged when the median of the last runs (2 up to "
        "--regression-shift-runs, the pushed one included) is over the median of the runs "
        "before them by more than K standard errors of the two medians, and by "
        "--regression-change.",
    )(f)
    f = click.option(
        "--regression-shift-runs",
        default=5,
        type=click.IntRange(0, 50),
        metavar="N",
        envvar="RESMON_REGRESSION_SHIFT_RUNS",
        help="The most recent runs a shift is looked for over (below 2: no shift test, "
        "only the run alone is compared).",
    )(f)
    f = click.option(
        "--baseline-window",
        default="30d",
        metavar="PERIOD",
        envvar="RESMON_BASELINE_WINDOW",
        callback=_window_option,
        help="The baseline is the job's runs received this long before the pushed one.",
    )(f)
    f = click.option(
        "--baseline-runs",
        default=20,
        type=click.IntRange(0, 1000),
        envvar="RESMON_BASELINE_RUNS",
        help="At most this many of them, the newest (0: pushes are not compared).",
    )(f)
    return f


def _seconds_option(name, low, high):
    def convert(ctx, param, value):
        from resmon.units import parse_duration

        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        if not low <= seconds <= high:
            raise click.BadParameter(f"must be between {name}")
        return seconds

    return convert


def sse_options(f):
    """GET /api/v1/events: Server-Sent Events, served off the request threads."""
    f = click.option(
        "--sse-poll-interval",
        default="250ms",
        metavar="DURATION",
        envvar="RESMON_SSE_POLL_INTERVAL",
        callback=_seconds_option("10ms and 10s", 0.01, 10),
        help="How often each worker reads new events from the database while it has "
        "subscribers (one read serves all of them; other replicas' events arrive this way).",
    )(f)
    f = click.option(
        "--sse-heartbeat",
        default="15s",
        metavar="DURATION",
        envvar="RESMON_SSE_HEARTBEAT",
        callback=_seconds_option("100ms and 1h", 0.1, 3600),
        help="An event stream with nothing to send this long gets a ': hb' comment line "
        "(keeps proxies and load balancers from closing it).",
    )(f)
    f = click.option(
        "--sse-max-subscribers",
        default=500,
        type=click.IntRange(1, 100_000),
        envvar="RESMON_SSE_MAX_SUBSCRIBERS",
        help="Event streams per worker process; beyond, GET /api/v1/events answers 503 "
        "with Retry-After.",
    )(f)
    return f


def _live_timeout(ctx, param, value):
    from resmon.units import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not 1 <= seconds <= 7 * 86400:
        raise click.BadParameter("must be between 1s and 7d")
    return seconds


def live_options(f):
    """Live runs: when a running run whose batches stopped is lost."""
    return click.option(
        "--live-timeout",
        default="2m",
        metavar="DURATION",
        envvar="RESMON_LIVE_TIMEOUT",
        callback=_live_timeout,
        help="A running run with no batch for max(3 x its live interval, this) becomes "
        "lost, with a partial summary from its samples.  Each worker looks every "
        "timeout/4 (at most every 30s) and before answering the live endpoints.",
    )(f)


def _alert_rules(ctx, param, value):
    if value is None:
        return None
    from resmon.server.alert_loop import rules_file_error

    error = rules_file_error(value)
    if error is not None:
        raise click.BadParameter(error)
    return value


def _webhook_urls(ctx, param, value):
    from resmon.server.webhooks import WebhookUrlError, check_url

    try:
        return tuple(check_url(url) for url in value)
    except WebhookUrlError as exc:
        raise click.BadParameter(str(exc)) from None


def alert_options(f):
    """Alerts: the rules file, the admin API's token, the webhooks (resmon.server.alert_loop)."""
    f = click.option(
        "--alert-poll-interval",
        default="1s",
        metavar="DURATION",
        envvar="RESMON_ALERT_POLL_INTERVAL",
        callback=_seconds_option("10ms and 1m", 0.01, 60),
        help="How often each worker reads new events for the alert rules and looks at the "
        "webhook outbox.",
    )(f)
    f = click.option(
        "--webhook-backoff",
        default="1s",
        metavar="DURATION",
        envvar="RESMON_WEBHOOK_BACKOFF",
        callback=_seconds_option("10ms and 1h", 0.01, 3600),
        help="Wait before retrying a failed delivery, doubled at each failure (up to 1h).",
    )(f)
    f = click.option(
        "--webhook-timeout",
        default="5s",
        metavar="DURATION",
        envvar="RESMON_WEBHOOK_TIMEOUT",
        callback=_seconds_option("100ms and 2m", 0.1, 120),
        help="A delivery that takes longer (connect, or the answer) has failed and is retried.",
    )(f)
    f = click.option(
        "--webhook-format",
        default="json",
        type=click.Choice(["json", "slack"]),
        envvar="RESMON_WEBHOOK_FORMAT",
        help="json: the alert event as the event stream carries it; slack: a "
        'Slack/Mattermost incoming-webhook message {"text": ...}.',
    )(f)
    f = click.option(
        "--webhook-secret-file",
        metavar="PATH",
        envvar="RESMON_WEBHOOK_SECRET_FILE",
        help="Key of X-Resmon-Signature (sha256=HMAC-SHA256 of the body), read from this "
        "file; or the RESMON_WEBHOOK_SECRET variable.  Without one deliveries are unsigned.",
    )(f)
    f = click.option(
        "--webhook-url",
        "webhook_urls",
        multiple=True,
        metavar="URL",
        envvar="RESMON_WEBHOOK_URL",
        callback=_webhook_urls,
        help="POST every alert state change here (repeatable; the variable takes "
        "space-separated URLs), at least once, retried from a durable outbox.",
    )(f)
    f = click.option(
        "--admin-token-file",
        metavar="PATH",
        envvar="RESMON_ADMIN_TOKEN_FILE",
        help="Token of the admin API (alert rules: POST, PATCH, DELETE), read from this "
        "file; or the RESMON_ADMIN_TOKEN variable.  Without one, rule changes are refused.",
    )(f)
    f = click.option(
        "--alert-rules",
        metavar="FILE",
        envvar="RESMON_ALERT_RULES",
        callback=_alert_rules,
        help="Alert rules in TOML ([[rule]] tables) or JSON (.json); re-read when the file "
        "changes (and on SIGHUP).",
    )(f)
    return f


def resolve_alerts(options, read_token="", hmac_keys=()):
    """The AlertsConfig of serve's options and the RESMON_ADMIN_TOKEN /
    RESMON_WEBHOOK_SECRET variables (secrets never on the command line).  The admin
    token must differ from the read token and the HMAC keys: who may read must not
    be able to change the rules by that alone."""
    import os

    from resmon.server.alerts_config import AlertsConfig
    from resmon.tokens import secret_from_file

    def secret(path_option, path, variable):
        if path:
            try:
                return secret_from_file(path, path_option)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint=path_option) from None
        return os.environ.get(variable, "")

    admin_token = secret("--admin-token-file", options["admin_token_file"], "RESMON_ADMIN_TOKEN")
    if admin_token and (admin_token == read_token or admin_token in hmac_keys):
        raise click.UsageError("the admin token must differ from the read token and the HMAC keys")
    if admin_token and len(admin_token) < 16:
        raise click.UsageError("the admin token must be at least 16 characters")
    return AlertsConfig(
        rules_file=options["alert_rules"],
        admin_token=admin_token,
        webhook_urls=options["webhook_urls"],
        webhook_secret=secret(
            "--webhook-secret-file", options["webhook_secret_file"], "RESMON_WEBHOOK_SECRET"
        ),
        webhook_format=options["webhook_format"],
        webhook_timeout=options["webhook_timeout"],
        webhook_backoff=options["webhook_backoff"],
        poll_interval=options["alert_poll_interval"],
        background=True,
    )


def _keep_option(ctx, param, value):
    """A keep time: 7d, 12h, 2w, 2y (365 days each), or 0 / off: kept forever."""
    from datetime import timedelta

    from resmon.store.scope import HistoryError, parse_period

    text = (value or "").strip().lower()
    if text in ("0", "off", "none", "forever"):
        return None
    years = text[:-1].strip() if text.endswith("y") else None
    try:
        keep = timedelta(days=365 * float(years)) if years is not None else parse_period(text)
    except (HistoryError, ValueError, OverflowError):
        raise click.BadParameter(
            f"{value!r} is not a keep time: use e.g. 7d, 12h, 2w, 2y, or off"
        ) from None
    if keep <= timedelta(0):
        return None
    if keep.days > 100 * 365:
        raise click.BadParameter("must be at most 100y (or off)")
    return keep


def maintenance_options(f):
    """The background work: rollups, and retention (what is deleted after how long)."""
    keeps = (
        ("--retention-events", "7d", "RESMON_RETENTION_EVENTS",
         "Events (the SSE stream's history; an event the rollups still need is kept)."),
        ("--retention-daily-rollups", "2y", "RESMON_RETENTION_DAILY_ROLLUPS",
         "Daily rollups (top, usage, the jobs list over long periods)."),
        ("--retention-hourly-rollups", "90d", "RESMON_RETENTION_HOURLY_ROLLUPS",
         "Hourly rollups (usage --granularity hour)."),
        ("--retention-runs", "180d", "RESMON_RETENTION_RUNS",
         "Runs, with their containers, regressions and samples (rollups outlive them)."),
        ("--retention-samples", "7d", "RESMON_RETENTION_SAMPLES",
         "Live samples of runs (run_batches: a run's sample history)."),
    )  # fmt: skip
    for name, default, env, what in keeps:
        f = click.option(
            name,
            default=default,
            metavar="KEEP",
            envvar=env,
            callback=_keep_option,
            help=f"{what} Deleted this long after they were received, in the background "
            "in small batches (one replica at a time); 0 or off keeps them.",
        )(f)
    f = click.option(
        "--retention-interval",
        default="1m",
        metavar="DURATION",
        envvar="RESMON_RETENTION_INTERVAL",
        callback=_seconds_option("0 (off) and 1d", 0, 86400),
        help="How often retention looks for rows to delete (0: never).",
    )(f)
    f = click.option(
        "--rollup-interval",
        default="1s",
        metavar="DURATION",
        envvar="RESMON_ROLLUP_INTERVAL",
        callback=_seconds_option("0 (off) and 1h", 0, 3600),
        help="How often new runs are added to the hourly and daily rollups (the lag of "
        "the rollups; answers never wait for them).  0: never (answers then read the "
        "runs, slower).",
    )(f)
    return f


def resolve_maintenance(options):
    from resmon.server.maintenance import MaintenanceOptions
    from resmon.store.retention import RetentionPolicy

    return MaintenanceOptions(
        rollup_interval=options["rollup_interval"],
        retention_interval=options["retention_interval"],
        policy=RetentionPolicy(
            samples=options["retention_samples"],
            runs=options["retention_runs"],
            hourly_rollups=options["retention_hourly_rollups"],
            daily_rollups=options["retention_daily_rollups"],
            events=options["retention_events"],
        ),
    )
