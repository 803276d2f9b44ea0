"""Starting points for scenes without sparse points, taken from the images themselves.

Where a scene has no sparse points but its images have an alpha channel (NeRF-synthetic renders,
object captures with cut-out backgrounds), the object must lie inside every camera's silhouette:
random points of the scene box that project inside the silhouette in every view that sees them (the
visual hull, by space carving) are a far better start for Gaussians than the whole box, with no fog
to clear. Without alpha, every point some view sees is kept. Points closer to a camera that sees
them than ``near_fraction`` x the cameras' mean distance to the box centre are dropped: they would
start as floaters filling that view (unbounded captures put the cameras inside the box). A point's
colour is the median of the pixels it projects to, so the first renders already resemble the photos.
Pixels an ignore mask leaves out (``Scene.masks``) neither carve nor colour.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nerfkit.data.cameras import project
from nerfkit.data.scene import Scene


def points_from_views(scene: Scene, count: int, image_ids: list[int], generator: torch.Generator | None = None,
                      alpha_threshold: float = 0.5, near_fraction: float = 0.25,
                      max_rounds: int = 20) -> tuple[Tensor, Tensor] | None:
    """Up to ``count`` random points of the scene box that some view sees, coloured from the views;
    when every image has alpha, only points inside every silhouette that sees them.

    Args:
        scene: the scene (RGB or RGBA images).
        count: number of points wanted.
        image_ids: the views to carve with (the training split).
        alpha_threshold: a pixel is inside the silhouette when its alpha exceeds this (0..1).
        near_fraction: drop points nearer to a seeing camera than this x the mean camera distance.
        max_rounds: rounds of box sampling before giving up on reaching ``count``.
    Returns:
        points (P, 3) float32 scene coordinates and colours (P, 3) uint8, P <= count; None when
        no point survives.
    """
    if not image_ids:
        return None
    low, high = scene.aabb[0].float(), scene.aabb[1].float()
    carve = all(scene.images[i].shape[2] == 4 for i in image_ids)
    counted = [torch.ones(scene.images[i].shape[:2], dtype=torch.bool) if scene.masks is None
               else torch.from_numpy(scene.masks[i]) for i in image_ids]     # pixels an ignore mask keeps
    # an ignored pixel neither carves (it may hide the object) nor colours a point
    masks = [(torch.from_numpy(scene.images[i][..., 3].copy()) > int(alpha_threshold * 255)) | ~keep if carve
             else torch.ones(scene.images[i].shape[:2], dtype=torch.bool) for i, keep in zip(image_ids, counted)]
    centre = 0.5 * (low + high)
    near = near_fraction * float((scene.cameras.c2w[image_ids, :3, 3].float() - centre).norm(dim=-1).mean())
    kept_points, kept_colors = [], []
    total = 0
    batch = max(4 * count, 1024)
    for _ in range(max_rounds):
        points = low + torch.rand(batch, 3, generator=generator) * (high - low)
        inside = torch.ones(batch, dtype=torch.bool)
        colors = torch.zeros(len(image_ids), batch, 3)
        seen = torch.zeros(len(image_ids), batch, dtype=torch.bool)
        for view, (index, mask, keep) in enumerate(zip(image_ids, masks, counted)):
            ids = torch.full((batch,), index, dtype=torch.int64)
            pixels = project(scene.cameras, ids, points).floor().long()
            height, width = mask.shape
            depth = _depth(scene, index, points)
            on_image = (depth > 1e-6) & (pixels[:, 0] >= 0) & (pixels[:, 0] < width) & (pixels[:, 1] >= 0) & (pixels[:, 1] < height)
            x = pixels[:, 0].clamp(0, width - 1)
            y = pixels[:, 1].clamp(0, height - 1)
            inside &= ~on_image | (mask[y, x] & (depth >= near))
            seen[view] = on_image & keep[y, x]
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


def _depth(scene: Scene, index: int, points: Tensor) -> Tensor:
    """(P,) camera-space z of the points in camera ``index`` (positive in front)."""
    c2w = scene.cameras.c2w[index].double()
    local = (points.double() - c2w[:3, 3]) @ c2w[:3, :3]
    return local[:, 2].float()
