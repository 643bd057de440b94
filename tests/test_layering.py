"""The folders of vavl/ are its layers, and imports between them flow one way.

Nobody keeps the order by hand: it is read from the imports themselves. Between two folders,
imports go one way only, so the graph of folders has no cycle; a topological order of it is the
layering, and docs/design/layers.md must list the folders in an order the imports allow. `cli/` is
the top (no folder imports it), and only `__init__.py` and `_autoload.py` (the public names, which
load any layer lazily) sit outside a folder.
"""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vavl"
FACADE = {"__init__.py", "_autoload.py"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path):
    """(line, absolute module name) of every vavl module the file imports, top level or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "vavl" or alias.name.startswith("vavl."):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's package, `level - 1` packages up
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            if not (base == "vavl" or base.startswith("vavl.")):
                continue
            if base == "vavl" or node.module is None:  # `from vavl import cli`, `from . import faces`: the submodules
                for alias in node.names:
                    yield node.lineno, f"{base}.{alias.name}"
            else:
                yield node.lineno, base


def folder_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else None


def folder_graph() -> dict[str, dict[str, list[str]]]:
    """folder -> {imported folder -> ["file:line", ...]} over every file of vavl/ but the facade."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(PACKAGE.rglob("*.py")):
        own = folder_of(module_name(path))
        if own is None:
            continue
        graph[own]
        for line, target in imported_modules(path):
            other = folder_of(target)
            if other is not None and other != own:
                graph[own][other].append(f"{path.relative_to(ROOT)}:{line}")
    return graph


def find_cycle(graph) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in graph.get(node, {}):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def documented_order() -> list[str]:
    text = (ROOT / "docs" / "design" / "layers.md").read_text(encoding="utf-8")
    return re.findall(r"^\d+\. `(\w+)/`", text, flags=re.M)


def test_the_package_top_level_is_folders():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in FACADE)
    assert not loose, f"modules outside a layer folder: {loose}; put each in the folder of its layer"


def test_imports_between_folders_flow_one_way():
    graph = folder_graph()
    cycle = find_cycle(graph)
    if cycle:
        where = [f"{a} -> {b}: {', '.join(graph[a][b][:3])}" for a, b in zip(cycle, cycle[1:])]
        raise AssertionError("folders import each other (a cycle): " + " | ".join(where))


def test_cli_is_the_top_layer():
    graph = folder_graph()
    users = {f: where["cli"] for f, where in graph.items() if "cli" in where}
    assert not users, f"only the command line may import vavl.cli: {users}"


def test_docs_list_the_folders_in_an_order_the_imports_allow():
    order, graph = documented_order(), folder_graph()
    assert sorted(order) == sorted(graph), f"docs/design/layers.md lists {order}; the folders are {sorted(graph)}"
    rank = {f: i for i, f in enumerate(order)}
    wrong = [f"{a} imports {b} ({where[0]})" for a, targets in graph.items() for b, where in targets.items()
             if rank[b] > rank[a]]
    assert not wrong, "docs/design/layers.md puts a folder below one it imports: " + "; ".join(wrong)


def test_a_cycle_is_found_where_there_is_one():
    assert find_cycle({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": []}, "b": {}, "c": {"a": []}}) is None


def uses(path: Path, module: str) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == module for a in node.names)
            or isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == module]


def test_only_the_command_line_parses_arguments():
    found = [f"{p.relative_to(ROOT)}:{line}" for p in sorted(PACKAGE.rglob("*.py")) if folder_of(module_name(p)) != "cli"
             for line in uses(p, "argparse")]
    assert not found, f"argparse outside vavl/cli/: {found}"


def test_the_library_never_imports_a_recipe():
    found = [f"{p.relative_to(ROOT)}:{line}" for p in sorted(PACKAGE.rglob("*.py"))
             for name in ("recipes", "runpy") for line in uses(p, name) if p.name != "run.py"]
    assert not found, f"vavl imports a recipe (recipes are run by path, vavl/cli/run.py): {found}"
