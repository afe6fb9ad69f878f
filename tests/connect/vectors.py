"""Loads the Atlassian Connect interop vectors (see tests/fixtures/connect/README.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

VECTORS_FILE = (
    Path(__file__).parent.parent / "fixtures" / "connect" / "connect-jwt-interop-vectors.json"
)
# The vectors were signed on 2016-06-24 with iat 1466731075 and exp 1466731255.
SIGNED_AT = 1466731100


@dataclass(frozen=True)
class Vector:
    name: str
    canonical: str
    signed_url: str

    @property
    def token(self) -> str:
        return self.signed_url.rsplit("jwt=", 1)[1]


def load() -> tuple[str, list[Vector]]:
    data = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
    vectors = [Vector(t["name"], t["canonicalUrl"], t["signedUrl"]) for t in data["tests"]]
    return data["secret"], vectors
