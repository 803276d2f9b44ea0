"""What the viewer exchanges with its owner: a view request in, a rendered view out, plus the
training cameras to draw and the stats it shows.

The viewer never sees a model. Its owner hands it a :data:`RenderFn` and a :class:`StatsSource`;
everything here is numpy and plain Python so the viewer imports without torch or any method.
All geometry is in the coordinates the owner chose for the 3D scene (nerfkit uses the normalised
scene coordinates), cameras with OpenCV axes (x right, y down, z forward).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

RENDER_MODES = ("rgb", "depth", "alpha", "normals")


@dataclass(frozen=True)
class ViewRequest:
    """One image to render.

    Attributes:
        camera_to_world: (4, 4) float64, OpenCV axes, scene coordinates.
        fov_y: vertical field of view in radians.
        width, height: image size in pixels.
        background: (3,) float RGB in [0, 1] shown where the scene is empty.
        crop: ``(box_min (3,), box_max (3,))`` in scene coordinates, or None: content outside the
            box is hidden.
    """

    camera_to_world: np.ndarray
    fov_y: float
    width: int
    height: int
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    crop: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None

    @property
    def focal(self) -> float:
        """Focal length in pixels (square pixels, principal point at the image centre)."""
        return 0.5 * self.height / float(np.tan(0.5 * self.fov_y))


@dataclass
class RenderResult:
    """A rendered view.

    Attributes:
        rgb: (H, W, 3) float32 in [0, 1], composited on the request's background.
        depth: (H, W) float32 distance along the camera's z axis in scene units (``inf`` where
            nothing was hit), or None.
        alpha: (H, W) float32 opacity in [0, 1], or None.
        normals: (H, W, 3) float32 unit normals in camera axes (OpenCV), or None.
    """

    rgb: np.ndarray
    depth: np.ndarray | None = None
    alpha: np.ndarray | None = None
    normals: np.ndarray | None = None


RenderFn = Callable[[ViewRequest], RenderResult]


class StatsSource(Protocol):
    """Live numbers the viewer shows; any object with these attributes (read, never written)."""

    step: int
    loss: float
    psnr: float
    rays_per_second: float


@dataclass
class TrainingView:
    """A training camera drawn as a frustum.

    Attributes:
        camera_to_world: (4, 4) float64, OpenCV axes, scene coordinates.
        fov_y: vertical field of view in radians.
        aspect: width / height.
        thumbnail: (h, w, 3) uint8 small image, or None.
        name: label of the camera (the image's name).
    """

    camera_to_world: np.ndarray
    fov_y: float
    aspect: float
    thumbnail: np.ndarray | None = None
    name: str = ""


@dataclass
class TrainingControl:
    """Pause/resume switch shared by the viewer (writes) and the training loop (reads).

    ``running`` is an Event (set while training may run), so the loop can wait on it.
    """

    running: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.running.set()

    @property
    def paused(self) -> bool:
        return not self.running.is_set()

    def pause(self) -> None:
        self.running.clear()

    def resume(self) -> None:
        self.running.set()
