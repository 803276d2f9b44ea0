"""The one Method protocol that the trainer, viewer, eval, render and export code talk to.

A method is an ``nn.Module`` built from its config and a :class:`SceneInfo` (never from images, so a
finished run can be re-created from its folder). Per training step the trainer calls::

    method.before_step(step, progress)
    out = method.train_step(batch, step, progress)      # {"loss": Tensor, ...floats}
    out["loss"].backward()
    method.after_backward(step, optimizer)              # densification, statistics
    optimizer.step()

``render(camera, background)`` returns ``{"rgb": (H, W, 3), "depth": (H, W), "alpha": (H, W)}`` and
``density(xyz)`` (or ``sdf``) serves mesh export.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import Tensor

from nerfkit.cameras import generate_rays, image_pixels
from nerfkit.data.scene import Cameras


@dataclass
class SceneInfo:
    """What a method needs to know about its scene, saved with the run (``transform.json``).

    Attributes:
        aabb: (2, 3) region of interest in scene coordinates.
        unbounded: whether to contract space beyond ``aabb``.
        has_alpha: the images are RGBA (train on random backgrounds).
        points3d: (P, 3) sparse points or None; points_rgb: (P, 3) uint8 or None.
        camera_centers: (C, 3) training camera positions or None.
        point_sampler: when the scene has no sparse points but another source of surface points
            (e.g. the visual hull of alpha masks): ``n -> (points (P, 3), rgb (P, 3) uint8)`` or None.
    """

    aabb: Tensor
    unbounded: bool
    has_alpha: bool
    points3d: Tensor | None = None
    points_rgb: Tensor | None = None
    camera_centers: Tensor | None = None
    point_sampler: Callable[[int], tuple[Tensor, Tensor] | None] | None = None

    @staticmethod
    def from_transform(transform: dict, has_alpha: bool) -> "SceneInfo":
        return SceneInfo(torch.tensor(transform["aabb"], dtype=torch.float32),
                         bool(transform["unbounded"]), has_alpha)


@dataclass
class RayBatch:
    """A training batch of rays with their target colours.

    Attributes:
        origins, directions: (R, 3) scene coordinates, unit directions.
        rgb: (R, 3) target colour in [0, 1], already composited on ``background``.
        background: (R, 3) the background the target was composited on.
        camera_ids: (R,) int64 the image of each ray.
        radii: (R,) the pixel's cone radius at unit distance (cone-tracing methods, mipnerf), or None.
    """

    origins: Tensor
    directions: Tensor
    rgb: Tensor
    background: Tensor
    camera_ids: Tensor
    radii: Tensor | None = None

    def __len__(self) -> int:
        return int(self.origins.shape[0])

    def to(self, device: torch.device | str) -> "RayBatch":
        return RayBatch(self.origins.to(device), self.directions.to(device), self.rgb.to(device),
                        self.background.to(device), self.camera_ids.to(device),
                        None if self.radii is None else self.radii.to(device))


@dataclass
class ImageBatch:
    """A training batch of one whole image (methods that rasterize, like splat).

    Attributes:
        camera: the image's camera (one entry).
        rgb: (H, W, 3) target colour in [0, 1], already composited on ``background``.
        background: (3,) the background colour of this step.
        image_id: index of the image in the scene.
    """

    camera: Cameras
    rgb: Tensor
    background: Tensor
    image_id: int

    def __len__(self) -> int:
        return int(self.rgb.shape[0] * self.rgb.shape[1])

    def to(self, device: torch.device | str) -> "ImageBatch":
        return ImageBatch(self.camera.to(device), self.rgb.to(device), self.background.to(device),
                          self.image_id)


@runtime_checkable
class Method(Protocol):
    """What every method (ngp, mipnerf, splat) provides."""

    name: str
    batch_kind: str          # "rays" (RayBatch of random pixels) or "image" (ImageBatch)

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer parameter groups, each with its own ``lr`` (and ``eps``, ``weight_decay``)."""

    def lr_factor(self, step: int, progress: float) -> float | dict[str, float]:
        """Multiplier of the base learning rates at this step (progress in [0, 1]): one for every
        group, or a mapping from group name to multiplier (groups not named keep 1)."""

    def rays_per_batch(self) -> int:
        """Rays in the next batch (methods with ``batch_kind == "rays"`` only)."""

    def before_step(self, step: int, progress: float) -> None:
        """Work before the forward pass (e.g. occupancy-grid updates)."""

    def train_step(self, batch: RayBatch | ImageBatch, step: int, progress: float) -> dict[str, Any]:
        """Forward pass and loss; returns ``{"loss": Tensor, "mse": float, "rays": int, ...}``."""

    def after_backward(self, step: int, optimizer: torch.optim.Optimizer) -> None:
        """Work between backward and the optimizer step."""

    def render(self, camera: Cameras, background: Tensor) -> dict[str, Tensor]:
        """Render one camera: rgb (H, W, 3), depth (H, W) along the ray, alpha (H, W).

        Optionally also ``median_depth`` (H, W): the distance at which the accumulated weight
        reaches half of alpha (NeRF methods), which mesh export prefers to ``depth / alpha``.
        """

    def density(self, xyz: Tensor) -> Tensor:
        """(N, 3) scene points -> (N,) density."""


def render_in_chunks(camera: Cameras, chunk: int, device: torch.device | str,
                     shade: Callable[[Tensor, Tensor, Tensor], dict[str, Tensor]]) -> dict[str, Tensor]:
    """Render camera 0 of ``camera`` at its size, ``chunk`` rays at a time.

    Args:
        shade: ``(origins (R, 3), unit directions (R, 3) on ``device``, pixels (R, 2) on the CPU) ->
            {name: (R,) or (R, C)}``, the per-ray outputs of a method.
    Returns:
        ``{name: (H, W) or (H, W, C)}`` on the CPU.
    """
    width, height = (int(v) for v in camera.sizes[0])
    pixels = image_pixels(width, height)
    origins, directions = generate_rays(camera, torch.zeros(pixels.shape[0], dtype=torch.int64), pixels)
    parts: dict[str, list[Tensor]] = {}
    for start in range(0, pixels.shape[0], chunk):
        rows = slice(start, start + chunk)
        out = shade(origins[rows].to(device), directions[rows].to(device), pixels[rows])
        for name, value in out.items():
            parts.setdefault(name, []).append(value.cpu())
    return {name: torch.cat(values).view(height, width, *values[0].shape[1:]) for name, values in parts.items()}


@contextlib.contextmanager
def inference(method: Any) -> Iterator[None]:
    """Render ``method`` outside training: eval mode and no gradients inside the block, the
    module's training mode restored afterwards (also when the block raises), so it may run between
    training steps."""
    was_training = bool(getattr(method, "training", False))
    if hasattr(method, "eval"):
        method.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training and hasattr(method, "train"):
            method.train()

