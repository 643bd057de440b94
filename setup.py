"""The package build's one addition to pyproject.toml: vavl's optional C attention kernel.

vavl/native/attention.c becomes vavl/native/_attention*.so (loaded with ctypes, see
vavl/native/attention.py), with no -march flag: it carries its own sweeps for each ISA level and
picks one at run time. OpenMP is used when the compiler has it; when the kernel cannot be built at
all the install goes on without it (with a warning) and vavl runs PyTorch's SDPA instead.
"""
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP = ["-fopenmp"]
KERNEL = Extension(
    "vavl.native._attention",
    sources=["vavl/native/attention.c"],
    depends=["vavl/native/attention_sweeps.h"],
    extra_compile_args=["-O3", "-g0", "-std=gnu11", *OPENMP],
    extra_link_args=OPENMP,
)


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
        print(f"WARNING: vavl: the CPU attention kernel could not be built ({err}); installing without it. "
              "vavl will use PyTorch's SDPA attention ('vavl env' says so); install gcc or clang and reinstall "
              "to get the faster kernel.", file=sys.stderr)


setup(ext_modules=[KERNEL], cmdclass={"build_ext": OptionalKernel})
