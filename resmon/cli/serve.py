"""``resmon serve``: check the options, then hand the app to the WSGI server.

The server's modules (flask, peewee) are imported inside the command, after the
secrets are checked, so ``resmon --help`` and the other commands never load them.
"""

from __future__ import annotations

import click

from resmon.cli.go_flags import GoFlagCommand
from resmon.cli.serve_options import (
    alert_options,
    baseline_options,
    live_options,
    maintenance_options,
    resolve_alerts,
    resolve_maintenance,
    sse_options,
)

# Seconds a connection to --metrics-addr may stay open; a scrape takes milliseconds.
METRICS_TIMEOUT = 10.0


class VerbatimText(click.ParamType):
    """Text taken whole from its environment variable, even for a repeatable option:
    ``RECEIVER_HMAC_KEY`` holds one key, spaces and commas included, as in Go."""

    name = "text"

    def split_envvar_value(self, rv: str) -> list[str]:
        return [rv] if rv else []

    def convert(self, value, param, ctx):
        return value


def resolve_read_token(ctx, read_token, read_token_file):
    """The read token from --read-token or --read-token-file (or their variables); both
    from the same place is a usage error, else the command line wins, as for any option."""
    from click.core import ParameterSource

    from resmon.tokens import secret_from_file

    if read_token_file is None:
        return read_token
    if read_token:
        sources = {ctx.get_parameter_source(n) for n in ("read_token", "read_token_file")}
        if len(sources) == 1:
            raise click.UsageError("give --read-token or --read-token-file, not both")
        if ctx.get_parameter_source("read_token") == ParameterSource.COMMANDLINE:
            return read_token
    try:
        return secret_from_file(read_token_file, "--read-token-file")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--read-token-file") from None


def resolve_hmac_keys(ctx, hmac_keys, hmac_key_files, param_name="hmac_keys"):
    """The HMAC keys in minting order (:func:`resmon.tokens.gather_keys`), from the
    options, their variables and RESMON_HMAC_KEYS; a short or unreadable key is a
    usage error (exit code 2)."""
    import os

    from click.core import ParameterSource

    from resmon.tokens import gather_keys

    from_env = ctx.get_parameter_source(param_name) == ParameterSource.ENVIRONMENT
    try:
        return gather_keys(
            hmac_keys,
            hmac_key_files,
            os.environ.get("RESMON_HMAC_KEYS", ""),
            "RECEIVER_HMAC_KEY" if from_env else "--hmac-key",
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def warn_secrets_on_command_line(ctx, names: dict[str, str]) -> None:
    """A warning on stderr for each secret given on the command line ({parameter: option})."""
    from click.core import ParameterSource

    for param, option in names.items():
        if ctx.get_parameter_source(param) == ParameterSource.COMMANDLINE:
            click.echo(
                f"warning: {option} on the command line is visible to every user of this "
                "machine (ps); use its environment variable or a file instead",
                err=True,
            )


def _refresh_option(value):
    from resmon.units import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--metrics-refresh") from None
    if not 0.1 <= seconds <= 3600:
        raise click.BadParameter("must be between 100ms and 1h", param_hint="--metrics-refresh")
    return seconds


def _memory_option(ctx, param, value):
    from resmon.units import parse_memory

    try:
        size = parse_memory(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if size < 1024:
        raise click.BadParameter("must be at least 1Ki")
    return size


@click.command(cls=GoFlagCommand, context_settings={"show_default": True})
@click.option(
    "--addr",
    default=":8080",
    metavar="ADDR",
    envvar="RESMON_ADDR",
    help="Listen address: :PORT, HOST:PORT or [IPV6]:PORT.",
)
@click.option(
    "--db",
    "database",
    default="metrics.db",
    metavar="PATH|URL",
    envvar="RESMON_DB",
    help="SQLite file path, or postgresql://user:password@host:port/dbname.",
)
@click.option(
    "--read-token",
    envvar="RECEIVER_READ_TOKEN",
    metavar="TOKEN",
    help="Bearer token for reading, minting and GET /metrics; prefer the variable or "
    "--read-token-file to the command line (visible in ps).  [env: RECEIVER_READ_TOKEN]",
)
@click.option(
    "--read-token-file",
    envvar="RESMON_READ_TOKEN_FILE",
    metavar="PATH",
    help="Read the read token from this file (a Docker or Kubernetes secret; the trailing "
    "newline is dropped).  [env: RESMON_READ_TOKEN_FILE]",
)
@click.option(
    "--hmac-key",
    "hmac_keys",
    multiple=True,
    metavar="KEY",
    type=VerbatimText(),
    envvar="RECEIVER_HMAC_KEY",
    help="Key of the push tokens, taken verbatim (spaces and commas are part of it), at "
    "least 16 bytes; repeat to rotate: the first key given mints, every key verifies.  "
    "[env: RECEIVER_HMAC_KEY, one key; RESMON_HMAC_KEYS, a rotation list: one key a line "
    "or comma-separated, added after the others]",
)
@click.option(
    "--hmac-key-file",
    "hmac_key_files",
    multiple=True,
    metavar="PATH",
    type=click.Path(dir_okay=False),
    envvar="RESMON_HMAC_KEY_FILE",
    help="Read one HMAC key from this file (its whole content, trailing newline dropped); "
    "repeatable, the keys come after those of --hmac-key.  [env: RESMON_HMAC_KEY_FILE, "
    "colon-separated paths]",
)
@click.option(
    "--require-expiry",
    is_flag=True,
    envvar="RESMON_REQUIRE_EXPIRY",
    help="Refuse push tokens without an expiry (v1 tokens, the Go format): only tokens "
    "minted with resmon token --expires are accepted.  [env: RESMON_REQUIRE_EXPIRY]",
)
@click.option(
    "--max-body",
    default="1Mi",
    metavar="SIZE",
    envvar="RESMON_MAX_BODY",
    callback=_memory_option,
    help="Largest push body; larger ones get 413.",
)
@click.option(
    "--query-cap",
    default=1000,
    type=click.IntRange(1, 10000),
    hidden=True,
    help="Ignored, accepted so existing command lines still start: the runs of a scope "
    "are returned whole, streamed, as the Go receiver did (use ?limit= for fewer).",
)
@click.option(
    "--workers",
    default=2,
    type=click.IntRange(1, 64),
    envvar="RESMON_WORKERS",
    help="Worker processes.",
)
@click.option(
    "--threads",
    default=8,
    type=click.IntRange(1, 256),
    envvar="RESMON_THREADS",
    help="Threads per worker.",
)
@click.option(
    "--graceful-timeout",
    default=30.0,
    type=click.FloatRange(0, 3600),
    help="Seconds SIGTERM waits for requests in flight.",
)
@click.option(
    "--io-timeout",
    default=30.0,
    type=click.FloatRange(0.1, 3600),
    help="Seconds a client may stay silent while sending a request or reading "
    "the answer before its connection is dropped (slow clients).",
)
@click.option(
    "--request-timeout",
    default=30.0,
    type=click.FloatRange(0.5, 3600),
    envvar="RESMON_REQUEST_TIMEOUT",
    help="Seconds a client has, from a request's first byte, to send all of it "
    "(headers and body), and to take the whole answer (plus 1 s per 64 KiB).  Past it "
    "an incomplete body gets 408 and the connection closes, so a client sending a byte "
    "a second cannot keep it open.",
)
@click.option(
    "--log-level",
    default="info",
    type=click.Choice(["debug", "info", "warn", "warning", "error"], case_sensitive=False),
    help="Server log level (JSON lines on stderr); warn is warning, as for collect.",
)
@click.option(
    "--metrics-on-addr/--no-metrics-on-addr",
    default=None,
    envvar="RESMON_METRICS_ON_ADDR",
    help="Answer GET /metrics on --addr, to the read token only.  [default: on, off "
    "with --metrics-addr]",
    show_default=False,
)
@click.option(
    "--metrics-addr",
    envvar="RESMON_METRICS_ADDR",
    metavar="ADDR",
    default=None,
    help="Serve Prometheus metrics without authentication on this separate listener, "
    "which answers GET /metrics only and drops a connection 10 s (or --io-timeout, if "
    "shorter) after accepting it.  :PORT binds 127.0.0.1 (unlike --addr); give "
    "0.0.0.0:PORT to open it to the network.",
)
@click.option(
    "--metrics-refresh",
    default="15s",
    metavar="DURATION",
    envvar="RESMON_METRICS_REFRESH",
    callback=lambda ctx, param, value: _refresh_option(value),
    help="How often the runs stored and the database size are read for the metrics, "
    "in the background (a scrape never queries the database).",
)
@baseline_options
@live_options
@sse_options
@alert_options
@maintenance_options
@click.pass_context
def serve(ctx, **options):
    """Store runs; serve the API, web pages and alerts.

    Both secrets are required: the read token (reads, mints and GET /metrics) and
    at least one HMAC key of 16 bytes or more (push tokens are HMAC-SHA256 over the
    scope with it).  Give them in the environment or in files, never on the command
    line, where ps shows them to every user of the machine.

    \b
    Examples:
      export RECEIVER_READ_TOKEN="$(openssl rand -hex 32)" RECEIVER_HMAC_KEY="$(openssl rand -hex 32)"
      resmon serve --addr=:8080 --db=metrics.db
      resmon serve --read-token-file=/run/secrets/read_token --hmac-key-file=/run/secrets/hmac_key
      resmon serve --hmac-key-file=new.key --hmac-key-file=old.key   # rotation: new.key mints
      RESMON_HMAC_KEYS="$NEW_KEY,$OLD_KEY" resmon serve                # the same, from a variable
      RESMON_DB=postgresql://resmon:$PGPASSWORD@db:5432/resmon resmon serve --workers 4
      resmon serve --metrics-addr=:9100   # open metrics on 127.0.0.1:9100, none on --addr
    """
    warn_secrets_on_command_line(ctx, {"read_token": "--read-token", "hmac_keys": "--hmac-key"})
    read_token = resolve_read_token(ctx, options["read_token"], options["read_token_file"])
    hmac_keys = resolve_hmac_keys(ctx, options["hmac_keys"], options["hmac_key_files"])
    missing = []
    if not read_token:
        missing.append("a read token (RECEIVER_READ_TOKEN or --read-token-file)")
    if not hmac_keys:
        missing.append("an HMAC key (RECEIVER_HMAC_KEY, --hmac-key-file or RESMON_HMAC_KEYS)")
    if missing:
        raise click.UsageError(
            "resmon serve needs " + " and ".join(missing) + ", e.g. "
            'RECEIVER_READ_TOKEN="$(openssl rand -hex 32)" RECEIVER_HMAC_KEY="$(openssl rand -hex 32)"'
        )
    if read_token in hmac_keys:
        raise click.UsageError("the read token must differ from every HMAC key")
    _run(options, read_token, hmac_keys)


def _run(options, read_token, hmac_keys):
    import dataclasses

    from resmon.analysis.regressions import Thresholds
    from resmon.server import ServerConfig
    from resmon.server.logs import configure_logging
    from resmon.server.main import ServeError
    from resmon.server.main import serve as serve_forever
    from resmon.server.wsgi import AddressError, ServeOptions, parse_addr
    from resmon.store.baseline import BaselineOptions

    try:
        host, port = parse_addr(options["addr"])
    except AddressError as exc:
        raise click.BadParameter(str(exc), param_hint="--addr") from None
    metrics_listen = None
    if options["metrics_addr"]:
        try:
            metrics_listen = parse_addr(options["metrics_addr"])
        except AddressError as exc:
            raise click.BadParameter(str(exc), param_hint="--metrics-addr") from None
        if options["metrics_addr"].startswith(":"):  # no authentication: loopback unless asked
            metrics_listen = ("127.0.0.1", metrics_listen[1])
    metrics_on_addr = options["metrics_on_addr"]
    if metrics_on_addr is None:
        metrics_on_addr = metrics_listen is None
    log_level = options["log_level"].lower()
    log_level = "warning" if log_level == "warn" else log_level
    configure_logging(log_level)
    config = ServerConfig(
        database=options["database"],
        read_token=read_token,
        hmac_keys=hmac_keys,
        max_body=options["max_body"],
        metrics_path=metrics_on_addr,
        metrics_refresh=options["metrics_refresh"],
        require_expiry=options["require_expiry"],
        baseline=BaselineOptions(
            runs=options["baseline_runs"],
            window=options["baseline_window"],
            thresholds=Thresholds(
                mad=options["regression_mad"],
                change=options["regression_change"],
                shift=options["regression_shift"],
                shift_runs=options["regression_shift_runs"],
            ),
        ),
        sse_max_subscribers=options["sse_max_subscribers"],
        sse_heartbeat=options["sse_heartbeat"],
        sse_poll_interval=options["sse_poll_interval"],
    )
    config = dataclasses.replace(
        config,
        live_timeout=options["live_timeout"],
        live_check_period=min(30.0, max(0.25, options["live_timeout"] / 4)),
    )
    config = dataclasses.replace(config, alerts=resolve_alerts(options, read_token, hmac_keys))
    serve_options = ServeOptions(
        host=host,
        port=port,
        workers=options["workers"],
        threads=options["threads"],
        graceful_timeout=options["graceful_timeout"],
        io_timeout=options["io_timeout"],
        request_timeout=options["request_timeout"],
        log_level=log_level,
    )
    from resmon.server import maintenance

    maintenance.configure(resolve_maintenance(options))
    try:
        serve_forever(
            config,
            serve_options,
            metrics_listen,
            metrics_timeout=min(METRICS_TIMEOUT, options["io_timeout"]),
        )
    except ServeError as exc:
        raise click.ClickException(str(exc)) from None


# Every setting a deployment may set from the environment says so in --help.
for _param in serve.params:
    if isinstance(_param, click.Option) and _param.envvar and "[env:" not in (_param.help or ""):
        _param.show_envvar = True
