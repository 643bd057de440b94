"""Imports flow one way: media -> encoders -> models <- data <- applications (recipes, CLI).

Every `import` of a vavl module anywhere in a vavl file (top level or inside a function) must
point at the same layer or a lower one. The layers are listed here, lowest first; a module not
listed belongs to the application layer at the top.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [
    ("core", ["vavl.errors", "vavl.labels"]),
    ("building blocks", ["vavl.registry", "vavl.batch", "vavl.devices", "vavl.native", "vavl.attention", "vavl.layers", "vavl.losses",
                         "vavl.metrics", "vavl.outputs", "vavl.features", "vavl.plots", "vavl.timeline"]),
    ("media", ["vavl.media"]),
    ("encoders", ["vavl.encoders", "vavl.processing"]),
    ("models", ["vavl.models"]),
    ("data", ["vavl.data"]),
]
APPLICATION = len(LAYERS)


def layer_of(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return APPLICATION


def layer_name(rank: int) -> str:
    return LAYERS[rank][0] if rank < APPLICATION else "application"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path):
    """(line, absolute module name) of every vavl module imported by the file."""
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
            if node.module is None:  # `from . import models, errors`: the submodules themselves
                for alias in node.names:
                    yield node.lineno, f"{base}.{alias.name}"
            else:
                yield node.lineno, base

def test_no_module_imports_a_higher_layer():
    problems = []
    for path in sorted((ROOT / "vavl").rglob("*.py")):
        own = layer_of(module_name(path))
        for line, target in imported_modules(path):
            if target == "vavl":
                continue  # the package itself (its names load lazily)
            if layer_of(target) > own:
                problems.append(f"{path.relative_to(ROOT)}:{line} ({layer_name(own)}) imports {target} "
                                f"({layer_name(layer_of(target))})")
    assert not problems, "imports against the layering:\n" + "\n".join(problems)
