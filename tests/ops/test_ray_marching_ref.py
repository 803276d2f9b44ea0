"""Ray/box intersection, cascade lookup and ray marching against closed forms and per-ray loops.

The loops below read the definitions in nerfkit.ops.ray_marching's docstrings literally: cascade
``c`` covers the base box scaled by ``2**c`` about its centre and a point uses the finest cascade
that contains it; marching starts at ``t_min``, steps by ``dt = max(t * cone_angle, step_size)``,
keeps ``[t, min(t + dt, t_max)]`` when the midpoint is before ``t_max`` and in an occupied cell, and
keeps at most ``max_samples`` (the nearest) per ray.
"""

from __future__ import annotations

import math

import pytest
import torch

from nerfkit.ops import grid_lookup, march_rays, march_rays_ref, ray_aabb_intersect, ray_aabb_intersect_ref


@pytest.fixture(autouse=True)
def _twins_only(monkeypatch):
    """This file specifies the twins: the public functions must run them, not the native kernels
    (tests/ops/test_cpu_kernels.py compares those with the twins)."""
    monkeypatch.setenv("NERFKIT_FORCE_REF", "1")


BOX = torch.tensor([[-1.0, -0.5, 0.0], [1.0, 1.5, 3.0]])
INF = math.inf


# ------------------------------------------------------------------------------ intersection

def _both_intersections(o, d, box):
    """The public op and its twin, which must agree exactly on the CPU."""
    near, far = ray_aabb_intersect(o, d, box)
    near_ref, far_ref = ray_aabb_intersect_ref(o, d, box)
    torch.testing.assert_close(near, near_ref, atol=0, rtol=0)
    torch.testing.assert_close(far, far_ref, atol=0, rtol=0)
    return near, far


def test_axis_aligned_rays_enter_and_leave_at_the_faces():
    o = torch.tensor([[0.0, 0.5, -2.0],     # +z towards the box: faces z=0 and z=3
                      [5.0, 0.5, 1.0],      # -x: faces x=1 and x=-1
                      [0.5, -4.0, 2.0],     # +y (non-unit direction): faces y=-0.5, y=1.5
                      [0.0, 0.5, 10.0]])    # -z
    d = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, -1.0]])
    near, far = _both_intersections(o, d, BOX)
    torch.testing.assert_close(near, torch.tensor([2.0, 4.0, 3.5 / 2, 7.0]))
    torch.testing.assert_close(far, torch.tensor([5.0, 6.0, 5.5 / 2, 10.0]))


def test_oblique_rays_through_two_known_surface_points():
    """A ray built through entry point p and exit point q (both on the surface) enters at p, leaves at q."""
    g = torch.Generator().manual_seed(0)
    lo, hi = BOX[0].double(), BOX[1].double()
    o_list, d_list, near_want, far_want = [], [], [], []
    for i in range(30):
        p, q = lo + (hi - lo) * torch.rand(2, 3, generator=g, dtype=torch.float64)
        # push p onto one face and q onto a different one
        a, b = i % 3, (i + 1) % 3
        p[a] = lo[a] if i % 2 == 0 else hi[a]
        q[b] = hi[b] if i % 2 == 0 else lo[b]
        chord = (q - p).norm()
        speed = 0.5 + float(torch.rand((), generator=g, dtype=torch.float64)) * 2   # |d|
        d = (q - p) / chord * speed
        back = 0.3 + 2.0 * float(torch.rand((), generator=g, dtype=torch.float64))  # distance before p
        o_list.append(p - d / speed * back)
        d_list.append(d)
        near_want.append(back / speed)
        far_want.append((back + float(chord)) / speed)
    o, d = torch.stack(o_list).float(), torch.stack(d_list).float()
    near, far = _both_intersections(o, d, BOX)
    torch.testing.assert_close(near, torch.tensor(near_want, dtype=torch.float32), atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(far, torch.tensor(far_want, dtype=torch.float32), atol=2e-5, rtol=2e-5)


def test_origins_inside_start_at_zero_and_leave_through_the_face_ahead():
    o = torch.tensor([[0.0, 0.5, 1.5], [0.9, 1.4, 0.1], [-0.5, 0.0, 2.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [0.6, 0.0, 0.8]])
    near, far = _both_intersections(o, d, BOX)
    torch.testing.assert_close(near, torch.zeros(3))
    # third ray: z reaches 3 at t = 1/0.8 = 1.25, before x reaches 1 (t = 2.5)
    torch.testing.assert_close(far, torch.tensor([1.5, 1.9, 1.25]))


def test_misses_and_boxes_behind_are_infinite():
    o = torch.tensor([[0.0, 0.5, -2.0],    # box behind: looking away
                      [3.0, 0.5, -2.0],    # parallel to z, outside the x slab
                      [0.0, 5.0, -2.0],    # oblique, passes above
                      [0.0, 0.5, 5.0]])    # beyond the box, looking further away
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0], [0.0, 0.6, 0.8], [0.0, 0.0, 1.0]])
    near, far = _both_intersections(o, d, BOX)
    assert torch.isinf(near).all() and torch.isinf(far).all()


def test_intersect_of_zero_rays():
    near, far = _both_intersections(torch.zeros(0, 3), torch.zeros(0, 3), BOX)
    assert near.shape == (0,) and far.shape == (0,)


# ----------------------------------------------------------------------------- cascade lookup

def brute_force_occupied(point: list[float], grid: torch.Tensor, aabb: torch.Tensor) -> bool:
    n_cascades, res = grid.shape[0], grid.shape[1]
    lo, hi = aabb.double().tolist()
    rel = [(p - (a + b) / 2) / ((b - a) / 2) for p, a, b in zip(point, lo, hi)]
    for c in range(n_cascades):
        scale = 2.0 ** c
        if all(abs(r) <= scale for r in rel):
            i, j, k = (min(max(int(math.floor((r / scale + 1) / 2 * res)), 0), res - 1) for r in rel)
            return bool(grid[c, i, j, k])
    return False


def _random_grid(n_cascades: int, res: int, fill: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n_cascades, res, res, res, generator=g) < fill


@pytest.mark.parametrize("n_cascades", [1, 3])
def test_grid_lookup_matches_brute_force(n_cascades):
    grid = _random_grid(n_cascades, 8, 0.5, seed=1)
    g = torch.Generator().manual_seed(2)
    centre, half = (BOX[0] + BOX[1]) / 2, (BOX[1] - BOX[0]) / 2
    extent = 2.0 ** (n_cascades - 1) * 1.2                     # some points outside every cascade
    points = centre + half * (torch.rand(3000, 3, generator=g) * 2 - 1) * extent
    got = grid_lookup(points, grid, BOX)
    want = torch.tensor([brute_force_occupied(p, grid, BOX) for p in points.tolist()])
    assert got.dtype == torch.bool
    assert torch.equal(got, want)
    assert 0.2 < want.float().mean() < 0.5                     # the test saw both answers


def test_grid_lookup_cascade_rule_on_single_cells():
    """One occupied cell per cascade: a point finds it only through the finest cascade containing it."""
    res = 4
    grid = torch.zeros(3, res, res, res, dtype=torch.bool)
    grid[0, 3, 0, 0] = True      # cascade 0: x in [0.5, 1]  (box [-1, 1] along x), y, z at the minimum
    grid[1, 3, 0, 0] = True      # cascade 1: x in [1, 2]
    grid[2, 0, 0, 0] = True      # cascade 2: x in [-4, -2]
    box = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    points = torch.tensor([
        [0.75, -0.75, -0.75],    # cascade 0 cell (3, 0, 0)
        [1.5, -1.5, -1.5],       # outside cascade 0, cascade 1 cell (3, 0, 0)
        [0.75, -0.9, -0.9],      # cascade 0 again
        [1.5, -0.75, -0.75],     # cascade 1 cell (3, 1, 1): empty
        [-3.0, -3.0, -3.0],      # cascade 2 cell (0, 0, 0)
        [-3.0, -3.0, 3.0],       # cascade 2 cell (0, 0, 3): empty
        [-4.5, -3.0, -3.0],      # outside the last cascade
        [1.0, -1.0, -1.0],       # on cascade 0's boundary: still cascade 0, clamped to the last cell
        [-4.0, -4.0, -4.0],      # on the last cascade's boundary: inside
    ])
    want = torch.tensor([True, True, True, False, True, False, False, True, True])
    assert grid_lookup(points, grid, box).tolist() == want.tolist()
    assert [brute_force_occupied(p, grid, box) for p in points.tolist()] == want.tolist()


# --------------------------------------------------------------------------------- marching

def brute_force_march(origins, directions, t_min, t_max, grid, aabb, step_size, cone_angle, max_samples):
    rays, starts, ends = [], [], []
    for r in range(origins.shape[0]):
        lo, hi = float(t_min[r]), float(t_max[r])
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            continue
        o, d = origins[r].double().tolist(), directions[r].double().tolist()
        t, kept = lo, 0
        while t < hi and (max_samples == 0 or kept < max_samples):
            dt = max(t * cone_angle, step_size)
            mid = t + 0.5 * dt
            if mid < hi and brute_force_occupied([a + b * mid for a, b in zip(o, d)], grid, aabb):
                rays.append(r)
                starts.append(t)
                ends.append(min(t + dt, hi))
                kept += 1
            t += dt
    return (torch.tensor(rays, dtype=torch.int64), torch.tensor(starts, dtype=torch.float64),
            torch.tensor(ends, dtype=torch.float64))


def _rays_at_box(n: int, box: torch.Tensor, distance: float, seed: int):
    """Unit rays from a shell around ``box`` aimed at random points inside it."""
    g = torch.Generator().manual_seed(seed)
    centre, half = (box[0] + box[1]) / 2, (box[1] - box[0]) / 2
    dirs = torch.randn(n, 3, generator=g)
    origins = centre + dirs / dirs.norm(dim=-1, keepdim=True) * distance
    targets = centre + half * (torch.rand(n, 3, generator=g) * 1.6 - 0.8)
    d = targets - origins
    return origins, d / d.norm(dim=-1, keepdim=True)


def _outer_box(box: torch.Tensor, n_cascades: int) -> torch.Tensor:
    centre, half = (box[0] + box[1]) / 2, (box[1] - box[0]) / 2 * 2 ** (n_cascades - 1)
    return torch.stack([centre - half, centre + half])


def _check_march(origins, directions, t_min, t_max, grid, aabb, step, cone, cap):
    got = march_rays(origins, directions, t_min, t_max, grid, aabb, step, cone, cap)
    twin = march_rays_ref(origins, directions, t_min, t_max, grid, aabb, step, cone, cap)
    for a, b in zip(got, twin):
        assert torch.equal(a, b)
    rays, starts, ends = got
    want_rays, want_starts, want_ends = brute_force_march(origins, directions, t_min, t_max, grid, aabb,
                                                          step, cone, cap)
    assert rays.dtype == torch.int64 and starts.dtype == torch.float32 and ends.dtype == torch.float32
    assert torch.equal(rays, want_rays)
    torch.testing.assert_close(starts.double(), want_starts, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ends.double(), want_ends, atol=1e-5, rtol=1e-5)
    _check_sorted(rays, starts, ends)
    return got


def _check_sorted(rays, starts, ends):
    assert bool((rays[1:] >= rays[:-1]).all())
    same_ray = rays[1:] == rays[:-1]
    assert bool((starts[1:][same_ray] > starts[:-1][same_ray]).all())
    assert bool((ends[:-1][same_ray] <= starts[1:][same_ray] + 1e-6).all())   # no overlaps
    assert bool((ends > starts).all())


@pytest.mark.parametrize("n_cascades,res,step,cone,cap", [
    (1, 8, 0.05, 0.0, 1024),        # constant steps, bounded object
    (1, 8, 0.05, 0.0, 7),           # the cap keeps each ray's 7 nearest samples
    (3, 8, 0.02, 1 / 64, 1024),     # cone stepping through three cascades
    (3, 6, 0.03, 1 / 32, 0),        # no cap
])
def test_march_matches_brute_force(n_cascades, res, step, cone, cap):
    grid = _random_grid(n_cascades, res, 0.4, seed=3 + n_cascades)
    outer = _outer_box(BOX, n_cascades)
    origins, dirs = _rays_at_box(24, outer, distance=2.0 * 2 ** n_cascades, seed=4)
    t_min, t_max = ray_aabb_intersect(origins, dirs, outer)
    assert torch.isfinite(t_min).all()
    rays, starts, ends = _check_march(origins, dirs, t_min, t_max, grid, BOX, step, cone, cap)
    counts = torch.bincount(rays, minlength=24)
    assert int((counts > 0).sum()) >= 20                     # rays do cross occupied cells
    if cap:
        assert counts.max() <= cap
    if cap == 7:
        assert int((counts == 7).sum()) > 12                 # the cap was what stopped them


def test_constant_steps_are_step_size_apart_from_t_min_and_cut_at_t_max():
    grid = torch.ones(1, 4, 4, 4, dtype=torch.bool)
    o = torch.tensor([[0.0, 0.5, -2.0]] * 2)
    d = torch.tensor([[0.0, 0.0, 1.0]] * 2)
    t_min, t_max = torch.tensor([2.0, 2.0]), torch.tensor([2.97, 2.93])
    rays, starts, ends = _check_march(o, d, t_min, t_max, grid, BOX, 0.1, 0.0, 1024)
    # steps start at 2.0, 2.1, ..., 2.9. Ray 0 keeps the last (midpoint 2.95 < 2.97), cut at t_max;
    # ray 1 drops it (midpoint 2.95 >= 2.93), so its last sample ends at 2.9
    assert rays.tolist() == [0] * 10 + [1] * 9
    torch.testing.assert_close(starts[:10], 2.0 + 0.1 * torch.arange(10, dtype=torch.float32))
    torch.testing.assert_close(starts[10:], starts[:9])
    torch.testing.assert_close(ends[9], torch.tensor(2.97))
    torch.testing.assert_close(ends[-1], torch.tensor(2.9))


def test_cone_steps_grow_in_proportion_to_distance():
    grid = torch.ones(1, 4, 4, 4, dtype=torch.bool)
    box = torch.tensor([[-100.0] * 3, [100.0] * 3])
    o, d = torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0]])
    t_min, t_max = torch.tensor([1.0]), torch.tensor([50.0])
    rays, starts, ends = _check_march(o, d, t_min, t_max, grid, box, 0.01, 0.1, 1024)
    widths = ends - starts
    torch.testing.assert_close(widths[:-1], (starts[:-1] * 0.1).clamp(min=0.01))
    torch.testing.assert_close(starts[1:], starts[:-1] * 1.1, rtol=1e-5, atol=0)


def test_rays_that_miss_or_have_empty_intervals_get_no_samples():
    grid = torch.ones(1, 4, 4, 4, dtype=torch.bool)
    o = torch.tensor([[0.0, 0.5, -2.0]] * 4)
    d = torch.tensor([[0.0, 0.0, 1.0]] * 4)
    t_min = torch.tensor([INF, 2.0, 3.0, 2.0])
    t_max = torch.tensor([INF, 2.0, 2.5, 2.5])      # miss, empty, reversed, a real one
    rays, starts, ends = _check_march(o, d, t_min, t_max, grid, BOX, 0.1, 0.0, 1024)
    assert set(rays.tolist()) == {3}
    assert rays.numel() == 5


def test_march_of_zero_rays_and_of_an_empty_grid():
    grid = torch.ones(1, 4, 4, 4, dtype=torch.bool)
    out = march_rays(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0), grid, BOX, 0.1)
    assert [t.shape for t in out] == [(0,), (0,), (0,)]
    assert out[0].dtype == torch.int64
    origins, dirs = _rays_at_box(5, BOX, 5.0, seed=9)
    t_min, t_max = ray_aabb_intersect(origins, dirs, BOX)
    empty = march_rays(origins, dirs, t_min, t_max, torch.zeros_like(grid), BOX, 0.1)
    assert [t.numel() for t in empty] == [0, 0, 0]


def test_march_rejects_a_non_boolean_grid():
    with pytest.raises(ValueError):
        march_rays(torch.zeros(1, 3), torch.ones(1, 3), torch.zeros(1), torch.ones(1),
                   torch.ones(1, 4, 4, 4), BOX, 0.1)
