"""The web pages in a real browser (Debian's chromium through Playwright) against a
real ``resmon serve`` over a realistic history: every page loads with no console
error and no failed request, its charts draw, keyboard navigation reaches every
link, axe-core finds no serious or critical violation, the live page shows a new
run from the event stream, an organisation's token sees only its organisation.
Screenshots of every page at 1280x800 and 390x844 (and 1280x800 dark) are written
to build/screenshots/ or $RESMON_SCREENSHOTS."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
import requests
from conftest import AXE, READ_TOKEN, RUNNING_JOB, SCREENSHOTS, PageWatch, _missing, sign_in
from web_data import live_batch, new_run_key

from resmon.tokens import read_token

pytestmark = pytest.mark.slow

JOB = {"org": "acme", "repo": "acme/widgets", "workflow": "ci.yml", "job": "build"}
OTHER_JOB = {"org": "globex", "repo": "globex/api", "workflow": "ci.yml", "job": "build"}
SIZES = {"1280x800": (1280, 800), "390x844": (390, 844)}


def pages(site) -> dict[str, str]:
    """Every page, by the name its screenshots get."""
    return {
        "jobs": "/jobs",
        "jobs-by-memory": "/jobs?sort=memory",
        "job": "/job?" + urlencode(JOB),
        "job-main": "/job?" + urlencode({**JOB, "branch": "main"}),
        "run": f"/runs/{site.finished_run}",
        "run-running": f"/runs/{site.running_run}",
        "run-lost": f"/runs/{site.lost_run}",
        "live": "/live",
        "usage": "/usage",
        "usage-by-job": "/usage?by=job&period=30d&metric=memory",
        "alerts": "/alerts",
    }


# The charts each page draws at least.
CHARTS = {
    "job": 2,
    "job-main": 2,
    "run": 4,
    "run-running": 2,
    "run-lost": 2,
    "usage": 2,
    "usage-by-job": 2,
}

PIXELS_DRAWN = """
(holder) => {
  const canvas = holder.querySelector('canvas');
  if (!canvas) return 0;
  const ctx = canvas.getContext('2d');
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let drawn = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) drawn++;
  return drawn;
}
"""


def _load(context, url, name):
    page = context.new_page()
    watch = PageWatch(page)
    response = page.goto(url, wait_until="networkidle" if "live" not in name else "load")
    assert response is not None and response.status == 200, (url, response and response.status)
    return page, watch


PAGE_NAMES = [
    "jobs",
    "jobs-by-memory",
    "job",
    "job-main",
    "run",
    "run-running",
    "run-lost",
    "live",
    "usage",
    "usage-by-job",
    "alerts",
]


@pytest.mark.parametrize("name", PAGE_NAMES)
def test_page_loads_clean_draws_and_is_captured(site, browser, signed_in, name):
    url = site.url + pages(site)[name]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, (width, height) in SIZES.items():
        signed_in_page, watch = _load(signed_in, url, name)
        signed_in_page.set_viewport_size({"width": width, "height": height})
        if CHARTS.get(name):
            signed_in_page.wait_for_selector("[data-drawn]", timeout=5000)
            holders = signed_in_page.query_selector_all("[data-chart]")
            assert len(holders) >= CHARTS[name]
            for holder in holders:
                assert holder.get_attribute("data-drawn") == "true"
                assert holder.evaluate(PIXELS_DRAWN) > 500, "a chart drew nothing"
        signed_in_page.wait_for_timeout(150)  # a resize redraws the charts
        signed_in_page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True)
        # Nothing wider than the phone: the page scrolls only inside its tables.
        overflow = signed_in_page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} is {overflow}px wider than {width}px"
        assert watch.problems == [], watch.problems
        signed_in_page.close()


def test_dark_theme_follows_the_system(site, browser, signed_in):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = signed_in.new_page()
    page.emulate_media(color_scheme="dark")
    for name, path in pages(site).items():
        watch = PageWatch(page)
        page.goto(site.url + path, wait_until="load")
        if CHARTS.get(name):
            page.wait_for_selector("[data-drawn]", timeout=5000)
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(13, 17, 23)", background
        page.screenshot(path=str(SCREENSHOTS / f"{name}-1280x800-dark.png"), full_page=True)
        assert watch.problems == [], watch.problems
    page.close()


def test_pages_work_without_javascript(site, browser):
    context = browser.new_context(java_script_enabled=False)
    sign_in(context, site.url, READ_TOKEN)
    page = context.new_page()
    for name, path in pages(site).items():
        watch = PageWatch(page)
        response = page.goto(site.url + path)
        assert response.status == 200, name
        assert page.query_selector("main h1") is not None, name
        assert page.query_selector("main table tbody tr") is not None, name
        assert watch.problems == [], (name, watch.problems)
    # The filter, the sort and the pages are links and a GET form.
    page.goto(site.url + "/jobs")
    page.fill("#f-org", "globex")
    with page.expect_navigation():
        page.click("form.filters button[type=submit]")
    assert "org=globex" in page.url
    assert "acme/widgets" not in page.inner_text("main table")
    context.close()


@pytest.mark.parametrize("name", ["jobs", "job", "run", "live", "usage", "alerts"])
def test_keyboard_reaches_every_link(site, signed_in, name):
    page = signed_in.new_page()
    page.goto(site.url + pages(site)[name], wait_until="load")
    links = set(
        page.eval_on_selector_all(
            "a[href]",
            "els => els.filter(e => e.getClientRects().length && !e.closest('[hidden]'))"
            ".map(e => e.href)",
        )
    )
    reached: set[str] = set()
    for _ in range(len(links) * 3 + 40):
        page.keyboard.press("Tab")
        href = page.evaluate("document.activeElement && document.activeElement.href")
        if href:
            reached.add(href)
        if links <= reached:
            break
    assert links - reached == set()
    page.close()


@pytest.fixture(scope="module")
def axe_context(browser, site):
    """A signed-in context that bypasses the pages' CSP, so axe-core can be injected."""
    if not AXE.exists():
        _missing("axe-core (PUPPETEER_SKIP_DOWNLOAD=1 npm ci)")
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 800})
    sign_in(context, site.url, READ_TOKEN)
    yield context
    context.close()


@pytest.mark.parametrize("name", PAGE_NAMES)
def test_axe_finds_no_serious_violation(site, axe_context, name):
    page = axe_context.new_page()
    page.goto(site.url + pages(site)[name], wait_until="load")
    page.add_script_tag(path=str(AXE))
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        result = page.evaluate("async () => await axe.run(document)")
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']}: {[n['target'] for n in v['nodes']][:5]}"
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert bad == [], f"{scheme}: {bad}"
    page.close()


def test_live_page_shows_a_new_run_within_two_seconds(site, signed_in):
    page = signed_in.new_page()
    watch = PageWatch(page)
    page.goto(site.url + "/live", wait_until="load")
    assert page.query_selector(f'tr[data-run="{site.running_run}"]') is not None
    page.wait_for_function(
        "document.getElementById('live-status').textContent.startsWith('Live')", timeout=5000
    )
    start = datetime.now(UTC).replace(microsecond=0)
    body = live_batch(
        *RUNNING_JOB[:3], "tests (shard 3)", "3001", run_key=new_run_key(), seq=0, start=start
    )
    sent = time.monotonic()
    run_pk = site.post_batch(body)["run"]
    page.wait_for_selector(f'tr[data-run="{run_pk}"]', timeout=2000)
    shown = time.monotonic() - sent
    row = page.inner_text(f'tr[data-run="{run_pk}"]')
    assert "tests (shard 3)" in row
    page.wait_for_function(
        f"""document.querySelector('tr[data-run="{run_pk}"] [data-field="memory"]')
            .textContent.includes('MiB')""",
        timeout=2000,
    )
    assert shown < 2.0
    # The host's figures follow its newest snapshot (the batch's last sample: 42 %).
    page.wait_for_function(
        """document.querySelector('tr[data-host-row="runner-7"] [data-field="cpu"]')
            .textContent === '42.0 %'""",
        timeout=2000,
    )
    assert watch.problems == [], watch.problems
    page.close()


def test_an_organisation_token_sees_its_organisation_only(site, browser):
    context = browser.new_context()
    sign_in(context, site.url, read_token(site.server.hmac_key, "acme"))
    page = context.new_page()
    page.goto(site.url + "/jobs", wait_until="load")
    text = page.inner_text("main")
    assert "acme/widgets" in text and "globex" not in text
    for path in (
        "/job?" + urlencode(OTHER_JOB),
        f"/runs/{site.other_org_run}",
        "/jobs?org=globex",
    ):
        response = page.goto(site.url + path)
        if path.startswith("/jobs"):
            assert "globex/api" not in page.inner_text("main")
        else:
            assert response.status == 404, path
    for path in ("/usage", "/alerts", "/live"):
        page.goto(site.url + path)
        assert "globex" not in page.inner_text("main"), path
    # The live page's event stream carries the organisation's runs only: another
    # organisation's new run never shows, the organisation's own does.
    page.wait_for_function(
        "document.getElementById('live-status').textContent.startsWith('Live')", timeout=5000
    )
    start = datetime.now(UTC).replace(microsecond=0)
    other = site.post_batch(
        live_batch(
            "globex",
            "globex/api",
            "ci.yml",
            "deploy",
            "77",
            run_key=new_run_key(),
            seq=0,
            start=start,
        )
    )["run"]
    own = site.post_batch(
        live_batch(
            "acme",
            "acme/widgets",
            "ci.yml",
            "deploy",
            "78",
            run_key=new_run_key(),
            seq=0,
            start=start,
        )
    )["run"]
    page.wait_for_selector(f'tr[data-run="{own}"]', timeout=3000)
    assert page.query_selector(f'tr[data-run="{other}"]') is None
    assert "globex" not in page.inner_text("main")
    # The API answers the session as it answers the token: no other org's run.
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    api = requests.get(f"{site.url}/api/v1/runs/{site.other_org_run}", cookies=cookies, timeout=10)
    assert api.status_code in (403, 404)
    context.close()


def test_signed_out_pages_send_to_the_login_page(site, browser):
    context = browser.new_context()
    page = context.new_page()
    page.goto(site.url + "/job?" + urlencode(JOB))
    assert "/login" in page.url
    page.fill("#token", read_token(site.server.hmac_key, "acme"))
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.url.endswith("/job?" + urlencode(JOB))
    with page.expect_navigation():
        page.click("form.account button[type=submit]")
    assert "/login" in page.url
    page.goto(site.url + "/jobs")
    assert "/login" in page.url
    context.close()
