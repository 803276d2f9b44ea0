"""What a method is given and what it asks for: the scene summary it is built from, the batches it
trains on, and its request for the next batch. Shared by :mod:`nerfkit.data` (which makes them) and
:mod:`nerfkit.methods` (which consume them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal

import torch
from torch import Tensor

from nerfkit.data.cameras import Cameras

if TYPE_CHECKING:
    from nerfkit.data.scene import Scene

Background = Literal["random", "white", "black"]


@dataclass
class SceneInfo:
    """What a method needs to know about its scene (never the images, so a finished run can be
    re-created from its folder: ``transform.json`` holds the box and kind).

    Attributes:
        aabb: (2, 3) region of interest in scene coordinates.
        unbounded: whether to contract space beyond ``aabb``.
        has_alpha: the images are RGBA (train on random backgrounds).
        points3d: (P, 3) sparse points or None; points_rgb: (P, 3) uint8 or None.
        camera_centers: (C, 3) training camera positions or None.
        point_sampler: when the scene has no sparse points but another source of surface points
            (e.g. the visual hull of alpha masks): ``n -> (points (P, 3), rgb (P, 3) uint8)`` or None.
        train_image_ids: the scene indices of the training images (a batch's ``camera_ids`` and
            ``image_id`` are scene indices); image_count: the images in the scene. For what is kept
            per training image (the appearance correction, :mod:`nerfkit.render.appearance`).
    """

    aabb: Tensor
    unbounded: bool
    has_alpha: bool
    points3d: Tensor | None = None
    points_rgb: Tensor | None = None
    camera_centers: Tensor | None = None
    point_sampler: Callable[[int], tuple[Tensor, Tensor] | None] | None = None
    train_image_ids: tuple[int, ...] = ()
    image_count: int = 0

    @staticmethod
    def from_scene(scene: Scene, with_point_sampler: bool = True) -> "SceneInfo":
        """The summary of a loaded scene. ``with_point_sampler=False`` leaves out the start points
        drawn from the views (seconds per call), for a method whose weights come from a checkpoint."""
        from nerfkit.data.view_points import points_from_views

        train_ids = scene.split("train")
        centers = scene.cameras.c2w[train_ids, :3, 3].float()
        sampler = None
        if scene.points3d is None and with_point_sampler:
            def sampler(n: int) -> tuple[Tensor, Tensor] | None:
                return points_from_views(scene, n, train_ids)
        return SceneInfo(scene.aabb, scene.unbounded, scene.has_alpha, scene.points3d, scene.points_rgb,
                         centers, sampler, tuple(int(i) for i in train_ids), len(scene.images))

    @staticmethod
    def from_transform(transform: dict, has_alpha: bool) -> "SceneInfo":
        """The summary saved in a run's ``transform.json``."""
        return SceneInfo(torch.tensor(transform["aabb"], dtype=torch.float32),
                         bool(transform["unbounded"]), has_alpha)


@dataclass(frozen=True)
class BatchRequest:
    """What a method wants to train on next (:meth:`nerfkit.methods.base.Method.batch_request`).

    Attributes:
        kind: ``rays`` (a :class:`RayBatch` of random training pixels) or ``image`` (an
            :class:`ImageBatch`: one whole training image, for methods that rasterize).
        rays: rays in the batch (``rays`` only; it may change from step to step).
        cone_radii: the rays carry their pixel's cone radius (cone-tracing methods).
        background: what RGBA targets are composited on: ``random`` per ray (or per image),
            ``white`` or ``black``.

    ``kind``, ``cone_radii`` and ``background`` stay the same for a whole run.
    """

    kind: Literal["rays", "image"]
    rays: int = 0
    cone_radii: bool = False
    background: Background = "random"


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
        keep: (H, W) bool, True where a pixel counts (the scene's ignore mask), or None: all do.
    """

    camera: Cameras
    rgb: Tensor
    background: Tensor
    image_id: int
    keep: Tensor | None = None

    def __len__(self) -> int:
        return int(self.rgb.shape[0] * self.rgb.shape[1])

    def to(self, device: torch.device | str) -> "ImageBatch":
        return ImageBatch(self.camera.to(device), self.rgb.to(device), self.background.to(device),
                          self.image_id, None if self.keep is None else self.keep.to(device))
