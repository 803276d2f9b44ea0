"""Multiresolution hash encoding (Mueller et al. 2022, Sec. 3): trilinear lookups in per-level tables.

Level ``l`` is a grid of ``resolutions[l]`` cells per axis (``resolutions[l] + 1`` vertices). Its
vertices index rows ``offsets[l] .. offsets[l+1]`` of one shared ``table``: densely (x + y*r + z*r^2)
when the level has no more vertices than rows, else by the spatial hash of Eq. (4),
``(x * 1) xor (y * 2654435761) xor (z * 805459861) mod size``.

Gradients flow to ``table`` only (positions are not learned); that is what NeRF training needs.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from nerfkit.ops._backend import compile_enabled, disable_compile as _disable_compile, load_native, use_native

PRIMES = (1, 2654435761, 805459861)


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
        # floor of base * growth^level; the 1e-9 keeps exp/log round-off (e.g. 2047.9999999) from
        # dropping a resolution that is an integer in exact arithmetic, such as the finest, to one less
        res = int(math.floor(base_resolution * growth ** level * (1.0 + 1e-9)))
        size = min((res + 1) ** 3, 2 ** log2_table_size)
        size = (size + 7) // 8 * 8
        resolutions.append(res)
        offsets.append(offsets[-1] + size)
    return torch.tensor(resolutions, dtype=torch.int32), torch.tensor(offsets, dtype=torch.int32)


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


def _encode_math(x: Tensor, table: Tensor, resolution: Tensor, stride: Tensor, mask: Tensor,
                 hashed: Tensor, row_offset: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Features (N, L, F), corner rows (N, L, 8) int64 and trilinear weights (N, L, 8).

    Corner c of a cell is (c & 1, c >> 1 & 1, c >> 2 & 1) away from its lowest vertex. Written as
    plain tensor algebra so that torch.compile can fuse it into one loop.
    """
    n_levels = stride.shape[0]
    pos = x.unsqueeze(1) * resolution                                       # (N, L, 3)
    base = pos.floor().clamp(min=0.0).minimum((resolution - 1.0).clamp(min=0.0))
    frac = (pos - base).clamp(0.0, 1.0)
    step = torch.stack([torch.zeros_like(stride), stride], 0)               # (2, L, 3) corner offset
    terms = base.to(torch.int32).unsqueeze(2) * stride.unsqueeze(1) + step.transpose(0, 1)  # (N, L, 2, 3)
    tx = terms[..., 0].reshape(-1, n_levels, 1, 1, 2)
    ty = terms[..., 1].reshape(-1, n_levels, 1, 2, 1)
    tz = terms[..., 2].reshape(-1, n_levels, 2, 1, 1)
    idx = torch.where(hashed, (tx ^ ty ^ tz).reshape(-1, n_levels, 8), (tx + ty + tz).reshape(-1, n_levels, 8))
    idx = (idx & mask).to(torch.int64) + row_offset
    wf = torch.stack([1.0 - frac, frac], 2)                                 # (N, L, 2, 3)
    weights = (wf[..., 0].reshape(-1, n_levels, 1, 1, 2) * wf[..., 1].reshape(-1, n_levels, 1, 2, 1)
               * wf[..., 2].reshape(-1, n_levels, 2, 1, 1)).reshape(-1, n_levels, 8)
    features = table[idx]                                                   # (N, L, 8, F)
    out = (features * weights.unsqueeze(-1).to(table.dtype)).sum(2)
    return out, idx, weights


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
    """Gather-and-blend forward; scatter-add backward into the table (no dense autograd graph)."""

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, offsets: Tensor, resolutions: Tensor) -> Tensor:
        out, idx, weights = _encode(x, table, offsets, resolutions)
        ctx.save_for_backward(idx, weights)
        ctx.table_shape = table.shape
        n, levels, feats = out.shape    # explicit sizes: a view with -1 fails for n = 0 points
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
