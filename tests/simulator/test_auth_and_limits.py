"""Auth modes (Connect JWT with qsh, bearer tokens behind the gateway, Basic) and rate limits."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from app.atlassian.connect_jwt import encode_connect_token
from app.confluence.ratelimit import observe
from simulator.clock import Clock
from simulator.main import create_app
from simulator.site import Simulator, build
from simulator.store import ConnectInstall
from tests.simulator.conftest import TOKEN, basic, make_page

SITE = "https://site.test"
SECRET = "shared-secret-of-the-test-tenant-0123456789"


def _install(sim: Simulator) -> ConnectInstall:
    user = sim.store.add_user(
        "app@connect.atlassian.com", "Reactor", api_token="", account_type="app"
    )
    app = ConnectInstall(
        key="confluence-reactor",
        base_url="https://app.test",
        client_key="client-1",
        shared_secret=SECRET,
        account_id=user.account_id,
        scopes=["READ", "WRITE"],
    )
    sim.store.connect_apps[app.key] = app
    return app


def _jwt(method: str, path: str, *, secret: str = SECRET, now: int | None = None) -> dict[str, str]:
    token = encode_connect_token(
        issuer="confluence-reactor",
        secret=secret,
        method=method,
        url=SITE + path,
        base_url=SITE + "/wiki",
        now=now,
    )
    return {"Authorization": f"JWT {token}"}


async def test_connect_jwt_with_qsh(
    client: httpx.AsyncClient, sim: Simulator, space: dict[str, Any]
) -> None:
    _install(sim)
    path = "/wiki/api/v2/pages?limit=5&body-format=storage"
    ok = await client.get(path, headers=_jwt("GET", path))
    assert ok.status_code == 200
    other_query = await client.get(
        "/wiki/api/v2/pages?limit=6&body-format=storage", headers=_jwt("GET", path)
    )
    assert other_query.status_code == 401
    other_method = await client.post(
        "/wiki/api/v2/pages?limit=5&body-format=storage", headers=_jwt("GET", path), json={}
    )
    assert other_method.status_code == 401
    wrong_secret = await client.get(path, headers=_jwt("GET", path, secret="x" * 40))
    assert wrong_secret.status_code == 401
    expired = await client.get(path, headers=_jwt("GET", path, now=int(time.time()) - 3600))
    assert expired.status_code == 401
    assert sim.counters.auth_failures["qsh_mismatch"] == 2


async def test_app_writes_are_attributed_to_the_app_account(
    client: httpx.AsyncClient, sim: Simulator, space: dict[str, Any]
) -> None:
    app = _install(sim)
    path = "/wiki/api/v2/pages"
    body = {
        "spaceId": space["id"],
        "title": "By the app",
        "body": {"representation": "storage", "value": "x"},
    }
    created = await client.post(path, json=body, headers=_jwt("POST", path))
    assert created.status_code == 200
    assert created.json()["authorId"] == app.account_id


async def test_bearer_tokens_only_behind_the_gateway(
    client: httpx.AsyncClient, sim: Simulator, space: dict[str, Any]
) -> None:
    token = (await client.post("/_sim/oauth/tokens", json={"as": "admin@example.com"})).json()[
        "access_token"
    ]
    bearer = {"Authorization": f"Bearer {token}"}
    gateway = f"/ex/confluence/{sim.store.cloud_id}/wiki/api/v2/spaces"
    ok = await client.get(gateway, headers=bearer)
    assert ok.status_code == 200 and ok.json()["results"][0]["key"] == "DEV"
    assert ok.json()["_links"]["base"] == f"{SITE}/wiki"
    assert (await client.get("/wiki/api/v2/spaces", headers=bearer)).status_code == 401
    assert (await client.get(gateway, headers={"Authorization": "Bearer nope"})).status_code == 401
    wrong_site = await client.get("/ex/confluence/not-this-site/wiki/api/v2/spaces", headers=bearer)
    assert wrong_site.status_code == 404
    jwt_on_gateway = await client.get(gateway, headers=_jwt("GET", "/wiki/api/v2/spaces"))
    assert jwt_on_gateway.status_code == 401


async def test_forge_system_token_acts_as_the_app(
    client: httpx.AsyncClient, sim: Simulator, space: dict[str, Any]
) -> None:
    made = await client.post(
        "/_sim/apps/forge", json={"appId": "ari:cloud:ecosystem::app/x", "url": "https://r.test/e"}
    )
    install = sim.store.forge_apps[made.json()["installationId"]]
    hub = client._transport.app.state.hub  # type: ignore[attr-defined]
    token = hub.system_token(install)
    assert hub.system_token(install) == token  # reused while fresh
    gateway = f"/ex/confluence/{sim.store.cloud_id}/wiki/api/v2/pages"
    body = {
        "spaceId": space["id"],
        "title": "Forge",
        "body": {"representation": "storage", "value": "x"},
    }
    created = await client.post(gateway, json=body, headers={"Authorization": f"Bearer {token}"})
    assert created.status_code == 200 and created.json()["authorId"] == install.account_id
    assert created.headers["x-ratelimit-limit"] == "65000"


async def test_anything_else_is_401(client: httpx.AsyncClient) -> None:
    for header in (
        {},
        {"Authorization": "Basic !!!"},
        {"Authorization": basic(token="wrong")},
        {"Authorization": "Token abc"},
    ):
        response = await client.get("/wiki/api/v2/spaces", headers=header or {"Authorization": ""})
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("text/plain")


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def admin_client(sim: Simulator) -> httpx.AsyncClient:
    """The simulator in-process, called as its admin (Basic); app calls add their own JWT."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(sim)),
        base_url=SITE,
        headers={"Authorization": basic()},
    )


@pytest.fixture
def timed(fake: FakeTime, keys: Any) -> Simulator:
    start = 1_800_000_000.0  # 2027-01-15T08:00:00Z, on the hour
    return build(api_token=TOKEN, keys=keys, clock=Clock(start=start, monotonic=fake))


async def test_points_quota_headers_and_429(timed: Simulator) -> None:
    _install(timed)
    async with admin_client(timed) as c:
        await c.post("/_sim/spaces", json={"key": "DEV", "name": "Dev"})
        await c.put("/_sim/ratelimit", json={"appQuota": 20})
        path = "/wiki/api/v2/spaces"
        first = await c.get(path, headers=_jwt("GET", path))
        assert first.headers["x-ratelimit-limit"] == "20"
        assert first.headers["x-ratelimit-remaining"] == "18"  # 1 + one space returned
        assert first.headers["x-ratelimit-reset"] == "2027-01-15T09:00:00.000Z"
        assert first.headers["x-ratelimit-nearlimit"] == "false"
        basic_call = await c.get(path)
        assert "x-ratelimit-remaining" not in basic_call.headers  # API tokens: burst limits only
        statuses = [(await c.get(path, headers=_jwt("GET", path))).status_code for _ in range(9)]
        assert statuses == [200] * 9
        limited = await c.get(path, headers=_jwt("GET", path))
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "3600"
        assert limited.headers["ratelimit-reason"] == "confluence-quota-global-based"
        assert limited.headers["x-ratelimit-nearlimit"] == "true"
        assert limited.json()["errors"][0]["status"] == 429
        assert (await c.get(path)).status_code == 200  # Basic traffic is not on the quota
        await c.put("/_sim/clock", json={"advance": 3600})
        assert (await c.get(path, headers=_jwt("GET", path))).status_code == 200
        await c.put("/_sim/ratelimit", json={"tenantQuota": 3})
        (await c.get(path, headers=_jwt("GET", path)))
        tenant = await c.get(path, headers=_jwt("GET", path))
        assert tenant.status_code == 429
        assert tenant.headers["ratelimit-reason"] == "confluence-quota-tenant-based"
        counters = (await c.get("/_sim/counters")).json()
        assert counters["pointsSpent"] >= 20
        assert counters["calls"]["GET /wiki/api/v2/spaces 429"] == 2


async def test_burst_limits_and_time_scale(timed: Simulator, fake: FakeTime) -> None:
    async with admin_client(timed) as c:
        await c.put("/_sim/ratelimit", json={"burst": {"GET": 3, "PUT": 1}})
        statuses = [(await c.get("/wiki/api/v2/spaces")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        burst = await c.get("/wiki/api/v2/spaces")
        assert burst.headers["ratelimit-reason"] == "confluence-burst-based"
        assert burst.headers["retry-after"] == "1"
        fake.now += 1.0
        assert (await c.get("/wiki/api/v2/spaces")).status_code == 200
        await c.put("/_sim/clock", json={"scale": 3600})
        before = timed.clock.time()
        fake.now += 1.0
        assert timed.clock.time() - before == pytest.approx(3600)


async def test_faults_storm_and_errors(timed: Simulator, fake: FakeTime) -> None:
    """A storm is an overload, answered as a burst limit is: until the storm ends, not the
    hour's reset, and without the quota counters (the quota is not what ran out)."""
    _install(timed)
    path = "/wiki/api/v2/spaces"
    async with admin_client(timed) as c:
        await c.put("/_sim/faults", json={"storm429Seconds": 60})
        fake.now += 15.0
        stormed = await c.get(path, headers=_jwt("GET", path))
        assert stormed.status_code == 429
        assert {k: v for k, v in stormed.headers.items() if "rate" in k or "retry" in k} == {
            "retry-after": "45",
            "ratelimit-reason": "confluence-burst-based",
            "x-ratelimit-reset": "2027-01-15T08:01:00.000Z",  # now + Retry-After
        }
        await c.put("/_sim/ratelimit", json={"burst": {"GET": 1}})
        await c.get(path)
        burst = await c.get(path)
        assert burst.status_code == 429
        assert {k: v for k, v in burst.headers.items() if "rate" in k or "retry" in k} == {
            "retry-after": "1",
            "ratelimit-reason": "confluence-burst-based",
            "x-ratelimit-reset": "2027-01-15T08:00:16.000Z",
        }
        fake.now += 1.0
        assert (await c.get(path)).status_code == 200  # Basic traffic: no storm
        fake.now += 45.0
        after = await c.get(path, headers=_jwt("GET", path))
        assert after.status_code == 200 and after.headers["x-ratelimit-remaining"]
        await c.put("/_sim/faults", json={"error_rate": 1.0})
        failed = await c.get(path)
        assert failed.status_code == 503
        bad = await c.put("/_sim/faults", json={"error_rate": "lots"})
        assert bad.status_code == 400 and bad.json()["error"] == "bad_request"


async def test_act_as_user_grant(
    client: httpx.AsyncClient, sim: Simulator, space: dict[str, Any]
) -> None:
    from app.atlassian.connect_jwt import build_user_assertion

    app = _install(sim)
    app.oauth_client_id = "oauth-client-1"
    ann = (await client.post("/_sim/users", json={"email": "ann@example.com"})).json()

    def assertion(secret: str = SECRET) -> str:
        return build_user_assertion(
            oauth_client_id="oauth-client-1",
            secret=secret,
            account_id=ann["accountId"],
            tenant_base_url=f"{SITE}/wiki",
        )

    form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion()}
    no_scope = await client.post("/oauth2/token", data=form)
    assert no_scope.status_code == 400 and no_scope.json() == {"error": "invalid_grant"}
    app.scopes = ["READ", "WRITE", "ACT_AS_USER"]
    forged = await client.post("/oauth2/token", data={**form, "assertion": assertion("x" * 40)})
    assert forged.status_code == 400
    granted = await client.post("/oauth2/token", data=form)
    assert granted.status_code == 200 and granted.json()["token_type"] == "Bearer"
    bearer = {"Authorization": f"Bearer {granted.json()['access_token']}"}
    body = {
        "spaceId": space["id"],
        "title": "As Ann",
        "body": {"representation": "storage", "value": "x"},
    }
    made = await client.post("/wiki/api/v2/pages", json=body, headers=bearer)
    assert made.status_code == 200 and made.json()["authorId"] == ann["accountId"]
    assert made.headers["x-ratelimit-limit"] == "65000"  # spends the app's points


async def test_connect_scopes_bound_what_the_app_may_do(
    client: httpx.AsyncClient, sim: Simulator, space: dict[str, Any]
) -> None:
    app = _install(sim)
    page = await make_page(client, space["id"], "Scoped")
    path = f"/wiki/api/v2/pages/{page['id']}"
    deleted = await client.delete(path, headers=_jwt("DELETE", path))
    assert deleted.status_code == 403
    assert deleted.json()["errors"][0]["title"] == "The app's scopes do not include DELETE."
    app.scopes = ["READ"]
    body = {
        "spaceId": space["id"],
        "title": "No",
        "body": {"representation": "storage", "value": ""},
    }
    refused = await client.post(
        "/wiki/api/v2/pages", json=body, headers=_jwt("POST", "/wiki/api/v2/pages")
    )
    assert refused.status_code == 403
    assert (await client.get(path, headers=_jwt("GET", path))).status_code == 200
    app.scopes = ["DELETE"]
    assert (await client.delete(path, headers=_jwt("DELETE", path))).status_code == 204


async def test_quota_before_enforcement_sends_beta_headers_and_refuses_nothing(
    timed: Simulator,
) -> None:
    """The pre-enforcement phase: points counted, beta headers, the would-be 429 served."""
    _install(timed)
    async with admin_client(timed) as c:
        await c.post("/_sim/spaces", json={"key": "DEV", "name": "Dev"})
        state = (await c.put("/_sim/ratelimit", json={"appQuota": 10, "enforce": False})).json()
        assert state["enforce"] is False
        path = "/wiki/api/v2/spaces"
        first = await c.get(path, headers=_jwt("GET", path))
        assert first.status_code == 200
        assert first.headers["beta-ratelimit-policy"] == '"global-app-quota";q=10;w=3600'
        assert first.headers["beta-ratelimit"] == '"global-app-quota";r=8;t=3600'
        assert first.headers["x-beta-ratelimit-nearlimit"] == "false"
        assert "x-ratelimit-remaining" not in first.headers  # nothing enforced: no such header
        seen = observe(first.status_code, first.headers.items(), now=timed.clock.time())
        assert (seen.limit, seen.remaining, seen.retry_after) == (10, 8, None)
        statuses = [(await c.get(path, headers=_jwt("GET", path))).status_code for _ in range(3)]
        last = await c.get(path, headers=_jwt("GET", path))  # spends the last 2 points
        assert statuses == [200] * 3 and last.status_code == 200
        assert last.headers["beta-ratelimit"] == '"global-app-quota";r=0;t=3600'
        assert "beta-retry-after" not in last.headers  # enforced, this one is a 200 too
        assert "beta-ratelimit-policy" in last.headers
        past = await c.get(path, headers=_jwt("GET", path))  # enforced, this would be the 429
        assert past.status_code == 200 and past.headers["beta-retry-after"] == "3600"
        over = await c.get(path, headers=_jwt("GET", path))
        assert over.status_code == 200
        assert over.headers["beta-retry-after"] == "3600"
        assert over.headers["x-beta-ratelimit-reason"] == "confluence-quota-global-based"
        assert over.headers["x-beta-ratelimit-reset"] == "2027-01-15T09:00:00.000Z"
        assert over.headers["beta-ratelimit"] == '"global-app-quota";r=0;t=3600'
        assert "beta-ratelimit-policy" not in over.headers
        assert "retry-after" not in over.headers
        seen = observe(over.status_code, over.headers.items(), now=timed.clock.time())
        assert seen.remaining == 0 and seen.near_limit
        assert seen.retry_after is None and seen.reason is None  # a warning on a 200, no stop
        refused = await c.put("/_sim/ratelimit", json={"appQuota": 5, "enforce": "no"})
        assert refused.status_code == 400
        assert refused.json() == {"error": "bad_request", "detail": "enforce must be true or false"}
        assert (await c.get("/_sim/ratelimit")).json()["appQuota"] == 10  # nothing applied
        await c.put("/_sim/ratelimit", json={"enforce": True})
        enforced = await c.get(path, headers=_jwt("GET", path))
        assert enforced.status_code == 429 and enforced.headers["retry-after"] == "3600"


async def test_a_site_with_its_own_quota_is_held_to_it_even_above_the_shared_one(
    timed: Simulator,
) -> None:
    """Atlassian's per-tenant tier: the site's quota replaces the app's shared one (it was
    seen at 100,100 points against the shared 65,000)."""
    _install(timed)
    async with admin_client(timed) as c:
        await c.post("/_sim/spaces", json={"key": "DEV", "name": "Dev"})
        await c.put("/_sim/ratelimit", json={"appQuota": 4, "tenantQuota": 10})
        path = "/wiki/api/v2/spaces"
        answers = [await c.get(path, headers=_jwt("GET", path)) for _ in range(6)]
        assert [a.status_code for a in answers] == [200] * 5 + [429]  # 2 points each, 10 in all
        assert answers[0].headers["x-ratelimit-limit"] == "10"
        assert answers[5].headers["ratelimit-reason"] == "confluence-quota-tenant-based"
        await c.put("/_sim/clock", json={"advance": 3600})
        await c.put("/_sim/ratelimit", json={"enforce": False})
        beta = await c.get(path, headers=_jwt("GET", path))
        assert beta.headers["beta-ratelimit-policy"] == '"tenant-app-quota";q=10;w=3600'
        seen = observe(beta.status_code, beta.headers.items(), now=timed.clock.time())
        assert seen.tenant_scoped and seen.limit == 10
