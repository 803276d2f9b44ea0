"""Points inside the visual hull of a scene with alpha masks (space carving).

Where a scene has no sparse points but its images have an alpha channel (NeRF-synthetic renders,
object captures with cut-out backgrounds), the object must lie inside every camera's silhouette.
Random points in the scene box that project inside the silhouette in every view that sees them
are a far better start for Gaussians than the whole box: splatting then begins with no fog to
clear. The colour of each point is the median of the pixels it projects to.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nerfkit.cameras import project
from nerfkit.data.scene import Scene


def carve_points(scene: Scene, count: int, image_ids: list[int], generator: torch.Generator | None = None,
                 alpha_threshold: float = 0.5, max_rounds: int = 20) -> tuple[Tensor, Tensor] | None:
    """Up to ``count`` random points of the scene box inside every silhouette that sees them.

    Args:
        scene: a scene whose images are RGBA.
        count: number of points wanted.
        image_ids: the views to carve with (the training split).
        alpha_threshold: a pixel is inside the silhouette when its alpha exceeds this (0..1).
        max_rounds: rounds of box sampling before giving up on reaching ``count``.
    Returns:
        points (P, 3) float32 scene coordinates and colours (P, 3) uint8, P <= count; None when
        the scene has no alpha or no point survives.
    """
    if not image_ids or any(scene.images[i].shape[2] != 4 for i in image_ids):
        return None
    low, high = scene.aabb[0].float(), scene.aabb[1].float()
    masks = [torch.from_numpy(scene.images[i][..., 3].copy()) > int(alpha_threshold * 255) for i in image_ids]
    kept_points, kept_colors = [], []
    total = 0
    batch = max(4 * count, 1024)
    for _ in range(max_rounds):
        points = low + torch.rand(batch, 3, generator=generator) * (high - low)
        inside = torch.ones(batch, dtype=torch.bool)
        colors = torch.zeros(len(image_ids), batch, 3)
        seen = torch.zeros(len(image_ids), batch, dtype=torch.bool)
        for view, (index, mask) in enumerate(zip(image_ids, masks)):
            ids = torch.full((batch,), index, dtype=torch.int64)
            pixels = project(scene.cameras, ids, points).floor().long()
            height, width = mask.shape
            depth_ok = _in_front(scene, index, points)
            on_image = depth_ok & (pixels[:, 0] >= 0) & (pixels[:, 0] < width) & (pixels[:, 1] >= 0) & (pixels[:, 1] < height)
            x = pixels[:, 0].clamp(0, width - 1)
            y = pixels[:, 1].clamp(0, height - 1)
            inside &= ~on_image | mask[y, x]
            seen[view] = on_image
            colors[view] = torch.from_numpy(scene.images[index][..., :3].copy())[y, x].float()
        inside &= seen.any(0)
        if bool(inside.any()):
            masked = torch.where(seen[:, inside, None], colors[:, inside], torch.tensor(float("nan")))
            kept_points.append(points[inside])
            kept_colors.append(torch.nanmedian(masked, dim=0).values)
            total += int(inside.sum())
        if total >= count:
            break
    if total == 0:
        return None
    points = torch.cat(kept_points)[:count]
    colors = torch.cat(kept_colors)[:count].round().clamp(0, 255).to(torch.uint8)
    return points, colors


def _in_front(scene: Scene, index: int, points: Tensor) -> Tensor:
    """(P,) bool: the points are in front of camera ``index``."""
    c2w = scene.cameras.c2w[index].double()
    local = (points.double() - c2w[:3, 3]) @ c2w[:3, :3]
    return local[:, 2] > 1e-6
