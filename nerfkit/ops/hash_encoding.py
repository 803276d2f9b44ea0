"""Multiresolution hash encoding (Mueller et al. 2022, Sec. 3): trilinear lookups in per-level tables.

Level ``l`` is a grid of ``resolutions[l]`` cells per axis (``resolutions[l] + 1`` vertices). Its
vertices index rows ``offsets[l] .. offsets[l+1]`` of one shared ``table``: densely (x + y*r + z*r^2)
when the level has no more vertices than rows, else by the spatial hash of Eq. (4),
``(x * 1) xor (y * 2654435761) xor (z * 805459861) mod size``.

Gradients flow to ``table`` only (positions are not learned); that is what NeRF training needs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nerfkit.ops._backend import load_native, use_native

PRIMES = (1, 2654435761, 805459861)
_CORNERS = torch.tensor([[(c >> 0) & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)])


def level_layout(n_levels: int, log2_table_size: int, base_resolution: int,
                 max_resolution: int) -> tuple[Tensor, Tensor]:
    """Resolutions and table row offsets of a hash grid.

    Returns:
        resolutions (L,) int32 cells per axis, geometric from ``base`` to ``max``;
        offsets (L+1,) int32 first table row of each level (level sizes are multiples of 8).
    """
    growth = math.exp((math.log(max_resolution) - math.log(base_resolution)) / max(n_levels - 1, 1))
    resolutions, offsets = [], [0]
    for level in range(n_levels):
        res = int(math.floor(base_resolution * growth ** level))
        size = min((res + 1) ** 3, 2 ** log2_table_size)
        size = (size + 7) // 8 * 8
        resolutions.append(res)
        offsets.append(offsets[-1] + size)
    return torch.tensor(resolutions, dtype=torch.int32), torch.tensor(offsets, dtype=torch.int32)


def _as_int32(value: int) -> int:
    """The int32 with the same low 32 bits (products modulo 2^32 keep their low bits)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= (1 << 31) else value


def _corner_indices_and_weights(x: Tensor, offsets: Tensor, resolutions: Tensor
                                ) -> tuple[Tensor, Tensor]:
    """Table rows (int64) and trilinear weights of the 8 corners per level: both (N, L, 8).

    Corner c of a cell is (c & 1, c >> 1 & 1, c >> 2 & 1) away from its lowest vertex.
    """
    device = x.device
    res_list = [int(r) for r in resolutions.tolist()]
    off_list = [int(o) for o in offsets.tolist()]
    res = torch.tensor(res_list, device=device, dtype=x.dtype).view(1, -1, 1)
    pos = x.unsqueeze(1) * res                                              # (N, L, 3)
    hi = (res - 1).clamp(min=0)
    base = pos.floor().clamp_(min=0).minimum(hi)
    frac = (pos - base).clamp_(0.0, 1.0)
    base = base.to(torch.int32)
    strides, masks, hashed = [], [], []
    for level, r in enumerate(res_list):
        size = off_list[level + 1] - off_list[level]
        is_hashed = (r + 1) ** 3 > size
        hashed.append(is_hashed)
        strides.append([_as_int32(p) for p in PRIMES] if is_hashed else [1, r + 1, (r + 1) ** 2])
        masks.append(size - 1 if is_hashed else -1)   # hashed sizes are powers of two
    stride = torch.tensor(strides, device=device, dtype=torch.int32)        # (L, 3)
    step = torch.stack([torch.zeros_like(stride), stride], 1)               # (L, 2, 3) corner offset
    terms = base.unsqueeze(2) * stride.unsqueeze(1) + step                  # (N, L, 2, 3)
    tx = terms[..., 0].view(-1, len(res_list), 1, 1, 2)
    ty = terms[..., 1].view(-1, len(res_list), 1, 2, 1)
    tz = terms[..., 2].view(-1, len(res_list), 2, 1, 1)
    n_levels = len(res_list)
    if all(hashed):
        idx = (tx ^ ty ^ tz).view(-1, n_levels, 8)
    elif not any(hashed):
        idx = (tx + ty + tz).view(-1, n_levels, 8)
    elif all(hashed[hashed.index(True):]):      # dense levels first, as level_layout makes them
        n_dense = hashed.index(True)
        dense = (tx[:, :n_dense] + ty[:, :n_dense] + tz[:, :n_dense]).view(-1, n_dense, 8)
        coarse = (tx[:, n_dense:] ^ ty[:, n_dense:] ^ tz[:, n_dense:]).view(-1, n_levels - n_dense, 8)
        idx = torch.cat([dense, coarse], 1)
    else:                                       # any other order (custom offsets): choose per level
        is_hashed = torch.tensor(hashed, device=device).view(1, -1, 1)
        idx = torch.where(is_hashed, (tx ^ ty ^ tz).view(-1, n_levels, 8), (tx + ty + tz).view(-1, n_levels, 8))
    mask = torch.tensor(masks, device=device, dtype=torch.int32).view(1, -1, 1)
    idx = (idx & mask).long() + offsets[:-1].to(device, torch.int64).view(1, -1, 1)
    wfrac = torch.stack([1 - frac, frac], 2)                                 # (N, L, 2, 3)
    weights = (wfrac[..., 0].view(-1, n_levels, 1, 1, 2) * wfrac[..., 1].view(-1, n_levels, 1, 2, 1)
               * wfrac[..., 2].view(-1, n_levels, 2, 1, 1)).view(-1, n_levels, 8)
    return idx, weights


class _HashEncodeRef(torch.autograd.Function):
    """Gather-and-blend forward; scatter-add backward into the table (no dense autograd graph)."""

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, offsets: Tensor, resolutions: Tensor) -> Tensor:
        idx, weights = _corner_indices_and_weights(x, offsets, resolutions)
        n, levels, _ = idx.shape
        feats = table.shape[1]          # explicit sizes: a view with -1 fails for n = 0 points
        features = table.index_select(0, idx.reshape(-1)).view(n, levels, 8, feats)
        out = (features * weights.unsqueeze(-1).to(table.dtype)).sum(2)       # (N, L, F)
        ctx.save_for_backward(idx, weights)
        ctx.table_shape = table.shape
        return out.reshape(n, levels * feats)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        idx, weights = ctx.saved_tensors
        rows, feats = ctx.table_shape
        n, levels, _ = idx.shape
        grad_corners = grad_out.view(n, levels, 1, feats) * weights.unsqueeze(-1).to(grad_out.dtype)
        grad_table = torch.zeros(rows, feats, dtype=grad_out.dtype, device=grad_out.device)
        grad_table.index_add_(0, idx.reshape(-1), grad_corners.reshape(-1, feats))
        return None, grad_table, None, None


def hash_encode_ref(x: Tensor, table: Tensor, offsets: Tensor, resolutions: Tensor) -> Tensor:
    """Pure-PyTorch twin of :func:`hash_encode` (same signature, same result)."""
    return _HashEncodeRef.apply(x, table, offsets, resolutions)


def hash_encode(x: Tensor, table: Tensor, offsets: Tensor, resolutions: Tensor) -> Tensor:
    """Encode positions with a multiresolution hash grid.

    Args:
        x: (N, 3) float32 positions in [0, 1]^3 (values outside are clamped to the border cell).
        table: (offsets[-1], F) float32 (or float16) feature table, all levels stacked.
        offsets: (L+1,) int32 first row of each level, from :func:`level_layout`.
        resolutions: (L,) int32 cells per axis of each level.
    Returns:
        (N, L*F) features, level-major (level 0's F features first).

    Example:
        >>> res, off = level_layout(2, 10, 2, 4)
        >>> table = torch.ones(int(off[-1]), 2)
        >>> hash_encode(torch.rand(5, 3), table, off, res).shape
        torch.Size([5, 4])
    """
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"hash_encode expects positions of shape (N, 3), got {tuple(x.shape)}")
    if table.ndim != 2 or table.shape[0] != int(offsets[-1]):
        raise ValueError(f"hash_encode expects a table of {int(offsets[-1])} rows, got {tuple(table.shape)}")
    if resolutions.numel() + 1 != offsets.numel():
        raise ValueError("hash_encode expects len(offsets) == len(resolutions) + 1")
    if use_native(x, table):
        from nerfkit.ops._native import hash_encode_native
        return hash_encode_native(x.contiguous(), table.contiguous(), offsets, resolutions)
    return hash_encode_ref(x, table, offsets, resolutions)


__all__ = ["hash_encode", "hash_encode_ref", "level_layout", "load_native"]
