"""``resmon serve`` end to end: open the database, build the app, serve it.

The CLI parses options into a :class:`~resmon.server.ServerConfig` and a
:class:`~resmon.server.wsgi.ServeOptions` and calls :func:`serve`; everything
that can go wrong here is a :class:`ServeError` whose message is fit for a user.
"""

from __future__ import annotations

import contextlib

from resmon.server import ServerConfig, create_app, metrics, metrics_listener
from resmon.server.wsgi import AddressError, ServeOptions, check_listen, run
from resmon.store.db import DatabaseError, describe_target


class ServeError(Exception):
    """The server cannot start; the message says why and names what to change."""


def serve(
    config: ServerConfig,
    options: ServeOptions,
    metrics_listen: tuple[str, int] | None = None,
    *,
    metrics_timeout: float = 10.0,
) -> None:
    """Serve until SIGTERM/SIGINT; metrics also on ``metrics_listen`` when given, where a
    connection is closed ``metrics_timeout`` seconds after it was accepted."""
    try:
        check_listen(options.host, options.port)
    except AddressError as exc:
        raise ServeError(str(exc)) from None
    # Metrics of every gunicorn worker add up through files in a private directory,
    # set up before the app (and its metrics) exist and before the workers fork.
    with metrics.multiprocess_dir():
        try:
            app = create_app(config)
        except DatabaseError as exc:
            raise ServeError(str(exc)) from None
        except Exception as exc:  # a driver error opening or migrating: say which database
            raise ServeError(
                f"cannot open database {describe_target(config.database)}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        with contextlib.ExitStack() as stack:
            if metrics_listen is not None:
                host, port = metrics_listen
                try:
                    stack.enter_context(
                        metrics_listener.separate_listener(
                            host,
                            port,
                            app,
                            config.database,
                            timeout=metrics_timeout,
                            refresh=config.metrics_refresh,
                        )
                    )
                except OSError as exc:
                    raise ServeError(
                        f"cannot listen on --metrics-addr {host}:{port}: {exc.strerror or exc}"
                    ) from None
            run(app, options)
