"""One event model for both delivery routes (Connect webhooks and Forge Remote events).

Pure code: functions of ``(tenant, name, body)``, no I/O. Payloads are thin and loosely typed:
ids arrive as JSON numbers or strings, dates as epoch milliseconds (Connect) or ISO 8601
(Forge), fields may be missing. Everything here accepts those shapes and produces one
:class:`Event` with string ids, or raises :class:`~app.errors.InvalidPayload`.
"""

from __future__ import annotations

import hashlib
import json
import operator
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal

import orjson

from app.errors import InvalidPayload

Source = Literal["connect", "forge", "reconcile", "replay"]

EVENT_TYPES = (
    "page.created",
    "page.updated",
    "page.trashed",
    "page.deleted",
    "page.restored",
    "blogpost.created",
    "blogpost.updated",
    "comment.created",
    "comment.updated",
    "comment.deleted",
    "label.added",
    "label.removed",
    "attachment.created",
)
# Types that say the content is gone: an earlier event of it that finds no content ends there.
REMOVALS = frozenset({"page.trashed", "page.deleted", "comment.deleted"})

CONNECT_EVENTS = {
    "page_created": "page.created",
    "page_updated": "page.updated",
    "page_trashed": "page.trashed",
    "page_removed": "page.deleted",
    "page_restored": "page.restored",
    "blog_created": "blogpost.created",
    "blog_updated": "blogpost.updated",
    "comment_created": "comment.created",
    "comment_updated": "comment.updated",
    "comment_removed": "comment.deleted",
    "label_added": "label.added",
    "label_removed": "label.removed",
    "attachment_created": "attachment.created",
}

FORGE_EVENTS = {
    "avi:confluence:created:page": "page.created",
    "avi:confluence:updated:page": "page.updated",
    "avi:confluence:trashed:page": "page.trashed",
    "avi:confluence:deleted:page": "page.deleted",
    "avi:confluence:restored:page": "page.restored",
    "avi:confluence:created:blogpost": "blogpost.created",
    "avi:confluence:updated:blogpost": "blogpost.updated",
    "avi:confluence:created:comment": "comment.created",
    "avi:confluence:updated:comment": "comment.updated",
    "avi:confluence:deleted:comment": "comment.deleted",
    "avi:confluence:added:label": "label.added",
    "avi:confluence:removed:label": "label.removed",
    "avi:confluence:created:label": "label.added",
    "avi:confluence:deleted:label": "label.removed",
    "avi:confluence:created:attachment": "attachment.created",
}


def event_type(name: str) -> str | None:
    """An event type of our vocabulary from its own name, a Connect webhook name
    (``page_updated``) or a Forge event name; None when it names none of them."""
    if name in EVENT_TYPES:
        return name
    return CONNECT_EVENTS.get(name) or FORGE_EVENTS.get(name)


# Connect payload key holding the content object, per event family.
_CONNECT_CONTENT_KEYS = ("page", "blog", "blogpost", "comment", "attachment", "content", "labeled")


@dataclass(frozen=True, slots=True)
class Event:
    """A Confluence change, whichever route delivered it."""

    id: str
    source: Source
    tenant: str
    type: str
    content_id: str
    content_type: str
    timestamp: int
    version: int | None = None
    container_id: str | None = None
    space_key: str | None = None
    space_id: str | None = None
    actor: str | None = None
    update_trigger: str | None = None
    suppress_notifications: bool = False
    self_generated: bool = False
    title: str | None = None
    label: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    # The payload exactly as received (valid JSON, already parsed into ``raw``); stored as-is
    # instead of re-encoding ``raw``. Never serialised as a field of its own.
    raw_json: bytes | None = field(default=None, compare=False, repr=False)

    def encode(self) -> bytes:
        """The stored form: the normalised fields, ``id`` and ``source`` first, then ``raw``."""
        head = _dump(dict(zip(_FIELD_NAMES, _field_values(self), strict=True)))
        raw = self.raw_json if self.raw_json is not None else _dump(self.raw)
        return b"".join((head[:-1], b',"raw":', raw, b"}"))

    def to_json(self) -> str:
        return self.encode().decode()

    @classmethod
    def from_json(cls, data: str | bytes) -> Event:
        return cls(**json.loads(data))

    @property
    def content_key(self) -> str:
        """Identifies the content whose events must run in order."""
        return f"{self.tenant}:{self.content_id}"


_FIELD_NAMES = tuple(f.name for f in fields(Event) if f.name not in ("raw", "raw_json"))
_field_values = operator.attrgetter(*_FIELD_NAMES)


def _dump(data: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError:  # integers beyond 64 bits, lone surrogates: the standard codec takes them
        return json.dumps(data, separators=(",", ":"), check_circular=False).encode()


# Label events carry no version, and Connect and Forge stamp the same change with different
# times. Their id names the label and this window of time instead; with the neighbouring
# window's id as an alias (:func:`alias_id`), two deliveries of one change less than half a
# window apart always share an id or an alias, whichever route came first. The price: the
# same label added (or removed) twice on one content within that time is taken as one change.
LABEL_WINDOW_MS = 60_000
# Confluence versions are small whole numbers; the bound keeps int() and event ids sane.
MAX_VERSION_DIGITS = 18


def _id(tenant: str, type_: str, content_id: str, marker: str) -> str:
    digest = hashlib.sha256(f"{tenant}\x1f{type_}\x1f{content_id}\x1f{marker}".encode()).hexdigest()
    return f"ev_{digest[:32]}"


def event_id(
    tenant: str,
    type_: str,
    content_id: str,
    version: int | None,
    timestamp: int,
    label: str | None = None,
) -> str:
    """Deterministic id: the same change gives the same id whichever route delivered it.

    Content events are named by their version; label events (``label`` given) by the label and
    the window of ``LABEL_WINDOW_MS`` their time falls in; anything else by its timestamp.
    """
    if version is not None:
        return _id(tenant, type_, content_id, f"v{version}")
    if label is not None:
        return _id(tenant, type_, content_id, f"l{label}\x1f{timestamp // LABEL_WINDOW_MS}")
    return _id(tenant, type_, content_id, f"t{timestamp}")


def alias_id(event: Event) -> str | None:
    """A label event's id had its time fallen in the nearer neighbouring window, else None.

    The queue stores an event as a duplicate when its alias was seen (see ``LABEL_WINDOW_MS``).
    """
    if event.version is not None or event.label is None or not event.type.startswith("label."):
        return None
    window, offset = divmod(event.timestamp, LABEL_WINDOW_MS)
    nearer = window - 1 if offset < LABEL_WINDOW_MS // 2 else window + 1
    return _id(event.tenant, event.type, event.content_id, f"l{event.label}\x1f{nearer}")


def _str_id(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _version(name: str, value: Any) -> int | None:
    """A content version (a number, a digit string, or either as ``{"number": ...}``), else
    None when none is given. A number or digit string that cannot be a Confluence version
    (non-ASCII digits such as ``"²"``, more than :data:`MAX_VERSION_DIGITS` digits) is refused:
    never a 500 from ``int()``, never a version no page has."""
    if isinstance(value, dict):
        value = value.get("number")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    if isinstance(value, str):
        if not value.isdigit():
            return None  # not a number at all: the version is unknown, as when none is given
        if value.isascii() and len(value) <= MAX_VERSION_DIGITS:
            return int(value)
    elif 0 <= value < 10**MAX_VERSION_DIGITS:
        return value
    raise InvalidPayload(
        f"{name}: the version must be a whole number of at most {MAX_VERSION_DIGITS} ASCII digits"
    )


def _checked_id(name: str, content_id: str) -> str:
    """``content_id`` if it has the shape of a Confluence content id: digits (a long), or
    ``att`` and digits for an attachment. Anything else could never be fetched: refused."""
    digits = content_id[3:] if content_id.startswith("att") else content_id
    if 0 < len(digits) <= 20 and digits.isascii() and digits.isdigit():
        return content_id
    raise InvalidPayload(f"{name}: {content_id[:40]!r} is not a Confluence content id")


def _attachment_id(content_id: str) -> str:
    """An attachment's id in one form, ``att`` and digits: Connect names an attachment by its
    number, Forge and the v2 API by ``att`` and that number (both name the same attachment,
    ``(att)?[0-9]+``), and one change delivered both ways must have one event id."""
    return content_id if content_id.startswith("att") else f"att{content_id}"


def _epoch_ms(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return None
    return None


def _obj(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    return value if isinstance(value, dict) else {}


def _require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidPayload("the body must be a JSON object")
    return body


def from_connect(tenant: str, name: str, body: Any, raw_json: bytes | None = None) -> Event:
    """Normalise a Connect webhook; ``name`` comes from the URL (the body does not name it).

    ``raw_json``, when given, is the body exactly as received (``body`` parsed from it).
    """
    body = _require_object(body)
    type_ = CONNECT_EVENTS.get(name)
    if type_ is None:
        raise InvalidPayload(f"unsupported Connect webhook event {name!r}")
    content: dict[str, Any] = {}
    for key in _CONNECT_CONTENT_KEYS:
        content = _obj(body, key)
        if content:
            break
    if name == "attachment_created":
        attachments = body.get("attachments")
        first = attachments[0] if isinstance(attachments, list) and attachments else {}
        content = first if isinstance(first, dict) else {}
    content_id = _str_id(content.get("idAsString")) or _str_id(content.get("id"))
    if content_id is None:
        raise InvalidPayload(f"{name}: the payload names no content id")
    content_id = _checked_id(name, content_id)
    if type_.startswith("attachment."):
        content_id = _attachment_id(content_id)
    timestamp = _epoch_ms(body.get("timestamp")) or _epoch_ms(content.get("modificationDate")) or 0
    labelled = type_.startswith("label.")
    version = None if labelled else _version(name, content.get("version"))
    label = _obj(body, "label").get("name")
    label = label if isinstance(label, str) else None
    title = content.get("title")
    # Positional: the hot path of every webhook, and a frozen dataclass's keyword call costs
    # about twice as much. Order is Event's field order.
    return Event(
        event_id(tenant, type_, content_id, version, timestamp, label if labelled else None),
        "connect",
        tenant,
        type_,
        content_id,
        str(content.get("contentType") or type_.split(".")[0]),
        timestamp,
        version,
        _connect_container(name, body, content),
        _str_id(content.get("spaceKey")),
        _str_id(content.get("spaceId")),
        _str_id(body.get("userAccountId")),
        _str_id(body.get("updateTrigger")),
        bool(body.get("suppressNotifications", False)),
        False,
        title if isinstance(title, str) else None,
        label,
        body,
        raw_json,
    )


def _connect_container(name: str, body: dict[str, Any], content: dict[str, Any]) -> str | None:
    if name.startswith("comment_"):
        parent = content.get("parent")
        while isinstance(parent, dict) and parent.get("contentType") == "comment":
            parent = parent.get("parent")
        if isinstance(parent, dict):
            return _str_id(parent.get("idAsString")) or _str_id(parent.get("id"))
        return None
    if name == "attachment_created":
        attached = _obj(body, "attachedTo")
        return _str_id(attached.get("idAsString")) or _str_id(attached.get("id"))
    return None


def from_forge(tenant: str, body: Any, raw_json: bytes | None = None) -> Event:
    """Normalise a Forge product event (top-level or ``payload``-wrapped envelope).

    ``raw_json``, when given, is the body exactly as received (``body`` parsed from it).
    """
    body = _require_object(body)
    payload = body.get("payload")
    event = payload if isinstance(payload, dict) and "eventType" in payload else body
    name = event.get("eventType")
    type_ = FORGE_EVENTS.get(name) if isinstance(name, str) else None
    if type_ is None:
        raise InvalidPayload(f"unsupported Forge event {name!r}")
    content = _obj(event, "content")
    space = _obj(content, "space")
    container = _obj(content, "container")
    if type_.startswith("label."):
        content = content or _obj(event, "labeledContent")
        space, container = _obj(content, "space"), _obj(content, "container")
    elif type_.startswith("attachment."):
        # The attachment is the event's content, whether it comes as ``attachment`` beside the
        # page it is attached to (``content``) or as ``content`` itself (naming its container):
        # either way one attachment change has one id, as its Connect webhook does.
        attachment = _obj(event, "attachment")
        if attachment:
            outer = content if content.get("type") != "attachment" else {}
            content = attachment
            space = _obj(attachment, "space") or _obj(outer, "space")
            container = _obj(attachment, "container") or outer
    content_id = _str_id(content.get("id"))
    if content_id is None:
        raise InvalidPayload(f"{name}: the payload names no content id")
    content_id = _checked_id(str(name), content_id)
    if type_.startswith("attachment."):
        content_id = _attachment_id(content_id)
    label = _obj(event, "label").get("name")
    labelled = type_.startswith("label.")
    version = None if labelled else _version(str(name), content.get("version"))
    return _build(
        source="forge",
        tenant=tenant,
        type_=type_,
        content_id=content_id,
        content_type=str(content.get("type") or type_.split(".")[0]),
        timestamp=_epoch_ms(event.get("eventCreatedDate")) or 0,
        version=version,
        container_id=_str_id(container.get("id")),
        space_key=_str_id(space.get("key")),
        space_id=_str_id(space.get("id")),
        actor=_str_id(event.get("atlassianId")),
        update_trigger=_str_id(event.get("updateTrigger")),
        suppress_notifications=bool(event.get("suppressNotifications", False)),
        self_generated=bool(event.get("selfGenerated", False)),
        title=content.get("title") if isinstance(content.get("title"), str) else None,
        label=label if isinstance(label, str) else None,
        raw=body,
        raw_json=raw_json,
    )


def _build(*, source: Source, tenant: str, type_: str, content_id: str, **fields: Any) -> Event:
    label = fields.get("label") if type_.startswith("label.") else None
    eid = event_id(tenant, type_, content_id, fields.get("version"), fields["timestamp"], label)
    return Event(id=eid, source=source, tenant=tenant, type=type_, content_id=content_id, **fields)
