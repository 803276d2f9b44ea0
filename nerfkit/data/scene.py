"""The one in-memory scene type every loader produces and every method consumes.

Conventions (docs/design.md): cameras are camera-to-world 4x4 with OpenCV axes (x right, y down,
z forward); all geometry in a :class:`Scene` is in *normalised* coordinates, and
``world_to_scene`` maps the scene's original world coordinates (and units) into them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nerfkit.data.cameras import Cameras

SPLITS = ("train", "val", "test")


@dataclass
class Scene:
    """A posed image collection, normalised, with its splits.

    Attributes:
        name: short name used for the run folder (the scene folder's name).
        root: the folder it was read from (never written to).
        format: ``"colmap"``, ``"blender"`` (NeRF-synthetic) or ``"transforms"`` (instant-ngp /
            nerfstudio ``transforms.json``).
        image_paths: one path per camera.
        images: one uint8 array per camera, (H, W, 3) or (H, W, 4) sRGB, already downscaled.
        cameras: the N cameras, aligned with ``images``.
        splits: ``"train"`` and ``"test"`` (and ``"val"`` when the format has one) -> camera indices.
        world_to_scene: (4, 4) float64 similarity, ``x_scene = world_to_scene @ x_world``
            (uniform scale, rotation, translation).
        aabb: (2, 3) float32 box of the region of interest in scene coordinates (min, max).
        unbounded: True when content extends to infinity (use scene contraction).
        points3d: (P, 3) float32 sparse points in scene coordinates, or None.
        points_rgb: (P, 3) uint8 colours of ``points3d``, or None.
        masks: with ``masks=ignore`` (:mod:`nerfkit.data.masks`), one (H, W) bool array per camera,
            True where the pixel counts (trained on and scored), aligned with ``images``; else None.
    """

    name: str
    root: Path
    format: str
    image_paths: list[Path]
    images: list[np.ndarray]
    cameras: Cameras
    splits: dict[str, list[int]]
    world_to_scene: Tensor
    aabb: Tensor
    unbounded: bool
    points3d: Tensor | None = None
    points_rgb: Tensor | None = None
    masks: list[np.ndarray] | None = None
    extras: dict = field(default_factory=dict)

    @property
    def scale(self) -> float:
        """Scene units per world unit (the similarity's uniform scale)."""
        return float(torch.linalg.det(self.world_to_scene[:3, :3]).abs() ** (1.0 / 3.0))

    @property
    def has_alpha(self) -> bool:
        return any(image.shape[2] == 4 for image in self.images)

    def split(self, name: str) -> list[int]:
        """Camera indices of split ``name``; ``"val"`` falls back to ``"test"``."""
        if name == "val" and "val" not in self.splits:
            name = "test"
        return self.splits[name]

    def transform_dict(self) -> dict:
        """The normalising transform as saved in a run's ``transform.json``."""
        return {
            "world_to_scene": self.world_to_scene.double().tolist(),
            "scale": self.scale,
            "aabb": self.aabb.tolist(),
            "unbounded": self.unbounded,
            "format": self.format,
            "source": str(self.root),
        }
