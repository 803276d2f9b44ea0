"""The one in-memory scene type every loader produces and every method consumes.

Conventions (DESIGN.md): cameras are camera-to-world 4x4 with OpenCV axes (x right, y down,
z forward); all geometry in a :class:`Scene` is in *normalised* coordinates, and
``world_to_scene`` maps the scene's original world coordinates (and units) into them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

SPLITS = ("train", "val", "test")


@dataclass
class Cameras:
    """N pinhole cameras with optional OpenCV radial-tangential distortion.

    Attributes:
        c2w: (N, 4, 4) float32 camera-to-world, OpenCV axes, normalised scene coordinates.
        intrinsics: (N, 4) float32 ``fx, fy, cx, cy`` in pixels of the (downscaled) image; the
            centre of the top-left pixel is at (0.5, 0.5).
        sizes: (N, 2) int64 ``width, height`` in pixels.
        distortion: (N, 5) float32 OpenCV ``k1, k2, p1, p2, k3``; all zeros for a pinhole.
    """

    c2w: Tensor
    intrinsics: Tensor
    sizes: Tensor
    distortion: Tensor

    def __len__(self) -> int:
        return int(self.c2w.shape[0])

    def __getitem__(self, index) -> "Cameras":
        """Cameras at ``index`` (an int, slice, list or tensor); always keeps the batch dim."""
        if isinstance(index, int):
            index = [index]
        return Cameras(self.c2w[index], self.intrinsics[index], self.sizes[index],
                       self.distortion[index])

    def to(self, device: torch.device | str) -> "Cameras":
        return Cameras(self.c2w.to(device), self.intrinsics.to(device), self.sizes.to(device),
                       self.distortion.to(device))

    def scaled(self, factor: float) -> "Cameras":
        """The same cameras for images resized by ``factor`` (0.5 = half the width)."""
        sizes = torch.round(self.sizes.double() * factor).long()
        intrinsics = self.intrinsics.clone()
        intrinsics[:, 0] *= sizes[:, 0] / self.sizes[:, 0]
        intrinsics[:, 1] *= sizes[:, 1] / self.sizes[:, 1]
        intrinsics[:, 2] *= sizes[:, 0] / self.sizes[:, 0]
        intrinsics[:, 3] *= sizes[:, 1] / self.sizes[:, 1]
        return Cameras(self.c2w.clone(), intrinsics, sizes, self.distortion.clone())

    def downscaled(self, factor: int) -> "Cameras":
        """The same cameras for images area-downsampled by an integer ``factor`` (multiscale eval).

        Sizes become ``(W // factor, H // factor)`` and ``fx, fy, cx, cy`` are divided by
        ``factor`` exactly (no rounding), so downscaled pixel (i, j) covers exactly the full-size
        pixels ``[i*f, (i+1)*f) x [j*f, (j+1)*f)``: the full image cropped to multiples of ``f`` at
        the right and bottom. Distortion (in normalised coordinates) is unchanged. A cone-tracing
        NeRF derives its pixel footprint from the focal length, so the footprint widens by ``f``.

        Args:
            factor: positive integer divisor of the image size.
        Returns:
            N cameras with (N, 2) sizes ``W // f, H // f`` and (N, 4) intrinsics in the new pixels.
        """
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"downscale factor must be a positive integer, got {factor!r}")
        sizes = torch.div(self.sizes, factor, rounding_mode="floor")
        return Cameras(self.c2w.clone(), self.intrinsics / factor, sizes, self.distortion.clone())

    @property
    def has_distortion(self) -> bool:
        return bool((self.distortion != 0).any())


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
