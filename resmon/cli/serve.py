"""``resmon serve``: check the options, then hand the app to the WSGI server.

The server's modules (flask, peewee) are imported inside the command, after the
secrets are checked, so ``resmon --help`` and the other commands never load them.
"""

from __future__ import annotations

import click


def _hmac_keys_option(ctx, param, value):
    """--hmac-key may repeat; RECEIVER_HMAC_KEY holds one or more keys separated by
    commas or whitespace (the first one mints, every one verifies)."""
    from resmon.tokens import split_keys

    return tuple(split_keys(*(value or ())))


def _memory_option(ctx, param, value):
    from resmon.units import parse_memory

    try:
        size = parse_memory(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if size < 1024:
        raise click.BadParameter("must be at least 1Ki")
    return size


@click.command(context_settings={"show_default": True})
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
    help="Bearer token for reading and minting.  [env: RECEIVER_READ_TOKEN]",
)
@click.option(
    "--hmac-key",
    "hmac_keys",
    multiple=True,
    metavar="KEY",
    envvar="RECEIVER_HMAC_KEY",
    callback=_hmac_keys_option,
    help="Key of the push tokens; repeat to rotate (the first mints, all verify).  "
    "[env: RECEIVER_HMAC_KEY, comma- or space-separated]",
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
    help="Rows a query returns when it gives no ?limit=.",
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
    "--log-level",
    default="info",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Server log level (JSON lines on stderr).",
)
@click.option(
    "--metrics-addr",
    envvar="RESMON_METRICS_ADDR",
    metavar="ADDR",
    default=None,
    help="Serve Prometheus metrics on this separate listener (:PORT, HOST:PORT) "
    "instead of GET /metrics on --addr.  [default: /metrics on --addr, no auth]",
)
def serve(
    addr,
    database,
    read_token,
    hmac_keys,
    max_body,
    query_cap,
    workers,
    threads,
    graceful_timeout,
    io_timeout,
    log_level,
    metrics_addr,
):
    """Store run summaries, answer queries, mint push tokens.

    Both secrets are required: the read token (reads and mints) and at least one
    HMAC key (push tokens are HMAC-SHA256 over the scope with it).

    \b
    Examples:
      resmon serve --addr=:8080 --db=metrics.db --read-token=$READ --hmac-key=$KEY
      RECEIVER_READ_TOKEN=... RECEIVER_HMAC_KEY="new-key,old-key" resmon serve
      resmon serve --db postgresql://resmon:secret@db:5432/resmon --workers 4
    """
    missing = []
    if not read_token:
        missing.append("a read token (--read-token or RECEIVER_READ_TOKEN)")
    if not hmac_keys:
        missing.append("an HMAC key (--hmac-key or RECEIVER_HMAC_KEY)")
    if missing:
        raise click.UsageError(
            "resmon serve needs " + " and ".join(missing) + ", e.g. "
            'RECEIVER_READ_TOKEN="$(openssl rand -hex 32)" RECEIVER_HMAC_KEY="$(openssl rand -hex 32)"'
        )
    if read_token in hmac_keys:
        raise click.UsageError("the read token must differ from every HMAC key")

    from resmon.server import ServerConfig
    from resmon.server.logs import configure_logging
    from resmon.server.main import ServeError
    from resmon.server.main import serve as serve_forever
    from resmon.server.wsgi import AddressError, ServeOptions, parse_addr

    try:
        host, port = parse_addr(addr)
    except AddressError as exc:
        raise click.BadParameter(str(exc), param_hint="--addr") from None
    metrics_listen = None
    if metrics_addr:
        try:
            metrics_listen = parse_addr(metrics_addr)
        except AddressError as exc:
            raise click.BadParameter(str(exc), param_hint="--metrics-addr") from None
    configure_logging(log_level)
    config = ServerConfig(
        database=database,
        read_token=read_token,
        hmac_keys=hmac_keys,
        max_body=max_body,
        query_cap=query_cap,
        metrics_path=metrics_listen is None,
    )
    options = ServeOptions(
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        graceful_timeout=graceful_timeout,
        io_timeout=io_timeout,
        log_level=log_level,
    )
    try:
        serve_forever(config, options, metrics_listen)
    except ServeError as exc:
        raise click.ClickException(str(exc)) from None
