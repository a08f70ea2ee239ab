"""The package's shape: no import cycle between its modules (imports inside functions count;
those under ``if TYPE_CHECKING:`` do not), and no module too long to read in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

import adapter_registry

PACKAGE = Path(adapter_registry.__file__).parent
NAME = "adapter_registry"
#: Longest module, and the facade's own limit.
MAX_LINES, MAX_FACADE_LINES = 400, 300


def _module_name(path: Path) -> str:
    parts = [NAME, *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    """Every module of the package; the compiled core by its stub (it imports nothing of ours)."""
    found = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    return {**{_module_name(p): p for p in PACKAGE.rglob("*.pyi")}, **found}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, but those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    walk(other)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            walk(child)

    walk(tree)
    return found


def _edges(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import name`: the submodule if there is one, else pkg itself.
            candidates = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        targets.update(c for c in candidates if c in modules and c != name)
    return targets


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
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
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _edges(name, path, modules) for name, path in modules.items()}


def test_no_import_cycle_inside_the_package() -> None:
    graph = import_graph()
    assert len(graph) > 20 and graph[f"{NAME}.registry"], "the graph was read"
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import() -> None:
    # The shape torch.py and registry.py once had: a lazy import one way, a plain one back.
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}}
    assert _cycles(graph) == [["a", "b"]]
    source = "def f():\n    from .registry import x\nif TYPE_CHECKING:\n    from . import cli\n"
    nodes = _imports(ast.parse(source))
    assert [n.module for n in nodes if isinstance(n, ast.ImportFrom)] == ["registry"]


def test_no_module_is_too_long_to_read() -> None:
    lengths = {
        name: len(p.read_text().splitlines()) for name, p in _modules().items() if p.suffix == ".py"
    }
    assert {n: k for n, k in lengths.items() if k > MAX_LINES} == {}
    assert lengths[f"{NAME}.registry"] <= MAX_FACADE_LINES
