"""Native implementations of the ops, on the CPU (``nerfkit_cpu_*``) and on CUDA (``nerfkit_cuda``):
the autograd layer between the public functions and the extensions.

Each ``*_native`` function has exactly the semantics of its ``*_ref`` twin (same arguments, same
results up to float32 rounding; see cuda/README.md for the one documented difference, compositing's
early termination at transmittance < 1e-4). Inputs the kernels do not cover (dtypes other than
float32) go to the twin, which is the same function. The extension of the tensors' device is
loaded lazily, on the first call, through :func:`nerfkit.ops._backend.load_native`.

Both bindings have the same functions; the CUDA one takes the stream as a last argument: every call
passes ``torch.cuda.current_stream(device).cuda_stream`` and runs under ``torch.cuda.device(device)``,
so kernels respect the caller's stream and device (:func:`_run`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nerfkit.ops._backend import load_native
from nerfkit.ops.reference import (
    Composited,
    composite_ref,
    hash_encode_position_grad_ref,
    hash_encode_ref,
    march_rays_ref,
    ray_aabb_intersect_ref,
)


def _run(function: str, device: torch.device, *args: Any) -> Any:
    """Call ``function`` of the extension for ``device`` (CUDA: on the current stream of ``device``)."""
    module = load_native(device.type)
    if module is None:
        raise RuntimeError(f"nerfkit {device.type.upper()} extension is unavailable "
                           "(see the warning emitted when it failed to build)")
    if device.type == "cuda":
        with torch.cuda.device(device):
            return getattr(module, function)(*args, torch.cuda.current_stream(device).cuda_stream)
    return getattr(module, function)(*args)


def _all_float32(*tensors: Tensor) -> bool:
    return all(t.dtype == torch.float32 for t in tensors)


# ---------------------------------------------------------------- ray/box intersection (no grad)

def ray_aabb_intersect_native(origins: Tensor, directions: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor]:
    """Native :func:`nerfkit.ops.ray_aabb_intersect`: (R, 3), (R, 3), (2, 3) -> t_near (R,), t_far (R,)."""
    if not _all_float32(origins, directions, aabb):
        return ray_aabb_intersect_ref(origins, directions, aabb)
    device = origins.device
    with torch.no_grad():
        return _run("ray_aabb_intersect_fwd", device, origins.contiguous(), directions.contiguous(),
                    aabb.to(device).contiguous())


# ---------------------------------------------------------------- marching (no grad)

def march_rays_native(origins: Tensor, directions: Tensor, t_min: Tensor, t_max: Tensor, grid: Tensor,
                      aabb: Tensor, step_size: float, cone_angle: float, max_samples: int
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """Native :func:`nerfkit.ops.march_rays` (CUDA: count pass, scan, fill pass; CPU: one pass).

    Returns ray_indices (S,) int64 sorted, t_starts (S,), t_ends (S,) float32.
    """
    if not _all_float32(origins, directions, t_min, t_max, aabb):
        return march_rays_ref(origins, directions, t_min, t_max, grid, aabb, step_size, cone_angle,
                              max_samples)
    device = origins.device
    with torch.no_grad():
        return _run("march_rays_fwd", device, origins.contiguous(), directions.contiguous(),
                    t_min.to(device).contiguous(), t_max.to(device).contiguous(), grid.to(device).contiguous(),
                    aabb.to(device).contiguous(), float(step_size), float(cone_angle), int(max_samples))


# ---------------------------------------------------------------- compositing (grads: sigmas, rgbs)

class _CompositeNative(torch.autograd.Function):
    """Per-ray sequential forward; backward from dL/d(rgb, depth, alpha, weights) (cuda/compositing.cuh)."""

    @staticmethod
    def forward(ctx, sigmas: Tensor, rgbs: Tensor, t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor,
                n_rays: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        rgb, depth, alpha, weights, ray_begin, ray_end = _run(
            "composite_fwd", sigmas.device, sigmas, rgbs, t_starts, t_ends, ray_indices, n_rays)
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

        grad_sigmas, grad_rgbs = _run(
            "composite_bwd", sigmas.device, sigmas, rgbs, t_starts, t_ends, ray_begin, ray_end,
            dense(grad_rgb, (n_rays, 3)), dense(grad_depth, (n_rays,)), dense(grad_alpha, (n_rays,)),
            None if grad_weights is None else grad_weights.to(sigmas.dtype).contiguous())
        return (grad_sigmas if ctx.needs_input_grad[0] else None,
                grad_rgbs if ctx.needs_input_grad[1] else None, None, None, None, None)


def composite_native(sigmas: Tensor, rgbs: Tensor, t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor,
                     n_rays: int) -> Composited:
    """Native :func:`nerfkit.ops.composite`: packed samples (S,) sorted by ray -> per-ray rgb/depth/alpha.

    Differs from the twin only by early termination: samples behind transmittance < 1e-4 get
    weight 0 (and no gradient), so per-ray outputs differ by at most 1e-4 * max(|rgb|, depth).
    The CPU kernel raises ValueError for ``ray_indices`` that are unsorted or outside [0, n_rays);
    the CUDA kernel does not check (a check would cost a host sync per call).
    """
    if not _all_float32(sigmas, rgbs, t_starts, t_ends):
        return composite_ref(sigmas, rgbs, t_starts, t_ends, ray_indices, n_rays)
    rgb, depth, alpha, weights = _CompositeNative.apply(
        sigmas.contiguous(), rgbs.contiguous(), t_starts.contiguous(), t_ends.contiguous(),
        ray_indices.to(torch.int64).contiguous(), int(n_rays))
    return Composited(rgb, depth, alpha, weights)


# ---------------------------------------------------------------- hash encoding (grads: table, x)

class _HashEncodeNative(torch.autograd.Function):
    """Gather-and-blend forward; backward: the table gradient (:class:`_HashTableGradNative`, a
    scatter) and, when ``x`` needs it, the position gradient (:class:`_HashPositionGradNative`),
    both differentiable again as the twin's are (second order: an eikonal loss)."""

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, offsets: Tensor, resolutions: Tensor) -> Tensor:
        ctx.save_for_backward(x, table, offsets, resolutions)
        return _run("hash_encode_fwd", x.device, x, table, offsets, resolutions)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, table, offsets, resolutions = ctx.saved_tensors
        grad_out = grad_out.to(torch.float32).contiguous()
        grad_x = grad_table = None
        if ctx.needs_input_grad[1]:
            grad_table = _HashTableGradNative.apply(x, grad_out, offsets, resolutions, tuple(table.shape))
        if ctx.needs_input_grad[0]:
            grad_x = _HashPositionGradNative.apply(x, table, grad_out, offsets, resolutions)
        return grad_x, grad_table, None, None


class _HashTableGradNative(torch.autograd.Function):
    """``grad_table = J_table(x)^T grad_out`` (a scatter-add). Linear in ``grad_out``; its own
    gradient with respect to ``grad_out`` is the encoding of the incoming table-shaped gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, grad_out: Tensor, offsets: Tensor, resolutions: Tensor,
                table_shape: tuple[int, int]) -> Tensor:
        ctx.save_for_backward(x, offsets, resolutions)
        rows, feats = table_shape
        return _run("hash_encode_bwd", x.device, x, grad_out, offsets, resolutions, rows, feats)

    @staticmethod
    def backward(ctx, grad_grad_table: Tensor):
        x, offsets, resolutions = ctx.saved_tensors
        grad_grad_out = None
        if ctx.needs_input_grad[1]:
            grad_grad_out = _run("hash_encode_fwd", x.device, x, grad_grad_table.to(torch.float32).contiguous(),
                                 offsets, resolutions)
        return None, grad_grad_out, None, None, None


class _HashPositionGradNative(torch.autograd.Function):
    """``grad_x = J(x)^T grad_out``, differentiable with respect to ``table`` and ``grad_out`` (not
    again with respect to ``x``), as :func:`nerfkit.ops.reference.hash_encode_position_grad_ref`."""

    @staticmethod
    def forward(ctx, x: Tensor, table: Tensor, grad_out: Tensor, offsets: Tensor, resolutions: Tensor) -> Tensor:
        ctx.save_for_backward(x, table, grad_out, offsets, resolutions)
        return _run("hash_position_grad_fwd", x.device, x, table, grad_out, offsets, resolutions)

    @staticmethod
    def backward(ctx, grad_grad_x: Tensor):
        x, table, grad_out, offsets, resolutions = ctx.saved_tensors
        need_table, need_grad_out = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        if not (need_table or need_grad_out):
            return None, None, None, None, None
        grad_table, grad_grad_out = _run("hash_position_grad_bwd", x.device, x, table, grad_out,
                                         grad_grad_x.to(torch.float32).contiguous(), offsets, resolutions,
                                         bool(need_table), bool(need_grad_out))
        return None, grad_table, grad_grad_out, None, None


def _layout_on(device: torch.device, offsets: Tensor, resolutions: Tensor) -> tuple[Tensor, Tensor]:
    return (offsets.to(device=device, dtype=torch.int32).contiguous(),
            resolutions.to(device=device, dtype=torch.int32).contiguous())


def hash_encode_native(x: Tensor, table: Tensor, offsets: Tensor, resolutions: Tensor) -> Tensor:
    """Native :func:`nerfkit.ops.hash_encode`: (N, 3) positions -> (N, L*F) features, grads to
    ``table`` and ``x``. fp32 only: other dtypes (e.g. an fp16 table) take the twin.

    The table's row count is checked by the CPU binding; on CUDA only by the public function for
    CPU ``offsets`` (reading a CUDA ``offsets[-1]`` would sync the host every call).
    """
    if not _all_float32(x, table):
        return hash_encode_ref(x, table, offsets, resolutions)
    offsets, resolutions = _layout_on(x.device, offsets, resolutions)
    return _HashEncodeNative.apply(x.contiguous(), table.contiguous(), offsets, resolutions)


def hash_encode_position_grad_native(x: Tensor, table: Tensor, grad_out: Tensor, offsets: Tensor,
                                     resolutions: Tensor) -> Tensor:
    """Native :func:`nerfkit.ops.hash_encode_position_grad`: (N, 3), table, (N, L*F) -> (N, 3)."""
    if not _all_float32(x, table, grad_out):
        return hash_encode_position_grad_ref(x, table, grad_out, offsets, resolutions)
    offsets, resolutions = _layout_on(x.device, offsets, resolutions)
    return _HashPositionGradNative.apply(x.contiguous(), table.contiguous(), grad_out.contiguous(), offsets,
                                         resolutions)


__all__ = ["composite_native", "hash_encode_native", "hash_encode_position_grad_native", "march_rays_native",
           "ray_aabb_intersect_native"]
