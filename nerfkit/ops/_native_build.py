"""JIT builds of nerfkit's kernels: the CUDA extension (``cuda/*.cu`` + ``cuda/ext.cpp``, module
``nerfkit_cuda``) and the CPU extension (``cuda/cpu_*.cpp``, the same ``.cuh`` maths compiled by the
host compiler with OpenMP, module ``nerfkit_cpu_<machine tag>``).

Called only by :func:`nerfkit.ops._backend.load_native`, on the first native call of a backend;
importing nerfkit never compiles anything. ``torch.utils.cpp_extension.load`` caches each build
(under ``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``) and rebuilds when a source
or a flag changes. It needs ninja (the ``ninja`` package, a dependency of nerfkit).

torch serialises builds of one extension with a ``lock`` file in its build folder and waits for it
to go away, for ever: a process killed while it was building (Ctrl-C twice, a job's time limit)
leaves it behind and every later run would hang. :func:`clear_stale_build_locks` removes a lock
whose folder has not changed for :data:`STALE_LOCK_SECONDS` (a live build writes an object file
every minute or so) before each build, with one warning.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import time
import warnings
from pathlib import Path
from types import ModuleType

import torch

EXTENSION_NAME = "nerfkit_cuda"
CPU_EXTENSION_PREFIX = "nerfkit_cpu"
_CUDA_SOURCES = ("ext.cpp", "ray_marching.cu", "compositing.cu", "hash_encoding.cu")
_CPU_SOURCES = ("cpu_ext.cpp", "cpu_rays.cpp", "cpu_hash.cpp", "cpu_splat.cpp")

# The CPU build: -O3, the vector ISA of the machine it runs on (it is built where it runs; the
# machine tag in the module name keeps a cache shared between machines from loading a build for
# another CPU), OpenMP (torch's own libgomp: one thread pool, sized by torch.set_num_threads).
# -ffp-contract=off and no -ffast-math: marching keeps the twins' float32 rounding bit for bit.
CPU_CFLAGS = ("-O3", "-march=native", "-fopenmp", "-ffp-contract=off")
CPU_LDFLAGS = ("-fopenmp",)
STALE_LOCK_SECONDS = 600.0   # a build folder unchanged this long with a lock in it: its builder died


def _candidate_dirs() -> list[Path]:
    """Where the kernel sources may be: shipped as package data, or the source checkout's ``cuda/``."""
    package = Path(__file__).resolve().parents[1]          # .../nerfkit
    return [package / "cuda_src",                         # package data (pyproject maps cuda/ here)
            package.parent / "cuda"]                      # repo checkout: <repo>/cuda next to nerfkit/


def _source_dir(names: tuple[str, ...] = _CUDA_SOURCES + _CPU_SOURCES) -> Path:
    """The folder holding all of ``names``; RuntimeError naming the places tried."""
    for folder in _candidate_dirs():
        if all((folder / name).is_file() for name in names):
            return folder
    tried = ", ".join(str(p) for p in _candidate_dirs())
    raise RuntimeError(f"nerfkit kernel sources not found (looked in {tried})")


def cuda_sources() -> list[Path]:
    """The translation units of the CUDA extension, binding first."""
    folder = _source_dir(_CUDA_SOURCES)
    return [folder / name for name in _CUDA_SOURCES]


def cpu_sources() -> list[Path]:
    """The translation units of the CPU extension, binding first."""
    folder = _source_dir(_CPU_SOURCES)
    return [folder / name for name in _CPU_SOURCES]


def machine_tag() -> str:
    """8 hex digits naming this CPU's architecture and features (for the CPU build's module name)."""
    features = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("flags", "Features"):
                features = line
                break
    except OSError:
        features = platform.processor()
    key = "|".join([platform.machine(), features, *CPU_CFLAGS])
    return hashlib.sha1(key.encode()).hexdigest()[:8]


def cpu_extension_name() -> str:
    return f"{CPU_EXTENSION_PREFIX}_{machine_tag()}"


def extension_build_dirs(name: str) -> list[Path]:
    """The build folders torch uses for extension ``name``: its own and its versioned ``name_vN``
    (torch's rule: ``TORCH_EXTENSIONS_DIR``, else ``~/.cache/torch_extensions/py3X_<accelerator>``)."""
    from torch.utils import cpp_extension
    root = Path(cpp_extension._get_build_directory(name, False)).parent
    return sorted(p for p in root.glob(f"{name}*") if p.is_dir() and (p.name == name or p.name.startswith(f"{name}_v")))


def clear_stale_build_locks(name: str, stale_after: float = STALE_LOCK_SECONDS,
                            now: float | None = None) -> list[Path]:
    """Remove the ``lock`` files an interrupted build of ``name`` left behind (see the module
    docstring): a lock whose folder's newest file is older than ``stale_after`` seconds. Warns once
    per lock removed; returns them."""
    now = time.time() if now is None else now
    removed = []
    for folder in extension_build_dirs(name):
        lock = folder / "lock"
        try:
            newest = max(entry.stat().st_mtime for entry in folder.iterdir())
            if not lock.exists() or now - newest < stale_after:
                continue
            lock.unlink()
        except (FileNotFoundError, ValueError):          # a live build released it meanwhile
            continue
        removed.append(lock)
        warnings.warn(f"nerfkit removed the build lock {lock}: its folder had not changed for "
                      f"{(now - newest) / 60:.0f} minutes (an interrupted build); building again", stacklevel=3)
    return removed


def _verbose(verbose: bool) -> bool:
    return verbose or os.environ.get("NERFKIT_BUILD_VERBOSE", "0") not in ("", "0")


def _find_nvcc() -> str | None:
    from torch.utils import cpp_extension
    cuda_home = cpp_extension.CUDA_HOME
    if cuda_home and (Path(cuda_home) / "bin" / "nvcc").is_file():
        return str(Path(cuda_home) / "bin" / "nvcc")
    return shutil.which("nvcc")


def build_cuda(verbose: bool = False) -> ModuleType:
    """Compile (first time) and import the CUDA extension.

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
    folder = _source_dir(_CUDA_SOURCES)
    clear_stale_build_locks(EXTENSION_NAME)
    # No -std flag: torch picks the C++ standard its headers need (c++17 or c++20); the kernels
    # compile under both. No --use_fast_math: the kernels reproduce the twins' float32 rounding
    # (IEEE division, log2f/exp2f/expf) and fast math would change it.
    return cpp_extension.load(
        name=EXTENSION_NAME,
        sources=[str(p) for p in cuda_sources()],
        extra_include_paths=[str(folder)],
        extra_cflags=["-O3"],
        extra_cuda_cflags=["-O3"],
        verbose=_verbose(verbose),
    )


def build_cpu(verbose: bool = False) -> ModuleType:
    """Compile (first time; about a minute on 2 cores) and import the CPU extension.

    Raises:
        RuntimeError (or the compiler's error): no C++ compiler, no ninja, sources missing.
    """
    from torch.utils import cpp_extension
    folder = _source_dir(_CPU_SOURCES)
    name = cpu_extension_name()
    clear_stale_build_locks(name)
    return cpp_extension.load(
        name=name,
        sources=[str(p) for p in cpu_sources()],
        extra_include_paths=[str(folder)],
        extra_cflags=list(CPU_CFLAGS),
        extra_ldflags=list(CPU_LDFLAGS),
        verbose=_verbose(verbose),
    )


def build(device_type: str, verbose: bool = False) -> ModuleType:
    """The extension for ``cpu`` or ``cuda`` tensors (see :func:`build_cpu`, :func:`build_cuda`)."""
    if device_type == "cpu":
        return build_cpu(verbose)
    if device_type == "cuda":
        return build_cuda(verbose)
    raise ValueError(f"no native kernels for device type '{device_type}'")


__all__ = ["CPU_CFLAGS", "EXTENSION_NAME", "STALE_LOCK_SECONDS", "build", "build_cpu", "build_cuda",
           "clear_stale_build_locks", "cpu_extension_name", "cpu_sources", "cuda_sources", "extension_build_dirs",
           "machine_tag"]
