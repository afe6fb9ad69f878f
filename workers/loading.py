"""Load the configured reactions at worker start-up: Python modules and the rules file.

``REACTOR_REACTIONS`` names modules that each expose ``router`` (a :class:`Router`); the
optional ``REACTOR_RULES_FILE`` adds the declarative rules. Anything wrong (a module that does
not import, lacks a router, a rules file with errors) stops start-up with a ConfigError that
says which setting, which module or line, and why.
"""

from __future__ import annotations

import importlib
import sysconfig
import traceback
from pathlib import Path

import app
from app.errors import ConfigError
from app.settings import Settings
from workers.routing import Router
from workers.rules import load_rules


def _where(exc: BaseException) -> str:
    """`` (<file>:<line>)`` of the failure in the reaction module's own code, or ``""``.

    A syntax error is located by the parser. Otherwise: the innermost traceback frame in the
    imported module's file (its first ``<module>`` frame) or outside Python's import machinery,
    standard library, installed packages and this project's own code (``router.on`` refusing
    an unknown event type, or ``re`` a bad pattern, is the caller's mistake, made there).
    """
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" ({exc.filename}:{exc.lineno})" if exc.lineno else f" ({exc.filename})"
    frames = traceback.extract_tb(exc.__traceback__)
    module = next((f.filename for f in frames if f.name == "<module>"), None)
    for frame in reversed(frames):
        if frame.filename == module or not _library(frame.filename):
            return f" ({frame.filename}:{frame.lineno})"
    return ""


def _library(filename: str) -> bool:
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>, <template>
        return True
    path = Path(filename).resolve()
    return any(path.is_relative_to(root) for root in _LIBRARY_ROOTS)


def _library_roots() -> frozenset[Path]:
    """Python's standard library, installed packages, and this project's own packages."""
    paths = sysconfig.get_paths()
    roots = {Path(paths[k]) for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots |= {Path(app.__file__).parent, Path(__file__).parent}  # app/, workers/
    return frozenset(root.resolve() for root in roots)


_LIBRARY_ROOTS = _library_roots()


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
    except (Exception, SystemExit) as exc:  # a module that calls sys.exit() at import too
        text = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        message = f"{type(exc).__name__}: {text}{_where(exc)}"
        raise ConfigError(
            f"REACTOR_REACTIONS: module {name!r} failed to import: {message}"
        ) from None
    if not hasattr(module, "router"):
        raise ConfigError(
            f"REACTOR_REACTIONS: module {name!r} has no `router` (a workers.routing.Router)"
        )
    router = module.router
    if not isinstance(router, Router):
        raise ConfigError(
            f"REACTOR_REACTIONS: module {name!r}: `router` is a {type(router).__name__}, "
            "not a workers.routing.Router"
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
