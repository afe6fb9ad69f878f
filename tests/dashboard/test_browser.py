"""The dashboard in a real headless Chromium (Debian's package), against a live server.

Screenshots go to ``test-artifacts/dashboard/`` (gitignored) so a run can be inspected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from redis.asyncio import Redis

from app import redis as redis_conn
from app.budget.hook import Observation, Priority
from app.budget.redis_budget import RedisBudget
from app.eventlog import EventLog
from app.main import create_app
from app.queue import EventQueue
from app.settings import Settings
from tests.dashboard.helpers import TOKEN, kill, make_event

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
T = TypeVar("T")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


def in_redis(settings: Settings, work: Callable[[Redis], Awaitable[T]]) -> T:
    """Run ``work`` with a fresh client (these tests are synchronous: Playwright's sync API)."""

    async def run() -> T:
        assert settings.redis_url is not None
        client = redis_conn.connect(settings.redis_url)
        try:
            return await work(client)
        finally:
            await client.aclose()

    # Playwright's sync API keeps an event loop running in this thread: use another one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run()).result()


@pytest.fixture
def browser_page(server_url: str) -> Iterator[Any]:
    """A Chromium page; it closes before the server stops (its SSE stream would hold it)."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1366, "height": 860})
        page.set_default_timeout(10_000)
        try:
            yield page
        finally:
            browser.close()


@pytest.fixture
def server_url(settings: Settings, live_server: Callable[..., Any]) -> Iterator[str]:
    app = create_app(settings)
    app.state.dashboard_live_interval = 0.3
    yield live_server(app).url

    async def clean(client: Redis) -> None:
        keys = [k async for k in client.scan_iter(match=f"{settings.redis_prefix}*")]
        if keys:
            await client.delete(*keys)

    in_redis(settings, clean)


# Every violation of the Content-Security-Policy a page reports, kept on the page's window.
CSP_WATCH = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


# Markup with a style attribute, which the policy refuses: the directive it reports.
CSP_CANARY = """
new Promise((resolve) => {
  document.addEventListener("securitypolicyviolation", (e) => resolve(e.violatedDirective));
  document.body.insertAdjacentHTML("beforeend", '<p style="color: red">canary</p>');
})
"""


def watch_csp(page: Any) -> list[str]:
    """Watch ``page`` for Content-Security-Policy violations from now on: the console messages
    about the policy (kept across navigations) are returned; see :func:`csp_violations`."""
    console: list[str] = []
    page.on(
        "console",
        lambda m: console.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.add_init_script(CSP_WATCH)
    return console


def csp_violations(page: Any, console: list[str]) -> list[str]:
    """What the console said about the policy, and the violations the current page saw."""
    return [*console, *page.evaluate("window.cspViolations || []")]


def sign_in(page: Any, url: str, token: str = TOKEN) -> None:
    page.goto(f"{url}/dashboard/")
    assert "/dashboard/signin" in page.url
    page.fill("#token", token)
    page.click("button[type=submit]")


def test_sign_in_refuses_a_wrong_token_then_admits_the_right_one(
    browser_page: Any, server_url: str
) -> None:
    page = browser_page
    sign_in(page, server_url, "not-the-token")
    assert page.locator("[role=alert]").inner_text() == "That token is not an operator token."
    page.screenshot(path=str(ARTIFACTS / "signin-refused.png"))
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:text('Overview')")
    cookie = next(c for c in page.context.cookies() if c["name"] == "reactor_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"


def test_counts_change_live_as_events_arrive(
    browser_page: Any, server_url: str, settings: Settings
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    console = watch_csp(page)
    sign_in(page, server_url)
    queued = page.locator('[data-live="queue.queued"]')
    assert queued.inner_text() == "0"
    page.wait_for_selector(".live.on")

    async def put(client: Redis) -> None:
        queue = EventQueue(client, settings)
        for n in range(3):
            await queue.put(make_event(content_id=str(3000 + n)))

    in_redis(settings, put)
    # No reload: the number changes through the server-sent events stream.
    # (A locator's wait: wait_for_function evaluates a string, which the policy forbids.)
    expect(queued).to_have_text("3")
    page.screenshot(path=str(ARTIFACTS / "overview-live.png"), full_page=True)
    # Under its Content-Security-Policy the overview loaded and updated live, and so do the
    # other pages, without a violation.
    assert "script-src 'self'" in page.evaluate(
        "fetch(location.href).then((r) => r.headers.get('content-security-policy'))"
    )
    assert csp_violations(page, console) == []
    for label in ("Jobs", "Dead letters", "Budget", "Tenants", "Workers", "Reactions", "Audit log"):
        page.click(f"nav a:text('{label}')")
        page.wait_for_selector(f"nav a[aria-current=page]:text('{label}')")
        page.wait_for_selector(".live.on")
        assert csp_violations(page, console) == [], label
    # The watch does see violations: markup with a style attribute is refused and reported.
    refused = page.evaluate(CSP_CANARY)
    assert refused == "style-src-attr"
    assert csp_violations(page, console)[-1].startswith("style-src-attr")


def test_operator_sees_why_a_tenant_fails_and_retries_the_dead_letter(
    browser_page: Any, server_url: str, settings: Settings
) -> None:
    page = browser_page
    event = make_event(tenant="acme.atlassian.net", content_id="4242")
    in_redis(settings, lambda c: kill(c, settings, event, "403: the app lacks edit permission"))
    sign_in(page, server_url)
    failing = page.locator("section.card", has_text="Failing now")
    assert "acme.atlassian.net" in failing.inner_text()
    assert "403: the app lacks edit permission" in failing.inner_text()
    assert page.locator('[data-live="dead_letters"]').inner_text() == "1"
    tenants = page.locator("section.card", has_text="Tenants with failing events")
    assert "acme.atlassian.net" in tenants.locator("tbody tr").first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "overview-failing.png"), full_page=True)

    page.click("a.tile[href='/dashboard/dead']")
    row = page.locator("tr", has_text=event.id)
    assert "lacks edit permission" in row.inner_text()
    page.screenshot(path=str(ARTIFACTS / "dead-letters.png"), full_page=True)
    row.locator("button", has_text="Retry").click()
    page.wait_for_selector("h1:text('Confirm: retry')")
    page.screenshot(path=str(ARTIFACTS / "dead-letter-confirm.png"))
    page.click("button:text('Yes, retry')")
    page.wait_for_selector(".notice")
    assert "retry: 1 dead letter(s)" in page.locator(".notice").inner_text()
    assert page.locator("tr", has_text=event.id).count() == 0

    record = in_redis(settings, lambda c: EventLog(c, settings).record(event.id))
    assert record is not None and record.state == "queued"
    page.click("nav a:text('Audit log')")
    assert "dead_letter_retry" in page.locator("table").inner_text()
    page.screenshot(path=str(ARTIFACTS / "audit.png"))


def test_budget_page_draws_the_burn_chart(
    browser_page: Any, server_url: str, settings: Settings
) -> None:
    async def spend(client: Redis) -> None:
        budget = RedisBudget(client, settings)
        for cost in (40, 60):
            reservation = await budget.reserve("acme.atlassian.net", cost, Priority.REACTION)
            await budget.settle(reservation, Observation(status=200))

    in_redis(settings, spend)
    page = browser_page
    sign_in(page, server_url)
    page.click("nav a:text('Budget')")
    assert page.locator('[data-live="budget.spent"]').inner_text() == "100"
    line = page.locator("#budget-chart polyline[data-series=cumulative]")
    assert line.get_attribute("data-last") == "100"
    assert len((line.get_attribute("points") or "").split()) >= 1
    assert "acme.atlassian.net" in page.locator(".card", has_text="Per tenant").inner_text()
    page.screenshot(path=str(ARTIFACTS / "budget.png"), full_page=True)


def test_theme_follows_the_system_setting(browser_page: Any, server_url: str) -> None:
    page = browser_page
    sign_in(page, server_url)
    background = "getComputedStyle(document.body).backgroundColor"
    page.emulate_media(color_scheme="light")
    light = page.evaluate(background)
    page.emulate_media(color_scheme="dark")
    dark = page.evaluate(background)
    assert light == "rgb(246, 247, 249)"
    assert dark == "rgb(18, 21, 27)"
    page.screenshot(path=str(ARTIFACTS / "overview-dark.png"), full_page=True)


def test_job_search_and_detail_with_masked_payload(
    browser_page: Any, server_url: str, settings: Settings
) -> None:
    event = make_event(tenant="globex.atlassian.net", content_id="5150")
    in_redis(settings, lambda c: kill(c, settings, event, "422: storage format invalid"))
    page = browser_page
    sign_in(page, server_url)
    page.click("nav a:text('Jobs')")
    page.fill("input[name=tenant]", "globex")
    page.select_option("select[name=status]", "dead")
    page.click("form.search button[type=submit]")
    page.screenshot(path=str(ARTIFACTS / "job-search.png"), full_page=True)
    page.click(f"a[href='/dashboard/jobs/{event.id}']")
    page.wait_for_selector(f"h1:has-text('{event.id}')")
    payload = page.locator("pre.payload").inner_text()
    assert "do-not-show" not in page.content()
    assert '"sharedSecret": "•••"' in payload
    attempts = page.locator("section.card", has_text="Attempts").inner_text()
    assert "422: storage format invalid" in attempts
    page.screenshot(path=str(ARTIFACTS / "job-detail.png"), full_page=True)


def test_a_failure_appears_on_the_open_overview_without_reload(
    browser_page: Any, server_url: str, settings: Settings
) -> None:
    page = browser_page
    sign_in(page, server_url)
    tenants = page.locator("section.card", has_text="Tenants with failing events")
    assert tenants.is_hidden()
    page.wait_for_selector(".live.on")
    event = make_event(tenant="initech.atlassian.net", content_id="8080")
    reason = "403: <b>no</b> permission to edit"
    in_redis(settings, lambda c: kill(c, settings, event, reason))
    tenants.wait_for(state="visible")
    row = tenants.locator("tbody tr").first
    assert "initech.atlassian.net" in row.inner_text()
    assert reason in row.inner_text()  # shown as text, never as markup
    assert page.locator("section.card b").count() == 0
    failing = page.locator("tbody[data-live-table=failing] tr").first
    assert "initech.atlassian.net" in failing.inner_text()
    assert failing.locator("a").get_attribute("href") == f"/dashboard/jobs/{event.id}"
    page.screenshot(path=str(ARTIFACTS / "overview-failure-live.png"), full_page=True)


def test_jobs_page_walks_to_the_next_page_and_back(
    browser_page: Any, server_url: str, settings: Settings
) -> None:
    events = [
        make_event(tenant="hooli.atlassian.net", content_id=str(6000 + n)) for n in range(105)
    ]

    async def put(client: Redis) -> None:
        queue = EventQueue(client, settings)
        for event in events:
            await queue.put(event)

    in_redis(settings, put)
    page = browser_page
    sign_in(page, server_url)
    page.click("nav a:text('Jobs')")
    page.fill("input[name=tenant]", "hooli")
    page.click("form.search button[type=submit]")
    page.wait_for_selector("nav.pager a:text('Next page')")
    listed = page.locator("section.card tbody td:first-child code")
    first = listed.all_inner_texts()
    assert len(first) == 100
    assert page.locator("a:text('First page')").count() == 0
    page.click("nav.pager a:text('Next page')")
    page.wait_for_selector("nav.pager a:text('First page')")
    second = listed.all_inner_texts()
    assert len(second) == 5
    assert sorted(first + second) == sorted(e.id for e in events)  # none twice, none missed
    assert page.input_value("input[name=tenant]") == "hooli"  # the search is kept
    assert page.locator("nav.pager a:text('Next page')").count() == 0
    page.screenshot(path=str(ARTIFACTS / "jobs-next-page.png"), full_page=True)
    page.click("nav.pager a:text('First page')")
    page.wait_for_selector("nav.pager a:text('Next page')")
    assert listed.all_inner_texts() == first
