"""The CPU kernels (``nerfkit_cpu_*``: cuda/cpu_*.cpp over the shared cuda/*.cuh maths) against
their PyTorch twins, values and gradients: empty batches, rays that miss, dense / hashed / mixed
grids, odd sizes, several thread counts and every scatter strategy of the hash-grid backward.

Marching must keep exactly the twin's samples; compositing may differ from the twin by its early
termination (transmittance < 1e-4) and must match the truncated twin to float32 accuracy; the hash
encoding to float32 accuracy (checks in _cuda_parity_cases.py, shared with the CUDA parity tests).
The extension is built once per session (``cpu_extension``, tests/ops/conftest.py); a build error
fails these tests rather than skipping them.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import _cuda_parity_cases as cases  # noqa: I001 - tests/ops helper, put on sys.path by conftest.py
from nerfkit.ops import (composite, hash_encode, hash_encode_position_grad, hash_encode_position_grad_ref,
                         hash_encode_ref, level_layout)

DEVICE = "cpu"


@pytest.fixture(scope="module")
def native(cpu_extension):
    from nerfkit.ops import _native
    return SimpleNamespace(ray_aabb_intersect=_native.ray_aabb_intersect_native,
                           march_rays=_native.march_rays_native, composite=_native.composite_native,
                           hash_encode=_native.hash_encode_native,
                           position_grad=_native.hash_encode_position_grad_native)


# ---------------------------------------------------------------- intersection and marching

@pytest.mark.parametrize("n", [0, 1, 257, 5000])
def test_intersect_matches_twin_bit_for_bit(native, n):
    cases.check_intersect(native, DEVICE, n)


@pytest.mark.parametrize("n_cascades,res,step,cone,cap", [
    (1, 32, 0.01, 0.0, 1024),        # bounded object, constant steps
    (4, 32, 0.005, 1 / 256, 1024),   # unbounded scene, cone stepping
    (2, 64, 0.004, 0.0, 0),          # no cap
    (4, 16, 0.01, 1 / 64, 5),        # cap truncates
    (1, 16, 0.02, 0.0, 1),
])
def test_march_keeps_the_twins_samples(native, n_cascades, res, step, cone, cap):
    assert cases.check_march(native, DEVICE, 1500, n_cascades, res, step, cone, cap) > 0


@pytest.mark.parametrize("n_threads", [1, 2, 5])
def test_march_is_the_same_on_any_number_of_threads(native, threads, n_threads):
    """Blocks of rays march in parallel and are joined in ray order."""
    threads(n_threads)
    assert cases.check_march(native, DEVICE, 3001, 3, 16, 0.01, 1 / 256, 64, seed=4) > 0


@pytest.mark.parametrize("cone", [0.0, 1 / 256])
def test_march_samples_on_cascade_and_cell_borders(native, cone):
    assert cases.check_march_boundaries(native, DEVICE, cone) > 0


@pytest.mark.parametrize("n", [0, 1, 9])
def test_march_small_and_empty_batches(native, n):
    cases.check_march(native, DEVICE, n, 2, 8, 0.05, 0.0, 16)


def test_march_all_rays_miss(native):
    origins = torch.tensor([[5.0, 5.0, 5.0]] * 3)
    directions = torch.tensor([[0.0, 0.0, 1.0]] * 3)
    inf = torch.full((3,), float("inf"))
    grid = torch.ones(1, 8, 8, 8, dtype=torch.bool)
    aabb = torch.tensor([[-1.0] * 3, [1.0] * 3])
    ray_indices, t_starts, t_ends = native.march_rays(origins, directions, inf, inf, grid, aabb, 0.01, 0.0, 64)
    assert ray_indices.shape == t_starts.shape == t_ends.shape == (0,)
    assert ray_indices.dtype == torch.int64 and t_starts.dtype == torch.float32


# ---------------------------------------------------------------- compositing

@pytest.mark.parametrize("density,use_weights", [(2.0, False), (2.0, True), (5000.0, False), (5000.0, True)])
def test_composite_values_and_grads(native, density, use_weights):
    terminates = cases.check_composite(native, DEVICE, 1024, 64, density, use_weights)
    assert terminates == (density > 100), "the cases must cover rays with and without early termination"


@pytest.mark.parametrize("n_rays,max_per_ray", [(0, 4), (5, 0), (1, 1), (3, 200), (3001, 9)])
def test_composite_sizes_and_empty_batches(native, n_rays, max_per_ray):
    cases.check_composite(native, DEVICE, n_rays, max_per_ray, 50.0, True)


@pytest.mark.parametrize("n_threads", [1, 3])
def test_composite_on_other_thread_counts(native, threads, n_threads):
    threads(n_threads)
    cases.check_composite(native, DEVICE, 2500, 16, 50.0, True, seed=2)


@pytest.mark.parametrize("force_ref", [False, True])
def test_composite_rejects_unsorted_or_out_of_range_rays(cpu_extension, native_env, force_ref):
    """Kernel and twin both assume each ray's samples form one run; both paths say so when not."""
    if force_ref:
        native_env.setenv("NERFKIT_FORCE_REF", "1")
    sigmas, rgbs = torch.ones(4), torch.rand(4, 3)
    t_starts, t_ends = torch.tensor([0.1, 0.2, 0.1, 0.2]), torch.tensor([0.2, 0.3, 0.2, 0.3])
    with pytest.raises(ValueError, match="sorted.*ray 0 after ray 1 at sample 2"):
        composite(sigmas, rgbs, t_starts, t_ends, torch.tensor([1, 1, 0, 0]), 2)
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        composite(sigmas, rgbs, t_starts, t_ends, torch.tensor([0, 0, 1, 2]), 2)
    out = composite(sigmas, rgbs, t_starts, t_ends, torch.tensor([0, 0, 1, 1]), 2)
    assert out.rgb.shape == (2, 3)


# ---------------------------------------------------------------- hash encoding

@pytest.mark.parametrize("layout", sorted(cases.LAYOUTS))
@pytest.mark.parametrize("n_features", [1, 2, 3, 4, 8])
def test_hash_values_and_table_grads(native, layout, n_features):
    cases.check_hash(native, DEVICE, layout, 1000, n_features)


@pytest.mark.parametrize("n_points", [0, 1, 7, 20001])
def test_hash_sizes_and_empty_batch(native, n_points):
    cases.check_hash(native, DEVICE, "mixed", n_points, 2)


@pytest.mark.parametrize("n_threads", [1, 2, 7])
@pytest.mark.parametrize("scatter", [0, 1, 2])
def test_hash_table_gradient_for_every_scatter_strategy(cpu_extension, threads, n_threads, scatter):
    """Level split (auto with no more threads than levels), and the point split with private
    partials or atomics (auto with 7 threads over 4 levels; forced by ``scatter``)."""
    threads(n_threads)
    resolutions, offsets = cases.layout("dense")             # 4 levels
    g = torch.Generator().manual_seed(3)
    x = cases.hash_points(4099, 5, DEVICE)
    grad_out = torch.randn(4099, 4 * 2, generator=g)
    grad_out[::3] = 0.0                                       # rows the kernel skips
    rows = int(offsets[-1])
    got = cpu_extension.hash_encode_bwd(x, grad_out, offsets, resolutions, rows, 2, scatter)
    table = torch.zeros(rows, 2, requires_grad=True)
    hash_encode_ref(x, table, offsets, resolutions).backward(grad_out)
    torch.testing.assert_close(got, table.grad, rtol=1e-4, atol=1e-5)


def test_hash_table_gradient_is_deterministic(cpu_extension, threads):
    threads(2)
    resolutions, offsets = cases.layout("mixed")
    x = cases.hash_points(30000, 1, DEVICE)
    grad_out = torch.randn(30000, resolutions.numel() * 2, generator=torch.Generator().manual_seed(0))
    first, second = (cpu_extension.hash_encode_bwd(x, grad_out, offsets, resolutions, int(offsets[-1]), 2)
                     for _ in range(2))
    assert torch.equal(first, second)


def test_hash_other_dtypes_take_the_twin(native):
    resolutions, offsets = level_layout(4, 12, 8, 64)
    x = torch.rand(100, 3)
    table = torch.rand(int(offsets[-1]), 2)
    for xs, t in ((x, table.half()), (x.double(), table.double())):
        assert torch.equal(native.hash_encode(xs, t, offsets, resolutions), hash_encode_ref(xs, t, offsets, resolutions))


def test_hash_binding_checks_the_table_rows(cpu_extension):
    resolutions, offsets = level_layout(2, 10, 2, 4)
    with pytest.raises(RuntimeError, match="offsets\\[-1\\]"):
        cpu_extension.hash_encode_fwd(torch.rand(3, 3), torch.zeros(int(offsets[-1]) - 8, 2), offsets, resolutions)


# ---------------------------------------------------------------- hash encoding: position gradient

@pytest.mark.parametrize("layout", sorted(cases.LAYOUTS))
@pytest.mark.parametrize("n_features", [1, 2, 4])
def test_position_gradient_and_its_backward_match_the_twin(native, layout, n_features):
    resolutions, offsets = cases.layout(layout)
    g = torch.Generator().manual_seed(6)
    n = 777
    x = cases.hash_points(n, 2, DEVICE)
    table = torch.rand(int(offsets[-1]), n_features, generator=g) * 2 - 1
    grad_out = torch.randn(n, resolutions.numel() * n_features, generator=g)
    grad_out[::5] = 0.0
    grad_grad_x = torch.randn(n, 3, generator=g)
    results = []
    for fn in (native.position_grad, hash_encode_position_grad_ref):
        t, go = table.clone().requires_grad_(True), grad_out.clone().requires_grad_(True)
        grad_x = fn(x, t, go, offsets, resolutions)
        results.append((grad_x, *torch.autograd.grad(grad_x, [t, go], grad_grad_x)))
    scale = float(resolutions.max())                        # d frac / d x = resolution
    for got, want, name in zip(*results, ("grad_x", "grad_table", "grad_grad_out")):
        got, want = got.detach(), want.detach()
        assert float(want.abs().max()) > 0, name
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * scale, msg=lambda m, n=name: f"{n}: {m}")


def test_eikonal_second_order_through_the_public_op_matches_the_twin(cpu_extension, native_env):
    """d(MLP(enc(x)))/dx with create_graph, then a loss on it: the same normals and gradients for
    the table and the MLP with the kernels (float32, default dispatch) as with the twins."""
    resolutions, offsets = cases.layout("mixed")
    torch.manual_seed(1)
    table = torch.randn(int(offsets[-1]), 2) * 0.1
    head = torch.nn.Sequential(torch.nn.Linear(resolutions.numel() * 2, 16), torch.nn.Softplus(),
                               torch.nn.Linear(16, 1))
    x = cases.hash_points(400, 9, DEVICE)

    def loss_and_grads():
        t, xs = table.clone().requires_grad_(True), x.clone().requires_grad_(True)
        sdf = head(hash_encode(xs, t, offsets, resolutions))
        (normal,) = torch.autograd.grad(sdf.sum(), xs, create_graph=True)
        loss = ((normal.norm(dim=-1) - 1.0) ** 2).mean() + sdf.abs().mean()
        return normal.detach(), torch.autograd.grad(loss, [t, *head.parameters()])

    ours_normal, ours = loss_and_grads()
    native_env.setenv("NERFKIT_FORCE_REF", "1")
    twin_normal, twin = loss_and_grads()
    torch.testing.assert_close(ours_normal, twin_normal, rtol=1e-4, atol=1e-4)
    for a, b in zip(ours, twin, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    assert float(ours[0].abs().sum()) > 0


def test_table_gradient_is_differentiable_in_the_upstream_gradient(native):
    """grad_table is linear in grad_out; its own gradient is the encoding of the incoming vector,
    as for the twin (whose scatter autograd records under create_graph)."""
    resolutions, offsets = cases.layout("hashed")
    x = cases.hash_points(300, 4, DEVICE)
    table = torch.rand(int(offsets[-1]), 2)
    v = torch.randn_like(table)
    results = []
    for fn in (native.hash_encode, hash_encode_ref):
        t = table.clone().requires_grad_(True)
        out = fn(x, t, offsets, resolutions)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), requires_grad=True)
        (grad_table,) = torch.autograd.grad(out, t, upstream, create_graph=True)
        results.append(torch.autograd.grad((grad_table * v).sum(), upstream)[0])
    torch.testing.assert_close(results[0], results[1], rtol=1e-4, atol=1e-5)


def test_position_gradient_of_an_empty_batch(native):
    resolutions, offsets = cases.layout("mixed")
    table = torch.rand(int(offsets[-1]), 2)
    grad_x = hash_encode_position_grad(torch.zeros(0, 3), table, torch.zeros(0, resolutions.numel() * 2), offsets,
                                       resolutions)
    assert grad_x.shape == (0, 3)
