"""Native (CUDA) implementations of the ops: the autograd layer between the public functions and ``nerfkit_cuda``.

Each ``*_native`` function has exactly the semantics of its ``*_ref`` twin (same arguments, same
results up to float32 rounding; see cuda/README.md for the one documented difference, compositing's
early termination at transmittance < 1e-4). Inputs the kernels do not cover (dtypes other than
float32) go to the twin, which is the same function. The extension is loaded lazily, on the first
call, through :func:`nerfkit.ops._backend.load_native`.

The binding takes no c10 stream: every call passes ``torch.cuda.current_stream(device).cuda_stream``
and runs under ``torch.cuda.device(device)``, so kernels respect the caller's stream and device.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

from nerfkit.ops._backend import load_native
from nerfkit.ops.reference import (
    Composited,
    composite_ref,
    hash_encode_ref,
    march_rays_ref,
    ray_aabb_intersect_ref,
)


def _ext() -> ModuleType:
    module = load_native()
    if module is None:
        raise RuntimeError("nerfkit CUDA extension is unavailable (see the warning emitted when it failed to build)")
    return module


def _stream(device: torch.device) -> int:
    return torch.cuda.current_stream(device).cuda_stream


def _all_float32(*tensors: Tensor) -> bool:
    return all(t.dtype == torch.float32 for t in tensors)


# ---------------------------------------------------------------- ray/box intersection (no grad)

def ray_aabb_intersect_native(origins: Tensor, directions: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor]:
    """CUDA :func:`nerfkit.ops.ray_aabb_intersect`: (R, 3), (R, 3), (2, 3) -> t_near (R,), t_far (R,)."""
    if not _all_float32(origins, directions, aabb):
        return ray_aabb_intersect_ref(origins, directions, aabb)
    device = origins.device
    with torch.cuda.device(device), torch.no_grad():
        return _ext().ray_aabb_intersect_fwd(origins.contiguous(), directions.contiguous(),
                                             aabb.to(device).contiguous(), _stream(device))


# ---------------------------------------------------------------- marching (no grad)

def march_rays_native(origins: Tensor, directions: Tensor, t_min: Tensor, t_max: Tensor, grid: Tensor,
                      aabb: Tensor, step_size: float, cone_angle: float, max_samples: int
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """CUDA :func:`nerfkit.ops.march_rays`: count pass, exclusive scan, fill pass.

    Returns ray_indices (S,) int64 sorted, t_starts (S,), t_ends (S,) float32.
    """
    if not _all_float32(origins, directions, t_min, t_max, aabb):
        return march_rays_ref(origins, directions, t_min, t_max, grid, aabb, step_size, cone_angle,
                              max_samples)
    device = origins.device
    with torch.cuda.device(device), torch.no_grad():
        return _ext().march_rays_fwd(origins.contiguous(), directions.contiguous(),
                                     t_min.to(device).contiguous(), t_max.to(device).contiguous(),
                                     grid.to(device).contiguous(), aabb.to(device).contiguous(),
                                     float(step_size), float(cone_angle), int(max_samples), _stream(device))


# ---------------------------------------------------------------- compositing (grads: sigmas, rgbs)

class _CompositeNative(torch.autograd.Function):
    """Per-ray sequential forward; backward from dL/d(rgb, depth, alpha, weights) (cuda/compositing.cuh)."""

    @staticmethod
    def forward(ctx, sigmas: Tensor, rgbs: Tensor, t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor,
                n_rays: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        device = sigmas.device
        with torch.cuda.device(device):
            rgb, depth, alpha, weights, ray_begin, ray_end = _ext().composite_fwd(
                sigmas, rgbs, t_starts, t_ends, ray_indices, n_rays, _stream(device))
        ctx.save_for_backward(sigmas, rgbs, t_starts, t_ends, ray_begin, ray_end)
        ctx.set_materialize_grads(False)
        return rgb, depth, alpha, weights

    @staticmethod
    def backward(ctx, grad_rgb: Tensor | None, grad_depth: Tensor | None, grad_alpha: Tensor | None,
                 grad_weights: Tensor | None):
        sigmas, rgbs, t_starts, t_ends, ray_begin, ray_end = ctx.saved_tensors
        n_rays = ray_begin.shape[0]

        def dense(grad: Tensor | None, shape: tuple[int, ...]) -> Tensor:
            if grad is None:
                return torch.zeros(shape, dtype=sigmas.dtype, device=sigmas.device)
            return grad.to(sigmas.dtype).contiguous()

        device = sigmas.device
        with torch.cuda.device(device):
            grad_sigmas, grad_rgbs = _ext().composite_bwd(
                sigmas, rgbs, t_starts, t_ends, ray_begin, ray_end,
                dense(grad_rgb, (n_rays, 3)), dense(grad_depth, (n_rays,)), dense(grad_alpha, (n_rays,)),
                None if grad_weights is None else grad_weights.to(sigmas.dtype).contiguous(),
                _stream(device))
        return (grad_sigmas if ctx.needs_input_grad[0] else None,
                grad_rgbs if ctx.needs_input_grad[1] else None, None, None, None, None)


def composite_native(sigmas: Tensor, rgbs: Tensor, t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor,
                     n_rays: int) -> Composited:
    """CUDA :func:`nerfkit.ops.composite`: packed samples (S,) sorted by ray -> per-ray rgb/depth/alpha.

    Differs from the twin only by early termination: samples behind transmittance < 1e-4 get
    weight 0 (and no gradient), so per-ray outputs differ by at most 1e-4 * max(|rgb|, depth).
    """
    if not _all_float32(sigmas, rgbs, t_starts, t_ends):
        return composite_ref(sigmas, rgbs, t_starts, t_ends, ray_indices, n_rays)
    rgb, depth, alpha, weights = _CompositeNative.apply(
        sigmas.contiguous(), rgbs.contiguous(), t_starts.contiguous(), t_ends.contiguous(),
        ray_indices.to(torch.int64).contiguous(), int(n_rays))
    return Composited(rgb, depth, alpha, weights)


# ---------------------------------------------------------------- hash encoding (grad: table)

class _HashEncodeNative(torch.autograd.Function):
    """Gather-and-blend forward; atomicAdd scatter backward into the table (cuda/hash_encoding.cu)."""

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, offsets: Tensor, resolutions: Tensor) -> Tensor:
        device = x.device
        with torch.cuda.device(device):
            out = _ext().hash_encode_fwd(x, table, offsets, resolutions, _stream(device))
        ctx.save_for_backward(x, offsets, resolutions)
        ctx.table_shape = tuple(table.shape)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        if not ctx.needs_input_grad[1]:
            return None, None, None, None
        x, offsets, resolutions = ctx.saved_tensors
        rows, feats = ctx.table_shape
        device = x.device
        with torch.cuda.device(device):
            grad_table = _ext().hash_encode_bwd(x, grad_out.to(torch.float32).contiguous(), offsets,
                                                resolutions, rows, feats, _stream(device))
        return None, grad_table, None, None


def hash_encode_native(x: Tensor, table: Tensor, offsets: Tensor, resolutions: Tensor) -> Tensor:
    """CUDA :func:`nerfkit.ops.hash_encode`: (N, 3) positions -> (N, L*F) features, grad to ``table``.

    fp32 only: other dtypes (e.g. an fp16 table) take the twin.
    """
    if not _all_float32(x, table):
        return hash_encode_ref(x, table, offsets, resolutions)
    if table.ndim != 2 or table.shape[0] != int(offsets[-1]):   # the kernels index rows up to offsets[-1]
        raise ValueError(f"hash_encode expects a table of {int(offsets[-1])} rows, got {tuple(table.shape)}")
    device = x.device
    return _HashEncodeNative.apply(x.contiguous(), table.contiguous(),
                                   offsets.to(device=device, dtype=torch.int32).contiguous(),
                                   resolutions.to(device=device, dtype=torch.int32).contiguous())


__all__ = ["composite_native", "hash_encode_native", "march_rays_native", "ray_aabb_intersect_native"]
