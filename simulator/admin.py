"""The admin API under ``/_sim/``: set up the site, act as users, install apps, inject faults,
read counters. Separate from the product API; errors are ``{"error": code, "detail": text}``.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from simulator import comments, content
from simulator.api import Ctx, site_base
from simulator.auth import token_key
from simulator.demo import actor_ctx, random_activity
from simulator.errors import ApiError
from simulator.install import InstallError, install, uninstall
from simulator.site import Simulator
from simulator.spaces import create_space
from simulator.store import ACCESS_ORDER, Attachment, ForgeInstall, Token, User
from simulator.views import content as content_view
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


def _user(sim: Simulator, ref: Any) -> User:
    user = sim.store.find_user(str(ref or ""))
    if user is None:
        raise AdminError(404, "unknown_user", "no user with this account id or email")
    return user


def _ctx(request: Request, sim: Simulator, user: User, body: Any, **params: str) -> Ctx:
    return actor_ctx(sim, user.account_id, body, site_base(sim, request), **params)


def _hub(request: Request) -> Hub:
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
    owner = _user(sim, body.get("as", "admin@example.com"))
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
    user = _user(sim, body.get("user"))
    access = str(body["access"])
    if access not in ACCESS_ORDER:
        raise AdminError(400, "bad_access", "access is none, read, write or admin")
    space.access[user.account_id] = access
    return {"space": space.key, "accountId": user.account_id, "access": access}


# -- acting as a user ---------------------------------------------------------------------
def _storage(text: Any) -> dict[str, str]:
    value = str(text or "")
    return {
        "representation": "storage",
        "value": value if value.startswith("<") else f"<p>{value}</p>",
    }


async def act_create_page(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    user = _user(sim, body.get("as"))
    space_id = body.get("spaceId")
    if space_id is None:
        space = sim.store.space_by_key(str(body.get("spaceKey")))
        if space is None:
            raise AdminError(404, "unknown_space", "no space with this key")
        space_id = space.id
    payload = {
        "spaceId": str(space_id),
        "status": body.get("status", "current"),
        "title": body.get("title"),
        "body": _storage(body.get("body")),
        "parentId": body.get("parentId"),
    }
    ctx = _ctx(request, sim, user, payload)
    return content.create(ctx, str(body.get("type", "page"))).data


async def act_edit(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    user = _user(sim, body.get("as"))
    item = sim.store.contents.get(request.path_params["id"])
    if item is None:
        raise AdminError(404, "unknown_content", "no such page or blog post")
    payload = {
        "id": item.id,
        "status": "current",
        "title": body.get("title", item.title),
        "body": _storage(body["body"])
        if "body" in body
        else {"representation": item.current.representation, "value": item.current.value},
        "version": {"number": item.current.number + 1, "message": body.get("message", "")},
    }
    ctx = _ctx(request, sim, user, payload, id=item.id)
    return content.update(ctx, item.type).data


async def act_comment(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    user = _user(sim, body.get("as"))
    payload: dict[str, Any] = {"body": _storage(body.get("body"))}
    for name in ("pageId", "blogPostId", "parentCommentId", "inlineCommentProperties"):
        if body.get(name) is not None:
            payload[name] = body[name]
    kind = "inline" if body.get("inlineCommentProperties") else "footer"
    return comments.create(_ctx(request, sim, user, payload), kind).data


async def act_label(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    user = _user(sim, body.get("as"))
    item = sim.store.contents.get(str(body["contentId"]))
    space = sim.store.spaces.get(item.space_id) if item else None
    if item is None or space is None or not sim.store.can(user.account_id, space, "write"):
        raise AdminError(404, "unknown_content", "no such content, or the user may not edit it")
    label = sim.store.label_named(str(body["name"]).lower())
    if body.get("remove"):
        if label.id in item.label_ids:
            item.label_ids.remove(label.id)
            sim.emit("label_removed", "label", label.id, user.account_id, contentId=item.id)
    elif label.id not in item.label_ids:
        item.label_ids.append(label.id)
        sim.emit("label_added", "label", label.id, user.account_id, contentId=item.id)
    return {"contentId": item.id, "labels": [sim.store.labels[i].name for i in item.label_ids]}


async def act_attach(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    user = _user(sim, body.get("as"))
    item = sim.store.contents.get(str(body["contentId"]))
    if item is None:
        raise AdminError(404, "unknown_content", "no such page or blog post")
    att = Attachment(
        id=f"att{sim.store.new_id()}",
        container_id=item.id,
        container_type=item.type,
        title=str(body.get("fileName", "file.txt")),
        media_type=str(body.get("mediaType", "text/plain")),
        file_size=int(body.get("size", 0)),
        author_id=user.account_id,
        created_at=sim.clock.iso(),
    )
    sim.store.attachments[att.id] = att
    sim.emit("attachment_created", "attachment", att.id, user.account_id)
    return {"id": att.id, "contentId": item.id}


async def act_random(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    return random_activity(sim, site_base(sim, request))


async def act_page(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    user = _user(sim, request.query_params.get("as", "admin@example.com"))
    item = sim.store.contents.get(request.path_params["id"])
    if item is None:
        raise AdminError(404, "unknown_content", "no such page")
    ctx = _ctx(request, sim, user, None)
    return content_view(sim.store, item, formats=["storage"], base=ctx.base)


# -- apps, tokens, faults, counters -------------------------------------------------------
async def connect_install(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    try:
        app = await install(
            sim, request.app.state.http, str(body["descriptorUrl"]), site_base(sim, request)
        )
    except InstallError as exc:
        raise AdminError(502, "install_failed", str(exc)) from None
    return {
        "key": app.key,
        "clientKey": app.client_key,
        "accountId": app.account_id,
        "baseUrl": app.base_url,
        "webhooks": sorted(app.webhooks),
    }


async def connect_uninstall(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    done = await uninstall(
        sim, request.app.state.http, request.path_params["key"], site_base(sim, request)
    )
    if not done:
        raise AdminError(404, "unknown_app", "no installed app with this key")
    return Response(status_code=204)


async def forge_install(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    from simulator.payloads import FORGE_NAMES

    app_id = str(body["appId"])
    user = sim.store.add_user(
        f"{uuid.uuid4().hex[:8]}@forge.atlassian.com",
        str(body.get("name", "Forge app")),
        api_token="",
        account_type="app",
    )
    forge = ForgeInstall(
        app_id=app_id,
        installation_id=f"ari:cloud:ecosystem::installation/{uuid.uuid4()}",
        remote_url=str(body["url"]),
        events=list(body.get("events") or FORGE_NAMES.values()),
        account_id=user.account_id,
        environment=str(body.get("environment", "DEVELOPMENT")),
    )
    sim.store.forge_apps[forge.installation_id] = forge
    return {
        "installationId": forge.installation_id,
        "accountId": user.account_id,
        "apiBaseUrl": _hub(request).api_base_url(),
        "events": forge.events,
    }


async def forge_uninstall(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    if sim.store.forge_apps.pop(request.path_params["installation"], None) is None:
        raise AdminError(404, "unknown_installation", "no such Forge installation")
    return Response(status_code=204)


async def apps(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    return {
        "connect": [
            {
                "key": a.key,
                "clientKey": a.client_key,
                "baseUrl": a.base_url,
                "accountId": a.account_id,
                "webhooks": sorted(a.webhooks),
            }
            for a in sim.store.connect_apps.values()
        ],
        "forge": [
            {
                "appId": f.app_id,
                "installationId": f.installation_id,
                "url": f.remote_url,
                "accountId": f.account_id,
            }
            for f in sim.store.forge_apps.values()
        ],
    }


async def oauth_token(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    user = _user(sim, body.get("as"))
    lifetime = int(body.get("expiresIn", 3600))
    raw = secrets.token_urlsafe(32)
    sim.store.tokens[token_key(raw)] = Token("oauth", user.account_id, time.time() + lifetime)
    return {
        "access_token": raw,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": "read:page:confluence write:page:confluence",
    }


async def faults(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    if request.method == "PUT":
        storm = body.pop("storm429Seconds", None)
        sim.faults.update(body)
        if storm is not None:
            sim.faults.storm_until = sim.clock.time() + float(storm)
    return sim.faults.as_dict()


async def counters(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    return sim.counters.as_dict(sim.limiter.points_total)


async def webhook_log(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    if request.method == "POST":
        await _hub(request).drain(float(body.get("timeout", 10)))
    return [
        {k: v for k, v in asdict(d).items() if k != "body"} | {"body": d.body}
        for d in _hub(request).log
    ]


async def ratelimit(request: Request, sim: Simulator, body: dict[str, Any]) -> Any:
    if "appQuota" in body:
        sim.limiter.app_quota = int(body["appQuota"])
    if "tenantQuota" in body:
        if body["tenantQuota"] is None:
            sim.limiter.tenant_quotas.pop(sim.store.cloud_id, None)
        else:
            sim.limiter.tenant_quotas[sim.store.cloud_id] = int(body["tenantQuota"])
    if "burst" in body:
        sim.limiter.burst_rates.update({k.upper(): float(v) for k, v in body["burst"].items()})
    return {
        "appQuota": sim.limiter.app_quota,
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
    admin("/act/pages", act_create_page, "POST"),
    admin("/act/pages/{id}", act_page),
    admin("/act/pages/{id}/edit", act_edit, "POST"),
    admin("/act/comments", act_comment, "POST"),
    admin("/act/labels", act_label, "POST"),
    admin("/act/attachments", act_attach, "POST"),
    admin("/act/random", act_random, "POST"),
    admin("/apps", apps),
    admin("/apps/connect", connect_install, "POST"),
    admin("/apps/connect/{key}", connect_uninstall, "DELETE"),
    admin("/apps/forge", forge_install, "POST"),
    admin("/apps/forge/{installation:path}", forge_uninstall, "DELETE"),
    admin("/oauth/tokens", oauth_token, "POST"),
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
