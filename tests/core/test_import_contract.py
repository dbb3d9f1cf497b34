"""The dependency rules of docs/ARCHITECTURE.md, checked on the source with ``ast``.

Layers: the core (``meddata/`` except ``cli/`` and ``publish/``) imports only the core;
``publish`` imports the core; builders and filters import the core only; trainers import the
core and ``publish`` (a build folder's summary); the front door (``cli``) may import anything.
Every import counts, lazy ones inside functions too: a lazy import is still a dependency.
Module-level imports must also form no cycle (a loop makes import order matter).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from testutil import ROOT

#: Source folder -> the package it ships as.
PACKAGES = {"meddata": "meddata", "builders": "meddata.builders", "filters": "meddata.filters",
            "trainers": "meddata.trainers"}
#: Layer -> the layers it may import.
ALLOWED = {
    "core": {"core"},
    "publish": {"core", "publish"},
    "builders": {"core", "builders"},
    "filters": {"core", "filters"},
    "trainers": {"core", "publish", "trainers"},
    "cli": {"core", "publish", "builders", "filters", "trainers", "cli"},
}


def layer(module: str) -> str:
    if module == "meddata.__main__":  # ``python -m meddata`` is the command line
        return "cli"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("builders", "filters", "trainers", "publish", "cli"):
        return parts[1]
    return "core"


def source_modules() -> dict[str, Path]:
    """Every module name -> its file, as the wheel ships it."""
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("").parts
            if rel[-1] == "__init__":
                rel = rel[:-1]
            out[".".join((package, *rel))] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool, modules: set[str], *,
             top_level_only: bool) -> Iterator[tuple[str, int]]:
    """(imported module, line) for each import; ``from p import name`` imports the module
    ``p.name`` when there is one, else ``p`` itself."""
    def visit(node: ast.AST, top: bool) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue  # never executed
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if top_level_only:
                    continue
                yield from visit(child, False)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = module.split(".") if is_package else module.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    yield (sub if sub in modules else base), child.lineno
            else:
                yield from visit(child, top)
    yield from visit(tree, True)


def import_graph(*, top_level_only: bool) -> dict[str, dict[str, int]]:
    """module -> {imported meddata module: first line}."""
    modules = source_modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        edges: dict[str, int] = {}
        for target, line in _imports(tree, name, path.name == "__init__.py", set(modules),
                                     top_level_only=top_level_only):
            if target in modules and target != name:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def contract_violations(graph: dict[str, dict[str, int]]) -> list[str]:
    modules = source_modules()
    bad = []
    for name, edges in graph.items():
        for target, line in edges.items():
            if layer(target) not in ALLOWED[layer(name)]:
                rel = modules[name].relative_to(ROOT)
                bad.append(f"{rel}:{line}: {layer(name)} module {name} imports {target} ({layer(target)})")
    return bad


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                strongconnect(w)
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return found


def test_layers_import_only_what_they_may():
    assert contract_violations(import_graph(top_level_only=False)) == []


def test_no_import_cycles():
    # module-level imports: a loop makes import order matter; lazy ones too, so that a later
    # move of a lazy import to the top never brings a loop back
    assert cycles(import_graph(top_level_only=True)) == []
    assert cycles(import_graph(top_level_only=False)) == []


def test_the_checker_sees_a_violation_and_a_cycle():
    # the two checks above must be able to fail: a core module importing a filter, a publish
    # module importing a builder, and a two-module loop
    graph = {"meddata.steps": {"meddata.filters.judge": 3}, "meddata.publish.card": {"meddata.builders.table": 5},
             "meddata.filters.judge": {}, "meddata.builders.table": {}}
    modules = source_modules()
    assert {"meddata.steps", "meddata.publish.card", "meddata.filters.judge", "meddata.builders.table"} <= set(modules)
    assert len(contract_violations(graph)) == 2
    assert cycles({"a": {"b": 1}, "b": {"a": 2}, "c": {"a": 1}}) == [["a", "b"]]


def test_plug_ins_are_imported_by_their_installed_names():
    # builders/, filters/ and trainers/ ship as meddata.builders, ...: `import filters.x`
    # works only from a source checkout, never from a wheel
    bad = []
    for folder in (*PACKAGES, "tests", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
                bad += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names
                        if n.split(".")[0] in ("builders", "filters", "trainers")]
    assert bad == []
