"""The kernels' per-ray / per-point code (cuda/*.cuh), compiled for the CPU, against the PyTorch twins.

No GPU needed: tests/ops/host_harness.cpp wraps the same NK_HD functions the CUDA kernels call in
plain loops, g++ builds it (skipped when g++ is missing), and ctypes calls it on CPU tensors. This
proves the kernels' maths (hash indices and weights, marching steps and grid lookups, compositing
and its gradient) but not the launch code, memory handling or atomics: test_cuda_parity.py does
that on a GPU.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import _cuda_parity_cases as cases  # noqa: I001 - tests/ops helper, put on sys.path by conftest.py
from nerfkit.ops import Composited

REPO = Path(__file__).resolve().parents[2]
P = ctypes.c_void_p
I64 = ctypes.c_int64
I32 = ctypes.c_int
F64 = ctypes.c_double


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> ctypes.CDLL:
    if shutil.which("g++") is None:
        pytest.skip("g++ not on PATH")
    lib = tmp_path_factory.mktemp("harness") / "libnerfkit_host.so"
    cmd = ["g++", "-O2", "-std=c++17", "-ffp-contract=off", "-shared", "-fPIC", f"-I{REPO / 'cuda'}",
           str(Path(__file__).with_name("host_harness.cpp")), "-o", str(lib)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}\n{result.stderr}"
    return ctypes.CDLL(str(lib))


def _p(t: torch.Tensor | None) -> P:
    return P(0 if t is None else t.data_ptr())


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, lib, sigmas, rgbs, t_starts, t_ends, ray_indices, n_rays):
        begin = torch.zeros(n_rays, dtype=torch.int64)
        end = torch.zeros(n_rays, dtype=torch.int64)
        lib.nk_segment_bounds(_p(ray_indices), I64(sigmas.shape[0]), I64(n_rays), _p(begin), _p(end))
        weights = torch.zeros_like(sigmas)
        rgb, depth, alpha = torch.empty(n_rays, 3), torch.empty(n_rays), torch.empty(n_rays)
        lib.nk_composite_fwd(_p(sigmas), _p(rgbs), _p(t_starts), _p(t_ends), _p(begin), _p(end), I64(n_rays),
                             _p(weights), _p(rgb), _p(depth), _p(alpha))
        ctx.save_for_backward(sigmas, rgbs, t_starts, t_ends, begin, end)
        ctx.lib = lib
        return rgb, depth, alpha, weights

    @staticmethod
    def backward(ctx, g_rgb, g_depth, g_alpha, g_weights):
        sigmas, rgbs, t_starts, t_ends, begin, end = ctx.saved_tensors
        grad_sigmas, grad_rgbs = torch.zeros_like(sigmas), torch.zeros_like(rgbs)
        ctx.lib.nk_composite_bwd(_p(sigmas), _p(rgbs), _p(t_starts), _p(t_ends), _p(begin), _p(end),
                                 I64(begin.shape[0]), _p(g_rgb.contiguous()), _p(g_depth.contiguous()),
                                 _p(g_alpha.contiguous()), _p(g_weights.contiguous()), _p(grad_sigmas),
                                 _p(grad_rgbs))
        return None, grad_sigmas, grad_rgbs, None, None, None, None


class _Hash(torch.autograd.Function):
    @staticmethod
    def forward(ctx, lib, x, table, offsets, resolutions):
        n_levels, n_features = resolutions.shape[0], table.shape[1]
        out = torch.empty(x.shape[0], n_levels * n_features)
        lib.nk_hash_fwd(_p(x), _p(table), _p(offsets), _p(resolutions), I64(x.shape[0]), I32(n_levels),
                        I32(n_features), _p(out))
        ctx.save_for_backward(x, offsets, resolutions)
        ctx.lib, ctx.table_shape = lib, table.shape
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, offsets, resolutions = ctx.saved_tensors
        grad_table = torch.zeros(ctx.table_shape)
        ctx.lib.nk_hash_bwd(_p(x), _p(grad_out.contiguous()), _p(offsets), _p(resolutions), I64(x.shape[0]),
                            I32(resolutions.shape[0]), I32(ctx.table_shape[1]), _p(grad_table))
        return None, None, grad_table, None, None


@pytest.fixture(scope="module")
def host(harness):
    """The four ops with the *_native signatures, running the kernels' code on the CPU."""
    lib = harness

    def ray_aabb_intersect(origins, directions, aabb):
        n = origins.shape[0]
        t_near, t_far = torch.empty(n), torch.empty(n)
        lib.nk_intersect(_p(origins.contiguous()), _p(directions.contiguous()), _p(aabb.contiguous()), I64(n),
                         _p(t_near), _p(t_far))
        return t_near, t_far

    def march_rays(origins, directions, t_min, t_max, grid, aabb, step_size, cone_angle, max_samples):
        n = origins.shape[0]
        grid_bytes = grid.contiguous().view(torch.uint8)
        common = (_p(origins), _p(directions), _p(t_min), _p(t_max), _p(grid_bytes), I32(grid.shape[0]),
                  I32(grid.shape[1]), _p(aabb.contiguous()), F64(step_size), F64(cone_angle), I64(max_samples),
                  I64(n))
        counts = torch.zeros(n, dtype=torch.int32)
        lib.nk_march_count(*common, _p(counts))
        inclusive = counts.cumsum(0)
        total = int(inclusive[-1]) if n else 0
        offsets = (inclusive - counts).to(torch.int64)
        out = (torch.empty(total, dtype=torch.int64), torch.empty(total), torch.empty(total))
        lib.nk_march_fill(*common, _p(offsets), *(_p(t) for t in out))
        return out

    def composite(sigmas, rgbs, t_starts, t_ends, ray_indices, n_rays):
        return Composited(*_Composite.apply(lib, sigmas, rgbs, t_starts.contiguous(), t_ends.contiguous(),
                                            ray_indices.contiguous(), n_rays))

    def hash_encode(x, table, offsets, resolutions):
        return _Hash.apply(lib, x.contiguous(), table, offsets.to(torch.int32).contiguous(),
                           resolutions.to(torch.int32).contiguous())

    return SimpleNamespace(ray_aabb_intersect=ray_aabb_intersect, march_rays=march_rays, composite=composite,
                           hash_encode=hash_encode)


@pytest.mark.parametrize("n", [0, 1, 257])
def test_intersect_matches_twin(host, n):
    cases.check_intersect(host, "cpu", n)


@pytest.mark.parametrize("n_cascades,res,step,cone,cap", [
    (1, 16, 0.02, 0.0, 1024), (3, 16, 0.01, 1 / 256, 1024), (2, 32, 0.005, 0.0, 0),
    (4, 8, 0.01, 1 / 64, 5), (1, 16, 0.02, 0.0, 1),
])
def test_march_keeps_the_twins_samples(host, n_cascades, res, step, cone, cap):
    assert cases.check_march(host, "cpu", 300, n_cascades, res, step, cone, cap) > 0


@pytest.mark.parametrize("cone", [0.0, 1 / 256])
def test_march_samples_on_cascade_and_cell_borders(host, cone):
    assert cases.check_march_boundaries(host, "cpu", cone) > 0


@pytest.mark.parametrize("n", [0, 1, 9])
def test_march_small_and_empty_batches(host, n):
    cases.check_march(host, "cpu", n, 2, 8, 0.05, 0.0, 16)


@pytest.mark.parametrize("density,use_weights", [(2.0, False), (2.0, True), (5000.0, False), (5000.0, True)])
def test_composite_values_and_grads(host, density, use_weights):
    terminates = cases.check_composite(host, "cpu", 64, 40, density, use_weights)
    assert terminates == (density > 100), "the cases must cover rays with and without early termination"


@pytest.mark.parametrize("n_rays,max_per_ray", [(0, 4), (5, 0), (1, 1), (3, 200)])
def test_composite_small_and_empty_batches(host, n_rays, max_per_ray):
    cases.check_composite(host, "cpu", n_rays, max_per_ray, 50.0, True)


@pytest.mark.parametrize("layout", sorted(cases.LAYOUTS))
@pytest.mark.parametrize("n_features", [1, 2, 4])
def test_hash_values_and_table_grads(host, layout, n_features):
    cases.check_hash(host, "cpu", layout, 300, n_features)


def test_hash_empty_batch(host):
    cases.check_hash(host, "cpu", "mixed", 0, 2)
