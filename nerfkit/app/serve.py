"""Serving the web viewer of a method: live while a trainer runs, for a finished run, and for a splat
file from any tool.

Access: on a non-loopback host the viewer requires a token (:mod:`nerfkit.viewer.access`); the
commands pass ``token = viewer_token(host, --token)``.

While training, the viewer draws on the training thread between steps and only within a time
budget (:class:`~nerfkit.viewer.schedule.RenderBudget`): every step earns render time in
proportion to its duration (``RENDER_FRACTION`` of the wall time at most), a frame starts only
while the credit is positive and its cost is charged afterwards. With no browser connected the
hook costs nothing; with one, training keeps about ``1 - RENDER_FRACTION`` of its speed.
"""

from __future__ import annotations

import contextlib
import math
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from nerfkit.core.errors import NerfkitError
from nerfkit.runs.folder import RunFolder

if TYPE_CHECKING:
    from nerfkit.data.scene import Scene
    from nerfkit.export.splat_scene import SplatFrame
    from nerfkit.methods.base import Method
    from nerfkit.runs.trainer import Trainer, TrainStats
    from nerfkit.viewer.server import ViewerOptions, ViewerServer
    from nerfkit.viewer.types import StatsSource, TrainingControl

RENDER_FRACTION = 0.1        # share of wall time the viewer may take from training
PAUSE_POLL = 0.1             # seconds between checks for "resume" while paused and idle


def check_address(host: str, port: int) -> None:
    """One-sentence errors for a port outside 0..65535 or a host this machine cannot listen on
    (viser would wait forever on it). A busy port is fine: the viewer moves to the next free one."""
    if not 0 <= port <= 65535:
        raise NerfkitError(f"--port must be between 0 and 65535 (0: any free port), got {port}")
    if not host:
        raise NerfkitError("--host must be an address to listen on, e.g. 127.0.0.1 or 0.0.0.0")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind(address)
    except (OSError, UnicodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise NerfkitError(f"--host '{host}' is no address this machine can listen on ({reason}); "
                           "use 127.0.0.1, 0.0.0.0 or one of its own addresses") from None


def start_viewer(method: Method, scene: Scene, run: RunFolder | Path, host: str, port: int, stats: StatsSource,
                 control: TrainingControl | None = None, token: str | None = None,
                 resolution: int | None = None) -> ViewerServer:
    """Serve a viewer of ``method`` on ``scene`` (``control``: a training run's pause switch, None
    for a finished run; ``token``: required from every browser, None: open; ``resolution``: the
    longer side of a refined frame, default 1024 px on CUDA, 256 on the CPU); camera paths saved
    from it go to ``run``'s ``camera_paths/``."""
    from nerfkit.app.viewer_adapter import scene_up, training_views
    from nerfkit.methods.base import method_device
    from nerfkit.viewer.keyframes import KeyframeOptions
    from nerfkit.viewer.server import ViewerOptions

    check_address(host, port)
    views = training_views(scene)
    first = scene.cameras[scene.split("train")[0]]
    width, height = (int(v) for v in first.sizes[0])
    fov_y = 2.0 * math.atan(0.5 * height / float(first.intrinsics[0, 1]))
    aabb = scene.aabb.double().numpy()
    device = method_device(method)
    keyframes = KeyframeOptions(
        scene_to_world=np.linalg.inv(scene.world_to_scene.double().numpy()),
        folder=RunFolder(run).camera_paths_dir, size=(width, height),
        render_video=_video_renderer(method, scene))
    options = ViewerOptions(
        host=host, port=port, resolution=resolution or (1024 if device.type == "cuda" else 256), training_views=views,
        initial_view=(first.c2w[0].double().numpy(), fov_y), look_at=aabb.mean(0), up=scene_up(scene),
        crop_box=aabb, control=control, keyframes=keyframes, token=token)
    return _serve(method, stats, options)


def start_splat_viewer(method: Method, frame: SplatFrame, folder: Path, host: str, port: int,
                       stats: StatsSource, token: str | None = None, resolution: int | None = None) -> ViewerServer:
    """Serve Gaussians read from a file without a scene, in the fitted ``frame``
    (:func:`nerfkit.export.splat_scene.fitted_frame`); camera paths go to ``folder/camera_paths/``."""
    from nerfkit.methods.base import method_device
    from nerfkit.viewer.keyframes import KeyframeOptions
    from nerfkit.viewer.server import ViewerOptions

    check_address(host, port)
    keyframes = KeyframeOptions(scene_to_world=np.linalg.inv(frame.world_to_scene.double().numpy()),
                                folder=RunFolder(folder).camera_paths_dir, size=(960, 540),
                                render_video=_video_renderer(method, frame))
    aabb = frame.aabb.double().numpy()
    options = ViewerOptions(
        host=host, port=port, resolution=resolution or (1024 if method_device(method).type == "cuda" else 256),
        initial_view=(frame.camera_to_world.double().numpy(), frame.fov_y), look_at=aabb.mean(0),
        up=frame.up.double().numpy(), crop_box=aabb, keyframes=keyframes, token=token)
    return _serve(method, stats, options)


def _serve(method: Method, stats: StatsSource, options: ViewerOptions) -> ViewerServer:
    from nerfkit.app.viewer_adapter import MethodRenderer
    from nerfkit.viewer.server import ViewerServer

    try:
        return ViewerServer(MethodRenderer(method), stats, options)
    except OSError as error:
        raise NerfkitError(f"could not serve the viewer on {options.host}:{options.port}: "
                           f"{error.strerror or error}") from None


def _video_renderer(method: Method, scene: Scene | SplatFrame) -> Callable[[Path], Path]:
    """``camera-path JSON -> mp4`` next to it, for the viewer's 'Render video' button (``scene``:
    anything with the ``world_to_scene`` that moves the world path to the viewer's coordinates)."""
    def render(path_file: Path) -> Path:
        from nerfkit.video.camera_path import load_camera_path
        from nerfkit.video.writer import render_path_video

        return render_path_video(method, scene, load_camera_path(path_file),
                                 path_file.with_suffix(".mp4"), progress=False)
    return render


class TrainingViewer:
    """The trainer's ``after_step`` hook: draws frames within the render budget and holds the loop
    while training is paused (drawing freely meanwhile).

    Args:
        server: anything with ``render_once() -> seconds`` (the viewer server).
        control: the pause switch the server's 'Pause training' button flips.
        stats: the trainer's live stats (``train_seconds`` grows by each step's duration).
        render_fraction: share of wall time frames may take while training runs.
    """

    def __init__(self, server: ViewerServer, control: TrainingControl, stats: TrainStats,
                 render_fraction: float = RENDER_FRACTION) -> None:
        from nerfkit.viewer.schedule import RenderBudget

        self.server, self.control, self.stats = server, control, stats
        self.budget = RenderBudget(render_fraction)
        self._trained_until = stats.train_seconds

    def after_step(self) -> None:
        seconds = self.stats.train_seconds
        self.budget.trained(max(0.0, seconds - self._trained_until))
        self._trained_until = seconds
        while self.control.paused:               # paused: render freely, wait for "resume"
            if self.server.render_once() == 0.0:
                self.control.running.wait(PAUSE_POLL)
        if self.budget.may_render():
            self.budget.rendered(self.server.render_once())


@contextlib.contextmanager
def training_viewer(trainer: Trainer, enabled: bool, host: str, port: int,
                    token: str | None = None) -> Iterator[ViewerServer | None]:
    """Serve the live viewer (when ``enabled``; yields the server, else None) while the block trains
    ``trainer``; the server closes when the block ends, so training still ends on its own."""
    if not enabled:
        yield None
        return
    from nerfkit.viewer.types import TrainingControl

    control = TrainingControl()
    server = start_viewer(trainer.method, trainer.scene, trainer.run, host, port, trainer.stats, control, token)
    trainer.after_step = TrainingViewer(server, control, trainer.stats).after_step
    try:
        yield server
    finally:
        trainer.after_step = None
        server.close()


def serve_until_interrupted(server: ViewerServer) -> None:
    """Draw frames for the viewer's browsers until Ctrl-C, then close it."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
