"""JIT build of nerfkit's CUDA kernels (``cuda/*.cu`` + ``cuda/ext.cpp``) into the module ``nerfkit_cuda``.

Called only by :func:`nerfkit.ops._backend.load_native`, on the first native call; importing nerfkit
never compiles anything. ``torch.utils.cpp_extension.load`` caches the build (under
``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``) and rebuilds when a source changes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import ModuleType

import torch

EXTENSION_NAME = "nerfkit_cuda"
_KERNEL_SOURCES = ("ray_marching.cu", "compositing.cu", "hash_encoding.cu")
_BINDING_SOURCE = "ext.cpp"


def _candidate_dirs() -> list[Path]:
    """Where the CUDA sources may be: shipped as package data, or the source checkout's ``cuda/``."""
    package = Path(__file__).resolve().parents[1]          # .../nerfkit
    return [package / "cuda_src",                         # package data (pyproject maps cuda/ here)
            package.parent / "cuda"]                      # repo checkout: <repo>/cuda next to nerfkit/


def _source_dir() -> Path:
    """The folder holding ext.cpp and the .cu files; RuntimeError naming the places tried."""
    for folder in _candidate_dirs():
        if all((folder / name).is_file() for name in (_BINDING_SOURCE, *_KERNEL_SOURCES)):
            return folder
    tried = ", ".join(str(p) for p in _candidate_dirs())
    raise RuntimeError(f"nerfkit CUDA sources not found (looked in {tried})")


def sources() -> list[Path]:
    """The translation units of the extension, binding first."""
    folder = _source_dir()
    return [folder / _BINDING_SOURCE, *(folder / name for name in _KERNEL_SOURCES)]


def _find_nvcc() -> str | None:
    from torch.utils import cpp_extension
    cuda_home = cpp_extension.CUDA_HOME
    if cuda_home and (Path(cuda_home) / "bin" / "nvcc").is_file():
        return str(Path(cuda_home) / "bin" / "nvcc")
    return shutil.which("nvcc")


def build(verbose: bool = False) -> ModuleType:
    """Compile (first time) and import the extension.

    Raises:
        RuntimeError: no CUDA device, PyTorch without CUDA, no nvcc, or sources missing.
    """
    if not torch.cuda.is_available():
        raise RuntimeError("nerfkit CUDA kernels need a CUDA device (torch.cuda.is_available() is False)")
    if torch.version.cuda is None:
        raise RuntimeError("nerfkit CUDA kernels need a CUDA build of PyTorch")
    if _find_nvcc() is None:
        raise RuntimeError("nerfkit CUDA kernels need nvcc (set CUDA_HOME or put nvcc on PATH)")
    from torch.utils import cpp_extension
    folder = _source_dir()
    # No -std flag: torch picks the C++ standard its headers need (c++17 or c++20); the kernels
    # compile under both. No --use_fast_math: the kernels reproduce the twins' float32 rounding
    # (IEEE division, log2f/exp2f/expf) and fast math would change it.
    return cpp_extension.load(
        name=EXTENSION_NAME,
        sources=[str(p) for p in sources()],
        extra_include_paths=[str(folder)],
        extra_cflags=["-O3"],
        extra_cuda_cflags=["-O3"],
        verbose=verbose or os.environ.get("NERFKIT_BUILD_VERBOSE", "0") not in ("", "0"),
    )


__all__ = ["EXTENSION_NAME", "build", "sources"]
