"""The simulator's state holder: store, clock, limits, faults, counters and the event hub.

One :class:`Simulator` per process, built in :mod:`simulator.main` and reached by handlers
through ``request.app.state.sim``. Nothing here does network I/O.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.clock import Clock
from simulator.keys import KeyPair
from simulator.ratelimit import RateLimiter
from simulator.store import Store

DEFAULT_EMAIL = "admin@example.com"


@dataclass
class Faults:
    """Faults injected on demand through ``/_sim/faults``."""

    latency_ms: int = 0
    error_rate: float = 0.0  # share of product API calls answered 503
    storm_until: float = 0.0  # simulated time until which every app call gets 429
    webhook_drop: float = 0.0
    webhook_duplicate: float = 0.0
    webhook_delay_seconds: float = 0.0
    webhook_reorder: bool = False

    def update(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if name not in self.__dataclass_fields__:
                raise ValueError(f"unknown fault {name!r}")
            kind = type(getattr(self, name))
            if kind is bool:
                if not isinstance(value, bool):
                    raise ValueError(f"{name} must be a boolean")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a non-negative number")
            setattr(self, name, kind(value))

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class Counters:
    calls: Counter[str] = field(default_factory=Counter)
    webhooks: Counter[str] = field(default_factory=Counter)
    auth_failures: Counter[str] = field(default_factory=Counter)

    def as_dict(self, points: int) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "pointsSpent": points,
            "webhooks": {
                k: self.webhooks.get(k, 0)
                for k in ("sent", "delivered", "failed", "dropped", "duplicated", "retried")
            },
            "authFailures": dict(self.auth_failures),
        }


@dataclass
class ContentEvent:
    """Something changed on the site; the hub turns it into webhooks and Forge events."""

    name: str  # Connect event name, e.g. page_updated
    kind: str  # page | blogpost | comment | label | attachment
    object_id: str
    actor_id: str
    at_ms: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Simulator:
    store: Store
    clock: Clock
    limiter: RateLimiter
    install_key: KeyPair
    forge_key: KeyPair
    faults: Faults = field(default_factory=Faults)
    counters: Counters = field(default_factory=Counters)
    rng: random.Random = field(default_factory=random.Random)
    state_path: Path | None = None
    public_url: str | None = None  # overrides the request's own origin in links and tokens
    gateway_url: str | None = None  # origin of /ex/confluence/{cloudId} (default: public_url)
    listeners: list[Callable[[ContentEvent], None]] = field(default_factory=list)
    dirty: bool = False

    def emit(self, name: str, kind: str, object_id: str, actor_id: str, **extra: Any) -> None:
        event = ContentEvent(name, kind, object_id, actor_id, self.clock.millis(), extra)
        for listener in self.listeners:
            listener(event)

    def save_soon(self) -> None:
        """Mark the state changed; the app's lifespan writes it out shortly after."""
        self.dirty = True

    def save(self) -> None:
        if self.state_path is not None:
            self.store.save(self.state_path)
        self.dirty = False


def build(
    *,
    store: Store | None = None,
    clock: Clock | None = None,
    app_quota: int = 65_000,
    api_token: str | None = None,
    state_path: Path | None = None,
    public_url: str | None = None,
    seed: int | None = None,
    keys: tuple[KeyPair, KeyPair] | None = None,
    gateway_url: str | None = None,
) -> Simulator:
    """A simulator with the admin user ``admin@example.com`` (site admin, given API token)."""
    if store is None:
        store = Store.load(state_path) if state_path and state_path.exists() else Store()
    clock = clock or Clock()
    admin = store.user_by_email(DEFAULT_EMAIL)
    if admin is None:
        admin = store.add_user(DEFAULT_EMAIL, "Site Admin", api_token=api_token, site_admin=True)
    elif api_token:
        admin.api_token = api_token
    return Simulator(
        store=store,
        clock=clock,
        limiter=RateLimiter(clock, app_quota=app_quota),
        install_key=keys[0] if keys else KeyPair.generate("sim-install"),
        forge_key=keys[1] if keys else KeyPair.generate("sim-forge"),
        rng=random.Random(seed),
        state_path=state_path,
        public_url=public_url,
        gateway_url=gateway_url,
    )
