"""The native CPU tile rasterizer (``cuda/cpu_splat.cpp``): the autograd layer between
:func:`nerfkit.render.splat_raster.rasterize` (which checks inputs and dispatches) and the CPU
extension (built lazily by :func:`nerfkit.ops._backend.load_native`).

Same rules, outputs and gradients as the PyTorch rasterizer, its twin (``rasterize_ref``), up to
float32 rounding: the kernel evaluates each Gaussian's exponent directly per pixel where the twin
expands it into a polynomial over the tile (a matrix product), so the two round differently, and a
pair whose alpha lies within rounding of the 1/255 cut (or a pixel whose transmittance lies within
rounding of the 1e-4 stop) may be kept by one and dropped by the other.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nerfkit.ops._backend import load_native


def _ext():
    module = load_native("cpu")
    if module is None:
        raise RuntimeError("nerfkit CPU extension is unavailable (see the warning emitted when it failed to build)")
    return module


class _RasterizeNative(torch.autograd.Function):
    """Per-tile front-to-back forward; the backward walks the same lists again (cuda/cpu_splat.cpp)."""

    @staticmethod
    def forward(ctx, means2d: Tensor, conics: Tensor, opacities: Tensor, features: Tensor, gaussian_ids: Tensor,
                tile_offsets: Tensor, tiling: tuple[int, int, int, int, int]) -> tuple[Tensor, Tensor]:
        image, alpha, t_final, n_used = _ext().splat_rasterize_fwd(means2d, conics, opacities, features,
                                                                   gaussian_ids, tile_offsets, *tiling)
        ctx.save_for_backward(means2d, conics, opacities, features, gaussian_ids, tile_offsets, image, t_final,
                              n_used)
        ctx.tiling = tiling
        ctx.set_materialize_grads(False)
        return image, alpha

    @staticmethod
    def backward(ctx, grad_image: Tensor | None, grad_alpha: Tensor | None):
        means2d, conics, opacities, features, gaussian_ids, tile_offsets, image, t_final, n_used = ctx.saved_tensors
        grad_image = torch.zeros_like(image) if grad_image is None else grad_image.float().contiguous()
        grad_alpha = torch.zeros_like(t_final) if grad_alpha is None else grad_alpha.float().contiguous()
        grads = _ext().splat_rasterize_bwd(means2d, conics, opacities, features, gaussian_ids, tile_offsets,
                                           *ctx.tiling, image, t_final, n_used, grad_image, grad_alpha)
        return (*(g if needed else None for g, needed in zip(grads, ctx.needs_input_grad[:4])), None, None, None)


def native_covers(means2d: Tensor, conics: Tensor, opacities: Tensor, features: Tensor, tile_size: int) -> bool:
    """Whether the kernel takes these inputs: float32 throughout, tiles of at most 64 px."""
    return all(t.dtype == torch.float32 for t in (means2d, conics, opacities, features)) and tile_size <= 64


def rasterize_native(means2d: Tensor, conics: Tensor, opacities: Tensor, features: Tensor, gaussian_ids: Tensor,
                     tile_offsets: Tensor, tiles_x: int, tiles_y: int, tile_size: int, width: int, height: int
                     ) -> tuple[Tensor, Tensor]:
    """CPU :func:`nerfkit.render.splat_raster.rasterize` over tile lists (``gaussian_ids`` (K,),
    ``tile_offsets`` (T + 1,) of :class:`~nerfkit.render.splat_raster.TileLists`): features (H, W, F)
    and alpha (H, W), differentiable in every float input."""
    tiling = (int(tiles_x), int(tiles_y), int(tile_size), int(width), int(height))
    return _RasterizeNative.apply(means2d.contiguous(), conics.contiguous(), opacities.contiguous(),
                                  features.contiguous(), gaussian_ids.contiguous(), tile_offsets.contiguous(), tiling)


__all__ = ["native_covers", "rasterize_native"]
