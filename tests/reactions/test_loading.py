"""Loading reactions at start-up: modules from REACTOR_REACTIONS and the rules file."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.errors import ConfigError
from app.settings import Settings
from workers.loading import load_reactions
from workers.main import build_worker
from workers.reactor import Reactor

RULES = Path(__file__).parent.parent / "fixtures" / "rules"

GOOD = """
from workers.routing import Router

router = Router()


@router.on("page.updated", space="DEV", title=r"^RFC")
async def review(event, ctx):
    await ctx.comment("<p>reviewing</p>")
"""
BROKEN = """
from workers.routing import Router

router = Router()
raise RuntimeError("cannot reach the feature flag service")
"""
NO_ROUTER = "value = 1\n"
BAD_EVENT = """
from workers.routing import Router

router = Router()
router.on("page.edited")(lambda event, ctx: None)
"""

SYNC = """
from workers.routing import Router

router = Router()


@router.on("page.updated")
def review(event, ctx):
    ctx.log.info("a coroutine was expected")
"""
BAD_TITLE = """
from workers.routing import Router

router = Router()
router.on("page.updated", title="(")
"""
SYNTAX = """
from workers.routing import Router

router = Router(
"""


@pytest.fixture
def modules(tmp_path: Path) -> Iterator[str]:
    package = f"reactionmods_{tmp_path.name.replace('-', '_')}"
    root = tmp_path / package
    root.mkdir()
    (root / "__init__.py").write_text("")
    for name, text in (
        ("good", GOOD),
        ("broken", BROKEN),
        ("norouter", NO_ROUTER),
        ("badevent", BAD_EVENT),
        ("sync", SYNC),
        ("badtitle", BAD_TITLE),
        ("syntax", SYNTAX),
        ("exits", "import sys\n\nsys.exit(3)\n"),
        ("notarouter", "router = 5\n"),
    ):
        (root / f"{name}.py").write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        yield package
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith(package)]:
            del sys.modules[name]


def _settings(settings: Settings, **update: object) -> Settings:
    return settings.model_copy(update=update)


def test_modules_and_rules_compose(settings: Settings, modules: str) -> None:
    router = load_reactions(
        _settings(
            settings,
            reactions=f"{modules}.good,workers.reactions.secrets",
            rules_file=RULES / "valid.yml",
        )
    )
    names = [r.name for r in router]
    assert names[0] == f"{modules}.good.review"
    assert names[1] == "secrets"
    assert "rule:welcome-dev" in names


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("broken", "failed to import: RuntimeError: cannot reach the feature flag service"),
        ("norouter", "has no `router`"),
        ("exits", "failed to import: SystemExit: 3"),  # never a silent exit 3
        ("notarouter", "`router` is a int, not a workers.routing.Router"),
        ("badevent", "unknown event type 'page.edited'"),
        ("missing", "no module named"),
    ],
)
def test_a_broken_module_fails_with_a_clear_message(
    settings: Settings, modules: str, module: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_reactions(_settings(settings, reactions=f"{modules}.{module}"))
    (problem,) = info.value.problems
    assert problem.startswith("REACTOR_REACTIONS: ")
    assert f"{modules}.{module}" in problem and message in problem


@pytest.mark.parametrize(
    ("module", "message", "line"),
    [
        ("badevent", "ValueError: unknown event type 'page.edited'", 5),
        ("sync", "TypeError: {modules}.sync.review: a handler must be an async function", 7),
        ("badtitle", "ValueError: title: invalid regular expression '(': missing )", 5),
        ("syntax", "SyntaxError: '(' was never closed", 4),
    ],
)
def test_a_problem_is_located_at_the_reaction_modules_line(
    settings: Settings, modules: str, tmp_path: Path, module: str, message: str, line: int
) -> None:
    with pytest.raises(ConfigError) as info:
        load_reactions(_settings(settings, reactions=f"{modules}.{module}"))
    (problem,) = info.value.problems
    assert f"failed to import: {message.format(modules=modules)}" in problem
    assert problem.endswith(f" ({tmp_path / modules / module}.py:{line})"), problem


def test_every_problem_is_reported_together(settings: Settings, modules: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_reactions(
            _settings(
                settings,
                reactions=f"{modules}.broken,{modules}.norouter",
                rules_file=RULES / "invalid.yml",
            )
        )
    assert len(info.value.problems) == 2 + 10


def test_unreadable_rules_file(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="REACTOR_RULES_FILE: cannot read"):
        load_reactions(_settings(settings, rules_file=tmp_path / "absent.yml"))


def test_worker_start_up_fails_on_broken_rules(settings: Settings) -> None:
    with pytest.raises(ConfigError):
        build_worker(_settings(settings, rules_file=RULES / "invalid.yml"), burst=True)


async def test_worker_installs_the_reactor_as_dispatcher(settings: Settings) -> None:
    from arq.connections import create_pool

    from app import redis as redis_conn
    from workers import clients

    worker = build_worker(_settings(settings, reactions="workers.reactions.secrets"), burst=True)
    assert settings.redis_url is not None
    ctx = dict(worker.ctx)
    ctx["redis"] = await create_pool(redis_conn.arq_settings(settings.redis_url))
    try:
        await clients.start(ctx)
        assert isinstance(ctx["dispatch"], Reactor)
    finally:
        await clients.stop(ctx)
        await ctx["redis"].aclose()
    plain = build_worker(settings, burst=True)
    ctx = dict(plain.ctx)
    await clients.start(ctx)
    assert not isinstance(ctx["dispatch"], Reactor)
