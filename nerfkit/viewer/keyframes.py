"""The camera-path panel: keyframes taken from the browser's camera, saved as a nerfkit camera-path
JSON file (``nerfkit.video.camera_path``) and rendered to a video by the viewer's owner.

Keyframes are stored in the scene's ORIGINAL world coordinates (the camera-path format's rule):
the owner gives the similarity ``scene_to_world`` that maps the viewer's coordinates back.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import viser

from nerfkit.viewer.camera_math import matrix_to_pose, pose_to_matrix


@dataclass
class KeyframeOptions:
    """What the panel needs from its owner.

    Attributes:
        scene_to_world: (4, 4) float64 similarity from the viewer's (scene) coordinates to the
            original world coordinates.
        folder: where ``<name>.json`` files (and their videos) are written (a run's ``camera_paths/``).
        size: (width, height) default video size in pixels.
        render_video: ``json path -> video path``; runs on the render thread (it may take
            minutes), or None to hide the button.
    """

    scene_to_world: np.ndarray
    folder: Path
    size: tuple[int, int] = (640, 480)
    render_video: Callable[[Path], Path] | None = None


def scene_pose_to_world(scene_to_world: np.ndarray, camera_to_world: np.ndarray) -> np.ndarray:
    """(4, 4) camera pose in scene coordinates -> (4, 4) rigid pose in world coordinates.

    The similarity's uniform scale moves the position but must not scale the rotation.
    """
    similarity = np.asarray(scene_to_world, dtype=np.float64)
    scale = abs(np.linalg.det(similarity[:3, :3])) ** (1.0 / 3.0)
    pose = np.eye(4)
    pose[:3, :3] = similarity[:3, :3] @ camera_to_world[:3, :3] / scale
    pose[:3, 3] = similarity[:3, :3] @ camera_to_world[:3, 3] + similarity[:3, 3]
    return pose


class KeyframePanel:
    """Add / clear keyframes, save the path, render it to a video.

    Args:
        server: the viser server.
        options: see :class:`KeyframeOptions`.
        submit: runs a callable on the render thread (the thread that owns the model).
        frustum_scale: size of the keyframe markers in scene units.
    """

    def __init__(self, server: viser.ViserServer, options: KeyframeOptions,
                 submit: Callable[[Callable[[], None]], None], frustum_scale: float = 0.05) -> None:
        self._server, self._options, self._submit = server, options, submit
        self._frustum_scale = frustum_scale
        self._keyframes: list[tuple[np.ndarray, float]] = []   # (scene c2w (4, 4), fov_y radians)
        self._frustums: list[viser.CameraFrustumHandle] = []
        gui = server.gui
        with gui.add_folder("Camera path", expand_by_default=False):
            self.add = gui.add_button("Add keyframe (current view)")
            self.clear = gui.add_button("Clear keyframes")
            self.name = gui.add_text("File name", "camera_path")
            self.seconds = gui.add_number("Seconds", 5.0, min=0.1, max=600.0, step=0.1)
            self.fps = gui.add_number("FPS", 30, min=1, max=240, step=1)
            self.width = gui.add_number("Width", int(options.size[0]), min=16, max=8192, step=1)
            self.height = gui.add_number("Height", int(options.size[1]), min=16, max=8192, step=1)
            self.loop = gui.add_checkbox("Loop", False)
            self.save = gui.add_button("Save path (JSON)")
            self.render = gui.add_button("Render video", visible=options.render_video is not None)
            self.status = gui.add_markdown("no keyframes")
        self.add.on_click(lambda event: self._add(event.client))
        self.clear.on_click(lambda _event: self._clear())
        self.save.on_click(lambda _event: self._save_and_report())
        self.render.on_click(lambda _event: self.request_video())

    @property
    def keyframes(self) -> list[tuple[np.ndarray, float]]:
        return list(self._keyframes)

    def add_keyframe(self, camera_to_world: np.ndarray, fov_y: float) -> None:
        """Append a keyframe: (4, 4) scene-coordinate pose (OpenCV), vertical fov in radians."""
        index = len(self._keyframes)
        self._keyframes.append((np.array(camera_to_world, dtype=np.float64), float(fov_y)))
        wxyz, position = matrix_to_pose(camera_to_world)
        self._frustums.append(self._server.scene.add_camera_frustum(
            f"/keyframes/{index}", fov=fov_y, aspect=self.width.value / self.height.value,
            scale=self._frustum_scale, color=(255, 140, 0), wxyz=wxyz, position=position))
        self.status.content = f"{len(self._keyframes)} keyframe(s)"

    def _add(self, client: viser.ClientHandle | None) -> None:
        if client is None:
            return
        camera = client.camera
        self.add_keyframe(pose_to_matrix(camera.wxyz, camera.position), camera.fov)

    def _clear(self) -> None:
        self._keyframes.clear()
        for handle in self._frustums:
            handle.remove()
        self._frustums.clear()
        self.status.content = "no keyframes"

    def save_path(self) -> Path:
        """Write the keyframes as ``<folder>/<name>.json``; returns the file.

        Raises:
            NerfkitError: no keyframes, or the path breaks a rule of the format.
        """
        from nerfkit.core.errors import NerfkitError
        from nerfkit.video.camera_path import CameraPath, Keyframe, save_camera_path

        if not self._keyframes:
            raise NerfkitError("the camera path has no keyframes: add one with 'Add keyframe' first")
        keyframes = [Keyframe(scene_pose_to_world(self._options.scene_to_world, pose), math.degrees(fov))
                     for pose, fov in self._keyframes]
        path = CameraPath(keyframes, int(self.width.value), int(self.height.value), int(self.fps.value),
                          float(self.seconds.value), bool(self.loop.value))
        name = "".join(c for c in str(self.name.value) if c.isalnum() or c in "-_") or "camera_path"
        target = Path(self._options.folder) / f"{name}.json"
        save_camera_path(target, path)
        return target

    def _save_and_report(self) -> Path | None:
        from nerfkit.core.errors import NerfkitError

        try:
            target = self.save_path()
        except NerfkitError as error:
            self.status.content = f"not saved: {error}"
            return None
        self.status.content = f"{len(self._keyframes)} keyframe(s) saved to `{target}`"
        return target

    def request_video(self) -> None:
        """Save the path, then queue its video for the render thread (the 'Render video' button)."""
        target = self._save_and_report()
        render_video = self._options.render_video
        if target is None or render_video is None:
            return
        self.status.content = f"rendering `{target.name}` to video..."

        def job() -> None:
            started = time.perf_counter()
            try:
                video = render_video(target)
            except Exception as error:   # shown in the panel; the viewer keeps running
                self.status.content = f"video failed: {error}"
                return
            self.status.content = f"video written to `{video}` in {time.perf_counter() - started:.0f} s"

        self._submit(job)
