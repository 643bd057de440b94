"""Registering vavl with transformers (its model families with the Auto classes, its pipeline
task) without importing transformers (and torch) at `import vavl`, so that the `vavl` command
starts at once.

If transformers is already imported, `import vavl` registers there and then (`register`: import
`vavl.models`, whose modules call `AutoConfig.register` / `AutoModel.register`, and register the
"audio-visual-emotion-recognition" pipeline). Otherwise it installs `_Watcher`, which sees each
module of transformers being imported; when one finishes and no other import is still under way
(so nothing registering needs is half-built), it removes itself and registers. Either way
`import vavl; AutoModel.from_pretrained(dir)` and `pipeline("audio-visual-emotion-recognition")`
find vavl's classes. vavl's own modules that need the families import `vavl.models` themselves.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys

WATCHED = "transformers"
FAMILIES = "vavl.models"
PIPELINE = "vavl.inference.hf_pipeline"


def _initializing(except_module) -> bool:
    """Whether a module other than `except_module` is still being imported (its code running)."""
    return any(m is not except_module and getattr(getattr(m, "__spec__", None), "_initializing", False)
               for m in list(sys.modules.values()))


class _Watcher(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it asks the finders after it for transformers' modules and wraps
    each one's `exec_module` so that vavl's families are imported once the import settles."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != WATCHED and not fullname.startswith(WATCHED + "."):
            return None
        for finder in sys.meta_path[sys.meta_path.index(self) + 1:]:
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                break
        else:
            return None
        if isinstance(spec.loader, importlib.machinery.SourceFileLoader):  # one loader object per spec
            run_module = spec.loader.exec_module

            def exec_module(module):
                run_module(module)
                if not _initializing(module):
                    register()

            spec.loader.exec_module = exec_module
        return spec


def remove_watcher() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Watcher)]


def register() -> None:
    """The model families with the Auto classes and the pipeline task with transformers (once)."""
    remove_watcher()
    importlib.import_module(FAMILIES)
    importlib.import_module(PIPELINE).register()


def register_models_with_transformers() -> None:
    """Called by `import vavl`."""
    if WATCHED in sys.modules:
        register()
    elif not any(isinstance(f, _Watcher) for f in sys.meta_path):
        sys.meta_path.insert(0, _Watcher())
