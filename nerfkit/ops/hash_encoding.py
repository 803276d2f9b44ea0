"""Multiresolution hash encoding (Mueller et al. 2022, Sec. 3): trilinear lookups in per-level tables.

Level ``l`` is a grid of ``resolutions[l]`` cells per axis (``resolutions[l] + 1`` vertices). Its
vertices index rows ``offsets[l] .. offsets[l+1]`` of one shared ``table``: densely (x + y*r + z*r^2)
when the level has no more vertices than rows, else by the spatial hash of Eq. (4),
``(x * 1) xor (y * 2654435761) xor (z * 805459861) mod size``.

Gradients flow to ``table`` and, when ``x`` requires them, to the positions: an SDF's normal is
``d sdf / d x`` through the encoding (:func:`hash_encode_position_grad`), and that gradient is
itself differentiable with respect to the table (what an eikonal loss trains). The encoding is
piecewise trilinear; its second derivative with respect to ``x`` (the curvature) is not provided.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nerfkit.ops._backend import use_native
from nerfkit.ops.reference import PRIMES, hash_encode_position_grad_ref, hash_encode_ref


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
    _check_inputs(x, table, offsets, resolutions)
    if use_native(x, table):
        from nerfkit.ops._native import hash_encode_native
        return hash_encode_native(x.contiguous(), table.contiguous(), offsets, resolutions)
    return hash_encode_ref(x, table, offsets, resolutions)


def hash_encode_position_grad(x: Tensor, table: Tensor, grad_out: Tensor, offsets: Tensor,
                              resolutions: Tensor) -> Tensor:
    """The gradient of ``sum(grad_out * hash_encode(x, ...))`` with respect to the positions.

    This is what backpropagating through :func:`hash_encode` gives ``x``; as its own op it is
    differentiable with respect to ``table`` and ``grad_out`` (second-order training of the table,
    e.g. an eikonal loss on the normals of an SDF), not again with respect to ``x``.

    Args:
        x: (N, 3) positions in [0, 1]^3 (outside, clamped: their gradient there is 0).
        table: (offsets[-1], F) feature table.
        grad_out: (N, L*F) gradient with respect to the encoding's output, level-major.
        offsets, resolutions: the layout from :func:`level_layout`.
    Returns:
        (N, 3) ``sum_{l, f} grad_out[n, l F + f] * d out[n, l F + f] / d x[n]``, in units of
        1 / (the unit of ``x``).
    """
    _check_inputs(x, table, offsets, resolutions)
    expected = (x.shape[0], (offsets.numel() - 1) * table.shape[1])
    if tuple(grad_out.shape) != expected:
        raise ValueError(f"hash_encode_position_grad expects grad_out of shape {expected}, got "
                         f"{tuple(grad_out.shape)}")
    if use_native(x, table, grad_out):
        from nerfkit.ops._native import hash_encode_position_grad_native
        return hash_encode_position_grad_native(x, table, grad_out, offsets, resolutions)
    return hash_encode_position_grad_ref(x, table, grad_out, offsets, resolutions)


def _check_inputs(x: Tensor, table: Tensor, offsets: Tensor, resolutions: Tensor) -> None:
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"hash_encode expects positions of shape (N, 3), got {tuple(x.shape)}")
    if table.ndim != 2:
        raise ValueError(f"hash_encode expects a (rows, F) table, got {tuple(table.shape)}")
    # The row count is checked where it is free: CPU offsets (a CUDA offsets[-1] would sync the host
    # on every query; the twin reads the layout anyway, the CUDA kernels index within offsets[-1]).
    if not offsets.is_cuda and table.shape[0] != int(offsets[-1]):
        raise ValueError(f"hash_encode expects a table of {int(offsets[-1])} rows, got {tuple(table.shape)}")
    if resolutions.numel() + 1 != offsets.numel():
        raise ValueError("hash_encode expects len(offsets) == len(resolutions) + 1")


__all__ = ["PRIMES", "hash_encode", "hash_encode_position_grad", "hash_encode_position_grad_ref",
           "hash_encode_ref", "level_layout"]
