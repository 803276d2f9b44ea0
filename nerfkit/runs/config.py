"""A run's configuration: the trainer's settings, the method's settings, and where they come from.

A run is configured by a preset (``configs/<name>.yaml`` or a path), then command-line flags, then
``--set KEY=VALUE`` items, in that order. A preset and ``config.yaml`` are the same flat YAML mapping
``{train: {...}, method: {...}}`` whose keys are the flat setting names of :class:`TrainConfig` and
of the method's settings class (:mod:`nerfkit.methods.registry`). Unknown keys and wrongly typed
values are user errors with one sentence that names the source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import torch
import yaml

from nerfkit.core.errors import NerfkitError
from nerfkit.core.settings import (Settings, apply_overrides, auto_field, fill_absent, flat_dict, is_auto,
                                   setting_names)
from nerfkit.data.appearance import resolve_appearance_mode
from nerfkit.methods.ngp_config import NGPConfig
from nerfkit.methods.registry import method_spec
from nerfkit.render.pose_options import PoseRefineOptions

if TYPE_CHECKING:
    from nerfkit.data.scene import Scene

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs"
DEMO_SECONDS = 120.0       # training time on the built-in demo scene unless a limit is given


@dataclass
class TrainConfig(Settings):
    """What the trainer does, independent of the method.

    Attributes:
        scene: the scene folder ("" = the built-in demo scene).
        method: a name from :data:`nerfkit.methods.registry.METHODS`.
        output_dir: root of the run folders.
        max_steps, max_time: stop after this many steps or seconds of training (0 s = no limit).
        eval_every: steps between quick evals on one held-out image (0 = off).
        checkpoint_every, checkpoint_seconds: a checkpoint every this many steps or seconds.
        downscale: image downscale factor on load.
        split_every: every Nth image is a test image when the format has no splits.
        scene_kind: normalise as an ``object`` (a box) or ``unbounded`` (contracted space).
        masks: the scene's masks (a ``masks/`` folder, one grey image per photo, or ``mask_path``
            in a ``transforms.json``): ``ignore``: their 0 pixels are neither trained on nor scored;
            ``alpha``: they become the images' alpha channel, so a capture trains as an object on a
            transparent background (``auto`` scene kind: object); ``off``: not read; ``auto``:
            ``ignore`` when the scene has masks, else ``off``.
        triangulate: a COLMAP or ``transforms.json`` scene with poses but no sparse points (and no
            alpha, whose silhouettes give start points already) gets points triangulated from
            its photos with the known poses (:mod:`nerfkit.ingest.triangulate`, cached once per
            scene), which splat starts its Gaussians at: ``auto``; ``off``: never.
        eval_background: behind RGBA test images.
        seed: randomness; threads: torch CPU threads (0 = all cores).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        on_nan: a NaN/inf loss or parameter ``stop``s the run or ``rollback``s to the last good
            checkpoint and goes on.
        logger: training logs in the run folder (:mod:`nerfkit.runs.loggers`): ``auto``
            (tensorboard when installed, else jsonl), ``tensorboard``, ``jsonl`` or ``none``.
        log_every: steps between logged training scalars.
        images_per_step: images in one step of a method that trains on whole images (splat), split
            among the processes of the run; ``auto``: one per process. Their gradients are averaged.
        poses: pose refinement of the training cameras for every method (``pose_refine``,
            ``pose_lr``, ``pose_lr_final``, ``pose_warmup``; :class:`PoseRefineOptions`).
    """

    scene: str = ""
    method: str = "ngp"
    output_dir: str = "outputs"
    max_steps: int = 20000
    max_time: float = 0.0
    eval_every: int = 0
    checkpoint_every: int = 1000
    checkpoint_seconds: float = 120.0
    downscale: float = 1.0
    split_every: int = 8
    scene_kind: Literal["auto", "object", "unbounded"] = "auto"
    masks: Literal["auto", "off", "ignore", "alpha"] = "auto"
    triangulate: Literal["auto", "off"] = "auto"
    eval_background: Literal["white", "black"] = "white"
    seed: int = 0
    threads: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    on_nan: Literal["stop", "rollback"] = "stop"
    logger: Literal["auto", "tensorboard", "jsonl", "none"] = "auto"
    log_every: int = 10
    images_per_step: int | Literal["auto"] = auto_field()
    poses: PoseRefineOptions = field(default_factory=PoseRefineOptions)

    def validate(self) -> None:
        method_spec(self.method)
        checks = [
            (self.max_steps >= 1, f"--max-steps must be at least 1, got {self.max_steps}"),
            (self.max_time >= 0, f"--max-time must be >= 0 seconds, got {self.max_time}"),
            (self.checkpoint_every >= 1, f"--checkpoint-every must be at least 1, got {self.checkpoint_every}"),
            (self.eval_every >= 0, f"--eval-every must be >= 0, got {self.eval_every}"),
            (self.threads >= 0, f"--threads must be >= 0, got {self.threads}"),
            (self.log_every >= 1, f"log_every must be at least 1, got {self.log_every}"),
            (is_auto(self.images_per_step) or self.images_per_step >= 1,
             f"images_per_step must be auto or at least 1, got {self.images_per_step}"),
        ]
        for ok, message in checks:
            if not ok:
                raise NerfkitError(message)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu`` / ``cuda`` as asked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise NerfkitError(f"device must be auto, cpu or cuda, got '{name}'")
    if name == "cuda" and not torch.cuda.is_available():
        raise NerfkitError("device 'cuda' was asked for but torch sees no CUDA GPU on this machine")
    return torch.device(name)


@dataclass
class RunConfig:
    """Everything a run was started with; saved as ``config.yaml`` in the run folder."""

    train: TrainConfig = field(default_factory=TrainConfig)
    method: Any = field(default_factory=NGPConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {"train": flat_dict(self.train), "method": flat_dict(self.method)}

    @staticmethod
    def from_dict(data: Mapping[str, Any], source: str, saved_run: bool = False) -> "RunConfig":
        """Read ``{train: {...}, method: {...}}`` (a ``config.yaml`` or merged settings);
        ``saved_run``: a run's ``config.yaml``, whose missing settings predate it (``fill_absent``)."""
        for section in ("train", "method"):
            if not isinstance(data.get(section, {}), dict):
                raise NerfkitError(f"{source}: '{section}' must be a mapping of settings, got "
                                   f"{type(data[section]).__name__}")
        train = apply_overrides(TrainConfig(), data.get("train", {}), source)
        defaults = method_spec(train.method).config()
        values = data.get("method", {})
        if saved_run:
            values = fill_absent(type(defaults), values)
        return RunConfig(train, apply_overrides(defaults, values, source))

    def resolved(self, scene: Scene | None = None) -> "RunConfig":
        """The same run with the method's device-dependent ``auto`` values filled in, and with a
        ``scene``, the ones that depend on it (its kind: ``Settings.resolve_scene``; ``appearance``:
        :func:`nerfkit.data.appearance.resolve_appearance_mode`)."""
        method = self.method.resolve(resolve_device(self.train.device).type)
        if scene is not None:
            method = method.resolve_scene(scene.unbounded)
        if scene is not None and "appearance" in setting_names(type(method)):
            method = method.updated(appearance=resolve_appearance_mode(flat_dict(method)["appearance"], scene))
        return RunConfig(self.train, method)


def load_preset(name_or_path: str) -> dict[str, dict[str, Any]]:
    """Read a preset by name (``configs/<name>.yaml``) or path; returns ``{train: .., method: ..}``."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise NerfkitError(f"config '{name_or_path}' not found: expected a YAML file or one of {known}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise NerfkitError(f"config '{path}' is not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict) or not set(data) <= {"train", "method"}:
        raise NerfkitError(f"config '{path}' must be a mapping with the sections 'train' and 'method'")
    return {"train": dict(data.get("train") or {}), "method": dict(data.get("method") or {})}


def merge_settings(preset: str | None, train: Mapping[str, Any], items: Sequence[str]) -> RunConfig:
    """A run's configuration from a preset, then trainer settings (the flags), then ``KEY=VALUE``
    items (``--set``), each key routed to the method's or the trainer's settings.

    Without a scene (the built-in demo) and without a step or time limit, the run trains for
    :data:`DEMO_SECONDS`.
    """
    values = load_preset(preset) if preset else {"train": {}, "method": {}}
    values["train"].update(train)
    if not values["train"].get("scene") and "max_time" not in values["train"] \
            and "max_steps" not in values["train"]:
        values["train"]["max_time"] = DEMO_SECONDS          # the demo finishes in a few minutes
    method_name = values["train"].get("method", TrainConfig.method)
    method_fields = set(setting_names(method_spec(str(method_name)).config))
    train_fields = set(setting_names(TrainConfig))
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise NerfkitError(f"--set expects KEY=VALUE, got '{item}'")
        if key in method_fields:
            values["method"][key] = value
        elif key in train_fields:
            values["train"][key] = value
        else:
            raise NerfkitError(f"--set: unknown setting '{key}'; see 'nerfkit train --help' and "
                               f"the fields of the method's config")
    return RunConfig.from_dict(values, "command line")


__all__ = ["DEMO_SECONDS", "PRESET_DIR", "RunConfig", "TrainConfig", "load_preset", "merge_settings",
           "resolve_device"]
