"""nerfkit's differentiable tile rasterizer for projected Gaussians: :func:`rasterize` dispatches
per call to the native CPU kernel (:mod:`nerfkit.render.splat_raster_native`, float32 CPU tensors,
when the CPU extension built and ``NERFKIT_NATIVE`` allows it, as the ops) or to its twin in plain
PyTorch, :func:`rasterize_ref`, described here.

The image is cut into square tiles. Each Gaussian is listed in every tile its screen box touches and
the lists are sorted by depth (one sort of ``tile * N + depth rank`` keys). Then all tiles are
composited front to back together, a chunk of each tile's list per round::

    sigma_i = 0.5 (a dx^2 + c dy^2) + b dx dy          (dx, dy = centre - pixel)
    alpha_i = min(0.999, o_i exp(-sigma_i)),  skipped when sigma_i < 0 or alpha_i < 1/255
    T_i     = prod_{j<i} (1 - alpha_j),       a pixel stops before the Gaussian that takes T <= 1e-4
    F       = sum_i alpha_i T_i f_i,          alpha_out = 1 - prod_i (1 - alpha_i)

(the rules of gsplat's and 3DGS's CUDA rasterizers, so both backends agree). Tiles whose pixels
have all stopped leave the rounds early. The backward pass is analytic and runs the same rounds
front to back again, so no per-pair tensor outlives a round: with ``S_i = sum_{j<=i} w_j g.f_j``,

    dL/dalpha_i = T_i g.f_i - (g.F - S_i) / (1 - alpha_i) + g_alpha T_final / (1 - alpha_i).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from nerfkit.ops._backend import use_native
from nerfkit.render.splat_raster_native import native_covers, rasterize_native

TRANSMITTANCE_EPS = 1e-4
ALPHA_MAX = 0.999
ALPHA_MIN = 1.0 / 255.0


@dataclass
class TileLists:
    """Depth-sorted Gaussian lists per tile.

    Attributes:
        gaussian_ids: (K,) int64 Gaussian index of each (tile, Gaussian) pair, grouped by tile,
            front to back within a tile.
        offsets: (T + 1,) int64 start of each tile's run in ``gaussian_ids``.
        tiles_x, tiles_y, tile_size: the tiling (T = tiles_x * tiles_y).
    """

    gaussian_ids: Tensor
    offsets: Tensor
    tiles_x: int
    tiles_y: int
    tile_size: int

    @property
    def n_tiles(self) -> int:
        return self.tiles_x * self.tiles_y


def bin_gaussians(means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int,
                  tile_size: int = 16) -> TileLists:
    """List every visible Gaussian in each tile its screen box overlaps, sorted by depth.

    Args:
        means2d: (N, 2) pixel centres; radii: (N, 2) half-extents in pixels (0 = culled).
        depths: (N,) sort key (camera z).
    """
    tiles_x, tiles_y = math.ceil(width / tile_size), math.ceil(height / tile_size)
    device = means2d.device
    with torch.no_grad():
        visible = torch.nonzero(radii[:, 0] > 0).squeeze(1)
        centre, extent = means2d[visible], radii[visible]
        low = torch.floor((centre - extent) / tile_size).long()
        high = torch.floor((centre + extent) / tile_size).long()
        limit = torch.tensor([tiles_x - 1, tiles_y - 1], device=device)
        low = torch.minimum(torch.clamp(low, min=0), limit)
        high = torch.minimum(torch.clamp(high, min=0), limit)
        span = high - low + 1                                            # (V, 2) tiles in x and y
        counts = span[:, 0] * span[:, 1]
        rank = torch.empty_like(visible)
        rank[torch.argsort(depths[visible], stable=True)] = torch.arange(visible.numel(), device=device)
        owner = torch.repeat_interleave(torch.arange(visible.numel(), device=device), counts)
        start = torch.cumsum(counts, 0) - counts
        local = torch.arange(owner.numel(), device=device) - start[owner]
        tile_x = low[owner, 0] + local % span[owner, 0]
        tile_y = low[owner, 1] + local // span[owner, 0]
        tile = tile_y * tiles_x + tile_x
        order = torch.argsort(tile * max(visible.numel(), 1) + rank[owner])
        ids = visible[owner[order]]
        per_tile = torch.bincount(tile, minlength=tiles_x * tiles_y)
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64, device=device), torch.cumsum(per_tile, 0)])
    return TileLists(ids, offsets, tiles_x, tiles_y, tile_size)


@dataclass
class _Round:
    """One round: chunk ``c`` of the lists of the ``A`` active tiles (pairs are (A, c, P))."""

    tiles: Tensor        # (A,) tile index
    ids: Tensor          # (A, c) Gaussian index (clamped where invalid)
    valid: Tensor        # (A, c) a real list entry
    local: Tensor        # (A, c, 2) Gaussian centre relative to the tile's corner, pixels
    raw: Tensor          # (A, c, P) o exp(-sigma) where the pair contributes unclamped, else 0
    alpha: Tensor        # (A, c, P) alpha of pairs that contribute, else 0
    t_before: Tensor     # (A, c, P) transmittance in front of each pair
    weights: Tensor      # (A, c, P) alpha * t_before


def _pixel_basis(tile_size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(6, P) monomials ``1, u, v, u^2, v^2, u v`` of the pixel centres of a tile (tile-local)."""
    local = torch.arange(tile_size * tile_size, device=device)
    u = (local % tile_size).to(dtype) + 0.5
    v = (local // tile_size).to(dtype) + 0.5
    return torch.stack([torch.ones_like(u), u, v, u * u, v * v, u * v])


def _exponent_coefficients(local: Tensor, conic: Tensor, opacity: Tensor) -> Tensor:
    """(..., 6) coefficients of ``sigma - log(o)`` as a polynomial in the tile-local pixel (u, v).

    With ``dx = mx - u``, ``dy = my - v`` (tile-local), ``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy``;
    expanding it turns every pair's exponent over a tile into one matrix product with
    :func:`_pixel_basis`, the rasterizer's hot spot.
    """
    mx, my = local.unbind(-1)
    a, b, c = conic.unbind(-1)
    return torch.stack([0.5 * (a * mx * mx + c * my * my) + b * mx * my - torch.log(opacity),
                        -(a * mx + b * my), -(c * my + b * mx), 0.5 * a, 0.5 * c, b], -1)


def _rounds(means2d: Tensor, conics: Tensor, opacities: Tensor, tiles: TileLists, width: int,
            height: int, chunk: int) -> Iterator[tuple[_Round, Tensor]]:
    """Front-to-back rounds over all tiles. Yields each round and the (T, P) transmittance tensor
    (final once the rounds end). Pixels that stop get transmittance 0 in ``carried`` so later pairs
    give nothing; ``final`` keeps their value at the stop."""
    device, dtype = means2d.device, means2d.dtype
    size = tiles.tile_size
    basis = _pixel_basis(size, device, dtype)
    tile_index = torch.arange(tiles.n_tiles, device=device)
    corner = torch.stack([tile_index % tiles.tiles_x, tile_index // tiles.tiles_x], -1).to(dtype) * size
    outside = ((corner[:, :1] + basis[1] > width) | (corner[:, 1:] + basis[2] > height))
    final = torch.ones(tiles.n_tiles, size * size, device=device, dtype=dtype)
    carried = torch.where(outside, torch.zeros_like(final), final)
    starts, ends = tiles.offsets[:-1], tiles.offsets[1:]
    active = torch.nonzero(ends > starts).squeeze(1)
    n_pairs = tiles.gaussian_ids.numel()
    position = 0
    while active.numel() > 0:
        entry = starts[active].unsqueeze(1) + position + torch.arange(chunk, device=device)
        valid = entry < ends[active].unsqueeze(1)
        ids = tiles.gaussian_ids[torch.clamp(entry, max=n_pairs - 1)]
        local = means2d[ids] - corner[active].unsqueeze(1)
        coefficients = _exponent_coefficients(local, conics[ids], opacities[ids])
        coefficients[..., 0] = torch.where(valid, coefficients[..., 0], torch.full_like(coefficients[..., 0], 1e4))
        raw = torch.exp(-(coefficients @ basis))                          # (A, c, P) o exp(-sigma)
        alpha = torch.clamp(raw, max=ALPHA_MAX)
        alpha = torch.where(alpha >= ALPHA_MIN, alpha, torch.zeros_like(alpha))
        front = carried[active].unsqueeze(1)
        through = front * torch.cumprod(1.0 - alpha, dim=1)               # (A, c, P) inclusive
        stop = through <= TRANSMITTANCE_EPS                               # monotone along c
        alpha = torch.where(stop, torch.zeros_like(alpha), alpha)
        t_before = torch.cat([front, through[:, :-1]], 1)
        raw = torch.where((alpha > 0) & (raw <= ALPHA_MAX), raw, torch.zeros_like(raw))
        yield _Round(active, ids, valid, local, raw, alpha, t_before, alpha * t_before), final
        # Stopped pairs have alpha 0, so this is the transmittance behind the last pair each pixel
        # used: where it stopped, or behind the chunk.
        behind = front[:, 0] * torch.prod(1.0 - alpha, dim=1)
        alive = ~stop[:, -1]
        final[active] = torch.where(front[:, 0] > 0, behind, final[active])
        carried[active] = torch.where(alive, behind, torch.zeros_like(behind))
        position += chunk
        more = (ends[active] - starts[active] > position) & alive.any(1)
        active = active[more]


def _to_image(per_tile: Tensor, tiles: TileLists, width: int, height: int) -> Tensor:
    """(T, P, ...) per-tile pixels -> (H, W, ...) image."""
    size = tiles.tile_size
    rest = per_tile.shape[2:]
    image = per_tile.reshape((tiles.tiles_y, tiles.tiles_x, size, size) + rest)
    image = image.transpose(1, 2).reshape((tiles.tiles_y * size, tiles.tiles_x * size) + rest)
    return image[:height, :width]


def _from_image(image: Tensor, tiles: TileLists) -> Tensor:
    """(H, W, ...) image -> (T, P, ...) per-tile pixels (zero-padded at the borders)."""
    size = tiles.tile_size
    height, width = image.shape[:2]
    rest = image.shape[2:]
    padded = image.new_zeros((tiles.tiles_y * size, tiles.tiles_x * size) + rest)
    padded[:height, :width] = image
    padded = padded.reshape((tiles.tiles_y, size, tiles.tiles_x, size) + rest).transpose(1, 2)
    return padded.reshape((tiles.n_tiles, size * size) + rest)


class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d: Tensor, conics: Tensor, opacities: Tensor, features: Tensor,
                tiles: TileLists, width: int, height: int, chunk: int) -> tuple[Tensor, Tensor]:
        n_pixels = tiles.tile_size ** 2
        accumulated = means2d.new_zeros(tiles.n_tiles, n_pixels, features.shape[1])
        transmittance = None
        for round_, transmittance in _rounds(means2d, conics, opacities, tiles, width, height, chunk):
            accumulated[round_.tiles] += torch.einsum("acp,acf->apf", round_.weights, features[round_.ids])
        if transmittance is None:
            transmittance = means2d.new_ones(tiles.n_tiles, n_pixels)
        ctx.save_for_backward(means2d, conics, opacities, features, accumulated, transmittance)
        ctx.setup = (tiles, width, height, chunk)
        return _to_image(accumulated, tiles, width, height), _to_image(1.0 - transmittance, tiles, width, height)

    @staticmethod
    def backward(ctx, grad_features: Tensor, grad_alpha: Tensor):
        means2d, conics, opacities, features, accumulated, t_final = ctx.saved_tensors
        tiles, width, height, chunk = ctx.setup
        basis = _pixel_basis(tiles.tile_size, means2d.device, means2d.dtype)
        g = _from_image(grad_features.contiguous(), tiles)                 # (T, P, F)
        g_alpha_final = _from_image(grad_alpha.contiguous(), tiles) * t_final   # (T, P)
        g_total = (g * accumulated).sum(-1)                               # (T, P) g . F
        partial = torch.zeros_like(g_total)                               # running g . sum w f
        grads = {name: torch.zeros_like(t) for name, t in
                 (("means2d", means2d), ("conics", conics), ("opacities", opacities), ("features", features))}
        for round_, _ in _rounds(means2d, conics, opacities, tiles, width, height, chunk):
            a, ids = round_.tiles, round_.ids
            g_dot_f = torch.einsum("apf,acf->acp", g[a], features[ids])
            running = partial[a].unsqueeze(1) + torch.cumsum(round_.weights * g_dot_f, 1)
            partial[a] = running[:, -1]
            g_alpha = (round_.t_before * g_dot_f
                       - (g_total[a].unsqueeze(1) - running - g_alpha_final[a].unsqueeze(1)) / (1.0 - round_.alpha))
            # d alpha / d exponent = -raw (0 where the pair is clamped or does not contribute)
            g_coef = -((round_.raw * g_alpha) @ basis.T)                   # (A, c, 6)
            g_local, g_conic, g_opacity = _coefficient_chain(g_coef, round_.local, conics[ids], opacities[ids])
            g_feat = torch.einsum("acp,apf->acf", round_.weights, g[a])
            keep = round_.valid.reshape(-1)
            flat_ids = ids.reshape(-1)[keep]
            grads["means2d"].index_add_(0, flat_ids, g_local.reshape(-1, 2)[keep])
            grads["conics"].index_add_(0, flat_ids, g_conic.reshape(-1, 3)[keep])
            grads["opacities"].index_add_(0, flat_ids, g_opacity.reshape(-1)[keep])
            grads["features"].index_add_(0, flat_ids, g_feat.reshape(-1, g_feat.shape[-1])[keep])
        return grads["means2d"], grads["conics"], grads["opacities"], grads["features"], None, None, None, None


def _coefficient_chain(g_coef: Tensor, local: Tensor, conic: Tensor, opacity: Tensor
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """Backward of :func:`_exponent_coefficients`: (..., 6) -> centre (..., 2), conic (..., 3), opacity (...)."""
    g0, gu, gv, guu, gvv, guv = g_coef.unbind(-1)
    mx, my = local.unbind(-1)
    a, b, c = conic.unbind(-1)
    g_conic = torch.stack([0.5 * g0 * mx * mx - gu * mx + 0.5 * guu,
                           g0 * mx * my - gu * my - gv * mx + guv,
                           0.5 * g0 * my * my - gv * my + 0.5 * gvv], -1)
    g_local = torch.stack([g0 * (a * mx + b * my) - gu * a - gv * b,
                           g0 * (c * my + b * mx) - gu * b - gv * c], -1)
    return g_local, g_conic, -g0 / opacity


def rasterize(means2d: Tensor, conics: Tensor, opacities: Tensor, features: Tensor, tiles: TileLists,
              width: int, height: int, chunk: int = 32) -> tuple[Tensor, Tensor]:
    """Alpha-composite Gaussians front to back (differentiable in every float input).

    Args:
        means2d: (N, 2) pixel centres; conics: (N, 3) inverse 2D covariance (a, b, c).
        opacities: (N,) in [0, 1]; features: (N, F) per-Gaussian values to composite (colour, depth).
        tiles: depth-sorted tile lists from :func:`bin_gaussians` for the same Gaussians.
        width, height: image size; chunk: list entries per tile per round of the twin (memory vs.
            rounds; the native kernel walks each list in one go).
    Returns:
        features (H, W, F) = sum_i w_i f_i and alpha (H, W) = 1 - T_final (no background added).
    """
    n = means2d.shape[0]
    if means2d.shape != (n, 2) or conics.shape != (n, 3) or opacities.shape != (n,) or features.ndim != 2 \
            or features.shape[0] != n:
        raise ValueError(f"rasterize expects (N, 2), (N, 3), (N,), (N, F) inputs, got {tuple(means2d.shape)}, "
                         f"{tuple(conics.shape)}, {tuple(opacities.shape)}, {tuple(features.shape)}")
    if tiles.offsets.numel() != tiles.n_tiles + 1:
        raise ValueError("tile lists do not match their tiling")
    if native_covers(means2d, conics, opacities, features, tiles.tile_size) \
            and use_native(means2d, conics, opacities, features, tiles.gaussian_ids):
        return rasterize_native(means2d, conics, opacities, features, tiles.gaussian_ids, tiles.offsets,
                                tiles.tiles_x, tiles.tiles_y, tiles.tile_size, width, height)
    return rasterize_ref(means2d, conics, opacities, features, tiles, width, height, chunk)


def rasterize_ref(means2d: Tensor, conics: Tensor, opacities: Tensor, features: Tensor, tiles: TileLists,
                  width: int, height: int, chunk: int = 32) -> tuple[Tensor, Tensor]:
    """The PyTorch twin of :func:`rasterize` (same signature; the rounds described in this module)."""
    return _Rasterize.apply(means2d.contiguous(), conics.contiguous(), opacities.contiguous(),
                            features.contiguous(), tiles, width, height, chunk)
