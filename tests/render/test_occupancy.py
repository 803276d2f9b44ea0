"""OccupancyGrid against a known scene: an opaque ball of radius 0.3 centred off the grid's axes
(off-centre, so that mixing up the grid's x/y/z axes would move it)."""

from __future__ import annotations

import math

import pytest
import torch

from nerfkit.render.estimators.occupancy import OccupancyGrid

CENTRE = torch.tensor([0.3, -0.2, 0.1])
RADIUS = 0.3
DENSITY = 1e3
STEP = 0.01
AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def ball_density(points: torch.Tensor) -> torch.Tensor:
    return torch.where((points - CENTRE).norm(dim=-1) < RADIUS, DENSITY, 0.0)


def _cell_sets(res: int, cascade: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(G, G, G) bool: cells [x, y, z] of ``cascade`` that overlap the ball / lie fully inside it."""
    size = 2.0 * 2 ** cascade / res
    lo = -(2.0 ** cascade) + torch.arange(res) * size
    x0, y0, z0 = torch.meshgrid(lo, lo, lo, indexing="ij")
    low = torch.stack([x0, y0, z0], -1)
    high = low + size
    nearest = torch.maximum(low, torch.minimum(CENTRE, high))
    overlap = (nearest - CENTRE).norm(dim=-1) < RADIUS
    farthest = torch.where((CENTRE - low).abs() > (high - CENTRE).abs(), low, high)
    inside = (farthest - CENTRE).norm(dim=-1) < RADIUS
    return overlap, inside


@pytest.fixture(scope="module")
def trained_grid() -> OccupancyGrid:
    torch.manual_seed(0)
    grid = OccupancyGrid(AABB, resolution=32, cascades=2)
    assert bool(grid.binary.all())                   # starts fully occupied: nothing skipped
    for _ in range(3):
        grid.update(ball_density, step_size=STEP, full=True)
    return grid


@pytest.mark.parametrize("cascade", [0, 1])
def test_update_marks_exactly_the_cells_overlapping_the_ball(trained_grid, cascade):
    overlap, inside = _cell_sets(32, cascade)
    marked = trained_grid.binary[cascade]
    assert int(inside.sum()) > 0
    assert bool(marked[inside].all()), "a cell fully inside the ball is not marked"
    assert not bool(marked[~overlap].any()), "a cell away from the ball is marked"
    # boundary cells are found by jittered samples: most of them after three full updates
    boundary = overlap & ~inside
    assert float(marked[boundary].float().mean()) > 0.5
    assert int(trained_grid.updates) == 3


def test_occupancy_fraction_is_about_the_balls_share_of_the_grid(trained_grid):
    ball = 4 / 3 * math.pi * RADIUS ** 3
    fraction = trained_grid.binary[0].float().mean()
    assert ball / 8 < float(fraction) < 2.5 * ball / 8


def _rays_through_the_centre(n: int, seed: int, distance: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, 3, generator=g)
    u = u / u.norm(dim=-1, keepdim=True)
    return CENTRE + distance * u, -u


def test_samples_have_midpoints_in_occupied_cells_and_cover_the_ball(trained_grid):
    origins, dirs = _rays_through_the_centre(16, seed=1)
    rays, starts, ends = trained_grid.sample(origins, dirs, near=0.0, step_size=STEP)
    mids = origins[rays] + dirs[rays] * ((starts + ends) / 2).unsqueeze(-1)
    cells = ((mids + 1) / 2 * 32).floor().long()
    assert bool(((cells >= 0) & (cells < 32)).all())
    overlap, _ = _cell_sets(32, 0)
    assert bool(overlap[cells[:, 0], cells[:, 1], cells[:, 2]].all())
    assert bool(trained_grid.binary[0][cells[:, 0], cells[:, 1], cells[:, 2]].all())
    assert bool((rays[1:] >= rays[:-1]).all())
    # the chord through the ball is [2 - r, 2 + r]. Points deeper in the ball than a cell's diagonal
    # lie in fully-inside (always marked) cells: there consecutive samples leave no gaps. Nearer the
    # surface a boundary cell may be unmarked (its jittered probes all missed the ball).
    diagonal = math.sqrt(3) * 2.0 / 32
    for r in range(16):
        s, e = starts[rays == r], ends[rays == r]
        assert float(s.min()) <= 2.0 - RADIUS + diagonal and float(e.max()) >= 2.0 + RADIUS - diagonal
        deep = (s > 2.0 - RADIUS + diagonal) & (e < 2.0 + RADIUS - diagonal)
        assert int(deep.sum()) >= int(2 * (RADIUS - diagonal) / STEP) - 1
        torch.testing.assert_close(s[deep][1:], e[deep][:-1])               # no gaps


def test_density_callback_drops_samples_behind_the_opaque_ball(trained_grid):
    origins, dirs = _rays_through_the_centre(16, seed=2)

    def sample_density(t_starts, t_ends, ray_indices):
        mids = origins[ray_indices] + dirs[ray_indices] * ((t_starts + t_ends) / 2).unsqueeze(-1)
        return ball_density(mids)

    all_rays, all_starts, _ = trained_grid.sample(origins, dirs, near=0.0, step_size=STEP)
    rays, starts, ends = trained_grid.sample(origins, dirs, near=0.0, step_size=STEP,
                                             density_fn=sample_density)
    cell = 2.0 / 32
    far_side = 2.0 + RADIUS
    assert float(all_starts.max()) > far_side - cell           # without the callback: behind too
    assert float(starts.max()) < far_side + cell               # the brief's bound
    # much stronger: one step of density 1e3 * 0.01 leaves T = exp(-10) < 1e-4, so each ray stops
    # two steps after its first sample inside the ball, at most a cell diagonal (an unmarked
    # boundary cell) past the surface
    diagonal = math.sqrt(3) * cell
    for r in range(16):
        assert float(ends[rays == r].max()) <= 2.0 - RADIUS + diagonal + 2 * STEP
    stop = torch.tensor([float(ends[rays == r].max()) for r in range(16)])
    assert float(stop.median()) < 2.0 - RADIUS + 0.5 * diagonal
    assert set(rays.tolist()) == set(range(16))
    # what is kept is a prefix of what was marched: the nearest samples of each ray
    for r in range(16):
        kept = starts[rays == r]
        torch.testing.assert_close(kept, all_starts[all_rays == r][:kept.numel()])


def test_near_plane_and_missing_rays(trained_grid):
    origins, dirs = _rays_through_the_centre(4, seed=3)
    rays, starts, _ = trained_grid.sample(origins, dirs, near=2.05, step_size=STEP)
    assert float(starts.min()) >= float(torch.tensor(2.05))
    assert float(starts.min()) < 2.05 + STEP
    # from outside the grid, looking away from it: no samples at all
    away = trained_grid.sample(CENTRE + 5.0 * dirs, dirs, near=0.0, step_size=STEP)
    assert [t.numel() for t in away] == [0, 0, 0]


def test_cell_centres_follow_the_cascade_geometry():
    grid = OccupancyGrid(AABB * 0.5 + 1.0, resolution=4, cascades=3)        # box [0.5, 1.5]^3
    cells = torch.tensor([0, 63, 1 * 16 + 2 * 4 + 3])
    for cascade in range(3):
        points = grid.cell_centres(cells, torch.full((3,), cascade), jitter=False)
        size = 1.0 * 2 ** cascade / 4
        lo = 1.0 - 0.5 * 2 ** cascade
        want = torch.tensor([[lo + (i + 0.5) * size for i in ijk]
                             for ijk in ([0, 0, 0], [3, 3, 3], [1, 2, 3])])
        torch.testing.assert_close(points, want)
        jittered = grid.cell_centres(cells, torch.full((3,), cascade), jitter=True)
        assert bool(((jittered - want).abs() <= size / 2).all())
    torch.testing.assert_close(grid.outer_aabb, torch.tensor([[-1.0] * 3, [3.0] * 3]))


def test_partial_updates_keep_the_ball_and_count_updates():
    torch.manual_seed(4)
    grid = OccupancyGrid(AABB, resolution=16, cascades=1)
    grid.update(ball_density, step_size=STEP, full=True)
    overlap, inside = _cell_sets(16, 0)
    for _ in range(5):
        grid.update(ball_density, step_size=STEP, full=False)
    assert bool(grid.binary[0][inside].all()) and not bool(grid.binary[0][~overlap].any())
    assert int(grid.updates) == 6
