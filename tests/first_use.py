"""Run `vavl predict` as a user's first command, once per saved model, each in a process of its own.

    python tests/first_use.py runs.json    # [{"family": ..., "model": DIR, "clip": FILE}, ...]

Prints one JSON line per run: {"family", "rc", "stdout", "stderr"}, then one for the meta check.

Starting a Python per model costs seconds of imports each; instead this process imports only what
every `vavl predict` imports before it loads a model (torch, transformers' top level and its
PreTrainedModel module, PyAV, numpy, the vavl command line) and forks a child per model. Nothing
that loading or running a model imports lazily (vavl's encoder and model modules, transformers'
model families, timm, feature extractors and what they import) is in this process, so each child
meets all of it for the first time, as a user's `vavl predict` does.

The first child, forked before transformers is imported, imports every vavl module inside
`with torch.device("meta")` (as transformers builds a model) and reports any module-level tensor
left on the meta device.
"""
from __future__ import annotations

import io
import json
import os
import sys
import tempfile


def _child(run) -> None:
    """In the forked child: run the command line, its output to files, then leave without cleanup."""
    out, err = (tempfile.NamedTemporaryFile("w+", delete=False, suffix=s) for s in (".out", ".err"))
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    sys.stdout, sys.stderr = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), write_through=True), \
        io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), write_through=True)
    under_meta = []   # modules first imported while a meta-device context was active (as transformers builds a model)

    def audit(event, args):
        if event == "import":
            try:
                if sys.modules["torch"].get_default_device().type == "meta":
                    under_meta.append(args[0])
            except Exception:   # torch not (fully) imported yet
                pass

    sys.addaudithook(audit)
    code = 70
    try:
        code = run()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        with open(os.environ["FIRST_USE_OUT"], "w") as f:
            json.dump({"rc": code, "stdout": out.name, "stderr": err.name, "imported_under_meta": sorted(set(under_meta)),
                       "meta_tensors": module_tensors_on_meta(set(under_meta))}, f)
        os._exit(0)


def fork(run) -> dict:
    result = tempfile.NamedTemporaryFile(delete=False, suffix=".json").name
    os.environ["FIRST_USE_OUT"] = result
    pid = os.fork()
    if pid == 0:
        _child(run)
    os.waitpid(pid, 0)
    with open(result) as f:
        got = json.load(f)
    return {**got, "stdout": open(got["stdout"]).read(), "stderr": open(got["stderr"]).read()[-3000:]}


def module_tensors_on_meta(names) -> list[str]:
    """Module-level tensors (and tensors held by module-level classes) on the meta device, in the
    modules `names` that are loaded."""
    import torch

    found = []
    for name in names:
        module = sys.modules.get(name)
        for attr, value in (vars(module).items() if module is not None else ()):
            values = [value] + (list(vars(value).values()) if isinstance(value, type) else [])
            found += [f"{name}.{attr}" for v in values if isinstance(v, torch.Tensor) and v.is_meta]
    return sorted(set(found))


def meta_tensors() -> int:
    """Import every vavl module under a meta-device context; print the module-level tensors left on meta."""
    import importlib
    import importlib.util
    import pkgutil

    import torch

    import vavl

    with torch.device("meta"):
        for info in pkgutil.walk_packages(vavl.__path__, "vavl."):
            if ".cli" in info.name or info.name.endswith("__main__"):
                continue
            origin = importlib.util.find_spec(info.name).origin or ""
            if not origin.endswith(".py"):   # the C attention kernel: a shared library ctypes loads, not a module
                continue
            importlib.import_module(info.name)
    print(json.dumps(module_tensors_on_meta([name for name in sys.modules if name.startswith("vavl")])))
    return 0


def main(spec: str) -> None:
    import av  # noqa: F401
    import numpy  # noqa: F401
    import torch

    torch.set_num_threads(1)
    meta = fork(meta_tensors)   # before this process imports transformers (and, through it, vavl's models)
    import transformers  # noqa: F401
    import transformers.modeling_utils  # noqa: F401

    import vavl.cli

    for run in json.loads(open(spec).read()):
        got = fork(lambda: vavl.cli.main(["predict", run["clip"], "--model", run["model"], "--json"]))
        print(json.dumps({"family": run["family"], **got}), flush=True)
    print(json.dumps({"family": "meta", **meta}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
