"""The import rules of the layout (docs/design.md): integrations → bot → tools, sessions; development machinery
outside the runtime; no cycles. Every import counts, also those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "integrations", "tools", "sessions", "devtools")
PLATFORM_SDKS = ("slack_bolt", "slack_sdk", "botbuilder", "microsoft_agents")
# the composition root mounts the configured platforms and the CLI runs the development commands
COMPOSITION_ROOT = {"bot.app", "bot.web", "bot.cli"}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    paths = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts]
    modules = {_module(p) for p in paths}
    for path in paths:
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                submodules = {f"{node.module}.{a.name}" for a in node.names} & modules
                # `from package import module` needs the module, not what the package's __init__ imports
                names |= submodules if len(submodules) == len(node.names) else {node.module} | submodules
        graph[_module(path)] = names
    return graph


# parsing every module takes a second or more: only the worker that runs these tests pays it, once
pytestmark = pytest.mark.xdist_group("layout")


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return _imports()


def _ours(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {module: {name for name in names if name in graph and name != module} for module, names in graph.items()}


def _top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("package", ["tools", "sessions"])
def test_tools_and_sessions_import_nothing_of_the_bot(package: str, graph: dict[str, set[str]]) -> None:
    offending = {
        module: sorted(name for name in names if _top(name) in ("bot", "integrations", "devtools"))
        for module, names in graph.items()
        if _top(module) == package
    }
    assert {module: names for module, names in offending.items() if names} == {}


def test_the_core_imports_no_platform_sdk_and_reaches_platforms_only_from_the_composition_root(
    graph: dict[str, set[str]],
) -> None:
    sdks = {m: sorted(n for n in names if _top(n) in PLATFORM_SDKS) for m, names in graph.items() if _top(m) == "bot"}
    assert {m: n for m, n in sdks.items() if n} == {}
    outward = {
        m: sorted(n for n in names if _top(n) in ("integrations", "devtools"))
        for m, names in graph.items()
        if _top(m) == "bot" and m not in COMPOSITION_ROOT
    }
    assert {m: n for m, n in outward.items() if n} == {}


def test_integrations_see_the_core_through_its_port_not_its_internals(graph: dict[str, set[str]]) -> None:
    internals = ("bot.app", "bot.dispatcher", "bot.approvals", "bot.engine", "bot.actions", "bot.toolbox", "sessions")
    reached = {
        m: sorted(n for n in names if n.startswith(internals))
        for m, names in graph.items()
        if _top(m) == "integrations"
    }
    assert {m: n for m, n in reached.items() if n} == {}


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    ours = _ours(graph)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for name in sorted(ours[module]):
            if state.get(name) == 1:
                cycles.append(stack[stack.index(name):] + [name])
            elif name not in state:
                visit(name, [*stack, name])
        state[module] = 2

    for module in sorted(ours):
        if module not in state:
            visit(module, [module])
    assert cycles == []
