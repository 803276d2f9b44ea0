"""The pure-PyTorch twins of the native ops: the specification the kernels reproduce (same
signatures, same results up to float32 rounding), and the CPU/MPS path.

One module for every twin, importing neither the dispatchers (``compositing``, ``hash_encoding``,
``ray_marching``) nor the native loader, so the twins can be read, tested and used on their own.

- Ray/box intersection and occupancy-grid marching (instant-ngp, "Accelerated ray marching").
- Volume compositing of packed samples (Max 1995; NeRF Eq. 3).
- Multiresolution hash encoding (Mueller et al. 2022, Sec. 3), optionally through ``torch.compile``
  on the CPU (still pure PyTorch, fused by inductor; ``NERFKIT_COMPILE=0`` keeps it eager).
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from nerfkit.ops._flags import compile_enabled
from nerfkit.ops._flags import disable_compile as _disable_compile

PRIMES = (1, 2654435761, 805459861)
"""The spatial hash's per-axis primes (Eq. 4)."""


# ----------------------------------------------------------------------------- ray marching

def ray_aabb_intersect_ref(origins: Tensor, directions: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor]:
    """Pure-PyTorch twin of :func:`ray_aabb_intersect`."""
    inv = 1.0 / torch.where(directions.abs() < 1e-12, torch.full_like(directions, 1e-12), directions)
    t0 = (aabb[0] - origins) * inv
    t1 = (aabb[1] - origins) * inv
    t_near = torch.minimum(t0, t1).amax(-1).clamp(min=0.0)
    t_far = torch.maximum(t0, t1).amin(-1)
    miss = t_far <= t_near
    t_near = torch.where(miss, torch.full_like(t_near, math.inf), t_near)
    t_far = torch.where(miss, torch.full_like(t_far, math.inf), t_far)
    return t_near, t_far


def grid_lookup(points: Tensor, grid: Tensor, aabb: Tensor) -> Tensor:
    """Occupancy of points in a multi-cascade grid: (P, 3) -> (P,) bool (False outside all cascades).

    Args:
        grid: (C, G, G, G) bool, indexed [cascade, x, y, z].
        aabb: (2, 3) box of cascade 0.
    """
    n_cascades, res = grid.shape[0], grid.shape[1]
    centre = (aabb[0] + aabb[1]) * 0.5
    half = (aabb[1] - aabb[0]) * 0.5
    rel = (points - centre) / half                                  # cascade 0 is [-1, 1]^3
    extent = rel.abs().amax(-1).clamp(min=1e-12)
    cascade = torch.ceil(torch.log2(extent)).clamp(min=0).long()
    inside = cascade < n_cascades
    cascade = cascade.clamp(max=n_cascades - 1)
    scale = torch.exp2(cascade.to(points.dtype)).unsqueeze(-1)
    cell = ((rel / scale * 0.5 + 0.5) * res).floor().long().clamp(0, res - 1)
    flat = ((cascade * res + cell[:, 0]) * res + cell[:, 1]) * res + cell[:, 2]
    return grid.reshape(-1)[flat] & inside


def march_rays_ref(origins: Tensor, directions: Tensor, t_min: Tensor, t_max: Tensor, grid: Tensor,
                   aabb: Tensor, step_size: float, cone_angle: float, max_samples: int
                   ) -> tuple[Tensor, Tensor, Tensor]:
    """Pure-PyTorch twin of :func:`march_rays`: all candidate steps at once, then compaction."""
    device = origins.device
    n_rays = origins.shape[0]
    empty = (torch.zeros(0, dtype=torch.int64, device=device), torch.zeros(0, device=device),
             torch.zeros(0, device=device))
    live = torch.isfinite(t_min) & torch.isfinite(t_max) & (t_max > t_min)
    if n_rays == 0 or not bool(live.any()):
        return empty
    t_lo = torch.where(live, t_min, torch.zeros_like(t_min))
    t_hi = torch.where(live, t_max, torch.zeros_like(t_max))
    starts, widths = _candidate_steps(t_lo, t_hi, step_size, cone_angle, max_samples)   # (R, M)
    mids = starts + 0.5 * widths
    valid = (mids < t_hi.unsqueeze(-1)) & live.unsqueeze(-1)
    rows, cols = valid.nonzero(as_tuple=True)
    points = origins[rows] + directions[rows] * mids[rows, cols].unsqueeze(-1)
    occupied = grid_lookup(points, grid, aabb)
    rows, cols = rows[occupied], cols[occupied]
    if max_samples > 0 and rows.numel() > 0:
        counts = torch.bincount(rows, minlength=n_rays)
        first = torch.cumsum(counts, 0) - counts
        rank = torch.arange(rows.numel(), device=device) - first[rows]
        keep = rank < max_samples
        rows, cols = rows[keep], cols[keep]
    t_starts = starts[rows, cols]
    t_ends = torch.minimum(t_starts + widths[rows, cols], t_hi[rows])
    return rows, t_starts.contiguous(), t_ends.contiguous()


def _candidate_steps(t_lo: Tensor, t_hi: Tensor, step_size: float, cone_angle: float,
                     max_steps: int) -> tuple[Tensor, Tensor]:
    """Step starts and widths, (R, M), covering [t_lo, t_hi] (M bounded by the longest ray)."""
    if cone_angle <= 0.0:
        longest = float((t_hi - t_lo).max())
        m = max(1, min(int(math.ceil(longest / step_size)), 1 << 16))
        k = torch.arange(m, device=t_lo.device, dtype=t_lo.dtype)
        starts = t_lo.unsqueeze(-1) + k * step_size
        return starts, torch.full_like(starts, step_size)
    columns, t = [], t_lo.clone()
    widths = []
    for _ in range(1 << 16):
        dt = (t * cone_angle).clamp(min=step_size)
        columns.append(t)
        widths.append(dt)
        t = t + dt
        if not bool((t < t_hi).any()):
            break
    return torch.stack(columns, -1), torch.stack(widths, -1)


# ----------------------------------------------------------------------------- compositing

class Composited(NamedTuple):
    """Per-ray results (R rays) and per-sample weights (S samples)."""

    rgb: Tensor       # (R, 3)
    depth: Tensor     # (R,) expected distance along the unit ray (not normalised by alpha)
    alpha: Tensor     # (R,) accumulated opacity
    weights: Tensor   # (S,)


def exclusive_segment_sum(values: Tensor, ray_indices: Tensor, n_rays: int) -> Tensor:
    """Per-ray exclusive prefix sums of packed values: (S,) -> (S,), computed in float64."""
    if values.numel() == 0:
        return values.clone()
    inclusive = torch.cumsum(values.double(), 0)
    counts = torch.bincount(ray_indices, minlength=n_rays)
    first = torch.cumsum(counts, 0) - counts                          # index of each ray's 1st sample
    before_ray = (inclusive - values.double())[first.clamp(max=values.numel() - 1)]
    return (inclusive - values.double() - before_ray[ray_indices]).to(values.dtype)


def render_weights(sigmas: Tensor, t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor, n_rays: int
                   ) -> tuple[Tensor, Tensor]:
    """Weights and transmittance of packed samples: each (S,), differentiable in ``sigmas``."""
    optical = sigmas * (t_ends - t_starts)
    transmittance = torch.exp(-exclusive_segment_sum(optical, ray_indices, n_rays))
    alphas = 1.0 - torch.exp(-optical)
    return transmittance * alphas, transmittance


def composite_ref(sigmas: Tensor, rgbs: Tensor, t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor,
                  n_rays: int) -> Composited:
    """Pure-PyTorch twin of :func:`composite`."""
    weights, _ = render_weights(sigmas, t_starts, t_ends, ray_indices, n_rays)
    rgb = torch.zeros(n_rays, 3, dtype=rgbs.dtype, device=rgbs.device)
    rgb = rgb.index_add(0, ray_indices, weights.unsqueeze(-1) * rgbs)
    mids = 0.5 * (t_starts + t_ends)
    depth = torch.zeros(n_rays, dtype=weights.dtype, device=weights.device)
    depth = depth.index_add(0, ray_indices, weights * mids)
    alpha = torch.zeros(n_rays, dtype=weights.dtype, device=weights.device)
    alpha = alpha.index_add(0, ray_indices, weights)
    return Composited(rgb, depth, alpha, weights)


# ----------------------------------------------------------------------------- hash encoding

def _as_int32(value: int) -> int:
    """The int32 with the same low 32 bits (products modulo 2^32 keep their low bits)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= (1 << 31) else value


class _LevelConstants(NamedTuple):
    """Per-level constants of a layout, shaped to broadcast against (N, L, ...) tensors."""

    resolution: Tensor   # (1, L, 1) float cells per axis
    stride: Tensor       # (L, 3) int32: dense (1, r+1, (r+1)^2) or hash primes as int32
    mask: Tensor         # (1, L, 1) int32: size-1 for hashed levels (powers of two), -1 for dense
    hashed: Tensor       # (1, L, 1) bool
    row_offset: Tensor   # (1, L, 1) int64 first table row of the level


def _level_constants(offsets: Tensor, resolutions: Tensor, device: torch.device,
                     dtype: torch.dtype) -> _LevelConstants:
    res_list = [int(r) for r in resolutions.tolist()]
    off_list = [int(o) for o in offsets.tolist()]
    strides, masks, hashed = [], [], []
    for level, r in enumerate(res_list):
        size = off_list[level + 1] - off_list[level]
        is_hashed = (r + 1) ** 3 > size
        hashed.append(is_hashed)
        strides.append([_as_int32(p) for p in PRIMES] if is_hashed else [1, r + 1, (r + 1) ** 2])
        masks.append(size - 1 if is_hashed else -1)
    return _LevelConstants(
        torch.tensor(res_list, device=device, dtype=dtype).view(1, -1, 1),
        torch.tensor(strides, device=device, dtype=torch.int32).view(-1, 3),
        torch.tensor(masks, device=device, dtype=torch.int32).view(1, -1, 1),
        torch.tensor(hashed, device=device, dtype=torch.bool).view(1, -1, 1),
        torch.tensor(off_list[:-1], device=device, dtype=torch.int64).view(1, -1, 1))


def _cell(x: Tensor, resolution: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each point's cell at each level: its lowest vertex ``base`` (N, L, 3) (float, integral), the
    position in it ``frac`` (N, L, 3) in [0, 1], and d frac / d x (N, L, 3) (``resolution`` where the
    clamp of ``frac`` lets the position through, else 0)."""
    pos = x.unsqueeze(1) * resolution                                       # (N, L, 3)
    base = pos.floor().clamp(min=0.0).minimum((resolution - 1.0).clamp(min=0.0))
    raw = pos - base
    slope = resolution * ((raw >= 0.0) & (raw <= 1.0)).to(x.dtype)
    return base, raw.clamp(0.0, 1.0), slope


def _corner_rows(base: Tensor, stride: Tensor, mask: Tensor, hashed: Tensor, row_offset: Tensor) -> Tensor:
    """(N, L, 8) int64 table rows of the 8 corners of each cell (dense index or spatial hash, Eq. 4).

    Corner c of a cell is (c & 1, c >> 1 & 1, c >> 2 & 1) away from its lowest vertex.
    """
    n_levels = stride.shape[0]
    step = torch.stack([torch.zeros_like(stride), stride], 0)               # (2, L, 3) corner offset
    terms = base.to(torch.int32).unsqueeze(2) * stride.unsqueeze(1) + step.transpose(0, 1)  # (N, L, 2, 3)
    tx = terms[..., 0].reshape(-1, n_levels, 1, 1, 2)
    ty = terms[..., 1].reshape(-1, n_levels, 1, 2, 1)
    tz = terms[..., 2].reshape(-1, n_levels, 2, 1, 1)
    idx = torch.where(hashed, (tx ^ ty ^ tz).reshape(-1, n_levels, 8), (tx + ty + tz).reshape(-1, n_levels, 8))
    return (idx & mask).to(torch.int64) + row_offset


def _corner_products(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """(N, L, 2) per-axis factors (index 0: corner offset 0, 1: offset 1) -> (N, L, 8) products
    ``a[c & 1] * b[c >> 1 & 1] * c[c >> 2 & 1]`` in corner order."""
    n_levels = a.shape[1]
    return (a.reshape(-1, n_levels, 1, 1, 2) * b.reshape(-1, n_levels, 1, 2, 1)
            * c.reshape(-1, n_levels, 2, 1, 1)).reshape(-1, n_levels, 8)


def _encode_math(x: Tensor, table: Tensor, resolution: Tensor, stride: Tensor, mask: Tensor,
                 hashed: Tensor, row_offset: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Features (N, L, F), corner rows (N, L, 8) int64 and trilinear weights (N, L, 8).

    Written as plain tensor algebra so that torch.compile can fuse it into one loop.
    """
    base, frac, _ = _cell(x, resolution)
    idx = _corner_rows(base, stride, mask, hashed, row_offset)
    wf = torch.stack([1.0 - frac, frac], 2)                                 # (N, L, 2, 3)
    weights = _corner_products(wf[..., 0], wf[..., 1], wf[..., 2])
    features = table[idx]                                                   # (N, L, 8, F)
    out = (features * weights.unsqueeze(-1).to(table.dtype)).sum(2)
    return out, idx, weights


def _weight_gradients(x: Tensor, resolution: Tensor, stride: Tensor, mask: Tensor, hashed: Tensor,
                      row_offset: Tensor) -> tuple[Tensor, Tensor]:
    """Corner rows (N, L, 8) and the gradients of the trilinear weights with respect to the
    position, (N, L, 8, 3): ``d w_c / d x_i = (d frac_i / d x_i) (+-1) prod_{j != i} a_j``."""
    base, frac, slope = _cell(x, resolution)
    idx = _corner_rows(base, stride, mask, hashed, row_offset)
    wf = torch.stack([1.0 - frac, frac], 2)                                 # (N, L, 2, 3)
    dwf = torch.stack([-slope, slope], 2)                                   # (N, L, 2, 3)
    a, b, c = wf[..., 0], wf[..., 1], wf[..., 2]
    dweights = torch.stack([_corner_products(dwf[..., 0], b, c), _corner_products(a, dwf[..., 1], c),
                            _corner_products(a, b, dwf[..., 2])], -1)
    return idx, dweights


@functools.lru_cache(maxsize=1)
def _compiled_math() -> Callable | None:
    """torch.compile of :func:`_encode_math` (CPU), or None when compiling is off or unavailable."""
    try:
        return torch.compile(_encode_math, dynamic=True)
    except Exception as error:  # noqa: BLE001 - any failure means: stay eager
        warnings.warn(f"torch.compile unavailable for the hash encoding, staying eager: {error}",
                      stacklevel=2)
        return None


def _encode(x: Tensor, table: Tensor, offsets: Tensor, resolutions: Tensor
            ) -> tuple[Tensor, Tensor, Tensor]:
    consts = _level_constants(offsets, resolutions, x.device, x.dtype)
    if x.shape[0] > 0 and not x.is_cuda and compile_enabled():
        compiled = _compiled_math()
        if compiled is not None:
            try:
                return compiled(x.contiguous(), table.detach(), *consts)  # a Parameter input is 10x slower
            except Exception as error:  # noqa: BLE001 - e.g. no C++ compiler: stay eager
                warnings.warn(f"compiled hash encoding failed, staying eager: {error}", stacklevel=2)
                _disable_compile()
    return _encode_math(x, table, *consts)


class _HashEncodeRef(torch.autograd.Function):
    """Gather-and-blend forward; scatter-add backward into the table (no dense autograd graph) and,
    when the positions need it, their gradient through :class:`_HashEncodePositionGradRef`."""

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, offsets: Tensor, resolutions: Tensor) -> Tensor:
        out, idx, weights = _encode(x, table, offsets, resolutions)
        ctx.save_for_backward(idx, weights, x, table, offsets, resolutions)
        n, levels, feats = out.shape    # explicit sizes: a view with -1 fails for n = 0 points
        return out.reshape(n, levels * feats)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        idx, weights, x, table, offsets, resolutions = ctx.saved_tensors
        rows, feats = table.shape
        n, levels, _ = idx.shape
        grad_corners = grad_out.reshape(n, levels, 1, feats) * weights.unsqueeze(-1).to(grad_out.dtype)
        grad_table = torch.zeros(rows, feats, dtype=grad_out.dtype, device=grad_out.device)
        grad_table.index_add_(0, idx.reshape(-1), grad_corners.reshape(-1, feats))
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = hash_encode_position_grad_ref(x, table, grad_out, offsets, resolutions)
        return grad_x, grad_table, None, None


class _HashEncodePositionGradRef(torch.autograd.Function):
    """``grad_x = J(x)^T grad_out`` of the hash encoding, differentiable with respect to the table and
    ``grad_out`` (what an eikonal loss on SDF normals trains), not again with respect to ``x``."""

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, grad_out: Tensor, offsets: Tensor, resolutions: Tensor) -> Tensor:
        consts = _level_constants(offsets, resolutions, x.device, x.dtype)
        idx, dweights = _weight_gradients(x, *consts)
        n, levels, _ = idx.shape
        upstream = grad_out.reshape(n, levels, 1, -1)                        # (N, L, 1, F)
        projected = (table[idx] * upstream).sum(-1)                         # (N, L, 8)
        ctx.save_for_backward(idx, dweights, table, grad_out)
        return (dweights * projected.unsqueeze(-1).to(dweights.dtype)).sum((1, 2)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_grad_x: Tensor):
        idx, dweights, table, grad_out = ctx.saved_tensors
        n, levels, _ = idx.shape
        feats = table.shape[1]
        along = (dweights * grad_grad_x.reshape(n, 1, 1, 3).to(dweights.dtype)).sum(-1)   # (N, L, 8)
        grad_table = grad_grad_out = None
        if ctx.needs_input_grad[1]:
            upstream = grad_out.reshape(n, levels, 1, feats)
            grad_table = torch.zeros_like(table)
            grad_table.index_add_(0, idx.reshape(-1),
                                  (along.unsqueeze(-1).to(table.dtype) * upstream).reshape(-1, feats))
        if ctx.needs_input_grad[2]:
            grad_grad_out = (table[idx] * along.unsqueeze(-1).to(table.dtype)).sum(2).reshape(grad_out.shape)
        return None, grad_table, grad_grad_out, None, None


def hash_encode_ref(x: Tensor, table: Tensor, offsets: Tensor, resolutions: Tensor) -> Tensor:
    """Pure-PyTorch twin of :func:`hash_encode` (same signature, same result and gradients)."""
    return _HashEncodeRef.apply(x, table, offsets, resolutions)


def hash_encode_position_grad_ref(x: Tensor, table: Tensor, grad_out: Tensor, offsets: Tensor,
                                  resolutions: Tensor) -> Tensor:
    """Pure-PyTorch twin of :func:`hash_encode_position_grad` (same signature, same result)."""
    return _HashEncodePositionGradRef.apply(x, table, grad_out, offsets, resolutions)
