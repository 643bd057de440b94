"""The package build's two additions to pyproject.toml.

1. The recipes ship as package data: recipes/*.py, their configs and README are copied into the
   wheel as vavl/_recipes/ (files, not a package: `vavl run finetune` executes them by path).
2. vavl's optional C attention kernel (vavl/nn/native/attention.c -> vavl/nn/native/_attention*.so,
   loaded with ctypes), built only when asked for: `VAVL_BUILD_KERNEL=1 pip install ...`. It carries
   its own sweeps for each ISA level and picks one at run time (no -march flag); OpenMP is used when
   the compiler has it. A build that fails warns and installs without it. Models use it only with
   attn_implementation="cpu_kernel" (docs/design/kernel.md).
"""
import os
import shutil
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

OPENMP = ["-fopenmp"]
KERNEL = Extension(
    "vavl.nn.native._attention",
    sources=["vavl/nn/native/attention.c"],
    depends=["vavl/nn/native/attention_sweeps.h"],
    extra_compile_args=["-O3", "-g0", "-std=gnu11", *OPENMP],
    extra_link_args=OPENMP,
)
BUILD_KERNEL = os.environ.get("VAVL_BUILD_KERNEL", "0") == "1"
RECIPE_FILES = ("*.py", "README.md", "configs/*/*.yaml")


class BuildWithRecipes(build_py):
    """build_py that also copies the recipes into the wheel as vavl/_recipes/."""

    def run(self):
        super().run()
        source, target = Path("recipes"), Path(self.build_lib, "vavl", "_recipes")
        for pattern in RECIPE_FILES:
            for path in source.glob(pattern):
                dest = target / path.relative_to(source)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)


class OptionalKernel(build_ext):
    """build_ext that tries with OpenMP, then without, then leaves the kernel out."""

    def run(self):
        try:
            super().run()
        except Exception as err:  # no compiler at all (setuptools raises before building)
            self.skip(err)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
            return
        except Exception as err:
            first = err
        ext.extra_compile_args = [a for a in ext.extra_compile_args if a not in OPENMP]
        ext.extra_link_args = [a for a in ext.extra_link_args if a not in OPENMP]
        try:
            super().build_extension(ext)
            print("vavl: built the CPU attention kernel without OpenMP (one thread): "
                  f"the compiler could not use -fopenmp ({first})", file=sys.stderr)
        except Exception as err:
            self.skip(err)

    @staticmethod
    def skip(err):
        print(f"WARNING: vavl: VAVL_BUILD_KERNEL=1 but the CPU attention kernel could not be built ({err}); "
              "installing without it. attn_implementation='cpu_kernel' will say so; every other implementation "
              "works. Install gcc or clang and reinstall to get it.", file=sys.stderr)


setup(ext_modules=[KERNEL] if BUILD_KERNEL else [],
      cmdclass={"build_ext": OptionalKernel, "build_py": BuildWithRecipes})
