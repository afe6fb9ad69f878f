"""Body representations: what is stored, what a reader asked for (pure).

Content keeps the representation it was written in. Reading it in the other of storage and
atlas_doc_format converts crudely (text paragraphs), enough for a client to round-trip its own
writes; ADF values are JSON *strings*, as Confluence returns them. ``view`` and the export
formats render storage as-is.

Writes are checked as Confluence checks them: a body needs a ``value``; storage must be a
well-formed XHTML fragment (:mod:`simulator.storage`); ``wiki`` is refused with a 400 saying
the simulator does not convert wiki markup (Confluence does): send storage instead.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from simulator.errors import bad_body
from simulator.storage import well_formed_error

WRITE_REPRESENTATIONS = ("storage", "atlas_doc_format", "wiki")
WIKI_UNSUPPORTED = (
    "body.representation wiki is not supported by the simulator (Confluence converts wiki "
    "markup; the simulator does not): send storage or atlas_doc_format."
)
_TAG = re.compile(r"<[^>]+>")
_PARA = re.compile(r"</p>|<br\s*/?>", re.IGNORECASE)


def parse_write_body(body: Any, *, required: bool) -> tuple[str, str] | None:
    """(representation, value) from the flat or the nested write shape."""
    if body is None:
        if required:
            raise bad_body("body is required.")
        return None
    if not isinstance(body, dict):
        raise bad_body("body must be an object.")
    if "representation" not in body:
        nested = [(k, v) for k, v in body.items() if k in WRITE_REPRESENTATIONS]
        if len(nested) != 1 or not isinstance(nested[0][1], dict):
            raise bad_body("body must have a representation and a value.")
        body = nested[0][1]
    representation = body.get("representation")
    if representation not in WRITE_REPRESENTATIONS:
        raise bad_body("body.representation must be storage, atlas_doc_format or wiki.")
    if "value" not in body:
        raise bad_body("body.value is required.")
    value = body["value"]
    if not isinstance(value, str):
        raise bad_body("body.value must be a string.")
    _check_value(str(representation), value)
    return str(representation), value


def _check_value(representation: str, value: str) -> None:
    """What Confluence refuses: ADF that is not JSON, storage that is not well-formed."""
    if representation == "wiki":
        raise bad_body(WIKI_UNSUPPORTED)
    if representation == "atlas_doc_format":
        try:
            json.loads(value or "{}")
        except ValueError:
            raise bad_body("body.value is not a valid atlas_doc_format document.") from None
        return
    error = well_formed_error(value)
    if error is not None:
        raise bad_body(f"Error parsing xhtml: {error}")


def _paragraphs_from_storage(value: str) -> list[str]:
    text = _PARA.sub("\n", value)
    return [html.unescape(_TAG.sub("", line)) for line in text.split("\n") if line.strip()]


def _texts_from_adf(node: Any) -> list[str]:
    if not isinstance(node, dict):
        return []
    if node.get("type") == "paragraph" or node.get("type") == "heading":
        return ["".join(_inline_text(node))]
    out: list[str] = []
    for child in node.get("content", []) or []:
        out.extend(_texts_from_adf(child))
    return out


def _inline_text(node: Any) -> list[str]:
    if not isinstance(node, dict):
        return []
    if node.get("type") == "text":
        return [str(node.get("text", ""))]
    return [t for child in node.get("content", []) or [] for t in _inline_text(child)]


def render(representation: str, value: str, wanted: str) -> dict[str, str]:
    """The ``BodyType`` object for ``wanted``."""
    if wanted == representation:
        return {"representation": wanted, "value": value}
    if wanted == "atlas_doc_format":
        paragraphs = _paragraphs_from_storage(value)
        doc = {
            "type": "doc",
            "version": 1,
            "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": p}]} for p in paragraphs
            ],
        }
        return {"representation": wanted, "value": json.dumps(doc, separators=(",", ":"))}
    if representation == "atlas_doc_format":
        try:
            texts = _texts_from_adf(json.loads(value or "{}"))
        except ValueError:
            texts = []
        value = "".join(f"<p>{html.escape(t)}</p>" for t in texts)
    if wanted == "storage":
        return {"representation": "storage", "value": value}
    return {"representation": wanted, "value": value}


def plain_text(representation: str, value: str) -> str:
    """Words of a body, for CQL ``text ~`` and inline-comment anchoring."""
    if representation == "atlas_doc_format":
        try:
            return "\n".join(_texts_from_adf(json.loads(value or "{}")))
        except ValueError:
            return ""
    return "\n".join(_paragraphs_from_storage(value))
