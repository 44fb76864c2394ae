"""The sign-in page in a real browser (Debian's chromium through Playwright): it loads
clean under its Content-Security-Policy, axe-core finds no serious violation on it,
the browser keeps the session cookie HttpOnly and SameSite=Strict (page scripts
cannot read it), a wrong token is said in an alert, and a page another site frames
is refused."""

from __future__ import annotations

import time

import pytest
from conftest import AXE, PageWatch, _missing, sign_in
from server_proc import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ServerProcess(tmp_path_factory.mktemp("auth-browser") / "m.db") as srv:
        yield srv


def test_the_login_page_loads_clean(server, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    watch = PageWatch(page)
    response = page.goto(server.url + "/login", wait_until="networkidle")
    assert response.status == 200
    assert page.locator("#token").get_attribute("type") == "password"
    assert watch.problems == [], watch.problems  # a CSP violation is a console error
    context.close()


def test_a_wrong_token_is_said_and_no_session_set(server, browser):
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/login")
    page.fill("#token", "not-the-token")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "not a read token of this server" in page.inner_text("[role=alert]")
    assert "resmon_session" not in {c["name"] for c in context.cookies()}
    context.close()


def test_the_browser_keeps_the_session_from_scripts(server, browser):
    context = browser.new_context()
    sign_in(context, server.url, server.read_token)
    cookies = {c["name"]: c for c in context.cookies()}
    for name in ("resmon_session", "resmon_csrf"):
        assert cookies[name]["httpOnly"] is True, name
        assert cookies[name]["sameSite"] == "Strict", name
    page = context.new_page()
    page.goto(server.url + "/jobs")
    assert page.evaluate("document.cookie") == ""
    context.close()


def test_another_site_cannot_frame_a_page(server, browser):
    context = browser.new_context()
    page = context.new_page()
    for path in ("/login", "/jobs"):
        # A page of another origin framing ours: chromium refuses to show it.
        page.set_content(f'<iframe src="{server.url}{path}"></iframe>')
        deadline = time.monotonic() + 10
        while page.frames[-1].url in ("", "about:blank") and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert page.frames[-1].url.startswith("chrome-error://"), (path, page.frames[-1].url)
    context.close()


def test_axe_finds_no_serious_violation_on_the_login_page(server, browser):
    if not AXE.exists():
        _missing("axe-core (PUPPETEER_SKIP_DOWNLOAD=1 npm ci)")
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    page.goto(server.url + "/login", wait_until="load")
    page.add_script_tag(path=str(AXE))
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        result = page.evaluate("async () => await axe.run(document)")
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']}"
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert bad == [], f"{scheme}: {bad}"
    context.close()
