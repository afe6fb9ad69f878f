"""Copy the part of Atlassian's official OpenAPI documents that the Confluence client uses.

Run by hand when the pinned specs change (never at test time)::

    .venv/bin/python tests/confluence/extract_schemas.py \
        ../shared/reference/confluence-v2.openapi.json  /tmp/confluence-v1.swagger.v3.json \
        app/confluence/schemas

Each output keeps the spec's own ``components`` layout, so ``$ref`` strings resolve unchanged,
plus an ``operations`` table (method, path, parameters, request body, responses) for the
operations the client calls. Schemas are copied verbatim; nothing is edited.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

V2_OPERATIONS = (
    "getPages", "getPageById", "createPage", "updatePage", "deletePage",
    "getPageDirectChildren", "getPageVersions", "getPagesInSpace",
    "getSpaces", "getSpaceById", "createSpace",
    "getBlogPosts", "getBlogPostById", "createBlogPost", "updateBlogPost", "deleteBlogPost",
    "getBlogPostsInSpace",
    "getPageFooterComments", "getPageInlineComments", "getBlogPostFooterComments",
    "getFooterCommentById", "getInlineCommentById", "createFooterComment",
    "createInlineComment", "deleteFooterComment", "deleteInlineComment",
    "getFooterCommentChildren", "updateFooterComment", "updateInlineComment",
    "getAttachments", "getAttachmentById", "getPageAttachments", "deleteAttachment",
    "getLabels", "getPageLabels", "getSpaceLabels",
)  # fmt: skip
V1_OPERATIONS = ("searchByCQL", "searchUser")
_REF = re.compile(r'"#/components/(schemas|requestBodies|parameters)/([^"]+)"')


def _operations(spec: dict[str, Any], wanted: tuple[str, ...], prefix: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and op.get("operationId") in wanted:
                found[op["operationId"]] = {
                    "method": method.upper(),
                    "path": prefix + path,
                    "parameters": item.get("parameters", []) + op.get("parameters", []),
                    "requestBody": op.get("requestBody"),
                    "responses": op["responses"],
                }
    missing = set(wanted) - set(found)
    if missing:
        raise SystemExit(f"operations not in spec: {sorted(missing)}")
    return found


def _closure(spec: dict[str, Any], seed: Any) -> dict[str, dict[str, Any]]:
    components = spec["components"]
    picked: dict[str, dict[str, Any]] = {}
    todo = _REF.findall(json.dumps(seed))
    while todo:
        kind, name = todo.pop()
        if name in picked.setdefault(kind, {}):
            continue
        picked[kind][name] = components[kind][name]
        todo.extend(_REF.findall(json.dumps(components[kind][name])))
    return {kind: dict(sorted(items.items())) for kind, items in sorted(picked.items())}


def extract(spec: dict[str, Any], wanted: tuple[str, ...], prefix: str, source: str) -> Any:
    operations = _operations(spec, wanted, prefix)
    return {
        "x-source": source,
        "openapi": spec["openapi"],
        "info": {"title": spec["info"]["title"], "version": spec["info"]["version"]},
        "operations": operations,
        "components": _closure(spec, operations),
    }


def main(v2_path: str, v1_path: str, out_dir: str) -> None:
    out = Path(out_dir)
    v2 = json.loads(Path(v2_path).read_text())
    v1 = json.loads(Path(v1_path).read_text())
    documents = {
        "confluence-v2.json": extract(
            v2,
            V2_OPERATIONS,
            "/wiki/api/v2",
            "Atlassian Confluence Cloud REST API v2 OpenAPI 3.0.3 (info.version 2.0.0), "
            "https://dac-static.atlassian.com/cloud/confluence/openapi-v2.v3.json, pinned "
            "2026-06-10 (dichovsky/atlassian-api-client spec/confluence-v2.json, commit "
            "3c03fb965679c58259ef65f4acbfe2d542ecc437, sha256 "
            "21eac8301cc359d792cdf229f2fcb4920bf6b4256c56f429da1ab940e8c0a7f2)",
        ),
        "confluence-v1-search.json": extract(
            v1,
            V1_OPERATIONS,
            "",
            "Atlassian Confluence Cloud REST API v1 OpenAPI 3 "
            "(https://dac-static.atlassian.com/cloud/confluence/swagger.v3.json), copy in "
            "sschatter/confluence-cloud-rest-api-spec swagger.v3.json, commit "
            "501a8468c29388dfbb457664c213cd2d775bb5cb (2022-01-13)",
        ),
    }
    for name, document in documents.items():
        (out / name).write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
