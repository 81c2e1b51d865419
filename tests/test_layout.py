"""The house rules of docs/architecture.md, read from the source (ast only: no package is
imported, so this runs in the edge-only lane without TensorFlow).

- No import circles among the modules of ``edge``, ``training`` and ``converters``: a
  module that needs another's names sits below it, and what two modules share moves down.
  Every import counts, also one inside a function (it runs the first time the function
  does, and a circle then is one a refactoring can close), but not one under
  ``if TYPE_CHECKING:`` (annotations only; it never runs).
- No private name (``_x``) imported from another module: what is used elsewhere is public.
- The arrows point one way: ``edge`` imports neither ``training`` nor ``converters``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge", "training", "converters")

# (importing module, imported module, name): private imports allowed across modules. None.
PENDING_PRIVATE: set[tuple[str, str, str]] = set()
# (importing module, imported module): import edges allowed despite a circle. None.
PENDING_EDGES: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every import statement that runs, at any depth (not under ``if TYPE_CHECKING``)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute name of ``from <node.module> import ...`` written in ``module``."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _edges() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """module -> the project modules it imports; and every (module, source, _name) import."""
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    private: list[tuple[str, str, str]] = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                source = _resolve(module, path, node)
                targets = []
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    if submodule in MODULES:  # from package import module
                        targets.append(submodule)
                    else:
                        targets.append(source)
                        if alias.name.startswith("_") and not alias.name.startswith("__"):
                            private.append((module, source, alias.name))
            graph[module] |= {
                t
                for t in targets
                if t in MODULES and t != module and (module, t) not in PENDING_EDGES
            }
    return graph, private


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_check_sees_the_packages():
    graph, _ = _edges()
    assert {
        "edge.live",
        "edge.tasks",
        "training.train",
        "training.fit",
        "training.task",
        "converters.convert",
    } <= set(graph)
    # It follows relative, absolute and function-level imports alike.
    assert "training.fit" in graph["training.train"]
    assert "training.artifacts" in graph["converters.convert"]
    assert "edge.tasks" in graph["edge.live"]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circles(package):
    graph, _ = _edges()
    inside = {
        m: {t for t in ts if t.split(".")[0] == package}
        for m, ts in graph.items()
        if m.split(".")[0] == package
    }
    assert _cycles(inside) == [], "modules that import each other, directly or round a circle"


def test_no_import_circles_across_packages():
    graph, _ = _edges()
    assert _cycles(graph) == []


def test_no_private_name_is_imported_from_another_module():
    _, private = _edges()
    crossing = sorted(set(private) - PENDING_PRIVATE)
    assert crossing == [], "make these public (or keep them in their module)"


def test_edge_imports_neither_training_nor_converters():
    graph, _ = _edges()
    wrong = {
        m: sorted(t for t in ts if not t.startswith("edge"))
        for m, ts in graph.items()
        if m.startswith("edge")
    }
    assert {m: ts for m, ts in wrong.items() if ts} == {}


def test_one_keras_loader_and_one_sidecar_rule():
    """Opening a trained model has one home (training.artifacts), shared with converters."""
    defined = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in (
                "load_keras_model",
                "sidecar_path",
                "sidecar_paths",
                "load_sidecar",
                "fit",
            ):
                defined.setdefault(node.name, []).append(module)
    assert defined == {
        "load_keras_model": ["training.artifacts"],
        "sidecar_path": ["training.artifacts"],
        "sidecar_paths": ["training.artifacts"],
        "load_sidecar": ["training.artifacts"],
        "fit": ["training.fit"],
    }
