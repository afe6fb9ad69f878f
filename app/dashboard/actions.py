"""Operator actions from the pages: dead-letter retry and discard, each confirmed first.

A first POST (no ``confirm``) answers a confirmation page naming what will happen; only the
POST from that page (``confirm=yes``) acts. Every action is written to the audit log.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from app.dashboard import auth, views
from app.dashboard.audit import AuditLog
from app.settings import Settings

ACTIONS = ("retry", "discard")
MAX_COUNT_DIGITS = 9  # a count in the notice's query: more is not a count an action made


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
        return RedirectResponse("/dashboard/dead?done=nothing", status_code=303)
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
        detail=views.audit_detail(result),
    )
    return RedirectResponse(f"/dashboard/dead?{outcome_query(action, result)}", status_code=303)


def outcome_query(action: str, result: dict[str, Any]) -> str:
    """The query string that tells the Dead letters page what an action did: a code and counts,
    never text. The page words its own notice (:func:`notice`)."""
    counts = {
        "count": int(result.get("count") or 0),
        "skipped": len(result.get("not_dead") or []) + len(result.get("unknown") or []),
        "closing": len(result.get("closing") or []),
    }
    done = action if result.get("ok") else f"{action}-failed"
    return urlencode({"done": done, **{k: n for k, n in counts.items() if n}})


def notice(query: Mapping[str, str]) -> str:
    """The Dead letters page's notice for the ``done`` code an action's redirect carries (with
    its counts); nothing for no code, an unknown one or a malformed count."""
    code = query.get("done", "")
    if code == "nothing":
        return "Nothing selected."
    action, _, failed = code.partition("-")
    counts = [_count(query, name) for name in ("count", "skipped", "closing")]
    if action not in ACTIONS or failed not in ("", "failed") or None in counts:
        return ""
    done, skipped, closing = (n or 0 for n in counts)
    parts = [f"{action} failed" if failed else f"{action}: {done} dead letter(s)"]
    if skipped:
        parts.append(f"{skipped} id(s) skipped: not dead letters (any more, or unknown)")
    if closing:
        parts.append(f"{closing} id(s) still being closed by a worker: try again")
    return "; ".join(parts)


def _count(query: Mapping[str, str], name: str) -> int | None:
    """A count of the query (0 when absent), or None when it is not a plain number."""
    raw = query.get(name, "0")
    if raw.isascii() and raw.isdigit() and len(raw) <= MAX_COUNT_DIGITS:
        return int(raw)
    return None


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
