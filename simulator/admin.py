"""The admin API under ``/_sim/``: set up the site, act as users, install apps, inject faults,
read counters. Separate from the product API; errors are ``{"error": code, "detail": text}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from simulator.api import Ctx, site_base
from simulator.demo import actor_ctx
from simulator.errors import ApiError
from simulator.site import Simulator
from simulator.spaces import create_space
from simulator.store import ACCESS_ORDER, User
from simulator.webhooks import Hub


class AdminError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        self.status, self.code, self.detail = status, code, detail
        super().__init__(detail)


AdminHandler = Callable[[Request, Simulator, dict[str, Any]], Awaitable[Any]]


def admin(path: str, handler: AdminHandler, method: str = "GET") -> Route:
    async def endpoint(request: Request) -> Response:
        sim: Simulator = request.app.state.sim
        body: dict[str, Any] = {}
        if method in ("POST", "PUT"):
            raw = await request.body()
            try:
                import json

                body = json.loads(raw) if raw else {}
            except ValueError:
                return JSONResponse({"error": "bad_json", "detail": "body is not JSON"}, 400)
            if not isinstance(body, dict):
                return JSONResponse({"error": "bad_json", "detail": "body must be an object"}, 400)
        try:
            result = await handler(request, sim, body)
        except AdminError as exc:
            return JSONResponse({"error": exc.code, "detail": exc.detail}, exc.status)
        except ApiError as exc:
            return JSONResponse({"error": exc.code.lower(), "detail": exc.title}, exc.status)
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"error": "bad_request", "detail": str(exc)[:200]}, 400)
        sim.save_soon()
        if isinstance(result, Response):
            return result
        return JSONResponse(result, status_code=201 if method == "POST" else 200)

    return Route(f"/_sim{path}", endpoint, methods=[method])


def find_user(sim: Simulator, ref: Any) -> User:
    user = sim.store.find_user(str(ref or ""))
    if user is None:
        raise AdminError(404, "unknown_user", "no user with this account id or email")
    return user


def request_ctx(request: Request, sim: Simulator, user: User, body: Any, **params: str) -> Ctx:
    return actor_ctx(sim, user.account_id, body, site_base(sim, request), **params)


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


# -- site setup ---------------------------------------------------------------------------
async def index(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    return {
        "site": site_base(sim, request),
        "cloudId": sim.store.cloud_id,
        "apiBaseUrl": f"{site_base(sim, request)[:-5]}/ex/confluence/{sim.store.cloud_id}",
        "installKeysUrl": f"{site_base(sim, request)[:-5]}/_sim/install-keys",
        "forgeJwksUrl": f"{site_base(sim, request)[:-5]}/_sim/forge/jwks.json",
        "users": [
            {
                "accountId": u.account_id,
                "email": u.email,
                "displayName": u.display_name,
                "accountType": u.account_type,
            }
            for u in sim.store.users.values()
        ],
        "spaces": [{"id": s.id, "key": s.key, "name": s.name} for s in sim.store.spaces.values()],
    }


async def add_user(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    email = str(body["email"])
    if sim.store.user_by_email(email):
        raise AdminError(409, "exists", "a user with this email exists")
    user = sim.store.add_user(
        email,
        str(body.get("displayName") or email.split("@")[0]),
        api_token=body.get("apiToken"),
        site_admin=bool(body.get("siteAdmin")),
    )
    return {"accountId": user.account_id, "email": user.email, "apiToken": user.api_token}


async def add_space(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    key = str(body["key"])
    if sim.store.space_by_key(key):
        raise AdminError(409, "exists", "a space with this key exists")
    owner = find_user(sim, body.get("as", "admin@example.com"))
    access = str(body.get("defaultAccess", "write"))
    if access not in ACCESS_ORDER:
        raise AdminError(400, "bad_access", "defaultAccess is none, read, write or admin")
    space = create_space(
        sim.store,
        key=key,
        name=str(body.get("name") or key),
        author_id=owner.account_id,
        now=sim.clock.iso(),
        description=str(body.get("description", "")),
        default_access=access,
    )
    return {"id": space.id, "key": space.key, "homepageId": space.homepage_id}


async def set_permission(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    space = sim.store.space_by_key(request.path_params["key"])
    if space is None:
        raise AdminError(404, "unknown_space", "no space with this key")
    user = find_user(sim, body.get("user"))
    access = str(body["access"])
    if access not in ACCESS_ORDER:
        raise AdminError(400, "bad_access", "access is none, read, write or admin")
    space.access[user.account_id] = access
    return {"space": space.key, "accountId": user.account_id, "access": access}


# -- faults, counters, clock, keys -------------------------------------------------------
async def faults(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    if request.method == "PUT":
        storm = body.pop("storm429Seconds", None)
        sim.faults.update(body)
        if storm is not None:
            sim.faults.storm_until = sim.clock.time() + float(storm)
    return sim.faults.as_dict()


async def counters(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    return sim.counters.as_dict(sim.limiter.points_total) | {
        "pointsByHour": sim.limiter.spent_by_hour()
    }


async def webhook_log(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    if request.method == "POST":
        await hub_of(request).drain(float(body.get("timeout", 10)))
    return [
        {k: v for k, v in asdict(d).items() if k != "body"} | {"body": d.body}
        for d in hub_of(request).log
    ]


async def ratelimit(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    # Every field is read and checked before any is applied: a refused body changes nothing.
    app_quota = int(body["appQuota"]) if "appQuota" in body else None
    tenant_quota = body.get("tenantQuota")
    if tenant_quota is not None:
        tenant_quota = int(tenant_quota)
    burst = {k.upper(): float(v) for k, v in body["burst"].items()} if "burst" in body else {}
    enforce = body.get("enforce")
    if "enforce" in body and not isinstance(enforce, bool):
        raise AdminError(400, "bad_request", "enforce must be true or false")
    if app_quota is not None:
        sim.limiter.app_quota = app_quota
    if "tenantQuota" in body:
        if tenant_quota is None:
            sim.limiter.tenant_quotas.pop(sim.store.cloud_id, None)
        else:
            sim.limiter.tenant_quotas[sim.store.cloud_id] = tenant_quota
    sim.limiter.burst_rates.update(burst)
    if isinstance(enforce, bool):
        sim.limiter.enforce = enforce
    return {
        "appQuota": sim.limiter.app_quota,
        "enforce": sim.limiter.enforce,
        "tenantQuota": sim.limiter.tenant_quotas.get(sim.store.cloud_id),
        "burst": sim.limiter.burst_rates,
        "pointsTotal": sim.limiter.points_total,
    }


async def clock(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    if "scale" in body:
        sim.clock.set_scale(float(body["scale"]))
    if "advance" in body:
        sim.clock.advance(float(body["advance"]))
    return {"now": sim.clock.iso(), "epoch": sim.clock.time(), "scale": sim.clock.scale}


async def install_key(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    if request.path_params["kid"] != sim.install_key.kid:
        return PlainTextResponse("Not Found", status_code=404)
    return PlainTextResponse(sim.install_key.public_pem())


async def jwks(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    return JSONResponse({"keys": [sim.forge_key.jwk()]})


async def save(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    if sim.state_path is None:
        raise AdminError(400, "no_state_file", "the simulator runs without --state")
    sim.save()
    return {"saved": str(sim.state_path)}


routes = [
    admin("/", index),
    admin("/users", add_user, "POST"),
    admin("/spaces", add_space, "POST"),
    admin("/spaces/{key}/permissions", set_permission, "PUT"),
    admin("/faults", faults),
    admin("/faults", faults, "PUT"),
    admin("/counters", counters),
    admin("/webhooks", webhook_log),
    admin("/webhooks/drain", webhook_log, "POST"),
    admin("/ratelimit", ratelimit),
    admin("/ratelimit", ratelimit, "PUT"),
    admin("/clock", clock),
    admin("/clock", clock, "PUT"),
    admin("/install-keys/{kid}", install_key),
    admin("/forge/jwks.json", jwks),
    admin("/state/save", save, "POST"),
]
