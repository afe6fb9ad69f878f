"""Secret scanner: redact credentials in a new version and tell the author what and where.

Pure part: :func:`scan` finds credentials in a storage-format body (text and code blocks);
:func:`redact` replaces each with ``[REDACTED <kind>]`` touching only character data, so the
markup stays intact; :func:`report` writes the comment: kinds and locations, never the secret.
The handler runs on new and updated pages, blog posts and comments.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.atlassian.events import Event
from app.confluence.errors import Forbidden, NotFound
from workers import regex_risk, storage
from workers.context import ReactionContext
from workers.reactions import Builtin, OptionError, check_options
from workers.reactions.secret_patterns import REDACTED_PREFIX, Hit, detect
from workers.routing import REGEX_ERRORS, Filters, Handler, Registration, Router

EVENTS = (
    "page.created",
    "page.updated",
    "blogpost.created",
    "blogpost.updated",
    "comment.created",
    "comment.updated",
)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    label: str
    location: str
    start: int  # in the flat text of the body (or the title)
    end: int
    in_title: bool = False


def marker(kind: str) -> str:
    return f"{REDACTED_PREFIX}{kind}]"


def _location(view: storage.TextView, hit: Hit) -> str:
    piece = view.piece_at(hit.start)
    block = view.text.count("\n", 0, hit.start) + 1
    if piece is not None and piece.heading:
        where = f"under the heading “{piece.heading}”"
    else:
        where = "before the first heading"
    if piece is not None and piece.in_code:
        where += ", in a code block"
    return f"{where} (text block {block})"


def _allowed(value: str, allow: list[re.Pattern[str]]) -> bool:
    return any(p.search(value) for p in allow)


def scan(
    title: str, body: str, *, min_entropy: float = 3.0, allow: list[re.Pattern[str]] | None = None
) -> list[Finding]:
    """Every credential in the title and the storage body, in order."""
    allow = allow or []
    view = storage.parse(body)
    found = [
        Finding(h.kind, h.label, "in the title", h.start, h.end, in_title=True)
        for h in detect(title, min_entropy=min_entropy)
        if not _allowed(title[h.start : h.end], allow)
    ]
    for hit in detect(view.text, min_entropy=min_entropy):
        if not _allowed(view.text[hit.start : hit.end], allow):
            found.append(Finding(hit.kind, hit.label, _location(view, hit), hit.start, hit.end))
    return found


def redact(
    title: str, body: str, *, min_entropy: float = 3.0, allow: list[re.Pattern[str]] | None = None
) -> tuple[str, str]:
    """(title, body) with every credential replaced by its marker; unchanged when none."""
    findings = scan(title, body, min_entropy=min_entropy, allow=allow)
    if not findings:
        return title, body
    for f in sorted((f for f in findings if f.in_title), key=lambda f: f.start, reverse=True):
        title = title[: f.start] + marker(f.kind) + title[f.end :]
    view = storage.parse(body)
    replacements = [
        storage.Replacement(f.start, f.end, marker(f.kind)) for f in findings if not f.in_title
    ]
    return title, storage.replace(view, replacements)


def report(findings: list[Finding], author: str | None, noun: str, *, redacted: bool = True) -> str:
    """The comment telling the author what was found and where (never the secret itself).

    ``redacted`` False: Confluence did not let the app edit the content (another user's
    comment, say); the author is asked to remove them instead.
    """
    greeting = f"<p>{storage.mention(author)}, " if author else "<p>"
    count = len(findings)
    plural = "s" if count != 1 else ""
    items = "".join(
        f"<li>{html.escape(f.label)} ({html.escape(f.location)})</li>" for f in findings
    )
    done = (
        "They have been redacted in a new version:"
        if redacted
        else f"The app may not edit this {html.escape(noun)}, so they are still there: "
        "please edit it and remove them now:"
    )
    history = (
        "Earlier versions in the page history still contain them; ask a space admin to "
        "delete those versions."
        if redacted
        else "Once removed, earlier versions still contain them; ask a space admin to delete "
        "those versions."
    )
    return (
        f"{greeting}this {html.escape(noun)} contained {count} credential{plural}. {done}</p>"
        f"<ul>{items}</ul><p>Treat them as leaked: revoke or rotate them now. {history}</p>"
    )


def _options(options: Mapping[str, Any]) -> tuple[float, list[re.Pattern[str]]]:
    check_options(options, {"min_entropy", "allow"})
    min_entropy = options.get("min_entropy", 3.0)
    number = isinstance(min_entropy, int | float) and not isinstance(min_entropy, bool)
    if not number or not 0 < min_entropy < 8:
        raise OptionError("min_entropy", "must be a number of bits per character in (0, 8)")
    allow_raw = options.get("allow", [])
    if not isinstance(allow_raw, list) or not all(isinstance(a, str) for a in allow_raw):
        raise OptionError("allow", "must be a list of regular expressions")
    try:
        allow = [re.compile(a) for a in allow_raw]
        risky = [a.pattern for a in allow if regex_risk.backtracks(a)]
    except REGEX_ERRORS as exc:
        raise OptionError("allow", f"invalid regular expression: {exc}") from None
    if risky:
        raise OptionError("allow", f"{risky[0]!r} refused: {regex_risk.PROBLEM}")
    return float(min_entropy), allow


def make(options: Mapping[str, Any]) -> Handler:
    min_entropy, allow = _options(options)

    async def scan_secrets(event: Event, ctx: ReactionContext) -> None:
        content = await ctx.content()
        findings = scan(content.title, content.body, min_entropy=min_entropy, allow=allow)
        noun = {"blogpost": "blog post"}.get(content.kind, content.kind)
        if findings:
            ctx.log.warning("credentials found", kinds=sorted({f.kind for f in findings}))
            author = event.actor or content.author_id
            message = report(findings, author, noun)
            # a re-run after the redaction finds nothing left: the report must survive it
            await ctx.remember("report", message)

            def transform(title: str, body: str) -> tuple[str, str]:
                return redact(title, body, min_entropy=min_entropy, allow=allow)

            what = f"redacted {len(findings)} credential(s)"
            try:
                await ctx.edit(transform, what=what, kind=content.kind, content_id=content.id)
            except (Forbidden, NotFound):
                # Not the app's to edit (users edit their own comments only; v2 answers that
                # with 404, as it does for content one may view but not change; 403 where a
                # scope is missing): no retry can change that, but the author must still hear
                # about it, now.
                ctx.log.warning("credentials left in place: the app may not edit this content")
                message = report(findings, author, noun, redacted=False)
                await ctx.remember("report", message)
        else:
            recalled = await ctx.recall("report")
            if recalled is None:
                return
            message = recalled
        if content.kind == "comment":
            await ctx.reply(content.id, message)
        else:
            await ctx.comment(message)

    return scan_secrets


BUILTIN = Builtin(
    name="secrets",
    events=EVENTS,
    make=make,
    latest_only=True,
    doc="Redact credentials in pages, blog posts and comments; tell the author in a comment.",
)

# ``REACTOR_REACTIONS=workers.reactions.secrets`` scans everything with the default options.
router = Router()
router.add(Registration("secrets", EVENTS, Filters(), make({}), latest_only=True))
