"""Copy the response schemas of the operations the simulator serves out of Atlassian's spec.

Run by hand when the spec is updated (never at run or test time)::

    python simulator/schemas/extract.py ../shared/reference/confluence-v2.openapi.json

It writes ``confluence-v2-subset.json`` next to this file: for each operation its success
status, response schema and documented response headers, plus every component schema those
reach, unchanged.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OPERATIONS = [
    ("get", "/pages"),
    ("post", "/pages"),
    ("get", "/pages/{id}"),
    ("put", "/pages/{id}"),
    ("delete", "/pages/{id}"),
    ("get", "/pages/{id}/children"),
    ("get", "/pages/{id}/direct-children"),
    ("get", "/pages/{id}/versions"),
    ("get", "/spaces"),
    ("post", "/spaces"),
    ("get", "/spaces/{id}"),
    ("get", "/spaces/{id}/pages"),
    ("get", "/spaces/{id}/blogposts"),
    ("get", "/blogposts"),
    ("post", "/blogposts"),
    ("get", "/blogposts/{id}"),
    ("put", "/blogposts/{id}"),
    ("delete", "/blogposts/{id}"),
    ("get", "/blogposts/{id}/versions"),
    ("get", "/pages/{id}/footer-comments"),
    ("get", "/pages/{id}/inline-comments"),
    ("get", "/blogposts/{id}/footer-comments"),
    ("get", "/blogposts/{id}/inline-comments"),
    ("get", "/footer-comments"),
    ("post", "/footer-comments"),
    ("get", "/footer-comments/{comment-id}"),
    ("put", "/footer-comments/{comment-id}"),
    ("delete", "/footer-comments/{comment-id}"),
    ("get", "/footer-comments/{id}/children"),
    ("get", "/inline-comments"),
    ("post", "/inline-comments"),
    ("get", "/inline-comments/{comment-id}"),
    ("put", "/inline-comments/{comment-id}"),
    ("delete", "/inline-comments/{comment-id}"),
    ("get", "/inline-comments/{id}/children"),
    ("get", "/attachments"),
    ("get", "/attachments/{id}"),
    ("delete", "/attachments/{id}"),
    ("get", "/pages/{id}/attachments"),
    ("get", "/labels"),
    ("get", "/pages/{id}/labels"),
    ("get", "/blogposts/{id}/labels"),
    ("get", "/spaces/{id}/labels"),
]


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            out.add(ref.rsplit("/", 1)[-1])
        for value in node.values():
            _refs(value, out)
    elif isinstance(node, list):
        for value in node:
            _refs(value, out)


def extract(spec: dict[str, Any]) -> dict[str, Any]:
    schemas = spec["components"]["schemas"]
    operations: dict[str, Any] = {}
    for method, path in OPERATIONS:
        op = spec["paths"][path][method]
        status = next(c for c in op["responses"] if c.startswith("2"))
        response = op["responses"][status]
        entry: dict[str, Any] = {"operationId": op["operationId"], "status": int(status)}
        content = response.get("content", {}).get("application/json")
        if content:
            entry["schema"] = content["schema"]
        if response.get("headers"):
            entry["headers"] = sorted(response["headers"])
        operations[f"{method.upper()} {path}"] = entry
    needed: set[str] = set()
    _refs(operations, needed)
    seen: set[str] = set()
    while needed - seen:
        name = sorted(needed - seen)[0]
        seen.add(name)
        _refs(schemas[name], needed)
    return {
        "source": "Atlassian Confluence Cloud REST API v2 OpenAPI spec "
        f"(version {spec['info']['version']}), developer.atlassian.com; subset, unchanged",
        "operations": operations,
        "components": {"schemas": {name: schemas[name] for name in sorted(seen)}},
    }


if __name__ == "__main__":
    source = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    target = Path(__file__).with_name("confluence-v2-subset.json")
    target.write_text(json.dumps(extract(source), indent=1, sort_keys=True) + "\n", "utf-8")
    print(f"wrote {target}")
