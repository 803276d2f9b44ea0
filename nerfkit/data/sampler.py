"""Training batches over a scene's images: random pixels as rays (mixed image sizes allowed) or whole
images, each on its background."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from nerfkit.core.errors import NerfkitError
from nerfkit.data.cameras import generate_rays, pixel_footprint_radii
from nerfkit.data.inputs import BatchRequest, ImageBatch, RayBatch
from nerfkit.data.lens import undistorted_scene
from nerfkit.data.scene import Scene


def background_color(name: str, n: int, generator: torch.Generator | None = None) -> Tensor:
    """(n, 3) background colours: ``random`` (uniform per ray), ``white`` or ``black``."""
    if name == "random":
        return torch.rand(n, 3, generator=generator)
    if name == "white":
        return torch.ones(n, 3)
    if name == "black":
        return torch.zeros(n, 3)
    raise ValueError(f"unknown background '{name}': expected random, white or black")


def composite_on(rgba: Tensor, background: Tensor) -> Tensor:
    """(..., 3|4) float colours in [0, 1] -> (..., 3) composited on ``background`` (broadcastable)."""
    if rgba.shape[-1] == 3:
        return rgba
    alpha = rgba[..., 3:4]
    return rgba[..., :3] * alpha + background * (1.0 - alpha)


def image_on_background(scene: Scene, index: int, background: Tensor) -> Tensor:
    """(H, W, 3) float image ``index`` of ``scene`` in [0, 1], composited on ``background`` (3,)."""
    image = torch.from_numpy(scene.images[index].copy()).float() / 255.0   # loaded arrays are read-only
    return composite_on(image, background)


class PixelSampler:
    """Uniformly random pixels of a set of images, as rays with target colours.

    All pixels are stored once as one flat uint8 buffer (P, 4) (alpha 255 for RGB images), so
    images of different sizes mix freely. ``with_radii`` adds each ray's pixel-footprint cone radius
    (for cone-tracing methods). With the scene's ignore masks (``Scene.masks``) only the pixels
    that count are drawn.
    """

    def __init__(self, scene: Scene, image_ids: list[int], background: str, seed: int = 0,
                 with_radii: bool = False) -> None:
        self.cameras = scene.cameras
        self.with_radii = with_radii
        self.image_ids = torch.tensor(image_ids, dtype=torch.int64)
        pixels = []
        for index in image_ids:
            image = scene.images[index]
            if image.shape[2] == 3:
                image = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], 2)
            pixels.append(image.reshape(-1, 4))
        self.pixels = torch.from_numpy(np.concatenate(pixels))     # one copy, writable (loaded images are not)
        self.choices = None         # (K,) flat indices of the pixels that count, when some do not
        if scene.masks is not None:
            keep = torch.cat([torch.from_numpy(scene.masks[index]).reshape(-1) for index in image_ids])
            if not bool(keep.all()):
                self.choices = torch.nonzero(keep).squeeze(1)
                if len(self.choices) == 0:
                    raise NerfkitError("the masks of the training images ignore every pixel: nothing to train on")
        counts = torch.tensor([p.shape[0] for p in pixels], dtype=torch.int64)
        self.offsets = torch.cumsum(counts, 0) - counts
        self.widths = self.cameras.sizes[self.image_ids, 0]
        self.background = background
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        """The pixels that can be drawn."""
        return int(self.pixels.shape[0] if self.choices is None else self.choices.shape[0])

    def sample(self, n_rays: int, share: slice | None = None) -> RayBatch:
        """``n_rays`` random pixels -> a :class:`RayBatch` (targets composited on the background).

        ``share``: only these of the ``n_rays`` drawn (one process's part of a batch; the draws are
        the same, so the shares of a batch together are what ``sample(n_rays)`` returns).
        """
        flat = torch.randint(0, len(self), (n_rays,), generator=self.generator)
        if self.choices is not None:
            flat = self.choices[flat]
        background = background_color(self.background, n_rays, self.generator)
        if share is not None:
            flat, background = flat[share], background[share]
        local = torch.searchsorted(self.offsets, flat, right=True) - 1
        within = flat - self.offsets[local]
        width = self.widths[local]
        pixels = torch.stack([within % width, within // width], -1).float() + 0.5
        camera_ids = self.image_ids[local]
        origins, directions = generate_rays(self.cameras, camera_ids, pixels)
        radii = pixel_footprint_radii(self.cameras, camera_ids, pixels, directions) if self.with_radii else None
        rgba = self.pixels[flat].float() / 255.0
        return RayBatch(origins, directions, composite_on(rgba, background), background, camera_ids,
                        radii)


class ImageSampler:
    """Whole training images in random order (with replacement), each on its own background colour."""

    def __init__(self, scene: Scene, image_ids: list[int], background: str, seed: int = 0) -> None:
        self.scene = scene
        self.image_ids = list(image_ids)
        self.background = background
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.image_ids)

    def sample(self, n_rays: int = 0) -> ImageBatch:
        """One random image as an :class:`ImageBatch` (``n_rays`` is ignored: a batch is an image)."""
        return self._batch(*self._draw())

    def sample_many(self, count: int, share: slice | None = None) -> list[ImageBatch]:
        """``count`` random images, as ``count`` calls of :meth:`sample` draw them; ``share``: only
        these of them (one process's part of a multi-image step; the others are drawn, not loaded)."""
        draws = [self._draw() for _ in range(count)]
        return [self._batch(*draw) for draw in draws[share if share is not None else slice(None)]]

    def _draw(self) -> tuple[int, Tensor]:
        index = self.image_ids[int(torch.randint(0, len(self.image_ids), (1,), generator=self.generator))]
        return index, background_color(self.background, 1, self.generator)[0]

    def _batch(self, index: int, background: Tensor) -> ImageBatch:
        keep = None if self.scene.masks is None else torch.from_numpy(self.scene.masks[index])
        return ImageBatch(self.scene.cameras[index], image_on_background(self.scene, index, background),
                          background, index, keep)


def make_sampler(scene: Scene, image_ids: list[int], request: BatchRequest,
                 seed: int = 0) -> PixelSampler | ImageSampler:
    """The sampler that serves a method's :class:`~nerfkit.data.inputs.BatchRequest` over the images
    ``image_ids``: whole images for ``kind == "image"``, random pixels (with cone radii when asked)
    otherwise; ``sample(request.rays)`` draws a batch. Whole images of cameras with lens distortion
    are served undistorted (:func:`nerfkit.data.lens.undistorted_scene`)."""
    if request.kind == "image":     # rasterized through pinholes: distorted photos are resampled once
        return ImageSampler(undistorted_scene(scene, image_ids), image_ids, request.background, seed=seed)
    return PixelSampler(scene, image_ids, request.background, seed=seed, with_radii=request.cone_radii)
