"""The import graph of a package, read from its source, for the layer tests.

Every import counts: at module level, inside functions and under ``TYPE_CHECKING``
alike. An import that only type-checkers see still ties two modules together for a
reader, and a circle that "works" because one side imports late is still a circle.
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Mapping, Sequence
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, *([node.module] if node.module else [])])
    # `from . import x` and `from .pkg import sub` may name submodules
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph(package: str) -> dict[str, set[str]]:
    """``{module: {modules of the same package it imports}}`` for every module."""
    paths = sorted((SRC / package).rglob("*.py"))
    modules = {module_name(p): p for p in paths}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                targets.update(_resolve(name, path.name == "__init__.py", node))
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def layer_of(module: str, layers: Sequence[tuple[str, Sequence[str]]]) -> int:
    """The rank of the first layer whose patterns match the module (0 is the lowest)."""
    for rank, (_, patterns) in enumerate(layers):
        if any(fnmatch.fnmatchcase(module, pattern) for pattern in patterns):
            return rank
    raise LookupError(f"{module} belongs to no layer: add it to the layer table")


def upward_imports(
    graph: Mapping[str, set[str]], layers: Sequence[tuple[str, Sequence[str]]]
) -> list[str]:
    """Every import of a module from a higher layer than its own, as readable lines."""
    bad = []
    for module, targets in sorted(graph.items()):
        rank = layer_of(module, layers)
        bad += [
            f"{module} ({layers[rank][0]}) imports {target} ({layers[layer_of(target, layers)][0]})"
            for target in sorted(targets)
            if layer_of(target, layers) > rank
        ]
    return bad
