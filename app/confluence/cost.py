"""Points a Confluence call costs, before (estimate) and after (actual). Pure code.

Confluence's points model: every request costs 1 point plus, for reads, a point per object
returned (two for identity objects: users, groups, permissions); a write costs 1 in total.
A list is estimated at its full ``limit`` because the number of results is unknown until the
answer arrives; the actual cost counts what came back. The estimate is the budget's own
(:func:`app.budget.model.estimate_cost`), so both sides share one points model.
"""

from __future__ import annotations

from typing import Any

from app.budget.model import READ_METHODS, estimate_cost

CORE_OBJECT = 1
IDENTITY_OBJECT = 2


def estimate(method: str, *, objects: int = 1, per_object: int = CORE_OBJECT) -> int:
    """Points to reserve: writes 1; reads 1 + ``objects`` x ``per_object`` (a list's limit)."""
    return estimate_cost(method, objects=objects, object_points=per_object)


def actual(method: str, status: int, data: Any, *, per_object: int = CORE_OBJECT) -> int | None:
    """Points the call cost, counted from its answer; None when unknown (a 429 is not charged)."""
    if status == 429 or status == 0:
        return None
    if method.upper() not in READ_METHODS or status >= 300:
        return 1
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        return 1 + len(data["results"]) * per_object
    return 1 + (per_object if data else 0)
