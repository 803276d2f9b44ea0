"""Brute-force per-pixel Gaussian compositing: every pixel against every Gaussian, no tiles.

The reference the tile rasterizer is tested against: same rules (gsplat's), written as directly as
possible and differentiated by autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor


def composite_brute_force(means2d: Tensor, conics: Tensor, opacities: Tensor, features: Tensor,
                          depths: Tensor, visible: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
    """(N, ...) projected Gaussians -> features (H, W, F) and alpha (H, W)."""
    order = torch.argsort(torch.where(visible, depths, torch.full_like(depths, float("inf"))), stable=True)
    order = order[: int(visible.sum())]
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    px = xs.reshape(-1, 1).to(means2d.dtype) + 0.5
    py = ys.reshape(-1, 1).to(means2d.dtype) + 0.5
    dx = means2d[order, 0] - px                                   # (P, V)
    dy = means2d[order, 1] - py
    a, b, c = conics[order].unbind(-1)
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
    alpha = torch.clamp(opacities[order] * torch.exp(-sigma), max=0.999)
    alpha = torch.where((sigma >= 0) & (alpha >= 1 / 255), alpha, torch.zeros_like(alpha))
    columns = []
    transmittance = torch.ones(px.shape[0], dtype=means2d.dtype)
    alive = torch.ones(px.shape[0], dtype=torch.bool)
    for i in range(alpha.shape[1]):                               # sequential, as the rule reads
        next_t = transmittance * (1 - alpha[:, i])
        alive = alive & (next_t > 1e-4)
        a_i = torch.where(alive, alpha[:, i], torch.zeros_like(transmittance))
        columns.append(a_i * transmittance)
        transmittance = transmittance * (1 - a_i)
    weights = torch.stack(columns, 1) if columns else torch.zeros(px.shape[0], 0, dtype=means2d.dtype)
    image = weights @ features[order]
    return image.reshape(height, width, -1), (1 - transmittance).reshape(height, width)
