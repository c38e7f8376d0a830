"""The client, the fluent API and the stores import each other without cycles.

The graph counts every import statement in ``evtrack/`` (module level and inside
functions, which is where lazy imports live), except those under ``if TYPE_CHECKING``,
and the edge from a submodule to its package's ``__init__``. A cycle among the modules
below would mean one of them can only be imported half-initialised, or that the
layering (tracking → store.base/registry → store.log | store.rest) has a back edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import evtrack

PACKAGE = Path(evtrack.__file__).resolve().parent
LAYERED = ("evtrack.tracking", "evtrack.store", "evtrack.errors", "evtrack.entities")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("evtrack", *path.relative_to(PACKAGE).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


class _NoTypeChecking(ast.NodeTransformer):
    def visit_If(self, node: ast.If) -> ast.AST | None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            return None
        return self.generic_visit(node)


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = _NoTypeChecking().visit(ast.parse(path.read_text()))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in modules and m != "evtrack" and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_client_fluent_and_stores():
    modules = _modules()
    layered = {m: p for m, p in modules.items() if m.startswith(LAYERED)}
    graph = {m: _imports(m, p, modules) & set(layered) for m, p in layered.items()}
    assert "evtrack.tracking.client" in graph and "evtrack.store.log.store" in graph
    assert _cycles(graph) == []


def test_the_stores_do_not_import_the_client_or_the_fluent_api():
    modules = _modules()
    for name, path in modules.items():
        if name.startswith("evtrack.store"):
            deps = _imports(name, path, modules)
            assert not deps & {"evtrack.tracking.client", "evtrack.tracking.fluent"}, name
