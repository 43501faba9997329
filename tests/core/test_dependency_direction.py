"""The core's parts depend on each other in one direction: no import cycle, checked with ``ast``.

A unit is a subpackage of ``banger_core`` (``banger_core.lifecycle``) or a
top-level module (``banger_core.plugins``). Every import counts, at module
level or inside a function, except those under ``if TYPE_CHECKING:`` (types
only, never executed). The cycles this removed: ``rpc``-``cli``,
``images``-``lifecycle``, ``lifecycle``-``plugins`` and ``daemon`` ->
``services`` -> ``lifecycle`` -> ``daemon.server``; the layers, bottom up, are
roughly errors/system/paths -> rpc, hookspecs, hookcontext -> plugins, doctor,
images, firecracker -> lifecycle -> services -> daemon, and cli over rpc.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORE = REPO / "banger_core"


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _unit(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _type_only(tree: ast.AST) -> set[int]:
    """Ids of the nodes under ``if TYPE_CHECKING:``."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for body_node in node.body:
                ids |= {id(n) for n in ast.walk(body_node)}
    return ids


def dependency_graph() -> dict[str, dict[str, list[str]]]:
    """``{unit: {unit it imports: ["file:line", ...]}}`` over banger_core."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(CORE.rglob("*.py")):
        source = _module(path)
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_only(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from banger_core import system`` imports the module banger_core.system
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                if not target.startswith("banger_core."):
                    continue
                if (CORE / target.split(".")[1]).exists() or (
                    CORE / f"{target.split('.')[1]}.py"
                ).exists():
                    dest = _unit(target)
                    if dest != _unit(source):
                        where = f"{path.relative_to(REPO)}:{node.lineno}"
                        graph.setdefault(_unit(source), {}).setdefault(dest, []).append(where)
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str]:
    """One cycle of units (``[a, b, ..., a]``), or ``[]``."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(unit: str) -> list[str]:
        state[unit] = 1
        path.append(unit)
        for dest in sorted(graph.get(unit, {})):
            if state.get(dest) == 1:
                return path[path.index(dest) :] + [dest]
            if dest not in state:
                found = visit(dest)
                if found:
                    return found
        path.pop()
        state[unit] = 2
        return []

    for unit in sorted(graph):
        if unit not in state:
            found = visit(unit)
            if found:
                return found
    return []


def test_banger_core_has_no_import_cycle() -> None:
    graph = dependency_graph()
    cycle = find_cycle(graph)
    edges = [f"{a} -> {b} ({graph[a][b][0]})" for a, b in itertools.pairwise(cycle)]
    assert not cycle, "import cycle: " + "; ".join(edges)


def test_the_named_directions_hold() -> None:
    graph = dependency_graph()
    for low, high in (
        ("banger_core.rpc", "banger_core.cli"),
        ("banger_core.images", "banger_core.lifecycle"),
        ("banger_core.plugins", "banger_core.lifecycle"),
        ("banger_core.lifecycle", "banger_core.daemon"),
        ("banger_core.lifecycle", "banger_core.services"),
        ("banger_core.api", "banger_core.lifecycle"),
    ):
        assert high not in graph.get(low, {}), f"{low} imports {high}: {graph[low][high]}"


def test_the_checker_finds_a_cycle() -> None:
    graph = {"a": {"b": ["x:1"]}, "b": {"c": ["y:2"]}, "c": {"a": ["z:3"]}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": ["x:1"]}}) == []
