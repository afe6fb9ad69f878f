"""The dashboard in a real headless Chromium (Debian's package), against a live server.

Screenshots go to ``test-artifacts/dashboard/`` (gitignored) so a run can be inspected.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette

from app import redis as redis_conn
from app.budget.hook import Observation, Priority
from app.budget.redis_budget import RedisBudget
from app.embedded_redis import free_port
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
def live_app(
    settings: Settings, live_server: Callable[..., Any]
) -> Iterator[tuple[Starlette, str]]:
    """The app (its ``state.redis`` can be swapped for a Redis that is down) and its URL."""
    app = create_app(settings)
    app.state.dashboard_live_interval = 0.3
    yield app, live_server(app).url

    async def clean(client: Redis) -> None:
        keys = [k async for k in client.scan_iter(match=f"{settings.redis_prefix}*")]
        if keys:
            await client.delete(*keys)

    in_redis(settings, clean)


@pytest.fixture
def server_url(live_app: tuple[Starlette, str]) -> str:
    return live_app[1]


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
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/dashboard/live" in r.url else None)
    for label in ("Jobs", "Dead letters", "Budget", "Tenants", "Workers", "Reactions", "Audit log"):
        streams.clear()
        page.click(f"nav a:text('{label}')")
        page.wait_for_selector(f"nav a[aria-current=page]:text('{label}')")
        if label == "Budget":  # its tiles update live
            page.wait_for_selector(".live.on")
            assert streams, label
        else:  # nothing on it updates live: no live indicator, no stream
            page.wait_for_load_state("load")
            assert page.locator("[data-live-status]").count() == 0, label
            assert streams == [], label
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

    # The budget is the UTC hour's: points spent just before it ends would read 0 on the page.
    left = 3600 - time.time() % 3600
    if left < 30:
        time.sleep(left + 1)
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


def test_an_outage_of_redis_marks_the_overview_stale_until_redis_is_back(
    browser_page: Any, live_app: tuple[Starlette, str], settings: Settings
) -> None:
    from playwright.sync_api import expect

    app, url = live_app
    event = make_event(tenant="umbrella.atlassian.net", content_id="9090")
    in_redis(settings, lambda c: kill(c, settings, event, "500: server error"))
    page = browser_page
    sign_in(page, url)
    page.wait_for_selector(".live.on")
    banner, dot = page.locator("[data-live-banner]"), page.locator("[data-live-status]")
    dead_letters = page.locator('[data-live="dead_letters"]')
    failing = page.locator("tbody[data-live-table=failing]")
    assert banner.is_hidden()
    stale = re.compile(r"\bstale\b")
    expect(dead_letters).not_to_have_class(stale)

    working = app.state.redis
    down = redis_conn.connect(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    app.state.redis = down  # what every push reads from: Redis is down
    try:
        expect(banner).to_have_text(
            re.compile(r"^Redis unavailable — figures as of \d\d:\d\d:\d\d\.$")
        )
        expect(dot).to_have_class("live off")
        assert (dot.get_attribute("title") or "").startswith("Redis unavailable — figures as of")
        for figure in (dead_letters, failing, page.locator('[data-live-map="hour.received"]')):
            expect(figure).to_have_class(stale)
        assert dead_letters.inner_text() == "1"  # the last figures, shown as such
        assert float(dead_letters.evaluate("(el) => getComputedStyle(el).opacity")) < 1
        page.screenshot(path=str(ARTIFACTS / "overview-redis-down.png"), full_page=True)
    finally:
        app.state.redis = working
        in_redis(settings, lambda _: down.aclose())
    expect(banner).to_be_hidden()
    expect(dot).to_have_class("live on")
    assert dot.get_attribute("title") == "live"
    expect(page.locator(".stale")).to_have_count(0)


def test_a_stream_ended_by_a_sign_out_elsewhere_says_so_and_leads_to_sign_in(
    browser_page: Any, server_url: str
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    sign_in(page, server_url)
    page.wait_for_selector(".live.on")
    # Signed out in another tab: the same session cookie, its CSRF token.
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    csrf = page.input_value("form.signout input[name=csrf]")
    with httpx.Client(base_url=server_url, cookies=cookies) as other:
        assert other.post("/dashboard/signout", data={"csrf": csrf}).status_code == 303
    banner = page.locator("[data-live-banner]")
    expect(banner).to_have_text(
        re.compile(
            r"^Signed out: live updates stopped — figures as of \d\d:\d\d:\d\d\. Sign in again$"
        )
    )
    expect(page.locator("[data-live-status]")).to_have_class("live off")
    expect(page.locator('[data-live="dead_letters"]')).to_have_class(re.compile(r"\bstale\b"))
    banner.locator("a:text('Sign in again')").click()
    page.wait_for_selector("#token")
    assert page.input_value("input[name=next]") == "/dashboard/"

    # A stream refused outright (401: the session ended before it opened) is not retried.
    sign_in(page, server_url)
    page.wait_for_selector("h1:text('Overview')")
    page.route("**/dashboard/live", lambda route: route.fulfill(status=401, body="{}"))
    page.reload()
    expect(banner).to_have_text(re.compile(r"^Not signed in: live updates stopped — "))
    expect(page.locator("[data-live-status]")).to_have_attribute(
        "title", re.compile("^Not signed in: live updates stopped")
    )


def test_unchanged_live_rows_keep_the_operators_selection(
    browser_page: Any, server_url: str, settings: Settings
) -> None:
    from playwright.sync_api import expect

    event = make_event(tenant="soylent.atlassian.net", content_id="7070")
    in_redis(settings, lambda c: kill(c, settings, event, "PermanentFailure: gone"))
    page = browser_page
    sign_in(page, server_url)
    page.wait_for_selector(".live.on")
    # The operator selects the reason of a failing row, as to copy it.
    before = page.evaluate(
        """() => {
          const row = document.querySelector("tbody[data-live-table=failing] tr");
          window.kept = {
            why: row.querySelector("td.why"),
            when: row.lastElementChild.firstChild,
            map: document.querySelector('[data-live-map="hour.received"]').firstChild,
          };
          const range = document.createRange();
          range.selectNodeContents(window.kept.why);
          getSelection().removeAllRanges();
          getSelection().addRange(range);
          return [document.body.dataset.liveAt, window.kept.when.data];
        }"""
    )
    assert page.evaluate("getSelection().toString()") == "PermanentFailure: gone"
    # Pushes come every 0.3 s: let several arrive with the same rows.
    body = page.locator("body")
    expect(body).not_to_have_attribute("data-live-at", before[0])
    page.wait_for_timeout(2200)
    after = page.evaluate(
        """() => [kept.why.isConnected, kept.map.isConnected, kept.when.isConnected,
                 kept.when.data, getSelection().toString()]"""
    )
    assert after[:3] == [True, True, True]
    assert after[4] == "PermanentFailure: gone"
    assert re.fullmatch(r"\d+s ago", after[3]) and after[3] != before[1]  # the time moves on


def test_pages_load_their_icon_without_an_error(browser_page: Any, server_url: str) -> None:
    page = browser_page
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    with page.expect_response(lambda r: "icon" in r.url) as icon:
        page.goto(f"{server_url}/dashboard/signin")
    assert icon.value.url == f"{server_url}/dashboard/static/icon.svg"
    assert icon.value.status == 200
    assert icon.value.headers["content-type"] == "image/svg+xml"
    sign_in(page, server_url)
    page.wait_for_selector(".live.on")
    assert errors == []
