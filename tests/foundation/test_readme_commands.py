"""The README's command table names every option of every command, as argparse defines it."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from app.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from _commands(child, (*path, name))


def _rows(path: tuple[str, ...]) -> str:
    """The README table rows of a command: ``reactor dlq list|show|...`` covers ``dlq show``."""
    rows = []
    for line in (README).read_text(encoding="utf-8").splitlines():
        first = line.split(" | ")[0]
        if not first.startswith(f"| `reactor {path[0]}"):
            continue
        if len(path) == 1 or path[1] in first.replace("\\|", " ").split():
            rows.append(line)
            if "`simulator/README.md`" in line:  # the simulator's options are listed there
                rows.append((ROOT / "simulator" / "README.md").read_text(encoding="utf-8"))
    return "\n".join(rows)


def test_the_command_table_lists_every_option() -> None:
    missing = []
    for path, parser in _commands(build_parser()):
        rows = _rows(path)
        assert rows, f"README has no row for reactor {' '.join(path)}"
        for action in parser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help" and f"{option}" not in rows:
                    missing.append(f"reactor {' '.join(path)} {option}")
    assert not missing, missing


def test_the_command_table_gives_each_host_default() -> None:
    """``reactor web`` listens on every interface by default, ``reactor dev`` on loopback."""
    for command in ("web", "dev"):
        host = build_parser().parse_args([command]).host
        assert f"`{host}`" in _rows((command,)), (command, host)
