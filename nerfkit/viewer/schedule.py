"""When to render what: progressive refinement per browser, and the time budget that keeps
training at speed while a browser watches.

Progressive refinement: every camera (or setting) change starts a new *version* of a client's
view at the coarsest level; after a level is shown and the view has not changed, the next finer
level is due, up to full resolution. While the camera keeps moving only the coarse level is
drawn, so the picture follows the mouse; when it stops, it sharpens.

Render budget (like nerfstudio's train/render ratio): training earns render time in proportion to
the time it trains; a frame may start while the earned credit is positive and its cost is then
charged, so over any long stretch rendering takes at most ``render_fraction`` of the wall time.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from nerfkit.viewer.camera_math import image_size

# Fractions of the chosen resolution drawn one after another for a still camera.
DEFAULT_LEVELS = (0.25, 0.5, 1.0)


@dataclass
class Job:
    """One frame to draw: the client, the view version it belongs to and the refinement level."""

    client_id: int
    version: int
    level: int
    scale: float


class ProgressiveSchedule:
    """Thread-safe bookkeeping of which client needs which level next.

    ``invalidate(client)`` is called from viser's threads on camera / setting changes;
    ``next_job()`` and ``done(job)`` from the thread that renders.
    """

    def __init__(self, levels: tuple[float, ...] = DEFAULT_LEVELS) -> None:
        if not levels or any(not 0 < level <= 1 for level in levels):
            raise ValueError(f"levels must be fractions in (0, 1], got {levels}")
        self.levels = tuple(levels)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._version: dict[int, int] = {}
        self._next_level: dict[int, int] = {}
        self._turn = 0          # round-robin position over clients

    def invalidate(self, client_id: int) -> None:
        """The client's view changed: start again from the coarsest level."""
        with self._lock:
            self._version[client_id] = self._version.get(client_id, 0) + 1
            self._next_level[client_id] = 0
        self._wake.set()

    def invalidate_all(self) -> None:
        with self._lock:
            clients = list(self._version)
        for client_id in clients:
            self.invalidate(client_id)

    def poke(self) -> None:
        """Wake a waiting renderer without changing any view (e.g. a job was queued)."""
        self._wake.set()

    def forget(self, client_id: int) -> None:
        with self._lock:
            self._version.pop(client_id, None)
            self._next_level.pop(client_id, None)

    def next_job(self) -> Job | None:
        """The next frame due (clients served in turn), or None when every view is complete."""
        with self._lock:
            pending = sorted(c for c, level in self._next_level.items() if level < len(self.levels))
            if not pending:
                self._wake.clear()
                return None
            client_id = next((c for c in pending if c > self._turn), pending[0])
            self._turn = client_id
            level = self._next_level[client_id]
            return Job(client_id, self._version[client_id], level, self.levels[level])

    def done(self, job: Job) -> None:
        """``job`` was drawn: its client's next level is due unless the view changed meanwhile."""
        with self._lock:
            if self._version.get(job.client_id) == job.version:
                self._next_level[job.client_id] = job.level + 1

    def is_current(self, job: Job) -> bool:
        with self._lock:
            return self._version.get(job.client_id) == job.version

    def wait(self, timeout: float) -> bool:
        """Block until some view may need work (or ``timeout`` seconds); True if woken."""
        return self._wake.wait(timeout)


class RenderBudget:
    """Limits rendering to ``render_fraction`` of wall time while training runs.

    Args:
        render_fraction: share of the time rendering may take, in (0, 1); 0.1 keeps about 90 %
            of the training speed.
        max_credit: seconds of render time that may be saved up while nobody watches.
    """

    def __init__(self, render_fraction: float = 0.1, max_credit: float = 0.5) -> None:
        if not 0 < render_fraction < 1:
            raise ValueError(f"render_fraction must be in (0, 1), got {render_fraction}")
        self.ratio = render_fraction / (1.0 - render_fraction)   # render seconds per train second
        self.max_credit = max_credit
        self.credit = 0.0

    def trained(self, seconds: float) -> None:
        """Training ran for ``seconds``: earn render time."""
        self.credit = min(self.max_credit, self.credit + seconds * self.ratio)

    def may_render(self) -> bool:
        return self.credit > 0.0

    def rendered(self, seconds: float) -> None:
        """A frame took ``seconds``: pay for it (the credit may go negative: a debt)."""
        self.credit -= seconds


def affordable_long_side(long_side: int, aspect: float, seconds_per_pixel: float, target_seconds: float,
                         smallest: int = 16) -> int:
    """The longer image side (pixels) that renders within ``target_seconds`` at the measured
    ``seconds_per_pixel`` (0: not measured yet), never above ``long_side`` nor below ``smallest``."""
    width, height = image_size(aspect, long_side)
    if seconds_per_pixel <= 0 or width * height * seconds_per_pixel <= target_seconds:
        return long_side
    shrink = math.sqrt(target_seconds / (seconds_per_pixel * width * height))
    return max(min(smallest, long_side), int(long_side * shrink))
