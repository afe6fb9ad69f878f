"""Sign-in, the signed session cookie, CSRF and the guards of pages and API."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from app.dashboard import audit, auth
from app.dashboard.audit import AuditLog
from app.settings import Settings
from tests.dashboard.helpers import TOKEN, kill, make_event, send_partly, signed_in

KEY = b"k" * 32


def test_signed_payload_round_trips() -> None:
    value = auth.sign(KEY, {"sid": "abc", "op": "op-1", "exp": 2000.0})
    assert auth.unsign(KEY, value, now=1000.0) == {"sid": "abc", "op": "op-1", "exp": 2000.0}


@pytest.mark.parametrize(
    "tamper",
    [
        lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"),  # signature changed
        lambda v: "eyJvcCI6Im9wLWV2aWwifQ" + v[v.index(".") :],  # payload swapped
        lambda v: v.split(".")[0],  # no signature
        lambda v: "",
    ],
)
def test_tampered_cookie_is_refused(tamper: Callable[[str], str]) -> None:
    value = auth.sign(KEY, {"sid": "abc", "op": "op-1", "exp": 2000.0})
    assert auth.unsign(KEY, tamper(value), now=1000.0) is None


def test_expired_cookie_and_other_key_are_refused() -> None:
    value = auth.sign(KEY, {"sid": "abc", "op": "op-1", "exp": 2000.0})
    assert auth.unsign(KEY, value, now=2000.5) is None
    assert auth.unsign(b"x" * 32, value, now=1000.0) is None


def test_token_match_is_exact() -> None:
    tokens = ["alpha-token", "beta-token"]
    assert auth.match_token("beta-token", tokens) == "beta-token"
    assert auth.match_token("beta-toke", tokens) is None
    assert auth.match_token("", tokens) is None
    assert auth.match_token("x", []) is None


def test_next_target_stays_on_the_dashboard() -> None:
    assert auth.safe_next("/dashboard/jobs?status=dead") == "/dashboard/jobs?status=dead"
    for evil in ("https://evil.example/", "//evil.example/dashboard", "/dashboard\\@evil"):
        assert auth.safe_next(evil) == "/dashboard"


def assert_error_page(answer: httpx.Response, status: int, code: str) -> None:
    """``answer`` is the dashboard's HTML error page for ``code``, with the pages' policy."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("text/html"), answer.text
    assert f'data-error="{code}"' in answer.text
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert "<script>" not in answer.text and "style=" not in answer.text


@pytest.fixture
def server(live_server: Callable[..., Any]) -> str:
    url: str = live_server().url
    return url


async def test_nothing_is_served_without_sign_in(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as client:
        for path in ("/dashboard/", "/dashboard/dead", "/dashboard/jobs/ev_x", "/dashboard/audit"):
            answer = await client.get(path)
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/dashboard/signin?next=")
        for path in ("/api/status", "/api/jobs", "/api/dead", "/api/budget", "/api/audit"):
            answer = await client.get(path)
            assert answer.status_code == 401
            assert answer.json()["error"] == "unauthorized"
        answer = await client.post("/api/dead/retry", json={"all": True})
        assert answer.status_code == 401
        live = await client.get("/dashboard/live")
        assert live.status_code == 401
        assert live.headers["content-type"] == "application/json"
        assert live.json()["error"] == "unauthorized"
        forged = auth.sign(KEY, {"sid": "s", "op": auth.token_id(TOKEN), "exp": 9e9})
        client.cookies.set("reactor_session", forged)
        answer = await client.get("/api/status")
        assert answer.status_code == 401


async def test_sign_in_sets_a_strict_http_only_cookie_and_is_audited(
    server: str, settings: Settings, redis: Redis
) -> None:
    client, csrf = await asyncio.to_thread(signed_in, server)
    assert csrf
    cookie = next(c for c in client.cookies.jar if c.name == "reactor_session")
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert str(cookie.get_nonstandard_attr("SameSite")).lower() == "strict"
    assert not cookie.secure  # plain http here; https gets Secure (see next test)
    assert TOKEN not in str(cookie.value)
    entries = await AuditLog(redis, settings.redis_prefix).recent()
    assert [e.action for e in entries] == ["sign_in"]
    assert entries[0].operator == auth.token_id(TOKEN) != TOKEN


async def test_cookie_is_secure_over_https(settings: Settings, redis: Redis) -> None:
    from app.main import create_app

    app = create_app(settings, redis=redis)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://reactor.test") as client:
        app.state.redis = redis
        page = await client.get("/dashboard/signin")
        nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert nonce is not None
        answer = await client.post(
            "/dashboard/signin", data={"csrf": nonce.group(1), "token": TOKEN, "next": "/"}
        )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard"
    header = answer.headers["set-cookie"].lower()
    assert "secure" in header and "httponly" in header and "samesite=strict" in header


async def test_wrong_token_and_stale_form_are_refused(
    server: str, settings: Settings, redis: Redis
) -> None:
    async with httpx.AsyncClient(base_url=server) as client:
        page = await client.get("/dashboard/signin")
        nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert nonce is not None
        wrong = await client.post(
            "/dashboard/signin", data={"csrf": nonce.group(1), "token": "guess", "next": ""}
        )
        assert wrong.status_code == 401
        assert "reactor_session" not in wrong.headers.get("set-cookie", "")
        client.cookies.clear()
        stale = await client.post(
            "/dashboard/signin", data={"csrf": nonce.group(1), "token": TOKEN, "next": ""}
        )
        assert stale.status_code == 403
    log = AuditLog(redis, settings.redis_prefix)
    assert await log.recent() == []  # no operator acted
    refused = await log.recent_refused()
    assert [(e.operator, e.action, e.outcome) for e in refused] == [
        ("anonymous", "sign_in", "refused")
    ]
    assert refused[0].detail == {"via": "form", "address": "127.0.0.1"}
    assert await log.refused_count() == 1


async def test_refused_sign_ins_never_push_operator_actions_out_of_the_audit_log(
    server: str, settings: Settings, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "MAX_ENTRIES", 3)  # small caps: a flood is a few requests here
    monkeypatch.setattr(audit, "MAX_REFUSED", 5)
    event = make_event(content_id="88")
    await kill(redis, settings, event, "boom")
    operator, csrf = await asyncio.to_thread(signed_in, server)  # sign_in
    discarded = await asyncio.to_thread(
        operator.post, "/api/dead/discard", json={"ids": [event.id]}, headers={"X-CSRF-Token": csrf}
    )
    assert discarded.status_code == 200
    flood = auth.MAX_FAILURES - 1
    async with httpx.AsyncClient(base_url=server) as anyone:
        page = await anyone.get("/dashboard/signin")
        nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert nonce is not None
        for n in range(flood):
            wrong = {"csrf": nonce.group(1), "token": f"guess-{n}", "next": ""}
            assert (await anyone.post("/dashboard/signin", data=wrong)).status_code == 401

    log = (await asyncio.to_thread(operator.get, "/api/audit", params={"limit": "5000"})).json()
    assert [e["action"] for e in log["entries"]] == ["dead_letter_discard", "sign_in"]
    refused = log["refused_sign_ins"]
    assert (refused["count"], refused["hours"]) == (flood, audit.REFUSED_HOURS)
    assert len(refused["entries"]) == 5  # the newest, within their own cap
    assert {e["outcome"] for e in refused["entries"]} == {"refused"}
    assert {e["detail"]["via"] for e in refused["entries"]} == {"form"}
    shown = (await asyncio.to_thread(operator.get, "/dashboard/audit")).text
    actions, _, refusals = shown.partition('id="refused-sign-ins"')
    assert "dead_letter_discard" in actions and "anonymous" not in actions
    assert f"<strong data-refused-count>{flood}</strong> wrong operator tokens" in refusals
    assert refusals.count("<td>form</td>") == 5


async def test_refused_sign_ins_are_counted_per_hour_for_a_day(
    settings: Settings, redis: Redis
) -> None:
    log = AuditLog(redis, settings.redis_prefix)
    entry = await log.record_refused("bearer", "203.0.113.9" + "x" * 500)
    assert entry.detail["address"] == ("203.0.113.9" + "x" * 500)[: audit.MAX_ADDRESS_CHARS]
    assert await log.refused_count(entry.at) == 1
    assert await log.refused_count(entry.at + (audit.REFUSED_HOURS - 1) * 3600) == 1
    assert await log.refused_count(entry.at + audit.REFUSED_HOURS * 3600) == 0
    hour = f"{settings.redis_prefix}audit:refused:hour:{int(entry.at) // 3600}"
    assert 0 < await redis.ttl(hour) <= (audit.REFUSED_HOURS + 1) * 3600


FORM_HEAD = (
    "POST /dashboard/signin HTTP/1.1\nHost: reactor.test\n"
    "Content-Type: application/x-www-form-urlencoded\n"
)


def test_sign_in_form_over_the_bound_is_refused_on_its_declared_length(server: str) -> None:
    head = FORM_HEAD + "Content-Length: 400000000\n"
    # Only a sliver of the 400 MB is sent: the answer must not wait for (or buffer) the rest.
    status, body = send_partly(server, head, b"csrf=x&token=" + b"a" * 4096)
    assert status == 413
    text = body.decode()
    assert 'data-error="payload_too_large"' in text
    assert f"The body is larger than {auth.MAX_FORM_BYTES} bytes." in text
    assert '<a href="/dashboard/signin">Back to the form&#39;s page</a>' in text


def test_streamed_sign_in_form_is_refused_once_it_passes_the_bound(server: str) -> None:
    chunk = b"token=" + b"a" * auth.MAX_FORM_BYTES
    # Chunked, no length announced, and the body never ends (no last chunk is sent).
    body = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    status, answer = send_partly(server, FORM_HEAD + "Transfer-Encoding: chunked\n", body)
    assert status == 413
    assert b'data-error="payload_too_large"' in answer


async def test_page_form_over_the_bound_is_refused(
    server: str, settings: Settings, redis: Redis
) -> None:
    event = make_event(content_id="78")
    await kill(redis, settings, event, "boom")
    client, csrf = await asyncio.to_thread(signed_in, server)
    form = {"csrf": csrf, "id": event.id, "confirm": "yes", "pad": "x" * auth.MAX_FORM_BYTES}
    answer = await asyncio.to_thread(client.post, "/dashboard/dead/retry", data=form)
    assert_error_page(answer, 413, "payload_too_large")
    assert await redis.zscore(f"{settings.redis_prefix}dlq", event.id) is not None
    del form["pad"]
    done = await asyncio.to_thread(client.post, "/dashboard/dead/retry", data=form)
    assert done.status_code == 303
    assert await redis.zscore(f"{settings.redis_prefix}dlq", event.id) is None


async def test_page_forms_in_another_media_type_are_415_not_stale(
    server: str, settings: Settings, redis: Redis
) -> None:
    """A form sent as multipart or JSON carries a good CSRF token the parser never saw: say
    what is wrong with it (415), not that the page is stale (403)."""
    event = make_event(content_id="79")
    await kill(redis, settings, event, "boom")
    client, csrf = await asyncio.to_thread(signed_in, server)
    form = {"csrf": csrf, "id": event.id, "confirm": "yes"}
    multipart = await asyncio.to_thread(
        client.post, "/dashboard/dead/retry", data=form, files={"f": ("a.txt", b"x")}
    )
    as_json = await asyncio.to_thread(client.post, "/dashboard/dead/retry", json=form)
    for answer in (multipart, as_json):
        assert_error_page(answer, 415, "unsupported_media_type")
    assert await redis.zscore(f"{settings.redis_prefix}dlq", event.id) is not None


async def test_actions_need_the_csrf_token(server: str, settings: Settings, redis: Redis) -> None:
    event = make_event(content_id="77")
    await kill(redis, settings, event, "boom")
    client, csrf = await asyncio.to_thread(signed_in, server)
    form = {"id": event.id, "scope": "selected", "confirm": "yes"}
    refused = await asyncio.to_thread(client.post, "/dashboard/dead/retry", data=form)
    assert refused.status_code == 403
    wrong = await asyncio.to_thread(
        client.post, "/dashboard/dead/retry", data={**form, "csrf": "0" * 64}
    )
    assert wrong.status_code == 403
    api_refused = await asyncio.to_thread(client.post, "/api/dead/retry", json={"ids": [event.id]})
    assert api_refused.status_code == 403
    assert api_refused.json()["error"] == "csrf_failed"
    assert await redis.zscore(f"{settings.redis_prefix}dlq", event.id) is not None

    api_ok = await asyncio.to_thread(
        client.post, "/api/dead/retry", json={"ids": [event.id]}, headers={"X-CSRF-Token": csrf}
    )
    assert api_ok.status_code == 200, api_ok.text
    assert api_ok.json()["count"] == 1


async def test_bearer_token_works_for_the_api_only_when_it_is_an_operator_token(
    server: str,
) -> None:
    async with httpx.AsyncClient(base_url=server) as client:
        ok = await client.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert set(ok.json()["queue"]) == {
            "queued", "running", "deferred", "waiting", "oldest_due_seconds",
        }  # fmt: skip
        bad = await client.get("/api/status", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401


async def test_sign_out_ends_the_session(server: str, settings: Settings, redis: Redis) -> None:
    client, csrf = await asyncio.to_thread(signed_in, server)
    kept = dict(client.cookies)  # a copy of the cookie taken before signing out
    answer = await asyncio.to_thread(client.post, "/dashboard/signout", data={"csrf": csrf})
    assert answer.status_code == 303
    after = await asyncio.to_thread(client.get, "/api/status")
    assert after.status_code == 401
    with httpx.Client(base_url=server, cookies=kept, follow_redirects=False) as copy:
        assert (await asyncio.to_thread(copy.get, "/api/status")).status_code == 401
        page = await asyncio.to_thread(copy.get, "/dashboard/")
        assert page.status_code == 303 and "/dashboard/signin" in page.headers["location"]
        headers = {"X-CSRF-Token": csrf}
        retry = await asyncio.to_thread(
            copy.post, "/api/dead/retry", json={"all": True}, headers=headers
        )
        assert retry.status_code == 401
        assert (await asyncio.to_thread(copy.get, "/dashboard/live")).status_code == 401
    actions = [e.action for e in await AuditLog(redis, settings.redis_prefix).recent()]
    assert actions == ["sign_out", "sign_in"]


def test_session_of_a_removed_token_is_refused(settings: Settings) -> None:
    value = auth.new_session(settings, "old-token", time.time())
    payload = auth.unsign(auth.signing_key(settings), value, time.time())
    assert payload is not None and payload["op"] == auth.token_id("old-token")
    assert payload["op"] not in {auth.token_id(t) for t in settings.dashboard_tokens}


async def test_repeated_wrong_tokens_are_throttled_but_never_lock_operators_out(
    server: str, settings: Settings, redis: Redis
) -> None:
    async with httpx.AsyncClient(base_url=server) as client:
        for _ in range(auth.MAX_FAILURES):
            answer = await client.get("/api/status", headers={"Authorization": "Bearer guess"})
            assert answer.status_code == 401
        answer = await client.get("/api/status", headers={"Authorization": "Bearer guess"})
        assert answer.status_code == 429
        assert answer.headers["retry-after"] == str(auth.FAILURE_WINDOW_SECONDS)
        live = await client.get("/dashboard/live", headers={"Authorization": "Bearer guess"})
        assert live.status_code == 429 and live.json()["error"] == "too_many_attempts"
        page = await client.get("/dashboard/signin")
        nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert nonce is not None
        wrong = {"csrf": nonce.group(1), "token": "another-guess", "next": ""}
        refused = await client.post("/dashboard/signin", data=wrong)
        assert_error_page(refused, 429, "too_many_attempts")
        assert refused.headers["retry-after"] == str(auth.FAILURE_WINDOW_SECONDS)
        # The same address, throttled: the right token still gets in, by form and by bearer.
        right = {"csrf": nonce.group(1), "token": TOKEN, "next": "/dashboard/jobs"}
        signed = await client.post("/dashboard/signin", data=right)
        assert signed.status_code == 303
        assert signed.headers["location"] == "/dashboard/jobs"
        assert (await client.get("/api/status")).status_code == 200  # by the session cookie
        client.cookies.clear()
        bearer = await client.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 200
        again = await client.get("/api/status", headers={"Authorization": "Bearer guess"})
        assert again.status_code == 429  # and guessing stays throttled
    entries = await AuditLog(redis, settings.redis_prefix).recent()
    assert [(e.action, e.outcome) for e in entries] == [("sign_in", "ok")]


async def test_wrong_bearer_tokens_on_pages_are_throttled_and_audited_as_on_the_api(
    server: str, settings: Settings, redis: Redis
) -> None:
    wrong = {"Authorization": "Bearer guess"}
    async with httpx.AsyncClient(base_url=server) as client:
        for n in range(auth.MAX_FAILURES):
            if n % 2:  # pages and the API count against the same address
                answer = await client.get("/api/status", headers=wrong)
                assert answer.status_code == 401
            else:
                answer = await client.get("/dashboard/", headers=wrong)
                assert answer.status_code == 303
                assert answer.headers["location"].startswith("/dashboard/signin?next=")
        for path in ("/dashboard/", "/dashboard/audit", "/dashboard/jobs/ev_x"):
            page = await client.get(path, headers=wrong)
            assert_error_page(page, 429, "too_many_attempts")
            assert page.headers["retry-after"] == str(auth.FAILURE_WINDOW_SECONDS)
            assert f'<a href="{path}">Try again</a>' in page.text
        action = await client.post("/dashboard/dead/retry", headers=wrong, data={"scope": "all"})
        assert_error_page(action, 429, "too_many_attempts")
        api = await client.get("/api/status", headers=wrong)
        assert api.status_code == 429 and api.json()["error"] == "too_many_attempts"
        right = await client.get("/dashboard/", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200  # never locked out
    log = AuditLog(redis, settings.redis_prefix)
    refused = await log.recent_refused()
    assert len(refused) == auth.MAX_FAILURES  # each counted one; the throttled ones are not
    assert {e.detail["via"] for e in refused} == {"bearer"}
    assert await log.refused_count() == auth.MAX_FAILURES
    assert await log.recent() == []


async def test_another_authorization_scheme_is_not_taken_for_a_wrong_token(
    server: str, settings: Settings, redis: Redis
) -> None:
    """A proxy in front may add its own ``Authorization: Basic``: that is no guess at the
    operator token, so it never locks the address out nor fills the refused sign-ins."""
    basic = {"Authorization": "Basic cHJveHk6cGFzcw=="}
    async with httpx.AsyncClient(base_url=server) as client:
        for _ in range(auth.MAX_FAILURES + 2):
            page = await client.get("/dashboard/", headers=basic)
            assert page.status_code == 303
            api = await client.get("/api/status", headers=basic)
            assert api.status_code == 401
    assert await AuditLog(redis, settings.redis_prefix).recent_refused() == []


async def test_redis_down_answers_503_not_500(settings: Settings, redis: Redis) -> None:
    from app import redis as redis_conn
    from app.embedded_redis import free_port
    from app.main import create_app

    dead = redis_conn.connect(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    app = create_app(settings, redis=dead)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://reactor.test") as client:
        app.state.redis = dead
        answer = await client.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
    await dead.aclose()
    assert answer.status_code == 503
    assert answer.json()["error"] == "redis_unavailable"


async def test_sign_in_with_redis_down_answers_503_not_500(settings: Settings) -> None:
    from app import redis as redis_conn
    from app.embedded_redis import free_port
    from app.main import create_app

    dead = redis_conn.connect(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    app = create_app(settings, redis=dead)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://reactor.test") as client:
        app.state.redis = dead
        page = await client.get("/dashboard/signin")
        nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert nonce is not None
        answers = [
            await client.post(
                "/dashboard/signin", data={"csrf": nonce.group(1), "token": token, "next": ""}
            )
            for token in (TOKEN, "guess")
        ]
        live = await client.get("/dashboard/live", headers={"Authorization": "Bearer guess"})
        page = await client.get("/dashboard/", headers={"Authorization": "Bearer guess"})
    await dead.aclose()
    for answer in [*answers, page]:  # pages: the HTML error page
        assert_error_page(answer, 503, "redis_unavailable")
        assert answer.headers["retry-after"] == "5"
    assert live.status_code == 503  # the stream answers as the API does
    assert live.json()["error"] == "redis_unavailable"


async def test_a_live_stream_open_at_sign_out_ends_at_its_next_push(
    live_server: Callable[..., Any], settings: Settings
) -> None:
    from app.main import create_app

    app = create_app(settings)
    app.state.dashboard_live_interval = 0.2
    url = live_server(app).url
    client, csrf = await asyncio.to_thread(signed_in, url)

    def watch() -> list[str]:
        events: list[str] = []
        with client.stream("GET", "/dashboard/live", timeout=10) as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    events.append(line.removeprefix("event:").strip())
                    if events == ["overview"]:  # signed in: now sign out elsewhere
                        with httpx.Client(base_url=url, cookies=dict(client.cookies)) as other:
                            other.post("/dashboard/signout", data={"csrf": csrf})
                if line.startswith("data:") and "signed out" in line:
                    break
                if len(events) > 20:
                    break
        return events

    events = await asyncio.to_thread(watch)
    assert events[0] == "overview" and events[-1] == "error", events


async def test_live_streams_of_one_process_are_capped_and_closed_ones_free_their_place(
    live_server: Callable[..., Any], settings: Settings
) -> None:
    """Each live stream holds a connection, tasks and a session check per push: one process
    serves a bounded number at once (503 with Retry-After beyond), freed as streams close."""
    from app.main import create_app

    app = create_app(settings)
    app.state.dashboard_live_interval = 0.2
    app.state.dashboard_max_streams = 2
    url = live_server(app).url
    client, _ = await asyncio.to_thread(signed_in, url)

    def first_event(lines: Iterator[str]) -> str:
        # The iterator is kept by the caller: dropping one mid-stream closes its connection.
        for line in lines:
            if line.startswith("event:"):
                return line.removeprefix("event:").strip()
        return ""

    def scenario() -> tuple[list[str], int, str, str]:
        with (
            client.stream("GET", "/dashboard/live", timeout=10) as one,
            client.stream("GET", "/dashboard/live", timeout=10) as two,
        ):
            lines = [one.iter_lines(), two.iter_lines()]
            opened = [first_event(lines[0]), first_event(lines[1])]
            third = client.get("/dashboard/live", timeout=10)
            refused = (third.status_code, third.headers.get("retry-after", ""))
            body = third.json()["error"]
        time.sleep(0.6)  # both closed by the client: their next push finds them gone
        with client.stream("GET", "/dashboard/live", timeout=10) as again:
            again_lines = again.iter_lines()
            after = first_event(again_lines)
        return opened, refused[0], refused[1] + ":" + body, after

    opened, status, detail, after = await asyncio.to_thread(scenario)
    assert opened == ["overview", "overview"]
    assert (status, detail) == (503, "10:too_many_streams")
    assert after == "overview"


async def test_a_form_sent_without_a_session_signs_in_back_to_the_forms_page(
    server: str, settings: Settings, redis: Redis
) -> None:
    """A form sent after its session ended (expired, or signed out in another tab) goes to
    sign-in, and back to the page the form is on: never to the address it posted to, which
    only takes a POST."""
    async with httpx.AsyncClient(base_url=server) as client:
        for action, page in [
            ("/dashboard/dead/retry", "/dashboard/dead"),
            ("/dashboard/dead/discard", "/dashboard/dead"),
            ("/dashboard/signout", "/dashboard/"),  # the header's form: the Overview
        ]:
            answer = await client.post(action, data={"scope": "all", "csrf": "x"})
            assert answer.status_code == 303, action
            assert answer.headers["location"] == f"/dashboard/signin?next={page}", action
        asked = await client.get("/dashboard/jobs?status=dead")  # a page: back to it as asked
        assert asked.headers["location"] == "/dashboard/signin?next=/dashboard/jobs%3Fstatus%3Ddead"
        form = await client.get("/dashboard/signin?next=/dashboard/dead")
        nonce = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert nonce is not None
        assert 'name="next" value="/dashboard/dead"' in form.text
        signed = await client.post(
            "/dashboard/signin",
            data={"csrf": nonce.group(1), "token": TOKEN, "next": "/dashboard/dead"},
        )
        assert signed.headers["location"] == "/dashboard/dead"
        landed = await client.get(signed.headers["location"])
        assert landed.status_code == 200 and "<h1>Dead letters</h1>" in landed.text


async def test_dashboard_errors_are_html_pages_and_the_api_keeps_json(
    server: str, settings: Settings, redis: Redis
) -> None:
    event = make_event(content_id="80")
    await kill(redis, settings, event, "boom")
    client, csrf = await asyncio.to_thread(signed_in, server)
    stale = await asyncio.to_thread(
        client.post, "/dashboard/dead/retry", data={"csrf": "0" * 64, "id": event.id}
    )
    assert_error_page(stale, 403, "csrf_failed")
    assert "This form is out of date" in stale.text
    assert '<a href="/dashboard/dead">Back to the form&#39;s page</a>' in stale.text
    assert 'aria-current="page">Dead letters' not in stale.text and "<nav>" in stale.text
    assert await redis.zscore(f"{settings.redis_prefix}dlq", event.id) is not None

    not_a_page = await asyncio.to_thread(client.get, "/dashboard/dead/retry")
    assert_error_page(not_a_page, 405, "method_not_allowed")
    assert not_a_page.headers["allow"] == "POST"
    assert '<a href="/dashboard/dead">Back to the form&#39;s page</a>' in not_a_page.text
    posted = await asyncio.to_thread(client.post, "/dashboard/audit", data={"csrf": csrf})
    assert_error_page(posted, 405, "method_not_allowed")
    assert posted.headers["allow"] == "GET, HEAD"
    index = await asyncio.to_thread(client.post, "/dashboard", data={"csrf": csrf})
    assert_error_page(index, 405, "method_not_allowed")
    missing = await asyncio.to_thread(client.get, "/dashboard/no-such-page")
    assert_error_page(missing, 404, "not_found")
    assert "<nav>" in missing.text  # signed in: the navigation
    async with httpx.AsyncClient(base_url=server) as anyone:
        unknown = await anyone.get("/dashboard/no-such-page")
        assert_error_page(unknown, 404, "not_found")
        assert (
            "<nav>" not in unknown.text
            and '<a href="/dashboard/signin">Sign in</a>' in unknown.text
        )
        # The API, the stream and the rest of the site keep their JSON errors.
        assert (await anyone.get("/api/no-such")).json()["error"] == "not_found"
        assert (await anyone.get("/api/status")).json()["error"] == "unauthorized"
        assert (await anyone.get("/dashboard/live")).json()["error"] == "unauthorized"
    api_stale = await asyncio.to_thread(client.post, "/api/dead/retry", json={"ids": [event.id]})
    assert api_stale.status_code == 403 and api_stale.json()["error"] == "csrf_failed"


async def test_pages_with_redis_down_answer_an_html_503_with_navigation(
    settings: Settings,
) -> None:
    from app import redis as redis_conn
    from app.embedded_redis import free_port
    from app.main import create_app

    dead = redis_conn.connect(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    app = create_app(settings, redis=dead)
    transport = httpx.ASGITransport(app=app)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://reactor.test") as client:
        app.state.redis = dead
        pages = [await client.get(p, headers=bearer) for p in ("/dashboard/", "/dashboard/dead")]
        api = await client.get("/api/status", headers=bearer)
    await dead.aclose()
    for page in pages:
        assert_error_page(page, 503, "redis_unavailable")
        assert page.headers["retry-after"] == "5"
        assert "Redis unavailable" in page.text and "<nav>" in page.text
        assert f'<a href="{page.url.path}">Try again</a>' in page.text
    assert api.status_code == 503 and api.json()["error"] == "redis_unavailable"


async def test_pages_name_an_svg_icon_served_as_an_image(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as client:
        page = await client.get("/dashboard/signin")
        link = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page.text)
        assert link is not None and link.group(1).startswith("/dashboard/static/")
        assert "img-src 'self'" in page.headers["content-security-policy"]
        icon = await client.get(link.group(1))
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/svg+xml"
    assert icon.text.startswith("<svg") and "<script" not in icon.text
