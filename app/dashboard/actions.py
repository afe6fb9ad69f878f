"""Operator actions from the pages: dead-letter retry and discard, each confirmed first.

A first POST (no ``confirm``) answers a confirmation page naming what will happen; only the
POST from that page (``confirm=yes``) acts. Every action is written to the audit log.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from app.dashboard import auth, views
from app.dashboard.audit import AuditLog
from app.settings import Settings


def _audit(request: Request) -> AuditLog:
    settings: Settings = request.app.state.settings
    return AuditLog(request.app.state.redis, settings.redis_prefix)


def _selection(form: dict[str, list[str]]) -> tuple[str, list[str]]:
    one = auth.first(form, "one")
    if one:
        return ("selected", [one])
    ids = list(dict.fromkeys(i for i in form.get("id", []) if i))  # each once
    return ("all", []) if auth.first(form, "scope") == "all" else ("selected", ids)


async def _act(request: Request, action: str) -> Response:
    from app.dashboard.routes import render

    form: dict[str, list[str]] = request.state.form
    scope, ids = _selection(form)
    if scope == "selected" and not ids:
        return RedirectResponse("/dashboard/dead?done=nothing+selected", status_code=303)
    if auth.first(form, "confirm") != "yes":
        count = len(ids) if scope == "selected" else await views.dead_letter_count(request)
        return render(
            request, "confirm.html", "dead", action=action, scope=scope, ids=ids, count=count
        )
    result: dict[str, Any] = await views.dead_letter_action(request, action, scope, ids)
    await _audit(request).record(
        request.state.operator.id,
        f"dead_letter_{action}",
        target="all" if scope == "all" else ",".join(ids[:20]),
        outcome="ok" if result.get("ok") else "failed",
        detail=result,
    )
    message = f"{action}: {result.get('count', 0)} dead letter(s)"
    skipped = result.get("not_dead") or []
    if skipped:
        message += f"; {len(skipped)} id(s) skipped: not dead letters (any more)"
    closing = result.get("closing") or []
    if closing:
        message += f"; {len(closing)} id(s) still being closed by a worker: try again"
    if not result.get("ok"):
        message = f"{action} failed: {result.get('detail', 'unknown error')}"
    return RedirectResponse(f"/dashboard/dead?done={message}", status_code=303)


@auth.page
async def retry(request: Request) -> Response:
    return await _act(request, "retry")


@auth.page
async def discard(request: Request) -> Response:
    return await _act(request, "discard")


page_routes = [
    Route("/dead/retry", retry, methods=["POST"]),
    Route("/dead/discard", discard, methods=["POST"]),
]
