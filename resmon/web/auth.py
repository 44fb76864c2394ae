"""Who may see the pages: sign-in with a read token, the session cookie, CSRF, headers.

    GET  /login?next=/jobs      the form: a read token (the server's or an org's r1)
    POST /login                 token + csrf_token (+ next): sets the session, 303 to next
    POST /logout                csrf_token: ends the session, 303 to /login

The session (:mod:`resmon.server.session`) is a signed cookie, HttpOnly and
SameSite=Strict (Secure over HTTPS), that names the organisation it may read (or
every one) and ends after 12 hours or when its token expires.  :func:`page_access`
runs before every page: a signed-in request (session cookie, or a read token as
``Authorization: Bearer`` for scripts) gets its read scope
(:mod:`resmon.server.read_scope`); otherwise a GET is sent to the login page, which
comes back to the page asked for -- a same-site path only, never another site.
Every state-changing request to a page carries the CSRF token (form field
``csrf_token`` or header ``X-CSRF-Token``) and, when the browser sends one, an
``Origin`` of this site.

Failed sign-ins are limited per client address (:data:`MAX_FAILURES` per
:data:`FAILURE_WINDOW` seconds, per worker process): beyond, 429 with Retry-After.

:func:`init_app` also puts the security headers on every answer of the app
(:func:`security_headers`): a Content-Security-Policy without inline scripts or
styles on HTML, ``default-src 'none'`` on everything else, nosniff, no framing.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import quote, urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
)

from resmon.server import read_scope, session
from resmon.server.errors import ApiError
from resmon.tokens import bearer_from_header, parse_read_token

log = logging.getLogger(__name__)

bp = Blueprint("web_auth", __name__, template_folder="templates")

LOGIN_PATH = "/login"
MAX_FAILURES = 10
FAILURE_WINDOW = 300.0
MAX_TRACKED_CLIENTS = 10_000
MAX_TOKEN_CHARS = 1024
MAX_NEXT_CHARS = 2048
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
OTHER_CSP = "default-src 'none'; frame-ancestors 'none'"
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: browsers send "Origin: null" on a POST under
    # no-referrer, and the CSRF check compares the Origin with this site.
    "Referrer-Policy": "same-origin",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# --- the pages' check --------------------------------------------------------------


def page_access() -> Response | None:
    """None when the request may see the pages (its read scope is then set), else the
    redirect to the login page (GET/HEAD) or a 403.  For the pages' before_request."""
    if request.endpoint and request.endpoint.endswith(".static"):
        return None
    if not _signed_in():
        if request.method in ("GET", "HEAD"):
            return redirect(login_url(_here()), 303)
        abort(403)
    if request.method in UNSAFE_METHODS and not csrf_ok():
        abort(403)
    return None


def _signed_in() -> bool:
    token = bearer_from_header(request.headers.get("Authorization"))
    if token is not None:
        valid, organization = read_scope.token_scope(token)
        if valid:
            read_scope.grant(organization)
        return valid
    signed = session.current()
    if signed is None:
        return False
    read_scope.grant(signed.organization)
    return True


def _here() -> str:
    return request.full_path if request.query_string else request.path


def login_url(target: str | None = None) -> str:
    safe = safe_next(target)
    if safe == "/":
        return LOGIN_PATH
    return f"{LOGIN_PATH}?next={quote(safe, safe='/')}"


def safe_next(value: str | None) -> str:
    """Where to go after signing in: ``value`` when it is a path of this site
    (``/jobs?org=a``), else ``/``.  Never another site (``//evil``, ``/\\evil``,
    ``https://...``), never the login page itself."""
    if not value or len(value) > MAX_NEXT_CHARS or _CONTROL.search(value):
        return "/"
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    if parts.path == LOGIN_PATH or parts.path.startswith(LOGIN_PATH + "/"):
        return "/"
    return value


# --- CSRF --------------------------------------------------------------------------


def csrf_token() -> str:
    """The CSRF token of this request's forms (a Jinja global); sets the
    ``resmon_csrf`` cookie on the answer when the browser has none yet."""
    value = g.get("resmon_csrf_value")
    if value is None:
        value = request.cookies.get(session.CSRF_COOKIE)
        if not session.csrf_value_ok(value):
            value = session.new_csrf_value()
            g.resmon_csrf_new = True
        g.resmon_csrf_value = value
    return session.csrf_token_for(value)


def csrf_ok() -> bool:
    """Whether this state-changing request carries its CSRF token, from this site."""
    origin = request.headers.get("Origin")
    # The host only, not the scheme: behind a TLS proxy the browser's https Origin
    # reaches a plain-HTTP server.  "null" (a sandboxed or privacy-stripped origin)
    # has no host and is refused.
    if origin is not None and urlsplit(origin).netloc.lower() != request.host.lower():
        return False
    token = request.form.get(session.CSRF_FIELD) or request.headers.get(session.CSRF_HEADER)
    return session.csrf_valid(request.cookies.get(session.CSRF_COOKIE), token)


def _renew_csrf() -> None:
    """A new CSRF value for the answer (after sign-in and sign-out)."""
    g.resmon_csrf_value = session.new_csrf_value()
    g.resmon_csrf_new = True


# --- sign-in limits ------------------------------------------------------------------


class FailureLimiter:
    """Failed sign-ins per client address over a sliding window."""

    def __init__(self, limit: int = MAX_FAILURES, window: float = FAILURE_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str, now: float | None = None) -> int:
        """Seconds until ``client`` may try again; 0 when it may now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._failures.get(client)
            if not times:
                return 0
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) < self.limit:
                return 0
            return max(1, int(times[0] + self.window - now) + 1)

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if client not in self._failures and len(self._failures) >= MAX_TRACKED_CLIENTS:
                self._prune(now)
            times = self._failures.setdefault(client, deque(maxlen=self.limit))
            times.append(now)

    def _prune(self, now: float) -> None:
        stale = [c for c, t in self._failures.items() if not t or t[-1] <= now - self.window]
        for client in stale:
            del self._failures[client]
        if len(self._failures) >= MAX_TRACKED_CLIENTS:
            # Still full (a spray from many addresses): forget the oldest half.
            ordered = sorted(self._failures, key=lambda c: self._failures[c][-1])
            for client in ordered[: len(ordered) // 2]:
                del self._failures[client]


def _limiter() -> FailureLimiter:
    """This app's limiter (one per app and worker process)."""
    return current_app.extensions["resmon_login_limiter"]


# --- the login and logout routes ------------------------------------------------------


@bp.route(LOGIN_PATH, methods=["GET", "POST"])
def login() -> Response | tuple[str, int]:
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        return _login_page(target, None, 200)
    if not session.available():
        return _login_page(target, "This server has no read token or HMAC key: no sign-in.", 503)
    client = request.remote_addr or "?"
    wait = _limiter().retry_after(client)
    if wait:
        page = _login_page(target, f"Too many failed sign-ins: try again in {wait} s.", 429)
        page.headers["Retry-After"] = str(wait)
        return page
    if not csrf_ok():
        _renew_csrf()
        return _login_page(target, "The form expired: please sign in again.", 403)
    token = (request.form.get("token") or "").strip()
    valid, organization = (False, None)
    if token and len(token) <= MAX_TOKEN_CHARS and not _CONTROL.search(token):
        valid, organization = read_scope.token_scope(token)
    if not valid:
        _limiter().failed(client)
        log.info("sign-in refused from %s", client)
        return _login_page(
            target, "That is not a read token of this server, or it has expired.", 401
        )
    parsed = parse_read_token(token)
    signed = session.sign(organization, parsed[1] if parsed else None)
    response = redirect(target, 303)
    response.set_cookie(
        session.COOKIE,
        session.cookie_value(signed),
        **session.cookie_options(max(1, signed.expires - int(time.time()))),
    )
    _renew_csrf()
    return response


@bp.post("/logout")
def logout() -> Response:
    if not csrf_ok():
        abort(403)
    response = redirect(LOGIN_PATH, 303)
    response.delete_cookie(
        session.COOKIE, path="/", httponly=True, samesite="Strict", secure=session.secure()
    )
    _renew_csrf()
    return response


def _login_page(target: str, error: str | None, status: int) -> Response:
    signed = session.current() if session.available() else None
    html = render_template(
        "login.html",
        next_path=target,
        error=error,
        signed_in_as=signed,
    )
    return Response(html, status=status, mimetype="text/html")


# --- Jinja globals and headers ---------------------------------------------------------


def current_org() -> str | None:
    """The organisation the page is limited to (None: every one); a Jinja global."""
    try:
        return read_scope.read_org()
    except ApiError:  # a page without the read check (the login page): the session's
        signed = session.current()
        return signed.organization if signed is not None else None


def signed_in() -> bool:
    """Whether the request is signed in (a Jinja global for the account block)."""
    return g.get("resmon_read_org") is not None or session.current() is not None


def security_headers(response: Response) -> Response:
    """The answer's security headers (see the module's docstring)."""
    if request.method == "POST" and request.path.startswith("/api/v1/metrics"):
        return response  # the push path: machines, no browser, every microsecond counts
    headers = response.headers
    for name, value in COMMON_HEADERS.items():
        headers.setdefault(name, value)
    if response.mimetype == "text/html":
        headers.setdefault("Content-Security-Policy", PAGE_CSP)
        headers.setdefault("Cache-Control", "no-store")
    else:
        headers.setdefault("Content-Security-Policy", OTHER_CSP)
    if g.get("resmon_csrf_new"):
        response.set_cookie(
            session.CSRF_COOKIE,
            g.resmon_csrf_value,
            **session.cookie_options(session.CSRF_LIFETIME),
        )
    return response


def init_app(app: Flask) -> None:
    """Register the login and logout routes, the Jinja globals and the headers."""
    app.register_blueprint(bp)
    app.extensions["resmon_login_limiter"] = FailureLimiter()
    globals_: dict[str, Any] = {
        "csrf_token": csrf_token,
        "current_org": current_org,
        "signed_in": signed_in,
        "login_url": login_url,
    }
    app.jinja_env.globals.update(globals_)
    app.after_request(security_headers)
