"""Load the configured reactions at worker start-up: Python modules and the rules file.

``REACTOR_REACTIONS`` names modules that each expose ``router`` (a :class:`Router`); the
optional ``REACTOR_RULES_FILE`` adds the declarative rules. Anything wrong (a module that does
not import, lacks a router, a rules file with errors) stops start-up with a ConfigError that
says which setting, which module or line, and why.
"""

from __future__ import annotations

import importlib
import traceback

from app.errors import ConfigError
from app.settings import Settings
from workers.routing import Router
from workers.rules import load_rules


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" ({last.filename}:{last.lineno})"


def load_module(name: str) -> Router:
    """The ``router`` of module ``name``; ConfigError naming the module when it cannot be had."""
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            raise ConfigError(f"REACTOR_REACTIONS: no module named {name!r}") from None
        raise ConfigError(
            f"REACTOR_REACTIONS: module {name!r} failed to import: {exc}{_where(exc)}"
        ) from None
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}{_where(exc)}"
        raise ConfigError(
            f"REACTOR_REACTIONS: module {name!r} failed to import: {message}"
        ) from None
    router = getattr(module, "router", None)
    if not isinstance(router, Router):
        raise ConfigError(
            f"REACTOR_REACTIONS: module {name!r} has no `router` (a workers.routing.Router)"
        )
    return router


def load_reactions(settings: Settings) -> Router:
    """One router holding every configured reaction, in configuration order."""
    root = Router()
    problems: list[str] = []
    for name in settings.reaction_modules:
        try:
            root.include(load_module(name))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if settings.rules_file is not None:
        try:
            root.include(load_rules(settings.rules_file))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return root
