"""`vavl run RECIPE [--config CONFIG] [key=value ...]`: execute a recipe file by path, as torchtune's
`tune run` does. The library never imports a recipe.

    vavl run finetune --config crema_d/auxformer.yaml train.epochs=5    # a shipped recipe and config
    vavl run path/to/my_recipe.py --config my.yaml                      # any recipe file
    vavl run --list                                                     # the shipped recipes and configs

Shipped recipes live in the source checkout's recipes/ (an editable install) or, in a wheel, as
package data in vavl/_recipes/ (recipes are not a package). `--config NAME` is a file, or a config
shipped with the recipes (`crema_d/auxformer` or `crema_d/auxformer.yaml`). Under `accelerate
launch -m vavl.cli run finetune ...` every process runs the recipe.
"""
from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from ..core.errors import ConfigError


def recipes_dir() -> Path:
    """Where the shipped recipes are: vavl/_recipes in a wheel, recipes/ beside the package in a checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "_recipes", package.parent / "recipes"):
        if (candidate / "finetune.py").is_file():
            return candidate
    raise ConfigError(f"no recipes found beside {package} (vavl/_recipes or ../recipes); reinstall vavl, "
                      "or give the path of a recipe file")


def shipped() -> tuple[list[str], list[str]]:
    """(recipe names, config names) that ship with vavl."""
    root = recipes_dir()
    recipes = sorted(p.stem for p in root.glob("*.py") if 'if __name__ == "__main__":' in p.read_text(encoding="utf-8"))
    configs = sorted(str(p.relative_to(root / "configs")) for p in (root / "configs").rglob("*.yaml"))
    return recipes, configs


def resolve_recipe(name: str) -> Path:
    path = Path(name)
    if path.suffix == ".py":
        if not path.is_file():
            raise ConfigError(f"{name}: no such recipe file")
        return path.resolve()
    candidate = recipes_dir() / f"{name}.py"
    if not candidate.is_file():
        raise ConfigError(f"unknown recipe {name!r}; shipped recipes: {', '.join(shipped()[0])} (or give a .py file)")
    return candidate


def resolve_config(name: str) -> str:
    """A config file as given, or one shipped with the recipes (with or without .yaml)."""
    if Path(name).is_file():
        return name
    configs = recipes_dir() / "configs"
    for candidate in (configs / name, configs / f"{name}.yaml"):
        if candidate.is_file():
            return str(candidate)
    raise ConfigError(f"--config {name}: neither a file nor a shipped config (`vavl run --list` shows them)")


def recipe_argv(args: list[str]) -> list[str]:
    """The recipe's arguments, with `--config NAME` resolved to a file."""
    out = list(args)
    for i, a in enumerate(out):
        if a == "--config" and i + 1 < len(out):
            out[i + 1] = resolve_config(out[i + 1])
        elif a.startswith("--config="):
            out[i] = "--config=" + resolve_config(a.split("=", 1)[1])
    return out


def run_recipe(name: str, args: list[str]) -> int:
    """Execute the recipe as `python RECIPE ARGS` would, in this process: its folder first on sys.path,
    sys.argv set, run as __main__. Returns its exit code."""
    path = resolve_recipe(name)
    argv, saved_argv, saved_path = recipe_argv(args), sys.argv, list(sys.path)
    sys.argv = [str(path), *argv]
    sys.path.insert(0, str(path.parent))
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", nargs="?", help="a shipped recipe (finetune, correspondence) or a recipe .py file")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the recipe's own arguments: --config FILE|NAME key=value ...")
    parser.add_argument("--list", action="store_true", help="list the shipped recipes and configs")


def run(args: argparse.Namespace) -> int:
    if args.list or not args.recipe:
        recipes, configs = shipped()
        print(f"recipes ({recipes_dir()}):\n  " + "\n  ".join(recipes) + "\nconfigs:\n  " + "\n  ".join(configs))
        return 0
    return run_recipe(args.recipe, args.args)
