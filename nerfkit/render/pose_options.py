"""Options of pose refinement (:mod:`nerfkit.render.pose_refine`), shared by every method (plain
settings, no torch). The names are the flat keys of presets and ``--set``
(see :mod:`nerfkit.core.settings`); the trainer's settings hold them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nerfkit.core.errors import NerfkitError
from nerfkit.core.settings import Settings


@dataclass
class PoseRefineOptions(Settings):
    """Per-camera SE(3) corrections of the training poses, trained with the scene.

    Off by default: good COLMAP poses are usually better than what a short run makes of them, and
    every camera that can move lets the whole scene drift a little (nothing pins the world frame).

    Attributes:
        pose_refine: ``on`` trains a rotation and a translation per training camera.
        pose_lr: Adam's learning rate of the corrections (radians and scene units per step, roughly),
            reached after the warm-up, then decaying exponentially to ``pose_lr_final`` at the end.
        pose_warmup: fraction of the run over which the rate ramps up linearly from 0 (the scene
            is a blur at first: its gradients would push the cameras anywhere).
    """

    pose_refine: Literal["off", "on"] = "off"
    pose_lr: float = 1e-3
    pose_lr_final: float = 1e-4
    pose_warmup: float = 0.1

    def validate(self) -> None:
        if not (self.pose_lr > 0 and self.pose_lr_final > 0):
            raise NerfkitError(f"pose_lr and pose_lr_final must be > 0, got {self.pose_lr} and {self.pose_lr_final}")
        if not 0 <= self.pose_warmup < 1:
            raise NerfkitError(f"pose_warmup must be a fraction of the run in [0, 1), got {self.pose_warmup}")

    @property
    def enabled(self) -> bool:
        return self.pose_refine == "on"

    def lr_factor(self, progress: float) -> float:
        """Multiplier of ``pose_lr`` at ``progress`` (fraction of the run, 0..1): a linear ramp from 0
        over ``pose_warmup``, times an exponential decay reaching ``pose_lr_final / pose_lr`` at 1."""
        progress = min(max(progress, 0.0), 1.0)
        ramp = min(1.0, progress / self.pose_warmup) if self.pose_warmup > 0 else 1.0
        return ramp * (self.pose_lr_final / self.pose_lr) ** progress
