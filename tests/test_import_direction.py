"""Direction of dependencies: sandbox -> checks -> core, and no import cycle anywhere.

Read from the source (ast), every import counts, also one inside a function: a lazy import
hides a cycle from the interpreter, not from a reader. Only imports under
`if TYPE_CHECKING:` are left out: they never run, they name a type for the checker.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import kfm_runbooks

PACKAGE = Path(kfm_runbooks.__file__).resolve().parent
NAME = "kfm_runbooks"
SIMULATORS = (f"{NAME}.sandbox",)  # parts/ and services/ (the live processes)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


_TYPE_CHECKING = {"TYPE_CHECKING", "typing.TYPE_CHECKING"}
MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(module: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module) for every import in a module: relative ones resolved, and
    `from X import name` counted as X.name when that is a module of the package."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in _TYPE_CHECKING:
            node.body = []  # type-only imports: not a dependency at run time
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            yield node.lineno, source
            for alias in node.names:
                if f"{source}.{alias.name}" in MODULES:
                    yield node.lineno, f"{source}.{alias.name}"


def _edges() -> dict[str, set[str]]:
    return {
        module: {target for _, target in _imports(module) if target in MODULES and target != module}
        for module in MODULES
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_the_scan_sees_the_package() -> None:
    assert f"{NAME}.checks.undo" in MODULES and f"{NAME}.sandbox.services.focus" in MODULES
    edges = _edges()
    assert (
        f"{NAME}.checks.common.jcs" in edges[f"{NAME}.sandbox.parts.catalog_records"]
    )  # sandbox -> checks
    assert f"{NAME}.checks.catalog.health" in edges[f"{NAME}.checks.graph.backup"]


def test_no_check_imports_the_sandbox() -> None:
    offending = [
        f"{MODULES[module].relative_to(PACKAGE)}:{line} imports {target}"
        for module in MODULES
        if module.startswith(f"{NAME}.checks")
        for line, target in _imports(module)
        if target.startswith(SIMULATORS)
    ]
    assert offending == [], "checks must judge a real system, not import the simulator"


def test_type_checking_imports_are_not_dependencies() -> None:
    edges = _edges()
    assert f"{NAME}.layout" not in edges[f"{NAME}.evidence"]  # Workspace: a type only
    assert f"{NAME}.evidence" in edges[f"{NAME}.layout"]  # finishes a torn publication


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules() -> None:
    assert _cycles(_edges()) == []
