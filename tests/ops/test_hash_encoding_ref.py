"""hash_encode_ref against a brute-force, loop-by-loop reading of Mueller et al. 2022, Sec. 3.

The reference below is written from the definition, not from the implementation: for every point
and level it finds the cell's lowest vertex, visits the 8 corners one by one, indexes the table
densely (``x + y*(r+1) + z*(r+1)^2``) when the level's ``(r+1)^3`` vertices fit in its rows and by
the spatial hash of Eq. (4) otherwise, and blends with trilinear weights. Python integers make the
hash's ``mod 2^32`` explicit.
"""

from __future__ import annotations

import itertools
import math
import os
import warnings

import pytest
import torch

from nerfkit.ops import hash_encode, hash_encode_ref, level_layout
from nerfkit.ops import reference as hash_encoding_module


@pytest.fixture(autouse=True)
def _twins_only(monkeypatch):
    """This file specifies the twins: the public functions must run them, not the native kernels
    (tests/ops/test_cpu_kernels.py compares those with the twins)."""
    monkeypatch.setenv("NERFKIT_FORCE_REF", "1")

PRIMES = (1, 2654435761, 805459861)

# (n_levels, log2_table_size, base_resolution, max_resolution)
LAYOUTS = {
    "dense": (3, 16, 2, 8),       # every level fits: (r+1)^3 <= rows
    "hashed": (3, 6, 4, 16),      # 64 rows per level, at least 125 vertices: every level hashed
    "mixed": (4, 9, 2, 32),       # dense coarse levels, hashed fine ones
}


# ------------------------------------------------------------------------- brute-force reference

def _corner_row(vertex: tuple[int, int, int], r: int, size: int) -> int:
    x, y, z = vertex
    if (r + 1) ** 3 <= size:
        return x + y * (r + 1) + z * (r + 1) ** 2
    return ((x * PRIMES[0]) ^ (y * PRIMES[1]) ^ (z * PRIMES[2])) % 2 ** 32 % size


def _corners(point: list[float], r: int, size: int, offset: int) -> list[tuple[int, float]]:
    """(table row, trilinear weight) of the 8 corners of ``point``'s cell at resolution ``r``."""
    pos = [min(max(c, 0.0), 1.0) * r for c in point]
    low = [min(int(math.floor(p)), r - 1) for p in pos]
    frac = [p - lo for p, lo in zip(pos, low)]
    out = []
    for dx, dy, dz in itertools.product((0, 1), repeat=3):
        weight = 1.0
        for d, f in zip((dx, dy, dz), frac):
            weight *= f if d else 1.0 - f
        row = offset + _corner_row((low[0] + dx, low[1] + dy, low[2] + dz), r, size)
        out.append((row, weight))
    return out


def brute_force_encode(x: torch.Tensor, table: torch.Tensor, offsets: torch.Tensor,
                       resolutions: torch.Tensor) -> torch.Tensor:
    res, off = resolutions.tolist(), offsets.tolist()
    tab = table.detach().double()
    out = torch.zeros(x.shape[0], len(res) * table.shape[1], dtype=torch.float64)
    feats = table.shape[1]
    for n, point in enumerate(x.double().tolist()):
        for level, r in enumerate(res):
            for row, weight in _corners(point, r, off[level + 1] - off[level], off[level]):
                out[n, level * feats:(level + 1) * feats] += weight * tab[row]
    return out


def brute_force_table_grad(x: torch.Tensor, grad_out: torch.Tensor, offsets: torch.Tensor,
                           resolutions: torch.Tensor, rows: int) -> torch.Tensor:
    """d(sum(out * grad_out)) / d(table): each corner's weight times the upstream gradient, summed."""
    res, off = resolutions.tolist(), offsets.tolist()
    feats = grad_out.shape[1] // len(res)
    grad = torch.zeros(rows, feats, dtype=torch.float64)
    for n, point in enumerate(x.double().tolist()):
        for level, r in enumerate(res):
            upstream = grad_out[n, level * feats:(level + 1) * feats].double()
            for row, weight in _corners(point, r, off[level + 1] - off[level], off[level]):
                grad[row] += weight * upstream
    return grad


# ------------------------------------------------------------------------------------- helpers

def _layout(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    return level_layout(*LAYOUTS[name])


def _level_kinds(resolutions: torch.Tensor, offsets: torch.Tensor) -> list[bool]:
    """True per hashed level."""
    sizes = (offsets[1:] - offsets[:-1]).tolist()
    return [(r + 1) ** 3 > s for r, s in zip(resolutions.tolist(), sizes)]


def _points(n_random: int, seed: int) -> torch.Tensor:
    """Random points plus cell borders of every power-of-two resolution and the cube's faces."""
    g = torch.Generator().manual_seed(seed)
    special = torch.tensor([
        [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.5],
        [0.5, 0.5, 0.5], [0.25, 0.75, 0.125], [0.5, 0.0, 1.0], [1.0, 0.5, 0.25],
        [0.0625, 0.9375, 0.5], [1.0, 1.0, 0.3],
    ])
    return torch.cat([special, torch.rand(n_random, 3, generator=g)])


def _table(offsets: torch.Tensor, feats: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(int(offsets[-1]), feats, generator=g, dtype=torch.float64).to(dtype)


# ---------------------------------------------------------------------------------------- tests

def test_the_three_layouts_cover_dense_hashed_and_mixed_levels():
    assert _level_kinds(*_layout("dense")) == [False] * 3
    assert _level_kinds(*_layout("hashed")) == [True] * 3
    kinds = _level_kinds(*_layout("mixed"))
    assert kinds[0] is False and kinds[-1] is True


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_values_match_brute_force(layout):
    res, off = _layout(layout)
    x = _points(40, seed=1)
    table = _table(off, 2, seed=2)
    got = hash_encode_ref(x, table, off, res)
    want = brute_force_encode(x, table, off, res)
    torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=1e-5)
    # the public entry point takes the twin on the CPU
    torch.testing.assert_close(hash_encode(x, table, off, res), got, atol=0, rtol=0)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_table_gradient_is_the_brute_force_sum_of_corner_weights(layout):
    res, off = _layout(layout)
    x = _points(30, seed=3)
    table = _table(off, 3, seed=4).requires_grad_()
    out = hash_encode_ref(x, table, off, res)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
    out.backward(grad_out)
    want = brute_force_table_grad(x, grad_out, off, res, table.shape[0])
    torch.testing.assert_close(table.grad.double(), want, atol=2e-5, rtol=1e-5)


def test_unit_upstream_gradient_sums_to_one_per_point_and_level():
    """Trilinear weights are a partition of unity, so each level's column sums to the point count."""
    res, off = _layout("mixed")
    x = _points(25, seed=6)
    table = _table(off, 2, seed=7).requires_grad_()
    hash_encode_ref(x, table, off, res).sum().backward()
    for level in range(len(res)):
        rows = table.grad[int(off[level]):int(off[level + 1])]
        torch.testing.assert_close(rows.sum(0), torch.full((2,), float(x.shape[0])))


@pytest.mark.parametrize("layout", ["mixed", "hashed"])
def test_gradcheck_float64_wrt_table(layout):
    res, off = _layout(layout)
    x = _points(4, seed=8).double()
    table = _table(off, 2, seed=9, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: hash_encode_ref(x, t, off, res), (table,),
                                    eps=1e-6, atol=1e-7)


def test_positions_get_the_gradient_of_a_linear_table_exactly():
    """A dense table holding each vertex's own position encodes x as itself at every level, so the
    gradient of level l's feature i with respect to x is the unit vector e_i (the positions' gradient
    exists only for positions that ask for it; the table's as before)."""
    res, off = _layout("dense")
    table = torch.zeros(int(off[-1]), 3, dtype=torch.float64)
    for level, r in enumerate(res.tolist()):
        for x, y, z in itertools.product(range(r + 1), repeat=3):
            table[int(off[level]) + x + y * (r + 1) + z * (r + 1) ** 2] = torch.tensor([x, y, z]) / r
    table.requires_grad_()
    points = _points(7, seed=10).double().requires_grad_()
    out = hash_encode_ref(points, table, off, res).view(-1, len(res), 3)
    for axis in range(3):
        (grad,) = torch.autograd.grad(out[:, :, axis].sum(), points, retain_graph=True)
        expected = torch.zeros_like(grad)
        expected[:, axis] = len(res)                                  # one unit per level
        torch.testing.assert_close(grad, expected)
    fixed = _points(3, seed=11).double()
    hash_encode_ref(fixed, table, off, res).sum().backward()
    assert fixed.grad is None and table.grad is not None and table.grad.abs().sum() > 0


def test_dense_levels_reproduce_a_linear_table_exactly():
    """A dense table holding each vertex's own position interpolates to the query point itself."""
    res, off = _layout("dense")
    table = torch.zeros(int(off[-1]), 3, dtype=torch.float64)
    for level, r in enumerate(res.tolist()):
        for x, y, z in itertools.product(range(r + 1), repeat=3):
            table[int(off[level]) + x + y * (r + 1) + z * (r + 1) ** 2] = torch.tensor([x, y, z]) / r
    points = _points(20, seed=12).double()
    out = hash_encode_ref(points, table, off, res).view(-1, len(res), 3)
    torch.testing.assert_close(out, points.unsqueeze(1).expand_as(out))


def test_values_are_continuous_across_cell_borders_and_clamped_outside_the_cube():
    res, off = _layout("mixed")
    table = _table(off, 2, seed=13)
    border = torch.tensor([[0.5, 0.25, 0.75], [0.0, 0.5, 1.0], [1.0, 1.0, 1.0]])
    # moving by eps changes a level by at most 3 * eps * r * (largest table difference), ~1e-3 here;
    # picking the wrong corner rows on a border would change it by O(1)
    bound = 3 * 1e-6 * int(res.max()) * 2 * float(table.abs().max())
    for eps in (1e-6, -1e-6):
        nudged = (border + eps).clamp(0.0, 1.0)
        torch.testing.assert_close(hash_encode_ref(nudged, table, off, res),
                                   hash_encode_ref(border, table, off, res), atol=bound, rtol=0)
    outside = torch.tensor([[-0.5, 1.5, 0.3], [2.0, -1.0, 0.7]])
    torch.testing.assert_close(hash_encode_ref(outside, table, off, res),
                               hash_encode_ref(outside.clamp(0.0, 1.0), table, off, res))


def test_empty_batch_gives_empty_features_and_a_zero_gradient():
    res, off = _layout("mixed")
    table = _table(off, 2, seed=14).requires_grad_()
    out = hash_encode_ref(torch.zeros(0, 3), table, off, res)
    assert out.shape == (0, len(res) * 2)
    out.sum().backward()
    assert table.grad.shape == table.shape
    assert torch.count_nonzero(table.grad) == 0


def test_compiled_forward_matches_eager_values_and_gradients(monkeypatch):
    """The one torch.compile test in the suite (the first compile takes a while)."""
    res, off = level_layout(6, 12, 4, 512)     # hashed fine levels: int32 products overflow
    x = torch.rand(300, 3, generator=torch.Generator().manual_seed(15))
    x[:4] = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.25, 1.0], [1.0, 0.0, 0.5]])
    table = _table(off, 2, seed=16)
    grad_out = torch.randn(x.shape[0], len(res) * 2, generator=torch.Generator().manual_seed(17))

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        leaf = table.clone().requires_grad_()
        out = hash_encode_ref(x, leaf, off, res)
        out.backward(grad_out)
        return out.detach(), leaf.grad

    monkeypatch.setenv("NERFKIT_COMPILE", "0")
    eager_out, eager_grad = run()
    monkeypatch.setenv("NERFKIT_COMPILE", "1")
    assert hash_encoding_module._compiled_math() is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled_out, compiled_grad = run()
    fallbacks = [str(w.message) for w in caught if "staying eager" in str(w.message)]
    assert not fallbacks, fallbacks                 # the compiled path really ran
    assert os.environ["NERFKIT_COMPILE"] == "1"    # and did not switch itself off
    torch.testing.assert_close(compiled_out, eager_out, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(compiled_grad, eager_grad, atol=1e-6, rtol=1e-6)
    # and both agree with the definition on a few of the points
    torch.testing.assert_close(compiled_out[:12].double(), brute_force_encode(x[:12], table, off, res),
                               atol=2e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------ the layout

@pytest.mark.parametrize("n_levels,log2_size,base,finest", [
    (16, 19, 16, 2048), (8, 19, 16, 4096), (2, 10, 2, 16), (2, 12, 4, 64), (5, 14, 16, 512),
    (12, 15, 4, 1024), (16, 22, 16, 8192),
])
def test_layout_resolutions_grow_geometrically_from_base_to_max(n_levels, log2_size, base, finest):
    res, off = level_layout(n_levels, log2_size, base, finest)
    assert res.dtype == torch.int32 and off.dtype == torch.int32
    assert res.shape == (n_levels,) and off.shape == (n_levels + 1,)
    assert int(res[0]) == base
    assert int(res[-1]) == finest
    growth = (finest / base) ** (1.0 / (n_levels - 1))
    for level, r in enumerate(res.tolist()):
        assert abs(r - base * growth ** level) < 1.0 + 1e-9
    assert bool((res[1:] >= res[:-1]).all())


@pytest.mark.parametrize("n_levels,log2_size,base,finest", [(16, 19, 16, 2048), (6, 7, 2, 64), (3, 2, 1, 4)])
def test_layout_offsets_are_multiples_of_8_sized_by_the_smaller_of_grid_and_table(
        n_levels, log2_size, base, finest):
    res, off = level_layout(n_levels, log2_size, base, finest)
    assert int(off[0]) == 0
    assert bool((off % 8 == 0).all())
    for level, r in enumerate(res.tolist()):
        size = int(off[level + 1] - off[level])
        assert size == math.ceil(min((r + 1) ** 3, 2 ** log2_size) / 8) * 8


@pytest.mark.parametrize("n_levels,base,finest,expected", [
    (4, 2, 16, [2, 4, 8, 16]), (5, 1, 16, [1, 2, 4, 8, 16]), (3, 16, 4096, [16, 256, 4096]),
])
def test_layout_hits_exact_powers_of_the_growth_factor(n_levels, base, finest, expected):
    """Resolutions that are integers in exact arithmetic are not lost to exp/log round-off."""
    assert level_layout(n_levels, 19, base, finest)[0].tolist() == expected


def test_single_level_layout_uses_the_base_resolution():
    res, off = level_layout(1, 19, 16, 2048)
    assert res.tolist() == [16]
    assert off.tolist() == [0, 17 ** 3 // 8 * 8 + 8]
