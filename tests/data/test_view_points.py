"""Starting points from the views: the visual hull of alpha masks, colours, no points near cameras."""

from __future__ import annotations

import numpy as np
import torch

from nerfkit.data.cameras import project
from nerfkit.data.demo import demo_sdf
from nerfkit.data.load import load_scene
from nerfkit.data.view_points import points_from_views


def _world(scene, points: torch.Tensor) -> torch.Tensor:
    inverse = torch.linalg.inv(scene.world_to_scene.double())
    return (points.double() @ inverse[:3, :3].T + inverse[:3, 3]).float()


def test_carved_points_hug_the_demo_object_and_take_its_colours(tiny_demo):
    scene = load_scene(tiny_demo, 1.0, 8, None)
    train = scene.split("train")
    points, colors = points_from_views(scene, 3000, train, torch.Generator().manual_seed(0))
    assert points.shape == (3000, 3) and colors.dtype == torch.uint8
    # Every point projects inside the silhouette of every training view that sees it.
    for index in train:
        pixels = project(scene.cameras, torch.full((3000,), index), points).floor().long()
        alpha = torch.from_numpy(scene.images[index][..., 3].copy())
        on = (pixels >= 0).all(1) & (pixels[:, 0] < alpha.shape[1]) & (pixels[:, 1] < alpha.shape[0])
        assert bool((alpha[pixels[on, 1], pixels[on, 0]] > 127).all())
    # The hull is a superset of the object but, with 12 views around it, a tight one: most points
    # are within a few centimetres of the surface, unlike points spread over the box.
    near = (demo_sdf(_world(scene, points)) < 0.1).float().mean()
    box = scene.aabb[0] + torch.rand(3000, 3, generator=torch.Generator().manual_seed(1)) * (scene.aabb[1] - scene.aabb[0])
    near_box = (demo_sdf(_world(scene, box)) < 0.1).float().mean()
    assert float(near) > 0.8 > 0.3 > float(near_box), (float(near), float(near_box))
    assert float(colors.float().std()) > 10                          # image colours, not one grey


def test_without_alpha_points_are_seen_by_a_view_and_kept_away_from_the_cameras(tiny_demo):
    scene = load_scene(tiny_demo, 1.0, 8, None)
    scene.images = [np.ascontiguousarray(image[..., :3]) for image in scene.images]     # drop alpha
    train = scene.split("train")
    points, _ = points_from_views(scene, 2000, train, torch.Generator().manual_seed(0), near_fraction=0.8)
    centers = scene.cameras.c2w[train, :3, 3]
    mean_distance = float(centers.norm(dim=-1).mean())
    seen = torch.zeros(points.shape[0], dtype=torch.bool)
    for view, index in enumerate(train):
        c2w = scene.cameras.c2w[index]
        depth = (points - c2w[:3, 3]) @ c2w[:3, :3][:, 2]
        pixels = project(scene.cameras, torch.full((points.shape[0],), index), points)
        size = scene.cameras.sizes[index]
        on = (depth > 0) & (pixels >= 0).all(1) & (pixels < size).all(1)
        assert bool((depth[on] >= 0.8 * mean_distance - 1e-4).all()), "a point sits right in front of a camera"
        seen |= on
    assert bool(seen.all())
    carved, _ = points_from_views(load_scene(tiny_demo, 1.0, 8, None), 2000, train, torch.Generator().manual_seed(0))
    assert float(points.std()) > float(carved.std())                  # without masks nothing is carved
