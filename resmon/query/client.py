"""Where ``resmon query`` reads history from: a resmon server, or a database directly.

Both sources answer the same questions with the same bodies (the read API's),
so rendering never cares where an answer came from.  Everything that can go wrong
becomes a :class:`QueryError` whose message says what to do next; the CLI prints
it, never a traceback.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

log = logging.getLogger(__name__)

DEFAULT_SERVER = "http://127.0.0.1:8080"
TIMEOUT_SECONDS = 15.0


class QueryError(Exception):
    """A question that could not be answered; the message says what to do."""


class NotFoundError(QueryError):
    """Nothing stored under that name; ``suggestions`` are the closest names."""

    def __init__(self, message: str, suggestions: list[str] | None = None) -> None:
        super().__init__(message)
        self.suggestions = suggestions or []


class Source(Protocol):
    def jobs(self, organization: str | None, repository: str | None) -> dict[str, Any]: ...

    def runs(
        self,
        scope: tuple[str, str, str, str],
        limit: int | None,
        since: str | None,
        until: str | None,
        branch: str | None = None,
    ) -> dict[str, Any]: ...

    def run(self, run_pk: int) -> dict[str, Any]: ...

    def trend(
        self,
        scope: tuple[str, str, str, str],
        container: str | None,
        by: str,
        limit: int | None,
        since: str | None,
        until: str | None,
        branch: str | None = None,
    ) -> dict[str, Any]: ...

    def top(
        self, metric: str, period: str, limit: int | None, scope: str = "job"
    ) -> dict[str, Any]: ...

    def recommend(
        self, scope: tuple[str, str, str, str], since: str, until: str | None, runs: int | None
    ) -> dict[str, Any]: ...

    def fleet(
        self, since: str, until: str | None, runs: int | None, by: str, limit: int | None
    ) -> dict[str, Any]: ...

    def regressions(self, since: str, until: str | None, limit: int | None) -> dict[str, Any]: ...

    def live(self, scope: dict[str, str]) -> dict[str, Any]: ...

    def samples(
        self, run_pk: int, granularity: str | None, since: str | None, until: str | None
    ) -> dict[str, Any]: ...

    def close(self) -> None: ...


# --- over HTTP ---------------------------------------------------------------------


class HttpSource:
    """The read API of a running ``resmon serve``."""

    def __init__(
        self, server: str, read_token: str | None, timeout: float = TIMEOUT_SECONDS
    ) -> None:
        import requests  # only the query path pays for it

        url = server.strip().rstrip("/")
        if "://" not in url:
            url = "http://" + url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise QueryError(
                f"invalid server URL {server!r}: use e.g. http://127.0.0.1:8080 "
                "(--server or RESMON_SERVER)"
            )
        self.server = url
        self.read_token = read_token
        self.timeout = timeout
        self._session = requests.Session()
        self._requests = requests

    def close(self) -> None:
        self._session.close()

    def _get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        requests = self._requests
        if not self.read_token:
            raise QueryError(
                "no read token: pass --read-token, or set RESMON_READ_TOKEN (or "
                "RECEIVER_READ_TOKEN) to the server's read token"
            )
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._session.get(
                self.server + path,
                params=clean,
                headers={"Authorization": f"Bearer {self.read_token}"},
                timeout=self.timeout,
            )
        except requests.exceptions.Timeout:
            raise QueryError(
                f"the resmon server at {self.server} did not answer within {self.timeout:.0f}s: "
                "is it overloaded, or is --server pointing somewhere else?"
            ) from None
        except requests.exceptions.RequestException as exc:
            log.debug("request to %s failed: %r", self.server, exc)
            raise QueryError(
                f"cannot reach a resmon server at {self.server}: start one with `resmon serve`, "
                "point --server (or RESMON_SERVER) at yours, or read a database file with --db"
            ) from None

        body: Any = None
        if "json" in response.headers.get("Content-Type", ""):
            try:
                body = response.json()
            except ValueError:
                body = None
        message = body.get("error") if isinstance(body, dict) else None
        if response.status_code == 401:
            raise QueryError(
                f"the server at {self.server} rejected the read token: use the token the server "
                "was started with (its --read-token / RECEIVER_READ_TOKEN) in --read-token or "
                "RESMON_READ_TOKEN"
            )
        if response.status_code == 404 and isinstance(body, dict) and "suggestions" in body:
            raise NotFoundError(message or "not found", list(body.get("suggestions") or []))
        if response.status_code == 404 and message == "not found":
            # A server without the read API (an older resmon, or the Go receiver).
            raise QueryError(
                f"the server at {self.server} has no read API ({path}): is it a resmon server "
                "of this version? Upgrade it, or read its database with --db"
            )
        if response.status_code >= 400:
            raise QueryError(
                f"the server answered {response.status_code}: "
                f"{message or response.reason or 'no details'}"
            )
        if not isinstance(body, dict):
            raise QueryError(
                f"the server at {self.server} did not answer like a resmon server "
                f"(HTTP {response.status_code}, {response.headers.get('Content-Type', 'no type')}): "
                "check --server"
            )
        return body

    @staticmethod
    def _job_path(scope: tuple[str, str, str, str], what: str) -> str:
        # Each part one path segment: "org/repo" becomes "org%2Frepo".
        return "/api/v1/jobs/" + "/".join(quote(p, safe="") for p in scope) + "/" + what

    def jobs(self, organization: str | None, repository: str | None) -> dict[str, Any]:
        return self._get("/api/v1/jobs", {"organization": organization, "repository": repository})

    def runs(self, scope, limit, since, until, branch=None):  # type: ignore[no-untyped-def]
        params = {"limit": limit, "since": since, "until": until, "branch": branch}
        return self._get(self._job_path(scope, "runs"), params)

    def run(self, run_pk: int) -> dict[str, Any]:
        return self._get(f"/api/v1/runs/{run_pk}")

    def trend(self, scope, container, by, limit, since, until, branch=None):  # type: ignore[no-untyped-def]
        params = {"container": container, "by": by, "limit": limit, "since": since, "until": until}
        params["branch"] = branch
        return self._get(self._job_path(scope, "trend"), params)

    def top(
        self, metric: str, period: str, limit: int | None, scope: str = "job"
    ) -> dict[str, Any]:
        params = {"metric": metric, "period": period, "limit": limit, "scope": scope}
        return self._get("/api/v1/top", params)

    def recommend(self, scope, since, until, runs):  # type: ignore[no-untyped-def]
        params = {"since": since, "until": until, "runs": runs}
        return self._get(self._job_path(scope, "recommendation"), params)

    def fleet(self, since, until, runs, by, limit):  # type: ignore[no-untyped-def]
        params = {"since": since, "until": until, "runs": runs, "by": by, "limit": limit}
        return self._get("/api/v1/recommendations", params)

    def regressions(self, since, until, limit):  # type: ignore[no-untyped-def]
        return self._get("/api/v1/regressions", {"since": since, "until": until, "limit": limit})

    def live(self, scope: dict[str, str]) -> dict[str, Any]:
        return self._get("/api/v1/live", dict(scope))

    def samples(self, run_pk, granularity, since, until):  # type: ignore[no-untyped-def]
        params = {"granularity": granularity, "since": since, "until": until}
        return self._get(f"/api/v1/runs/{int(run_pk)}/samples", params)


# --- straight from a database --------------------------------------------------------


class DatabaseSource:
    """A SQLite file or a PostgreSQL URL, read through :mod:`resmon.store.history` as the
    server would: no server needed, same answers."""

    def __init__(self, target: str) -> None:
        from resmon.store import db as dbmod

        self._dbmod = dbmod
        if not dbmod.is_postgres(target) and "://" not in target and not os.path.isfile(target):
            # Opening a missing SQLite path would create an empty database silently.
            raise QueryError(
                f"no database file at {target}: give the path `resmon serve --db` uses, "
                "or a postgresql:// URL"
            )
        self.label = dbmod.describe_target(target)
        try:
            self.database = dbmod.open_database(target)
        except dbmod.DatabaseError as exc:
            raise QueryError(str(exc)) from None
        self._check_schema()

    def _check_schema(self) -> None:
        """One error line when the target is no resmon database (a text file, another
        program's SQLite file, an unreachable PostgreSQL) or is at another schema
        version.  Read here rather than through ``check_ready``, whose log line is
        meant for a server's log and would print before the error."""
        dbmod = self._dbmod
        try:
            version = dbmod.schema_version(self.database)
        except Exception as exc:  # any driver error: the reason is its first line
            self.database.close()
            log.debug("reading the schema version of %s failed: %r", self.label, exc)
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise QueryError(
                f"cannot read {self.label} as a database ({reason}): give the file "
                "`resmon serve --db` uses, or a postgresql:// URL of a running PostgreSQL "
                "that accepts this user"
            ) from None
        latest = dbmod.LATEST_VERSION
        if version == latest:
            return
        self.database.close()
        if version == 0:
            raise QueryError(
                f"no resmon schema in {self.label}: point --db at the database "
                "`resmon serve --db` uses"
            )
        if version > latest:
            raise QueryError(
                f"{self.label}: database schema at version {version}, newer than this "
                f"resmon's ({latest}): upgrade resmon"
            )
        raise QueryError(
            f"{self.label}: database schema at version {version}, expected {latest}; "
            "start `resmon serve` on it once to upgrade it"
        )

    def close(self) -> None:
        self.database.close()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        from peewee import DatabaseError as PeeweeError

        from resmon.store import history

        try:
            return fn(*args, **kwargs)
        except history.NotFound as exc:
            raise NotFoundError(exc.message, exc.suggestions) from None
        except history.HistoryError as exc:
            raise QueryError(str(exc)) from None
        except PeeweeError as exc:
            log.debug("database error: %r", exc)
            raise QueryError(
                f"reading {self.label} failed ({type(exc).__name__}): is it a resmon database?"
            ) from None

    def jobs(self, organization: str | None, repository: str | None) -> dict[str, Any]:
        from resmon.store import history

        return self._call(history.list_jobs, organization=organization, repository=repository)

    def runs(self, scope, limit, since, until, branch=None):  # type: ignore[no-untyped-def]
        from resmon.store import history

        return self._call(
            history.job_runs, *scope, limit=limit, since=since, until=until, branch=branch
        )

    def run(self, run_pk: int) -> dict[str, Any]:
        from resmon.store import history

        return self._call(history.get_run, run_pk)

    def trend(self, scope, container, by, limit, since, until, branch=None):  # type: ignore[no-untyped-def]
        from resmon.store import history

        return self._call(
            history.trend,
            *scope,
            container=container,
            by=by,
            limit=limit,
            since=since,
            until=until,
            branch=branch,
        )

    def top(
        self, metric: str, period: str, limit: int | None, scope: str = "job"
    ) -> dict[str, Any]:
        from resmon.store import history

        return self._call(history.top, metric, scope=scope, period=period, limit=limit)

    def recommend(self, scope, since, until, runs):  # type: ignore[no-untyped-def]
        from resmon.store import advice

        return self._call(advice.recommend_job, *scope, since=since, until=until, runs=runs)

    def fleet(self, since, until, runs, by, limit):  # type: ignore[no-untyped-def]
        from resmon.store import advice

        return self._call(
            advice.recommend_fleet, since=since, until=until, runs=runs, by=by, limit=limit
        )

    def regressions(self, since, until, limit):  # type: ignore[no-untyped-def]
        from resmon.store import baseline

        return self._call(baseline.list_regressions, since=since, until=until, limit=limit)

    def live(self, scope: dict[str, str]) -> dict[str, Any]:
        # Read only: runs whose server stopped looking stay "running" here; the
        # table's last-batch age tells.
        from resmon.store import live_view

        return self._call(live_view.live_runs, scope)

    def samples(self, run_pk, granularity, since, until):  # type: ignore[no-untyped-def]
        from resmon.schema import parse_time
        from resmon.store import live_view

        try:
            window = [None if v is None else parse_time(v) for v in (since, until)]
        except ValueError:
            raise QueryError("--since/--until must be RFC 3339 times") from None
        body = self._call(live_view.run_history, run_pk, granularity, *window)
        if body is None:
            raise NotFoundError(f"no run with id {run_pk}")
        return body


def open_source(server: str | None, read_token: str | None, database: str | None) -> Source:
    """The database when one is given, else the server (default: a local one)."""
    if database:
        return DatabaseSource(database)
    return HttpSource(server or DEFAULT_SERVER, read_token)
