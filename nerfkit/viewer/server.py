"""The live web viewer: a viser server that shows whatever a render function draws.

The viewer knows a :data:`~nerfkit.viewer.types.RenderFn` and a stats object, nothing about
models. It never renders on its own threads: the owner of the model calls :meth:`render_once`
(between training steps, within a time budget; or in a loop for a finished run), so the model is
only ever touched by one thread.

    viewer = ViewerServer(render_fn, stats, ViewerOptions(port=8080))
    while training:
        train_step()
        viewer.render_once()        # at most one frame (one refinement level of one browser)
    viewer.close()
"""

from __future__ import annotations

import contextlib
import io
import math
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import viser

from nerfkit.viewer.access import AccessGate
from nerfkit.viewer.camera_math import image_size, matrix_to_pose, pose_to_matrix
from nerfkit.viewer.display import to_display
from nerfkit.viewer.keyframes import KeyframeOptions, KeyframePanel
from nerfkit.viewer.panels import RenderPanel, StatsPanel, TrainingPanel
from nerfkit.viewer.schedule import (
    DEFAULT_LEVELS,
    Job,
    ProgressiveSchedule,
    affordable_long_side,
)
from nerfkit.viewer.types import (
    RENDER_MODES,
    RenderFn,
    StatsSource,
    TrainingControl,
    TrainingView,
    ViewRequest,
)

STATS_INTERVAL = 0.5      # seconds between stats panel refreshes


@dataclass
class ViewerOptions:
    """How to serve and what to show.

    Attributes:
        host, port: where to listen (port 0: any free port; a busy port moves to the next free).
        modes: render modes offered (a subset of ``RENDER_MODES``, "rgb" first).
        resolution: default longer side of a fully refined frame in pixels.
        levels: fractions of the resolution drawn progressively for a still camera.
        moving_frame_seconds: target time of a first-level frame (the one drawn while the camera
            moves): that level shrinks further when the measured cost per pixel says it would
            take longer, so a slow (CPU) model still follows the mouse.
        training_views: training cameras drawn as frustums with thumbnails.
        initial_view: (camera_to_world (4, 4), fov_y radians) a new browser starts at, or None.
        look_at: (3,) point the initial camera orbits, or None (the origin).
        up: (3,) world up direction for the orbit controls, or None (+z).
        crop_box: (2, 3) default crop box (min, max).
        control: pause/resume switch for a training loop, or None for a finished run.
        keyframes: camera-path panel options, or None to hide the panel.
        token: the access token every browser must offer (:mod:`nerfkit.viewer.access`; viser then
            listens on 127.0.0.1 behind the token gate on ``host:port``), or None: open.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    modes: tuple[str, ...] = RENDER_MODES
    resolution: int = 256
    levels: tuple[float, ...] = DEFAULT_LEVELS
    moving_frame_seconds: float = 0.25
    training_views: list[TrainingView] = field(default_factory=list)
    initial_view: tuple[np.ndarray, float] | None = None
    look_at: np.ndarray | None = None
    up: np.ndarray | None = None
    crop_box: np.ndarray = field(default_factory=lambda: np.array([[-1.0] * 3, [1.0] * 3]))
    control: TrainingControl | None = None
    keyframes: KeyframeOptions | None = None
    token: str | None = None


@dataclass
class _Camera:
    """A browser camera as last reported: pose (4, 4) OpenCV, vertical fov (radians), aspect."""

    camera_to_world: np.ndarray
    fov_y: float
    aspect: float


class ViewerServer:
    """Serves the viewer page and draws frames for connected browsers on request.

    Args:
        render_fn: draws a :class:`ViewRequest`; called only from :meth:`render_once`.
        stats: object with ``step``, ``loss``, ``psnr``, ``rays_per_second`` (read only).
        options: see :class:`ViewerOptions`.
    """

    def __init__(self, render_fn: RenderFn, stats: StatsSource, options: ViewerOptions) -> None:
        self._render_fn, self._options = render_fn, options
        self._schedule = ProgressiveSchedule(options.levels)
        self._cameras: dict[int, _Camera] = {}
        self._lock = threading.Lock()
        self._jobs: queue.Queue[Callable[[], None]] = queue.Queue()
        self._last_frame: tuple[float, tuple[int, int] | None] = (0.0, None)
        self.frames_drawn = 0
        self._last_error = ""
        self._seconds_per_pixel = 0.0          # running estimate of the render cost
        self._gate: AccessGate | None = None
        with contextlib.redirect_stdout(io.StringIO()):     # viser's banner; the owner prints the URL
            if options.token:                               # behind the gate: loopback only
                self.server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
            else:
                self.server = viser.ViserServer(host=options.host, port=options.port, verbose=False)
        if options.token:
            try:
                self._gate = AccessGate(options.host, options.port, self.server.get_port(), options.token)
            except OSError:
                self.server.stop()
                raise
        self._scale = _frustum_scale(options.training_views, options.crop_box)
        if options.up is not None:
            self.server.scene.set_up_direction(np.asarray(options.up, dtype=np.float64))
        self.render_panel = RenderPanel(self.server, options.modes, options.resolution,
                                        options.crop_box, self._schedule.invalidate_all)
        self.stats_panel = StatsPanel(self.server, stats, training=options.control is not None)
        if options.control is not None:
            TrainingPanel(self.server, options.control, self._schedule.poke)
        self.keyframe_panel = (KeyframePanel(self.server, options.keyframes, self.submit, 0.5 * self._scale)
                               if options.keyframes is not None else None)
        self._add_training_views()
        self.server.on_client_connect(self._connected)
        self.server.on_client_disconnect(self._disconnected)
        self._stop = threading.Event()
        self._stats_thread = threading.Thread(target=self._stats_loop, name="viewer-stats", daemon=True)
        self._stats_thread.start()

    # --- public -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Where browsers open the viewer (with ``?token=...`` when one is required)."""
        host = self._options.host if self._gate is not None else self.server.get_host()
        shown = "localhost" if host in ("127.0.0.1", "localhost", "0.0.0.0") else host
        if ":" in shown:
            shown = f"[{shown}]"                               # an IPv6 address
        token = f"?token={self._options.token}" if self._gate is not None else ""
        return f"http://{shown}:{self.port}/{token}"

    @property
    def port(self) -> int:
        return self._gate.port if self._gate is not None else self.server.get_port()

    @property
    def client_count(self) -> int:
        """Browsers connected to viser now (behind a gate: only those that offered the token)."""
        return len(self.server.get_clients())

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the render thread at its next :meth:`render_once` (e.g. a video)."""
        self._jobs.put(job)
        self._schedule.poke()

    def render_once(self) -> float:
        """Do the most urgent piece of work: a submitted job, else one frame for one browser.

        Returns:
            Seconds spent (0.0 when there was nothing to do).
        """
        started = time.perf_counter()
        try:
            job = self._jobs.get_nowait()
        except queue.Empty:
            job = None
        if job is not None:
            job()
            return time.perf_counter() - started
        while (frame := self._schedule.next_job()) is not None:
            with self._lock:
                camera = self._cameras.get(frame.client_id)
            client = self.server.get_clients().get(frame.client_id)
            if camera is None or client is None:
                self._schedule.forget(frame.client_id)
                continue
            try:
                self._draw(frame, camera, client)
            except Exception:       # a failed frame must not end a training run: report, go on
                traceback.print_exc()
                self._schedule.done(frame)
                self._last_error = f"the last frame failed: {traceback.format_exc(limit=1).splitlines()[-1]}"
            return time.perf_counter() - started
        return 0.0

    def wait_for_work(self, timeout: float) -> None:
        """Sleep until a browser needs a frame or a job is queued (at most ``timeout`` seconds)."""
        if self._jobs.empty():
            self._schedule.wait(timeout)

    def serve_forever(self) -> None:
        """Draw frames until interrupted (Ctrl-C raises KeyboardInterrupt out of here)."""
        while not self._stop.is_set():
            if self.render_once() == 0.0:
                self.wait_for_work(0.1)

    def close(self) -> None:
        self._stop.set()
        if self._gate is not None:
            self._gate.close()
        self.server.stop()

    # --- browsers -----------------------------------------------------------------------------
    def _connected(self, client: viser.ClientHandle) -> None:
        options = self._options
        if options.initial_view is not None:
            pose, fov = options.initial_view
            position = np.asarray(pose, dtype=np.float64)[:3, 3]
            target = (np.asarray(options.look_at, dtype=np.float64) if options.look_at is not None
                      else position + pose[:3, 2])
            with client.atomic():
                client.camera.fov = float(fov)
                client.camera.position = position
                client.camera.look_at = target
                if options.up is not None:
                    client.camera.up_direction = np.asarray(options.up, dtype=np.float64)

        # A coroutine runs inline on viser's event loop; a plain function would be handed to its
        # thread pool once per camera message (about 30/s per moving browser), a thread wake-up and
        # GIL hand-off each, which training would pay for. The callback only copies the pose.
        async def moved(camera: viser.CameraHandle) -> None:
            self._camera_moved(client.client_id, camera)

        client.camera.on_update(moved)

    def _disconnected(self, client: viser.ClientHandle) -> None:
        with self._lock:
            self._cameras.pop(client.client_id, None)
        self._schedule.forget(client.client_id)

    def _camera_moved(self, client_id: int, camera: viser.CameraHandle) -> None:
        snapshot = _valid_camera(camera)
        if snapshot is None:                 # a broken or hostile client: keep its last good camera
            return
        with self._lock:
            self._cameras[client_id] = snapshot
        self._schedule.invalidate(client_id)

    # --- drawing ------------------------------------------------------------------------------
    def _draw(self, frame: Job, camera: _Camera, client: viser.ClientHandle) -> None:
        settings = self.render_panel.settings()
        width, height = self._frame_size(settings.resolution, frame, camera.aspect)
        request = ViewRequest(camera.camera_to_world, camera.fov_y, width, height, settings.background,
                              settings.crop)
        started = time.perf_counter()
        result = self._render_fn(request)
        per_pixel = (time.perf_counter() - started) / (width * height)
        self._seconds_per_pixel = (per_pixel if self._seconds_per_pixel == 0.0
                                   else 0.7 * self._seconds_per_pixel + 0.3 * per_pixel)
        image = to_display(result, settings.mode)
        depth = None
        if result.depth is not None:
            depth = np.where(np.isfinite(result.depth), result.depth, 1e3).astype(np.float32)
        if self._schedule.is_current(frame) or frame.level == 0:
            client.scene.set_background_image(image, format="jpeg",
                                              jpeg_quality=90 if frame.scale >= 1 else 70, depth=depth)
        self._schedule.done(frame)
        self._last_error = ""
        self.frames_drawn += 1
        self._last_frame = (time.perf_counter() - started, (width, height))

    def _frame_size(self, resolution: int, frame: Job, aspect: float) -> tuple[int, int]:
        """(width, height) of a frame: its level's share of the resolution; the first level also
        within ``moving_frame_seconds`` at the measured cost per pixel (at least 16 px)."""
        long_side = max(8, int(round(resolution * frame.scale)))
        if frame.level == 0:
            long_side = affordable_long_side(long_side, aspect, self._seconds_per_pixel,
                                             self._options.moving_frame_seconds)
        return image_size(aspect, long_side)

    def _add_training_views(self) -> None:
        """Frustums of the training cameras with their thumbnails; a click flies the browser there;
        the render panel's 'Training cameras' box shows or hides them."""
        frustums: list[viser.CameraFrustumHandle] = []

        @self.render_panel.show_cameras.on_update
        def _(_event: viser.GuiEvent) -> None:
            for frustum in frustums:
                frustum.visible = bool(self.render_panel.show_cameras.value)

        for index, view in enumerate(self._options.training_views):
            wxyz, position = matrix_to_pose(view.camera_to_world)
            handle = self.server.scene.add_camera_frustum(
                f"/training_cameras/{index}", fov=view.fov_y, aspect=view.aspect, scale=self._scale,
                thickness=2.0, thickness_units="screen", color=(60, 60, 200), image=view.thumbnail,
                wxyz=wxyz, position=position)
            handle.on_click(lambda event, view=view: self._fly_to(event.client, view))
            frustums.append(handle)

    def _fly_to(self, client: viser.ClientHandle | None, view: TrainingView) -> None:
        if client is None:
            return
        wxyz, position = matrix_to_pose(view.camera_to_world)
        with client.atomic():
            client.camera.fov = view.fov_y
            client.camera.wxyz = wxyz
            client.camera.position = position

    def _stats_loop(self) -> None:
        while not self._stop.wait(STATS_INTERVAL):
            seconds, size = self._last_frame
            paused = self._options.control is not None and self._options.control.paused
            try:
                self.stats_panel.refresh(seconds, size, paused, self._last_error)
            except Exception:      # the server is shutting down; the next round stops
                continue


def _frustum_scale(views: list[TrainingView], crop_box: np.ndarray) -> float:
    """Frustum size in scene units: a tenth of the typical camera spacing or of the box size."""
    if len(views) >= 2:
        centers = np.stack([view.camera_to_world[:3, 3] for view in views])
        spread = float(np.median(np.linalg.norm(centers - centers.mean(0), axis=1)))
        if math.isfinite(spread) and spread > 0:
            return 0.1 * spread
    box = np.asarray(crop_box, dtype=np.float64)
    return 0.1 * float(np.max(box[1] - box[0]))


MAX_ASPECT = 100.0
"""Browser cameras with a wider or taller aspect ratio than this are ignored."""


def _valid_camera(camera: viser.CameraHandle) -> _Camera | None:
    """The camera a client reported, or None when it cannot be drawn (non-finite pose, a zero
    quaternion, a field of view outside (0, pi), a non-positive or absurd image size)."""
    try:
        wxyz = np.asarray(camera.wxyz, dtype=np.float64)
        position = np.asarray(camera.position, dtype=np.float64)
        fov, aspect = float(camera.fov), float(camera.aspect)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if wxyz.shape != (4,) or position.shape != (3,):
        return None
    if not (np.isfinite(wxyz).all() and np.isfinite(position).all() and np.linalg.norm(wxyz) > 1e-6):
        return None
    if not (0.0 < fov < np.pi and 1.0 / MAX_ASPECT <= aspect <= MAX_ASPECT):
        return None
    return _Camera(pose_to_matrix(wxyz, position), fov, aspect)

