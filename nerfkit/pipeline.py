"""Starting, resuming and re-opening runs: the steps the CLI commands share."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import torch

from nerfkit.checkpoints import latest_checkpoint, load_checkpoint
from nerfkit.config import RunConfig
from nerfkit.data.load import load_scene
from nerfkit.data.scene import Scene
from nerfkit.errors import NerfkitError
from nerfkit.methods import build_method
from nerfkit.methods.base import Method
from nerfkit.runs import new_run_dir, read_yaml, resolve_run, write_json_atomic, write_yaml_atomic
from nerfkit.train import Trainer, resolve_device, scene_info

CONFIG_FILE = "config.yaml"
TRANSFORM_FILE = "transform.json"


def scene_path(config: RunConfig, log: Callable[[str], None] = print) -> Path:
    """The scene folder to train on: the configured one, or the built-in demo scene."""
    if config.train.scene:
        return Path(config.train.scene)
    from nerfkit.data.demo import ensure_demo_scene
    path = ensure_demo_scene()
    log(f"no scene given: training on the built-in demo scene at {path}")
    return path


def load_configured_scene(config: RunConfig) -> Scene:
    kind = None if config.train.scene_kind == "auto" else config.train.scene_kind
    if kind not in (None, "object", "unbounded"):
        raise NerfkitError(f"scene kind '{config.train.scene_kind}' is not one of auto, object, unbounded")
    return load_scene(config.train.scene, config.train.downscale, config.train.split_every, kind)


def start_run(config: RunConfig, log: Callable[[str], None] = print) -> Trainer:
    """Load the scene, create the run folder with config.yaml and transform.json, build the trainer."""
    config.train.scene = str(scene_path(config, log).resolve())
    _set_threads(config)
    scene = load_configured_scene(config)
    if hasattr(config.method, "resolve"):       # fill in device-dependent defaults, saved concrete
        config.method = config.method.resolve(resolve_device(config.train.device).type)
    run_dir = new_run_dir(Path(config.train.output_dir), scene.name, config.train.method)
    write_yaml_atomic(run_dir / CONFIG_FILE, config.to_dict())
    write_json_atomic(run_dir / TRANSFORM_FILE, {**scene.transform_dict(), "has_alpha": scene.has_alpha,
                                                 "kind": scene.extras.get("kind")})
    log(f"run folder: {run_dir}")
    return Trainer(config, scene, run_dir, None if log is print else log)


def resume_run(path: Path, log: Callable[[str], None] = print) -> Trainer:
    """Re-open a run folder (or its parents: the newest run) and load its newest checkpoint."""
    run_dir = resolve_run(path)
    config = read_run_config(run_dir)
    _set_threads(config)
    scene = load_configured_scene(config)
    _check_same_transform(run_dir, scene)
    trainer = Trainer(config, scene, run_dir, None if log is print else log)
    if not trainer.resume():
        log(f"{run_dir} has no checkpoint yet: starting it from step 0")
    return trainer


def read_run_config(run_dir: Path) -> RunConfig:
    return RunConfig.from_dict(read_yaml(run_dir / CONFIG_FILE), str(run_dir / CONFIG_FILE))


def open_run(path: Path) -> tuple[RunConfig, Scene, Method, int]:
    """A finished (or running) run ready to render: config, scene, method at its newest checkpoint."""
    run_dir = resolve_run(path)
    config = read_run_config(run_dir)
    _set_threads(config)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise NerfkitError(f"run '{run_dir}' has no checkpoint yet: train it first (nerfkit train)")
    scene = load_configured_scene(config)
    _check_same_transform(run_dir, scene)
    # The weights come from the checkpoint: skip the start-up work of a fresh method (e.g. splat's
    # points from the views, seconds per call) that the checkpoint would overwrite anyway.
    info = dataclasses.replace(scene_info(scene), point_sampler=None)
    method = build_method(config.train.method, config.method, info)
    state = load_checkpoint(checkpoint)
    method.load_state_dict(state["method"])
    method.to(resolve_device(config.train.device))
    method.eval()
    return config, scene, method, int(state["step"])


def _check_same_transform(run_dir: Path, scene: Scene) -> None:
    path = run_dir / TRANSFORM_FILE
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        raise NerfkitError(f"'{path}' is missing or unreadable: the run folder is incomplete") from None
    matrix = torch.tensor(saved["world_to_scene"], dtype=torch.float64)
    if not torch.allclose(matrix, scene.world_to_scene.double(), rtol=1e-5, atol=1e-6):
        raise NerfkitError(f"the scene at '{scene.root}' changed since run '{run_dir}' was trained "
                           "(its cameras normalise differently)")


def _set_threads(config: RunConfig) -> None:
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
