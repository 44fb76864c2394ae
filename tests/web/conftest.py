"""Fixtures of the browser tests: a real ``resmon serve`` over a realistic history
(tests/web/web_data.py) and Debian's chromium driven by Playwright.

One server and one browser per test module.  The browser is /usr/bin/chromium
(never downloaded): where it or Playwright is missing the tests skip on a laptop
and fail in CI (``CI`` set), as ``.ci/run`` installs both.

Screenshots go to ``$RESMON_SCREENSHOTS``, else build/screenshots/ (git-ignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from server_proc import ServerProcess
from web_data import batch_headers, build_history, live_batch, new_run_key

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("RESMON_CHROMIUM", "/usr/bin/chromium")
# Read at import: the suite's autouse fixture clears RESMON_* variables per test.
SCREENSHOTS = Path(os.environ.get("RESMON_SCREENSHOTS") or ROOT / "build" / "screenshots")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
READ_TOKEN = "web-read-token-0123456789abcdef"
RUNNING_JOB = ("acme", "acme/gadgets", "deploy.yml", "deploy (staging)")


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing: .ci/run installs it")
    pytest.skip(f"{what} is missing")


@dataclass
class Site:
    server: ServerProcess
    running_run: int
    other_org_run: int
    finished_run: int
    lost_run: int = 0
    ids: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def post_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(
            self.url + "/api/v1/metrics/live",
            json=body,
            headers=batch_headers(body, self.server.hmac_key),
            timeout=10,
        )
        assert response.status_code in (200, 201), response.text
        return response.json()

    def api(self, path: str) -> Any:
        response = requests.get(self.url + path, headers=self.server.read_headers, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    path = build_history(tmp_path_factory.mktemp("web") / "metrics.db")
    # A long live timeout: the running run stays running for the whole module.
    with ServerProcess(path, read_token=READ_TOKEN, extra_args=("--live-timeout=30m",)) as server:
        runs = requests.get(
            server.url + "/api/v1/jobs", headers=server.read_headers, timeout=10
        ).json()["jobs"]
        other = next(j["last_id"] for j in runs if j["organization"] == "globex")
        finished = next(
            j["last_id"] for j in runs if (j["repository"], j["job"]) == ("acme/widgets", "build")
        )
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=40)
        key = new_run_key()
        lost = next(j["last_id"] for j in runs if j["last_state"] == "lost")
        site = Site(
            server, running_run=0, other_org_run=other, finished_run=finished, lost_run=lost
        )
        for seq in range(2):
            answer = site.post_batch(
                live_batch(*RUNNING_JOB, "2001", run_key=key, seq=seq, start=start)
            )
        site.running_run = answer["run"]
        yield site
        # Nothing the pages asked for failed inside the server, even where the page
        # still answered.
        assert "Traceback" not in server.stderr_text(), server.stderr_text()[-4000:]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright (pip install -e '.[dev]')")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _missing(f"chromium ({CHROMIUM})")
    with sync_playwright() as p:
        # --no-sandbox: CI runs as root, where chromium's sandbox cannot start.
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def sign_in(context: Any, base_url: str, token: str) -> None:
    """The login form, as a person fills it in."""
    page = context.new_page()
    page.goto(base_url + "/login")
    page.fill("#token", token)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "/login" not in page.url, page.content()[:2000]
    page.close()


class PageWatch:
    """What a page did wrong while it loaded: console errors, failed requests, error answers."""

    def __init__(self, page: Any) -> None:
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    def _failed(self, request: Any) -> None:
        failure = request.failure or ""
        # An event stream cut when the page closes is not a failure of the page.
        if "ERR_ABORTED" in failure and "/api/v1/events" in request.url:
            return
        self.problems.append(f"request failed: {request.url} {failure}")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.problems.append(f"{response.status}: {response.url}")


@pytest.fixture(scope="module")
def signed_in(browser, site) -> Iterator[Any]:
    """A browser context signed in with the server's read token (sees every org)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    sign_in(context, site.url, READ_TOKEN)
    yield context
    context.close()
