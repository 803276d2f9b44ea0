"""Rendering a camera path (:class:`~nerfkit.video.camera_path.CameraPath`, format in
:mod:`nerfkit.video.camera_path`) to an H.264 .mp4 video.

The video is H.264 in yuv420p, so its width and height are even: an odd size from a path is rounded
up by one pixel (same vertical field of view).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nerfkit.core.errors import NerfkitError
from nerfkit.core.files import atomic_path

if TYPE_CHECKING:         # torch, scipy and the methods load on use: `nerfkit --help` stays quick
    from torch import Tensor

    from nerfkit.data.scene import Scene
    from nerfkit.methods.base import Method
    from nerfkit.video.camera_path import CameraPath

VIDEO_SUFFIX = ".mp4"
CRF = "18"                   # x264 constant rate factor: visually lossless for renders


def even_size(width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` rounded up to even numbers (yuv420p halves both for colour)."""
    return width + width % 2, height + height % 2


def render_path_video(method: Method, scene: Scene, camera_path: CameraPath, output: Path,
                      background: str | Tensor = "white", progress: bool = True) -> Path:
    """Render every frame of ``camera_path`` and write them as an H.264 .mp4.

    Args:
        method: a trained method; ``method.render(camera, background)["rgb"]`` is (H, W, 3) in [0, 1].
        scene: its scene (``world_to_scene`` moves the world path into the method's coordinates).
        camera_path: the path, in world coordinates.
        output: the .mp4 to write; written to a temp file in the same folder, then renamed, so an
            interrupted render never leaves a broken file under this name.
        background: ``"white"`` | ``"black"`` or a (3,) colour in [0, 1] behind transparent content.
        progress: show a progress bar on stderr.
    Returns:
        ``output``. The video has ``camera_path.frame_count`` frames of :func:`even_size` pixels at
        ``camera_path.fps``.
    """
    import imageio_ffmpeg
    from tqdm import tqdm

    from nerfkit.methods.base import inference
    from nerfkit.video.camera_path import interpolate_path, path_cameras

    output = Path(output)
    if output.suffix.lower() != VIDEO_SUFFIX:
        raise NerfkitError(f"video output '{output}' must end in {VIDEO_SUFFIX}")
    colour = _background(background)
    width, height = even_size(camera_path.width, camera_path.height)
    frames = interpolate_path(camera_path)
    cameras = path_cameras(frames, scene.world_to_scene, width, height)
    with atomic_path(output, suffix=VIDEO_SUFFIX) as temp:
        writer = imageio_ffmpeg.write_frames(
            str(temp), (width, height), fps=camera_path.fps, codec="libx264", pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p", quality=None, macro_block_size=2, ffmpeg_log_level="error",
            output_params=["-crf", CRF, "-movflags", "+faststart"])
        try:
            writer.send(None)                                # starts ffmpeg
            with inference(method):
                for index in tqdm(range(len(cameras)), desc="render", unit="frame", disable=not progress):
                    rgb = method.render(cameras[index], colour)["rgb"]
                    writer.send(_to_bytes(rgb, width, height))
        finally:
            writer.close()
    return output


def _background(background: str | Tensor) -> Tensor:
    import torch

    if isinstance(background, str):
        from nerfkit.data.sampler import background_color

        if background not in ("white", "black"):
            raise NerfkitError(f"--background must be one of white, black, got '{background}'")
        return background_color(background, 1)[0]
    return torch.as_tensor(background, dtype=torch.float32).reshape(3)


def _to_bytes(rgb: Tensor, width: int, height: int) -> bytes:
    """(H, W, 3) float in [0, 1] -> contiguous rgb24 bytes of exactly (height, width)."""
    import numpy as np
    import torch

    image = (rgb.detach().float().clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    if image.shape != (height, width, 3):
        raise RuntimeError(f"the method rendered {image.shape}, expected {(height, width, 3)}")
    return np.ascontiguousarray(image).tobytes()
