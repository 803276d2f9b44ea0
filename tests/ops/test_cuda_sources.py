"""The CUDA sources compile on a CPU-only machine (nvcc for cuda/*.cu, g++ -fsyntax-only for
cuda/ext.cpp against the installed torch headers), the CUDA build entry point fails clearly without
a GPU, the CPU sources need nothing beyond the shared headers, and importing nerfkit compiles
nothing. Each nvcc check skips when nvcc is absent (the CPU kernels are built and run by
test_cpu_kernels.py, never skipped).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CUDA_DIR = REPO / "cuda"
KERNELS = sorted(CUDA_DIR.glob("*.cu"))
CPU_SOURCES = sorted(CUDA_DIR.glob("cpu_*.cpp"))
ALLOWED_SYSTEM_INCLUDES = {"cuda_runtime.h", "cuda_fp16.h", "cstdint", "cmath"}


def _run(cmd: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=CUDA_DIR)


def _nvcc_compile(source: Path, out_dir: Path) -> tuple[Path, subprocess.CompletedProcess]:
    obj = out_dir / (source.stem + ".o")
    return source, _run(["nvcc", "-c", "-std=c++17", "-arch=sm_90", "-O3", str(source), "-o", str(obj)])


def test_every_kernel_source_is_listed_for_the_build():
    from nerfkit.ops import _native_build
    assert {p.name for p in KERNELS} == {p.name for p in _native_build.cuda_sources() if p.suffix == ".cu"}
    assert {p.name for p in CPU_SOURCES} == {p.name for p in _native_build.cpu_sources()}
    assert _native_build._source_dir().resolve() == CUDA_DIR.resolve()   # also via a nerfkit/cuda_src link


def test_cpu_sources_share_the_kernel_maths_and_need_only_standard_headers():
    """cpu_*.cpp include the .cuh files of the CUDA kernels (one source of the maths), the C++ standard
    library and OpenMP; only the binding includes torch."""
    shared = set()
    for source in CPU_SOURCES:
        text = source.read_text()
        for name in re.findall(r'#include\s+<([^>]+)>', text):
            allowed = name == "torch/extension.h" if source.name == "cpu_ext.cpp" else False
            assert allowed or name == "omp.h" or "/" not in name and "." not in name, f"{source.name} includes <{name}>"
        local = re.findall(r'#include\s+"([^"]+)"', text)
        assert all((CUDA_DIR / name).is_file() for name in local), source.name
        shared |= {name for name in local if name.endswith(".cuh")}
    assert {"ray_marching.cuh", "compositing.cuh", "hash_encoding.cuh"} <= shared


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_cuda_kernels_compile_with_nvcc(tmp_path):
    assert KERNELS, f"no .cu files in {CUDA_DIR}"
    with ThreadPoolExecutor(max_workers=len(KERNELS)) as pool:
        results = list(pool.map(lambda src: _nvcc_compile(src, tmp_path), KERNELS))
    failures = [f"--- {src.name} (exit {r.returncode})\n{r.stdout}{r.stderr}" for src, r in results if r.returncode]
    assert not failures, "nvcc failed:\n" + "\n".join(failures)


def _cuda_include_dir() -> Path | None:
    """The folder holding cuda_runtime.h: from `nvcc --dryrun`, else CUDA_HOME, else /usr/local/cuda."""
    candidates: list[Path] = []
    if shutil.which("nvcc"):
        probe = CUDA_DIR / "compositing.cu"
        dry = subprocess.run(["nvcc", "--dryrun", "-c", str(probe), "-o", "/dev/null"], capture_output=True,
                             text=True, timeout=60)
        candidates += [Path(p) for p in re.findall(r'INCLUDES="-I([^"]+?)"', dry.stdout + dry.stderr)]
    from torch.utils import cpp_extension
    for home in (cpp_extension.CUDA_HOME, "/usr/local/cuda"):
        if home:
            candidates.append(Path(home) / "include")
    return next((c for c in candidates if (c / "cuda_runtime.h").is_file()), None)


def _torch_cxx_standard() -> str:
    """The C++ standard torch.utils.cpp_extension builds with (c++20 from torch 2.10 or so, else c++17)."""
    from torch.utils import cpp_extension
    return "c++20" if "-std=c++20" in Path(cpp_extension.__file__).read_text() else "c++17"


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not on PATH")
def test_binding_parses_against_the_installed_torch_headers():
    from torch.utils import cpp_extension
    cuda_include = _cuda_include_dir()
    if cuda_include is None:
        pytest.skip("cuda_runtime.h not found (no CUDA toolkit headers)")
    cmd = ["g++", "-fsyntax-only", f"-std={_torch_cxx_standard()}", "-DTORCH_EXTENSION_NAME=nerfkit_cuda",
           *(f"-I{p}" for p in cpp_extension.include_paths()), f"-I{sysconfig.get_paths()['include']}",
           f"-I{cuda_include}", f"-I{CUDA_DIR}", str(CUDA_DIR / "ext.cpp")]
    result = _run(cmd, timeout=300)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}{result.stderr}"


def test_kernel_sources_include_only_cuda_and_own_headers():
    for source in [*KERNELS, *CUDA_DIR.glob("*.cuh"), CUDA_DIR / "nerfkit_kernels.h"]:
        for name in re.findall(r'#include\s+<([^>]+)>', source.read_text()):
            assert name in ALLOWED_SYSTEM_INCLUDES, f"{source.name} includes <{name}>"
        for name in re.findall(r'#include\s+"([^"]+)"', source.read_text()):
            assert (CUDA_DIR / name).is_file(), f"{source.name} includes missing \"{name}\""
    binding = (CUDA_DIR / "ext.cpp").read_text()
    assert "#include <torch/extension.h>" in binding
    assert not re.search(r"#include\s+<(ATen/cuda|c10/cuda)", binding), "ext.cpp must not need torch's CUDA headers"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_build_raises_a_clear_error_without_a_gpu():
    from nerfkit.ops import _native_build
    with pytest.raises(RuntimeError, match="CUDA device"):
        _native_build.build_cuda()
    with pytest.raises(RuntimeError, match="CUDA device"):
        _native_build.build("cuda")


def test_importing_nerfkit_compiles_nothing():
    code = ("import sys, nerfkit, nerfkit.ops, nerfkit.render.splat_raster; "
            "bad = [m for m in sys.modules if m in ('nerfkit.ops._native_build', 'nerfkit.ops._native', "
            "'nerfkit_cuda') or m.startswith('nerfkit_cpu')]; print(bad); assert not bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cpu_tensors_never_take_the_cuda_kernels(monkeypatch):
    from nerfkit.ops._backend import backend_of
    monkeypatch.setenv("NERFKIT_NATIVE", "1")
    assert backend_of(torch.zeros(3)) == "cpu"
