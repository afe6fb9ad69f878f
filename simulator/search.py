"""v1 search: ``/wiki/rest/api/search`` (CQL over content) and ``/wiki/rest/api/search/user``.

v1 pages by an opaque cursor too, but its ``_links.next`` is relative to ``_links.base`` (no
``/wiki``), the opposite of v2.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import urlencode

from simulator import content as content_rules
from simulator.api import Ctx, Reply, operation
from simulator.bodies import plain_text
from simulator.cql import CqlError, parse
from simulator.errors import ApiError, V1ApiError
from simulator.store import Content, Store, User
from simulator.views import content_links


def _when(iso: str) -> datetime:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _doc(store: Store, item: Content) -> dict[str, Any]:
    space = store.spaces[item.space_id]
    return {
        "id": item.id,
        "type": item.type,
        "space": space.key,
        "title": item.title,
        "text": f"{item.title}\n{plain_text(item.current.representation, item.current.value)}",
        "label": [store.labels[i].name for i in item.label_ids],
        "creator": item.author_id,
        "contributor": sorted({r.author_id for r in item.revisions}),
        "created": _when(item.created_at),
        "lastmodified": _when(item.current.created_at),
        "parent": item.parent_id or "",
        "ancestor": [a.id for a in store.ancestors(item)],
        "_item": item,
    }


def _sort_value(doc: dict[str, Any], field: str) -> str:
    value = doc[field]
    return value.isoformat() if isinstance(value, datetime) else str(value).lower()


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(ctx: Ctx) -> int:
    raw = ctx.query.get("cursor")
    if not raw:
        return 0
    try:
        text = base64.urlsafe_b64decode(raw.encode()).decode()
        return int(text.removeprefix("offset:")) if text.startswith("offset:") else -1
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return -1


INT32_MAX = 2**31 - 1


def _system_limit(ctx: Ctx) -> int:
    """The most hits one page holds, whatever ``limit`` asks: v1's ``limit`` has no maximum
    ("this may be restricted by fixed system limits"). 25 when ``expand`` names
    ``body.export_view`` or ``body.styled_view`` (Cloud's search docs); otherwise the figures
    Atlassian publishes for Data Center's CQL search: 50 with a body expansion, 200 with other
    expansions, 1000 without. Cloud's own caps are UNVERIFIED."""
    names = [n.strip() for n in (ctx.query.get("expand") or "").split(",") if n.strip()]
    if any(n.endswith(("body.export_view", "body.styled_view")) for n in names):
        return 25
    if any("body" in n.split(".") for n in names):
        return 50
    return 200 if names else 1000


def _window(ctx: Ctx, total: int) -> tuple[int, int, str | None]:
    """A large ``limit`` is capped (the answer's ``limit`` says by how much), not refused;
    ``limit=0`` answers no hits and no next link."""
    asked = ctx.query.integer("limit", 25, 0, INT32_MAX)
    assert asked is not None
    limit = min(asked, _system_limit(ctx))
    offset = _offset(ctx)
    if offset < 0:
        raise ApiError(400, "INVALID_REQUEST_PARAMETER", "The cursor is not valid.")
    nxt = None
    if limit and offset + limit < total:
        rest = ctx.query.without("cursor", "next")
        path = ctx.path.removeprefix("/wiki")
        nxt = f"{path}?{urlencode([*rest, ('next', 'true'), ('cursor', _cursor(offset + limit))])}"
    return offset, limit, nxt


def _envelope(
    ctx: Ctx,
    cql: str,
    results: list[dict[str, Any]],
    offset: int,
    limit: int,
    total: int,
    nxt: str | None,
) -> dict[str, Any]:
    links: dict[str, str] = {
        "base": ctx.base,
        "context": "/wiki",
        "self": f"{ctx.base}{ctx.path.removeprefix('/wiki')}",
    }
    if nxt:
        links["next"] = nxt
    return {
        "results": results,
        "start": offset,
        "limit": limit,
        "size": len(results),
        "totalSize": total,
        "cqlQuery": cql,
        "searchDuration": 3,
        "_links": links,
    }


# What ``expand`` can name on a hit's content (v1 names, ``content.`` prefixed). Other names
# are ignored; what was not expanded is listed under ``_expandable``.
EXPANDABLE = ("space", "version", "history", "body.storage", "metadata.labels")


def _expand(ctx: Ctx) -> set[str]:
    names = (n.strip() for n in (ctx.query.get("expand") or "").split(","))
    return {n.removeprefix("content.") for n in names if n.startswith("content.")} & set(EXPANDABLE)


def _v1_user(store: Store, account_id: str) -> dict[str, Any]:
    user = store.users.get(account_id)
    return user_view(user) if user else {"type": "unknown", "accountId": account_id}


def _expanded(ctx: Ctx, item: Content, asked: set[str]) -> dict[str, Any]:
    """The ``content.*`` parts of one hit that ``expand`` asked for, and ``_expandable``."""
    store = ctx.sim.store
    space = store.spaces[item.space_id]
    rev = item.current
    parts: dict[str, Any] = {
        "space": {
            "id": int(space.id) if space.id.isdigit() else space.id,
            "key": space.key,
            "name": space.name,
            "type": space.type,
            "status": space.status,
        },
        "version": {
            "by": _v1_user(store, rev.author_id),
            "when": rev.created_at,
            "number": rev.number,
            "message": rev.message,
            "minorEdit": rev.minor_edit,
        },
        "history": {
            "latest": True,
            "createdBy": _v1_user(store, item.author_id),
            "createdDate": item.created_at,
        },
    }
    out: dict[str, Any] = {k: v for k, v in parts.items() if k in asked}
    if "body.storage" in asked:
        out["body"] = {"storage": {"value": rev.value, "representation": "storage"}}
    if "metadata.labels" in asked:
        labels = [store.labels[i] for i in item.label_ids]
        results = [{"prefix": lb.prefix, "name": lb.name, "id": lb.id} for lb in labels]
        out["metadata"] = {
            "labels": {"results": results, "start": 0, "limit": 200, "size": len(results)}
        }
    expandable = {"space", "version", "history", "body", "metadata", "container", "ancestors"}
    expandable -= set(out)
    out["_expandable"] = {
        name: f"/rest/api/content/{item.id}?expand={name}" for name in sorted(expandable)
    }
    return out


def search(ctx: Ctx) -> Reply:
    cql = ctx.query.get("cql") or ""
    asked = _expand(ctx)
    store = ctx.sim.store
    try:
        query = parse(cql, now=ctx.sim.clock.now(), current_user=ctx.me)
    except CqlError as exc:
        raise ApiError(
            400, "INVALID_REQUEST_PARAMETER", f"Could not parse cql : {cql}", str(exc)
        ) from None
    docs = [
        _doc(store, c)
        for c in store.contents.values()
        if c.status == "current" and content_rules.visible(ctx, c, ["current"])
    ]
    hits = [d for d in docs if query.match(d)]
    for field, desc in reversed(query.order or [("lastmodified", True)]):
        hits.sort(key=partial(_sort_value, field=field), reverse=desc)
    offset, limit, nxt = _window(ctx, len(hits))
    results = []
    for doc in hits[offset : offset + limit]:
        item: Content = doc["_item"]
        links = content_links(store, item)
        space = store.spaces[item.space_id]
        results.append(
            {
                "content": {
                    "id": item.id,
                    "type": item.type,
                    "status": item.status,
                    "title": item.title,
                    "_links": {
                        "webui": links["webui"],
                        "self": f"{ctx.base}/rest/api/content/{item.id}",
                    },
                    **_expanded(ctx, item, asked),
                },
                "title": item.title,
                "excerpt": doc["text"][len(item.title) + 1 :][:200],
                "url": links["webui"],
                "resultGlobalContainer": {
                    "title": space.name,
                    "displayUrl": f"/spaces/{space.key}",
                },
                "breadcrumbs": [],
                "entityType": "content",
                "iconCssClass": "aui-icon content-type-" + item.type,
                "lastModified": item.current.created_at,
                "friendlyLastModified": item.current.created_at[:10],
                "score": 1.0,
            }
        )
    return Reply(_envelope(ctx, cql, results, offset, limit, len(hits), nxt), objects=len(results))


_USER_CLAUSE = re.compile(
    r"user(?:\.fullname)?\s*~\s*[\"']([^\"']*)[\"']|user(?:\.accountid)?\s*=\s*[\"']?([\w:\-]+)",
    re.IGNORECASE,
)


def user_view(user: User) -> dict[str, Any]:
    return {
        "type": "known",
        "accountId": user.account_id,
        "accountType": user.account_type,
        "publicName": user.display_name,
        "displayName": user.display_name,
        "profilePicture": {
            "path": "/wiki/aa-avatar/default.png",
            "width": 48,
            "height": 48,
            "isDefault": True,
        },
    }


def search_user(ctx: Ctx) -> Reply:
    cql = ctx.query.get("cql") or ""
    if not re.search(r"type\s*=\s*[\"']?user", cql, re.IGNORECASE):
        raise ApiError(400, "INVALID_REQUEST_PARAMETER", "User search needs type=user in cql.")
    users = list(ctx.sim.store.users.values())
    for m in _USER_CLAUSE.finditer(cql):
        name, account = m.group(1), m.group(2)
        if name is not None:
            users = [u for u in users if name.lower() in u.display_name.lower()]
        elif account:
            users = [u for u in users if u.account_id == account]
    users.sort(key=lambda u: u.display_name.lower())
    offset, limit, nxt = _window(ctx, len(users))
    results = [
        {
            "user": user_view(u),
            "title": u.display_name,
            "excerpt": "",
            "url": "",
            "entityType": "user",
            "iconCssClass": "aui-icon content-type-profile",
            "lastModified": ctx.sim.clock.iso(),
            "score": 1.0,
        }
        for u in users[offset : offset + limit]
    ]
    return Reply(
        _envelope(ctx, cql, results, offset, limit, len(users), nxt), objects=2 * len(results)
    )


def _v1_errors(handler: Callable[[Ctx], Reply]) -> Callable[[Ctx], Reply]:
    """A v1 route answers its errors in v1's shape (``statusCode``, ``message``)."""

    def answer(ctx: Ctx) -> Reply:
        try:
            return handler(ctx)
        except V1ApiError:
            raise
        except ApiError as exc:
            raise V1ApiError(exc.status, exc.code, exc.title, exc.detail) from None

    return answer


routes = [
    operation("/search", _v1_errors(search)),
    operation("/search/user", _v1_errors(search_user)),
]
