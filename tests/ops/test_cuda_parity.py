"""The CUDA kernels against their PyTorch twins, values and gradients, on a GPU (skipped without one).

Every case calls the ``*_native`` function and the ``*_ref`` twin on the same CUDA tensors
(checks in _cuda_parity_cases.py). Marching must keep exactly the twin's samples; compositing may
differ from the twin by its early termination (transmittance < 1e-4) and must match the truncated
twin to float32 accuracy; hash encoding to float32 accuracy (its backward sums with atomics).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import _cuda_parity_cases as cases  # noqa: I001 - tests/ops helper, put on sys.path by conftest.py
from nerfkit.ops import composite, composite_ref, hash_encode, hash_encode_ref, level_layout, march_rays

pytestmark = pytest.mark.cuda
DEVICE = "cuda"


@pytest.fixture(autouse=True)
def _native_enabled(monkeypatch):
    monkeypatch.setenv("NERFKIT_NATIVE", "1")
    monkeypatch.delenv("NERFKIT_FORCE_REF", raising=False)


@pytest.fixture(scope="module")
def native():
    """The ``*_native`` functions; the extension is built here so a build error fails (not skips)."""
    from nerfkit.ops import _native, _native_build
    _native_build.build()
    return SimpleNamespace(ray_aabb_intersect=_native.ray_aabb_intersect_native,
                           march_rays=_native.march_rays_native, composite=_native.composite_native,
                           hash_encode=_native.hash_encode_native)


# ---------------------------------------------------------------- intersection and marching

@pytest.mark.parametrize("n", [0, 1, 1000, 1 << 16])
def test_intersect_matches_twin(native, n):
    cases.check_intersect(native, DEVICE, n)


@pytest.mark.parametrize("n_cascades,res,step,cone,cap", [
    (1, 32, 0.01, 0.0, 1024),        # bounded object, constant steps
    (4, 32, 0.005, 1 / 256, 1024),   # unbounded scene, cone stepping
    (2, 64, 0.002, 0.0, 0),          # no cap
    (4, 16, 0.01, 1 / 64, 5),        # cap truncates
    (1, 16, 0.02, 0.0, 1),
])
def test_march_keeps_the_twins_samples(native, n_cascades, res, step, cone, cap):
    assert cases.check_march(native, DEVICE, 4096, n_cascades, res, step, cone, cap) > 0


def test_march_at_training_size(native):
    assert cases.check_march(native, DEVICE, 1 << 15, 4, 128, 1.732 / 512, 1 / 256, 1024) > 0


@pytest.mark.parametrize("cone", [0.0, 1 / 256])
def test_march_samples_on_cascade_and_cell_borders(native, cone):
    assert cases.check_march_boundaries(native, DEVICE, cone) > 0


@pytest.mark.parametrize("n", [0, 1, 9])
def test_march_small_and_empty_batches(native, n):
    cases.check_march(native, DEVICE, n, 2, 8, 0.05, 0.0, 16)


def test_march_all_rays_miss(native):
    origins = torch.tensor([[5.0, 5.0, 5.0]] * 3, device=DEVICE)
    directions = torch.tensor([[0.0, 0.0, 1.0]] * 3, device=DEVICE)
    inf = torch.full((3,), float("inf"), device=DEVICE)
    grid = torch.ones(1, 8, 8, 8, dtype=torch.bool, device=DEVICE)
    aabb = torch.tensor([[-1.0] * 3, [1.0] * 3], device=DEVICE)
    ray_indices, t_starts, t_ends = native.march_rays(origins, directions, inf, inf, grid, aabb, 0.01, 0.0, 64)
    assert ray_indices.shape == t_starts.shape == t_ends.shape == (0,)
    assert ray_indices.dtype == torch.int64 and t_starts.dtype == torch.float32


# ---------------------------------------------------------------- compositing

@pytest.mark.parametrize("density,use_weights", [(2.0, False), (2.0, True), (5000.0, False), (5000.0, True)])
def test_composite_values_and_grads(native, density, use_weights):
    terminates = cases.check_composite(native, DEVICE, 4096, 64, density, use_weights)
    assert terminates == (density > 100)


@pytest.mark.parametrize("n_rays,max_per_ray", [(0, 4), (5, 0), (1, 1), (3, 200), (1 << 14, 48)])
def test_composite_sizes_and_empty_batches(native, n_rays, max_per_ray):
    cases.check_composite(native, DEVICE, n_rays, max_per_ray, 50.0, True)


def test_composite_on_a_side_stream(native):
    """The binding runs on the caller's current stream, not the default one."""
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        cases.check_composite(native, DEVICE, 2048, 32, 50.0, True, seed=3)
    torch.cuda.synchronize()


# ---------------------------------------------------------------- hash encoding

@pytest.mark.parametrize("layout", sorted(cases.LAYOUTS))
@pytest.mark.parametrize("n_features", [1, 2, 4, 8])
def test_hash_values_and_table_grads(native, layout, n_features):
    cases.check_hash(native, DEVICE, layout, 5000, n_features)


@pytest.mark.parametrize("n_points", [0, 1, 1 << 18])
def test_hash_sizes_and_empty_batch(native, n_points):
    cases.check_hash(native, DEVICE, "mixed", n_points, 2)


def test_hash_fp16_table_takes_the_twin(native):
    resolutions, offsets = level_layout(4, 12, 8, 64)
    table = torch.rand(int(offsets[-1]), 2, device=DEVICE).half()
    x = torch.rand(100, 3, device=DEVICE)
    torch.testing.assert_close(native.hash_encode(x, table, offsets, resolutions),
                               hash_encode_ref(x, table, offsets, resolutions))


# ---------------------------------------------------------------- dispatch through the public ops

def test_public_ops_dispatch_to_the_kernels(native, monkeypatch):
    from nerfkit.ops._backend import use_native
    x = torch.rand(64, 3, device=DEVICE)
    assert use_native(x)
    resolutions, offsets = level_layout(4, 12, 8, 64)
    table = torch.rand(int(offsets[-1]), 2, device=DEVICE)
    torch.testing.assert_close(hash_encode(x, table, offsets, resolutions),
                               native.hash_encode(x, table, offsets, resolutions), rtol=0, atol=0)
    samples = cases.packed_samples(32, 16, 5.0, 0, DEVICE)
    torch.testing.assert_close(composite(*samples, 32).rgb, native.composite(*samples, 32).rgb, rtol=0, atol=0)
    args = cases.march_inputs(256, 2, 16, 0, DEVICE)
    for a, b in zip(march_rays(*args, 0.01, 0.0, 64), native.march_rays(*args, 0.01, 0.0, 64), strict=True):
        assert torch.equal(a, b)
    monkeypatch.setenv("NERFKIT_FORCE_REF", "1")
    assert not use_native(x)
    torch.testing.assert_close(composite(*samples, 32).rgb, composite_ref(*samples, 32).rgb, rtol=0, atol=0)
