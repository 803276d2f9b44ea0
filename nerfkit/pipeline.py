"""Starting, resuming and re-opening runs: the steps the CLI commands share."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import warnings
from pathlib import Path
from typing import Callable, Iterator

import torch

from nerfkit.checkpoints import latest_checkpoint, load_checkpoint
from nerfkit.config import RunConfig
from nerfkit.data.load import load_scene
from nerfkit.data.scene import Scene
from nerfkit.errors import NerfkitError
from nerfkit.methods import build_method
from nerfkit.methods.base import Method
from nerfkit.runs import (list_checkpoints, new_run_dir, read_yaml, resolve_run, write_json_atomic,
                          write_yaml_atomic)
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
    with _checkpoint_fits(run_dir):
        resumed = trainer.resume()
    if not resumed:
        log(f"{run_dir} has no checkpoint yet: starting it from step 0")
    return trainer


def read_run_config(run_dir: Path) -> RunConfig:
    """The run's config.yaml; a run always names the scene it was trained on."""
    path = run_dir / CONFIG_FILE
    config = RunConfig.from_dict(read_yaml(path), str(path))
    if not config.train.scene:
        raise NerfkitError(f"'{path}' names no scene (train: scene: is empty): expected the scene "
                           "folder the run was trained on")
    return config


def open_run(path: Path) -> tuple[RunConfig, Scene, Method, int]:
    """A finished (or running) run ready to render: config, scene, method at its newest checkpoint."""
    run_dir = resolve_run(path)
    config = read_run_config(run_dir)
    _set_threads(config)
    checkpoint = _newest_intact_checkpoint(run_dir)
    scene = load_configured_scene(config)
    _check_same_transform(run_dir, scene)
    # The weights come from the checkpoint: skip the start-up work of a fresh method (e.g. splat's
    # points from the views, seconds per call) that the checkpoint would overwrite anyway.
    info = dataclasses.replace(scene_info(scene), point_sampler=None)
    method = build_method(config.train.method, config.method, info)
    state = load_checkpoint(checkpoint)
    with _checkpoint_fits(run_dir, checkpoint):
        method.load_state_dict(state["method"])
    method.to(resolve_device(config.train.device))
    method.eval()
    return config, scene, method, int(state["step"])


def _newest_intact_checkpoint(run_dir: Path) -> Path:
    """The checkpoint to open, or one sentence saying why there is none."""
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always")
        checkpoint = latest_checkpoint(run_dir)
    for warning in skipped:            # newer damaged checkpoints: say so, once each
        if checkpoint is not None:
            warnings.warn(str(warning.message), stacklevel=3)
    if checkpoint is not None:
        return checkpoint
    listed = list_checkpoints(run_dir)
    if listed:
        reason = (str(skipped[-1].message).removeprefix("Skipping unreadable checkpoint ")
                  if skipped else f"'{listed[-1][1]}' cannot be read")
        reason = reason.split(". ")[0].rstrip(".")        # torch's reasons run on for sentences
        raise NerfkitError(f"run '{run_dir}' has no intact checkpoint: {reason}")
    raise NerfkitError(f"run '{run_dir}' has no checkpoint yet: train it first (nerfkit train)")


@contextlib.contextmanager
def _checkpoint_fits(run_dir: Path, checkpoint: Path | None = None) -> Iterator[None]:
    """Turn a checkpoint that does not fit the run's method into one clear sentence."""
    try:
        yield
    except (RuntimeError, KeyError, ValueError, TypeError) as error:
        what = f"checkpoint '{checkpoint}'" if checkpoint else f"newest checkpoint of '{run_dir}'"
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise NerfkitError(f"the {what} does not fit the run's method as configured in its "
                           f"config.yaml and scene (were they changed after training?): "
                           f"{reason}") from None


def _check_same_transform(run_dir: Path, scene: Scene) -> None:
    path = run_dir / TRANSFORM_FILE
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        raise NerfkitError(f"'{path}' is missing or unreadable: the run folder is incomplete") from None
    try:
        matrix = torch.tensor(saved["world_to_scene"], dtype=torch.float64)
    except (TypeError, KeyError, ValueError, RuntimeError, IndexError):
        matrix = None
    if matrix is None or matrix.shape != (4, 4):
        raise NerfkitError(f"'{path}' holds no 'world_to_scene' 4x4 matrix: the run folder is "
                           "damaged")
    if not torch.allclose(matrix, scene.world_to_scene.double(), rtol=1e-5, atol=1e-6):
        raise NerfkitError(f"the scene at '{scene.root}' changed since run '{run_dir}' was trained "
                           "(its cameras normalise differently)")


def _set_threads(config: RunConfig) -> None:
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
