"""The import rule of design.md: adapters -> bot -> erm, never back, and no chat library in bot/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAT_LIBRARIES = ("slack_bolt", "slack_sdk", "telegram")
FORBIDDEN = {
    "erm": ("bot", "adapters", *CHAT_LIBRARIES),
    "bot": ("adapters", *CHAT_LIBRARIES),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_never_imports_upward_or_a_chat_library(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imported_modules(path):
            if name.split(".")[0] in FORBIDDEN[package]:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


# -- the shape of the code (issue 15) ---------------------------------------------------------

PACKAGES = ("bot", "adapters", "erm")
MAX_LINES = 500
# Names of chat platforms: they belong in adapters/ only. The bot's migrations keep the CHECK
# constraints of older revisions as they were (bot0008 drops them): schema history, not code.
PLATFORM_NAMES = re.compile(r"slack|telegram|whatsapp|console", re.IGNORECASE)
HISTORY = ROOT / "bot" / "migrations" / "versions"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, counting imports under ``TYPE_CHECKING`` and
    inside functions: a circle drawn only for the type checker is still a circle to a reader."""
    modules = {_module_name(p): p for p in _sources()}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for imported in imported_modules(path):
            if imported in modules:
                deps.add(imported)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):  # `from bot import metrics` imports the module bot.metrics
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps.update(
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if f"{node.module}.{a.name}" in modules
                )
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_anywhere() -> None:
    assert cycles(import_graph()) == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_source_module_is_over_500_lines() -> None:
    long = []
    for path in _sources():
        count = len(path.read_text(encoding="utf-8").splitlines())
        if count > MAX_LINES:
            long.append(f"{path.relative_to(ROOT)}: {count} lines")
    assert long == []


@pytest.mark.parametrize("package", ["bot", "erm"])
def test_platform_names_only_in_adapters(package: str) -> None:
    named = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if HISTORY in path.parents:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if PLATFORM_NAMES.search(line):
                named.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]}")
    assert named == []
