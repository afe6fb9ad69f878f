"""The reaction the end-to-end benchmark and the scale-out tests run: one footer comment per edit.

``REACTOR_REACTIONS=bench.reactions``. The comment names the tenant, the page version and the
event id, so a test can count effects per event (exactly once) and read the versions of a
page's comments in creation order (per-content order).
"""

from __future__ import annotations

from app.atlassian.events import Event
from workers.context import ReactionContext
from workers.routing import Router

router = Router()


def stamp(event: Event) -> str:
    return f"<p>stamp {event.tenant} v{event.version} {event.id}</p>"


@router.on("page.updated", name="stamp")
async def comment_each_edit(event: Event, ctx: ReactionContext) -> None:
    await ctx.comment(stamp(event))
