"""Sparse points for a run's scene when its files have none: triangulated from the photos with the
known poses (:mod:`nerfkit.ingest.triangulate`, cached once per scene), as ``triangulate`` says.

The points join the loaded scene in scene coordinates after normalisation, so a run's
``transform.json`` (and every export) is the same with and without them; they are a start for the
method (splat's Gaussians), never part of how the scene is placed.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from nerfkit.data.load import parse_scene
from nerfkit.data.scene import Scene
from nerfkit.data.similarity import transform_points
from nerfkit.ingest.triangulate import triangulate_known_poses

TRIANGULATED_FORMATS = ("colmap", "transforms")    # NeRF-synthetic scenes are RGBA: the visual hull


def wants_triangulation(scene: Scene, mode: str) -> bool:
    """``mode`` ``auto``: a COLMAP or transforms.json scene without sparse points and without alpha."""
    return (mode == "auto" and scene.points3d is None and scene.format in TRIANGULATED_FORMATS
            and not scene.has_alpha)


def with_triangulated_points(scene: Scene, mode: str, threads: int = 0,
                             log: Callable[[str], None] | None = None) -> Scene:
    """``scene`` with triangulated ``points3d`` / ``points_rgb`` (scene coordinates) where
    :func:`wants_triangulation`; unchanged otherwise, and where none could be made (a warning
    says why)."""
    if not wants_triangulation(scene, mode):
        return scene
    result = triangulate_known_poses(parse_scene(scene.root), threads=threads, log=log)
    if result is None or len(result.xyz) < 4:
        return scene
    if log is not None:
        how = "cached" if result.cached else "triangulated"
        log(f"{len(result.xyz):,} sparse points {how} from the known poses ({result.seconds:.1f} s to "
            f"triangulate; {result.path.parent})")
    points = transform_points(scene.world_to_scene.double(), torch.from_numpy(result.xyz)).float()
    return dataclasses.replace(scene, points3d=points, points_rgb=torch.from_numpy(result.rgb.copy()))
