"""The viewer's side panel: render settings, crop box, training controls and live stats.

Each panel owns its viser GUI handles; the render thread reads settings through
:meth:`RenderPanel.settings`, which copies the values out (viser updates them from its own thread).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import viser

from nerfkit.viewer.types import StatsSource, TrainingControl


@dataclass(frozen=True)
class RenderSettings:
    """A snapshot of the render panel.

    Attributes:
        mode: one of the offered render modes.
        resolution: longer image side in pixels at full refinement.
        background: (3,) RGB in [0, 1].
        crop: (box_min, box_max) in scene coordinates, or None when cropping is off.
    """

    mode: str
    resolution: int
    background: tuple[float, float, float]
    crop: tuple[tuple[float, float, float], tuple[float, float, float]] | None


class RenderPanel:
    """Render mode, resolution, background colour and crop box; ``on_change`` runs on any edit."""

    def __init__(self, server: viser.ViserServer, modes: tuple[str, ...], resolution: int,
                 crop_box: np.ndarray, on_change: Callable[[], None]) -> None:
        """crop_box: (2, 3) float default box (min, max) in scene coordinates."""
        gui = server.gui
        self._server = server
        with gui.add_folder("Render"):
            self.mode = gui.add_dropdown("Mode", modes, initial_value=modes[0])
            self.resolution = gui.add_slider("Resolution (px)", min=32, max=2048, step=16,
                                             initial_value=int(resolution))
            self.background = gui.add_rgb("Background", (255, 255, 255))
            self.show_cameras = gui.add_checkbox("Training cameras", initial_value=True)
        box = np.asarray(crop_box, dtype=np.float64)
        margin = 0.5 * float(np.max(box[1] - box[0]))
        with gui.add_folder("Crop box", expand_by_default=False):
            self.crop_on = gui.add_checkbox("Crop", initial_value=False)
            step = 10 ** math.floor(math.log10(max(margin, 1e-6)) - 1)
            self.crop_min = gui.add_vector3("Min", tuple(box[0]), min=tuple(box[0] - margin),
                                            max=tuple(box[1] + margin), step=step)
            self.crop_max = gui.add_vector3("Max", tuple(box[1]), min=tuple(box[0] - margin),
                                            max=tuple(box[1] + margin), step=step)
        self._box_lines: viser.LineSegmentsHandle | None = None
        for handle in (self.mode, self.resolution, self.background, self.crop_on, self.crop_min,
                       self.crop_max):
            handle.on_update(lambda _event: self._changed(on_change))
        self._draw_box()

    def settings(self) -> RenderSettings:
        rgb = tuple(float(c) / 255.0 for c in self.background.value)
        crop = None
        if self.crop_on.value:
            low, high = np.asarray(self.crop_min.value), np.asarray(self.crop_max.value)
            crop = (tuple(np.minimum(low, high).tolist()), tuple(np.maximum(low, high).tolist()))
        return RenderSettings(str(self.mode.value), int(self.resolution.value), rgb, crop)  # type: ignore[arg-type]

    def _changed(self, on_change: Callable[[], None]) -> None:
        self._draw_box()
        on_change()

    def _draw_box(self) -> None:
        """Show the crop box as 12 wireframe edges while cropping is on."""
        crop = self.settings().crop
        if crop is None:
            if self._box_lines is not None:
                self._box_lines.visible = False
            return
        self._box_lines = self._server.scene.add_line_segments(
            "/crop_box", box_edges(np.array(crop[0]), np.array(crop[1])), (255, 140, 0),
            thickness=2.0, thickness_units="screen")


def box_edges(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """(3,) corners -> (12, 2, 3) float32 edges of the axis-aligned box."""
    corners = np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1])
                        for z in (low[2], high[2])], dtype=np.float32)
    pairs = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
    return np.stack([corners[[a, b]] for a, b in pairs])


class StatsPanel:
    """Step, loss, PSNR, rays/s of training and the viewer's own frame rate, as markdown."""

    def __init__(self, server: viser.ViserServer, stats: StatsSource, training: bool) -> None:
        self._stats, self._training = stats, training
        with server.gui.add_folder("Stats"):
            self.text = server.gui.add_markdown("waiting for the first step")

    def refresh(self, frame_seconds: float, frame_size: tuple[int, int] | None, paused: bool,
                error: str = "") -> None:
        """Rewrite the panel from the stats object and the last frame's cost."""
        stats = self._stats
        state = "paused" if paused else ("training" if self._training else "finished run")
        lines = [f"**{state}**, step {int(getattr(stats, 'step', 0)):,}"]
        if self._training:
            lines += [(f"loss {_number(getattr(stats, 'loss', math.nan), '.5f')}, "
                       f"PSNR {_number(getattr(stats, 'psnr', math.nan), '.2f')} dB"),
                      f"{_number(getattr(stats, 'rays_per_second', math.nan), ',.0f')} rays/s"]
        extra = getattr(stats, "extra", None) or {}
        lines += [f"{key} {value:,}" for key, value in extra.items() if isinstance(value, (int, float))]
        if frame_size is not None and frame_seconds > 0:
            lines.append(f"viewer: {frame_size[0]}x{frame_size[1]} px in {frame_seconds * 1000:.0f} ms "
                         f"({1.0 / frame_seconds:.1f} fps)")
        if error:
            lines.append(f"**{error}**")
        content = "  \n".join(lines)
        if content != self.text.content:          # no message when nothing changed
            self.text.content = content


def _number(value: float, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) and math.isfinite(value) else "-"


class TrainingPanel:
    """Pause / resume training."""

    def __init__(self, server: viser.ViserServer, control: TrainingControl,
                 on_change: Callable[[], None]) -> None:
        self._control = control
        with server.gui.add_folder("Training"):
            self.button = server.gui.add_button("Pause training")

        @self.button.on_click
        def _(_event: viser.GuiEvent) -> None:
            if control.paused:
                control.resume()
            else:
                control.pause()
            self.button.label = "Resume training" if control.paused else "Pause training"
            on_change()
