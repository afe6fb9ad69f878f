"""Validate requests and responses against the copied official Confluence schemas.

Two adjustments turn OpenAPI 3.0 schemas into JSON Schema (draft 7) without changing what they
mean: ``nullable: true`` becomes a ``null`` alternative, and ``oneOf`` becomes ``anyOf``. The
second is needed because the spec's body alternatives (flat ``{representation, value}`` vs
nested ``{storage: {...}}``) declare no required properties, so every body matches both and a
strict ``oneOf`` would reject all of them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from jsonschema import Draft7Validator  # type: ignore[import-untyped]

SCHEMAS = Path(__file__).parents[2] / "app" / "confluence" / "schemas"


def _convert(node: Any) -> Any:
    if isinstance(node, list):
        return [_convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {("anyOf" if k == "oneOf" else k): _convert(v) for k, v in node.items()}
    if out.pop("nullable", False):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        if "$ref" in out or "allOf" in out:
            out = {"anyOf": [{"type": "null"}, out]}
    return out


@dataclass(frozen=True)
class Operation:
    name: str
    method: str
    template: str
    pattern: re.Pattern[str]
    spec: dict[str, Any]
    document: dict[str, Any]

    def _validator(self, schema: dict[str, Any]) -> Draft7Validator:
        root = {"$ref": "#/x-target", "x-target": schema, "components": self.document["components"]}
        return Draft7Validator(root)

    def _errors(self, schema: dict[str, Any], value: Any) -> list[str]:
        return [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in self._validator(schema).iter_errors(value)
        ]

    def _parameter(self, param: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in param:
            return dict(self.document["components"]["parameters"][param["$ref"].split("/")[-1]])
        return param

    def check_request(self, request: httpx.Request, path: str) -> None:
        """``path`` is the request path below the API root (gateway prefix removed)."""
        problems: list[str] = []
        params = [self._parameter(p) for p in self.spec["parameters"]]
        match = self.pattern.fullmatch(path)
        assert match is not None
        query: dict[str, list[str]] = {}
        for key, value in parse_qsl(urlsplit(str(request.url)).query, keep_blank_values=True):
            query.setdefault(key, []).append(value)
        declared = {p["name"]: p for p in params if p["in"] == "query"}
        for name, values in query.items():
            if name not in declared:
                problems.append(f"query parameter {name!r} is not declared for {self.name}")
                continue
            problems += self._check_param(declared[name], values)
        for p in params:
            if p["in"] == "path":
                problems += self._check_param(p, [match.group(p["name"].replace("-", "_"))])
            if p.get("required") and p["in"] == "query" and p["name"] not in query:
                problems.append(f"required query parameter {p['name']!r} missing")
        body = self.spec.get("requestBody")
        if body is not None:
            if "$ref" in body:
                body = self.document["components"]["requestBodies"][body["$ref"].split("/")[-1]]
            schema = body["content"]["application/json"]["schema"]
            problems += self._errors(schema, json.loads(request.content))
        elif request.content:
            problems.append(f"{self.name} takes no request body")
        assert not problems, f"{request.method} {request.url}: {problems}"

    def _check_param(self, param: dict[str, Any], values: list[str]) -> list[str]:
        schema = param.get("schema", {})
        if "$ref" in schema:
            schema = self.document["components"]["schemas"][schema["$ref"].split("/")[-1]]
        if schema.get("type") == "array":
            items = [v for raw in values for v in raw.split(",")]
            value: Any = [_coerce(schema.get("items", {}), v) for v in items]
        else:
            if len(values) != 1:
                return [f"parameter {param['name']!r} repeated"]
            value = _coerce(schema, values[0])
        return [f"{param['name']}: {e}" for e in self._errors(param.get("schema", {}), value)]

    def check_response(self, status: int, body: Any) -> None:
        response = self.spec["responses"].get(str(status))
        assert response is not None, f"{self.name} does not document status {status}"
        content = response.get("content", {}).get("application/json")
        if content is None:
            assert body is None, f"{self.name} {status} documents no body"
            return
        problems = self._errors(content["schema"], body)
        assert not problems, f"{self.name} {status} response: {problems}"


def _coerce(schema: dict[str, Any], raw: str) -> Any:
    kind = schema.get("type")
    if kind == "integer" and re.fullmatch(r"-?\d+", raw):
        return int(raw)
    if kind == "boolean" and raw in ("true", "false"):
        return raw == "true"
    return raw


@cache
def _documents() -> tuple[dict[str, Any], ...]:
    return tuple(
        _convert(json.loads((SCHEMAS / name).read_text()))
        for name in ("confluence-v2.json", "confluence-v1-search.json")
    )


@cache
def operations() -> tuple[Operation, ...]:
    found = []
    for document in _documents():
        for name, spec in document["operations"].items():
            regex = re.sub(
                r"\{([^}]+)\}",
                lambda m: f"(?P<{m.group(1).replace('-', '_')}>[^/]+)",
                spec["path"],
            )
            found.append(
                Operation(name, spec["method"], spec["path"], re.compile(regex), spec, document)
            )
    # Literal segments first: /footer-comments/{id} must not swallow /pages/{id}/... or vice versa.
    return tuple(sorted(found, key=lambda op: op.template.count("{")))


def operation_for(method: str, path: str) -> Operation:
    for op in operations():
        if op.method == method and op.pattern.fullmatch(path):
            return op
    raise AssertionError(f"no documented operation for {method} {path}")
