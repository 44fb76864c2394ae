"""Signing in to the web pages over real HTTP (a real ``resmon serve`` on loopback):
the login form, the session and CSRF cookies and their flags, CSRF refusals, logout,
redirects that never leave the site, the session scoped to an organisation in the
pages and the API, the security headers, and the failed sign-in limit."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
import requests
from query_data import now_utc, push_body, run_summary
from server_proc import ServerProcess

from resmon.tokens import push_token, read_token

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("auth") / "m.db") as srv:
        start = now_utc() - timedelta(hours=1)
        for org in ("acme", "globex"):
            body = push_body("1", run_summary(start=start), org=org, repo=f"{org}/widgets")
            assert srv.push(body).status_code == 201
        yield srv
    assert srv.returncode == 0, srv.stderr_text()[-2000:]


def set_cookies(response: requests.Response) -> dict[str, str]:
    """Each Set-Cookie header of the answer, by cookie name (the whole header)."""
    return {h.split("=", 1)[0]: h for h in response.raw.headers.getlist("Set-Cookie")}


def csrf_of(html: str) -> str:
    m = _CSRF.search(html)
    assert m, html[:2000]
    return m.group(1)


def login_form(s: requests.Session, server, next_path: str | None = None) -> str:
    params = {"next": next_path} if next_path else None
    r = s.get(server.url + "/login", params=params, timeout=10)
    assert r.status_code == 200
    return csrf_of(r.text)


def sign_in(s: requests.Session, server, token: str, next_path: str | None = None):
    csrf = login_form(s, server, next_path)
    data = {"token": token, "csrf_token": csrf}
    if next_path is not None:
        data["next"] = next_path
    return s.post(server.url + "/login", data=data, allow_redirects=False, timeout=10)


def org_token(server, org="acme", expires=None) -> str:
    return read_token(server.hmac_key, org, expires=expires or int(time.time()) + 3600)


def test_a_page_sends_a_stranger_to_the_login_page_and_back(server):
    s = requests.Session()
    r = s.get(server.url + "/jobs?org=acme", allow_redirects=False, timeout=10)
    assert r.status_code in (302, 303)
    assert r.headers["Location"] == "/login?next=/jobs%3Forg%3Dacme"
    r = sign_in(s, server, server.read_token, "/jobs?org=acme")
    assert r.status_code == 303 and r.headers["Location"] == "/jobs?org=acme"
    page = s.get(server.url + "/jobs?org=acme", allow_redirects=False, timeout=10)
    assert page.status_code == 200 and "acme/widgets" in page.text


def test_cookie_flags(server):
    s = requests.Session()
    r = s.get(server.url + "/login", timeout=10)
    csrf_cookie = set_cookies(r)["resmon_csrf"]
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in csrf_cookie
    assert "Secure" not in csrf_cookie  # plain HTTP: a Secure cookie would never come back
    r = s.post(
        server.url + "/login",
        data={"token": server.read_token, "csrf_token": csrf_of(r.text)},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 303 and r.headers["Location"] == "/"
    session_cookie = set_cookies(r)["resmon_session"]
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"):
        assert flag in session_cookie, session_cookie
    assert "Secure" not in session_cookie
    assert server.read_token not in session_cookie  # the token is never in the cookie
    # Behind a TLS proxy: Secure.
    r = requests.get(server.url + "/login", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    secure_csrf = set_cookies(r)["resmon_csrf"]
    assert "; Secure" in secure_csrf
    r = requests.post(  # the cookie by hand: requests keeps a Secure cookie off plain HTTP
        server.url + "/login",
        data={"token": server.read_token, "csrf_token": csrf_of(r.text)},
        cookies={"resmon_csrf": secure_csrf.split(";")[0].split("=", 1)[1]},
        headers={"X-Forwarded-Proto": "https"},
        allow_redirects=False,
        timeout=10,
    )
    assert "; Secure" in set_cookies(r)["resmon_session"]


def test_an_org_tokens_session_ends_with_the_token(server):
    s = requests.Session()
    expires = int(time.time()) + 600
    r = sign_in(s, server, org_token(server, expires=expires))
    assert r.status_code == 303
    max_age = int(re.search(r"Max-Age=(\d+)", set_cookies(r)["resmon_session"]).group(1))
    assert 590 <= max_age <= 600


def test_csrf_refusals(server):
    s = requests.Session()
    csrf = login_form(s, server)
    url = server.url + "/login"
    token = server.read_token
    # No token, a made-up one, and one from another browser's cookie.
    other = requests.Session()
    other_csrf = login_form(other, server)
    for data in (
        {"token": token},
        {"token": token, "csrf_token": "0" * 64},
        {"token": token, "csrf_token": other_csrf},
    ):
        r = s.post(url, data=data, allow_redirects=False, timeout=10)
        assert r.status_code == 403, data
        assert "resmon_session" not in set_cookies(r)
    # No CSRF cookie at all (a form posted from elsewhere).
    r = requests.post(
        url, data={"token": token, "csrf_token": csrf}, allow_redirects=False, timeout=10
    )
    assert r.status_code == 403
    # The right token from another site's page.
    csrf = login_form(s, server)
    r = s.post(
        url,
        data={"token": token, "csrf_token": csrf},
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 403
    csrf = login_form(s, server)  # a refused form gets a new CSRF value
    r = s.post(
        url,
        data={"token": token, "csrf_token": csrf},
        headers={"Origin": "null"},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 403
    csrf = login_form(s, server)
    # This site through a TLS proxy: an https Origin for the same host is this site.
    r = s.post(
        url,
        data={"token": token, "csrf_token": csrf},
        headers={"Origin": server.url.replace("http://", "https://")},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 303


def test_logout_needs_csrf_and_ends_the_session(server):
    s = requests.Session()
    assert sign_in(s, server, server.read_token).status_code == 303
    page = s.get(server.url + "/jobs", timeout=10)
    assert page.status_code == 200 and 'action="/logout"' in page.text
    r = s.post(server.url + "/logout", allow_redirects=False, timeout=10)
    assert r.status_code == 403
    assert s.get(server.url + "/jobs", allow_redirects=False, timeout=10).status_code == 200
    r = s.post(
        server.url + "/logout",
        data={"csrf_token": csrf_of(page.text)},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 303 and r.headers["Location"] == "/login"
    assert "Max-Age=0" in set_cookies(r)["resmon_session"]
    r = s.get(server.url + "/jobs", allow_redirects=False, timeout=10)
    assert r.status_code in (302, 303) and r.headers["Location"].startswith("/login")
    assert s.get(server.url + "/api/v1/jobs", timeout=10).status_code == 401


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/login",
        "/jobs\r\nSet-Cookie: x=1",
        "evil.example",
    ],
)
def test_no_open_redirect(server, target):
    s = requests.Session()
    r = sign_in(s, server, server.read_token, target)
    assert r.status_code == 303
    assert r.headers["Location"] == "/"


def test_wrong_tokens_are_refused(server):
    for token in (
        "not-a-token",
        push_token(server.hmac_key, "acme", "acme/widgets", "ci.yml", "build"),
        org_token(server, expires=int(time.time()) - 5),
        read_token("another-key-0123456789", "acme"),
        server.hmac_key,
    ):
        s = requests.Session()
        r = sign_in(s, server, token)
        assert r.status_code == 401, token
        assert "resmon_session" not in set_cookies(r)
        assert "not a read token of this server" in r.text


def test_an_org_session_sees_only_its_organisation(server):
    s = requests.Session()
    assert sign_in(s, server, org_token(server)).status_code == 303
    jobs = s.get(server.url + "/api/v1/jobs", timeout=10)
    assert jobs.status_code == 200
    assert {j["organization"] for j in jobs.json()["jobs"]} == {"acme"}
    other = s.get(server.url + "/api/v1/jobs/globex/globex%2Fwidgets/ci.yml/build/runs", timeout=10)
    assert other.status_code == 404
    page = s.get(server.url + "/jobs", timeout=10)
    assert page.status_code == 200 and "acme/widgets" in page.text
    assert "globex" not in page.text
    jobs = requests.get(server.url + "/api/v1/jobs", headers=server.read_headers, timeout=10)
    theirs = next(j["last_id"] for j in jobs.json()["jobs"] if j["organization"] == "globex")
    job = "/job?org=globex&repo=globex%2Fwidgets&workflow=ci.yml&job=build"
    for path in (job, f"/runs/{theirs}"):
        assert s.get(server.url + path, timeout=10).status_code == 404, path
    for path in ("/jobs?org=globex", "/live", "/usage", "/alerts"):
        r = s.get(server.url + path, timeout=10)
        # (the filter asked for may be echoed in links; no job of globex's is shown)
        assert r.status_code == 200 and "globex/widgets" not in r.text, path
    # The account block names the organisation, on the login page too.
    for path in ("/jobs", "/login"):
        html = s.get(server.url + path, timeout=10).text
        assert '<span class="account-org">acme</span>' in html, path
    # The session reads; it never mints (no POST takes the cookie).
    r = s.post(
        server.url + "/api/v1/token", json={"kind": "read", "organization": "acme"}, timeout=10
    )
    assert r.status_code == 401


def test_security_headers(server):
    s = requests.Session()
    login = s.get(server.url + "/login", timeout=10)
    assert login.headers["Content-Security-Policy"] == PAGE_CSP
    assert "'unsafe-inline'" not in login.headers["Content-Security-Policy"]
    assert "<script>" not in login.text and "style=" not in login.text
    api = requests.get(server.url + "/api/v1/jobs", headers=server.read_headers, timeout=10)
    for response in (login, api):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "same-origin"
    assert login.headers["Cache-Control"] == "no-store"
    assert api.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    sign_in(s, server, server.read_token)
    page = s.get(server.url + "/jobs", timeout=10)
    assert page.headers["Content-Security-Policy"] == PAGE_CSP
    assert page.headers["X-Frame-Options"] == "DENY"


def test_failed_sign_ins_are_limited_per_address(tmp_path):
    with ServerProcess(tmp_path / "m.db") as server:
        s = requests.Session()
        for _ in range(10):
            assert sign_in(s, server, "wrong").status_code == 401
        r = sign_in(s, server, server.read_token)
        assert r.status_code == 429
        assert 1 <= int(r.headers["Retry-After"]) <= 300
        assert "resmon_session" not in set_cookies(r)
