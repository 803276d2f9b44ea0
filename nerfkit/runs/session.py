"""Starting, resuming and re-opening runs: the steps the commands share.

- :func:`start_run`: load the scene (with triangulated points where it has none:
  :mod:`nerfkit.runs.sparse_points`), create the run folder with ``config.yaml`` and
  ``transform.json``, build the trainer.
- :func:`resume_run`: re-open a run folder and load its newest checkpoint into a trainer.
- :func:`open_run`: a finished (or running) run ready to render, evaluate or export: its
  configuration, scene and method at the newest intact checkpoint (the training cameras with the
  poses the run refined, when it did: :func:`refine_training_cameras`).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import torch

from nerfkit.core.errors import NerfkitError
from nerfkit.core.files import read_yaml, write_json_atomic, write_yaml_atomic
from nerfkit.core.settings import flat_dict
from nerfkit.data.inputs import SceneInfo
from nerfkit.data.lens import refuse_fisheye
from nerfkit.data.load import load_scene
from nerfkit.data.scene import Scene
from nerfkit.methods.base import Method
from nerfkit.methods.registry import build_method, method_spec
from nerfkit.render.pose_refine import PoseRefinement
from nerfkit.runs.checkpoints import latest_checkpoint, load_checkpoint
from nerfkit.runs.config import RunConfig, resolve_device
from nerfkit.runs.folder import RunFolder
from nerfkit.runs.parallel import ProcessShare
from nerfkit.runs.sparse_points import with_triangulated_points
from nerfkit.runs.trainer import Trainer

Log = Callable[[str], None]


class OpenedRun(NamedTuple):
    """A run re-opened from its folder (:func:`open_run`)."""

    config: RunConfig
    scene: Scene
    method: Method
    step: int


def scene_path(config: RunConfig, log: Log | None = None) -> Path:
    """The scene folder to train on: the configured one, or the built-in demo scene."""
    if config.train.scene:
        return Path(config.train.scene)
    from nerfkit.data.demo import ensure_demo_scene
    path = ensure_demo_scene()
    (log or _silent)(f"no scene given: training on the built-in demo scene at {path}")
    return path


def load_configured_scene(config: RunConfig) -> Scene:
    """The run's scene, loaded as its trainer settings say (downscale, split, kind, masks)."""
    kind = None if config.train.scene_kind == "auto" else config.train.scene_kind
    return load_scene(config.train.scene, config.train.downscale, config.train.split_every, kind,
                      config.train.masks)


def start_run(config: RunConfig, log: Log | None = None, processes: ProcessShare | None = None) -> Trainer:
    """Load the scene, create the run folder with config.yaml and transform.json, build the trainer.

    The method's ``auto`` settings that depend on the device or the scene (``appearance``) are
    filled in first, so ``config.yaml`` records what the run actually used. ``log`` receives one
    line per event (None: silent). ``processes``: the main process's share of a multi-process run
    (:func:`nerfkit.runs.distributed.open_trainer`); the run trains on the processes' device.
    """
    config.train.scene = str(scene_path(config, log).resolve())
    _train_where(config, processes)
    set_threads(config)
    scene = load_configured_scene(config)
    check_lenses(config.train.method, scene)
    scene = with_triangulated_points(scene, config.train.triangulate, config.train.threads, log)
    asked = flat_dict(config.method).get("appearance")
    config.method = config.resolved(scene).method
    if asked == "auto" and flat_dict(config.method)["appearance"] == "on":
        (log or _silent)("appearance: on (a colour correction per training photo: their exposures differ; "
                         "--set appearance=off to train without)")
    run = RunFolder.create(Path(config.train.output_dir), scene.name, config.train.method)
    write_yaml_atomic(run.config_file, config.to_dict())
    write_json_atomic(run.transform_file, {**scene.transform_dict(), "has_alpha": scene.has_alpha,
                                           "kind": scene.extras.get("kind")})
    (log or _silent)(f"run folder: {run.path}")
    return Trainer(config, scene, run, log, processes)


def resume_run(path: Path, log: Log | None = None, processes: ProcessShare | None = None) -> Trainer:
    """Re-open a run folder (or its parents: the newest run) and load its newest checkpoint
    (``processes`` as for :func:`start_run`; a run may go on with another number of processes)."""
    run = RunFolder.find(path)
    config = read_run_config(run)
    _train_where(config, processes)
    set_threads(config)
    scene = load_configured_scene(config)
    _check_same_transform(run, scene)
    check_lenses(config.train.method, scene)
    trainer = Trainer(config, scene, run, log, processes)
    with _checkpoint_fits(run):
        resumed = trainer.resume()
    if not resumed:
        (log or _silent)(f"{run.path} has no checkpoint yet: starting it from step 0")
    return trainer


def check_lenses(method: str, scene: Scene) -> None:
    """One sentence, before any run folder or training, when ``method`` renders through pinholes
    only (:class:`~nerfkit.methods.capabilities.RendersPinholeOnly`, e.g. splat) and ``scene`` has
    fisheye cameras, which no pinhole image can hold."""
    if getattr(method_spec(method).load(), "pinhole_only", False):
        refuse_fisheye(scene.cameras, method)


def read_run_config(run: RunFolder | Path) -> RunConfig:
    """The run's config.yaml; a run always names the scene it was trained on."""
    path = RunFolder(run).config_file
    config = RunConfig.from_dict(read_yaml(path), str(path), saved_run=True)
    if not config.train.scene:
        raise NerfkitError(f"'{path}' names no scene (train: scene: is empty): expected the scene "
                           "folder the run was trained on")
    return config


def open_run(path: Path | RunFolder) -> OpenedRun:
    """A finished (or running) run ready to render: config, scene, method at its newest checkpoint.

    ``path`` may be a run folder or a folder above runs (its newest run).
    """
    run = RunFolder.find(Path(path))
    config = read_run_config(run)
    set_threads(config)
    checkpoint = _newest_intact_checkpoint(run)
    scene = load_configured_scene(config)
    _check_same_transform(run, scene)
    # The weights come from the checkpoint: skip the start-up work of a fresh method (e.g. splat's
    # points from the views, seconds per call) that the checkpoint would overwrite anyway.
    method = build_method(config.train.method, config.method, SceneInfo.from_scene(scene, with_point_sampler=False))
    state = load_checkpoint(checkpoint)
    with _checkpoint_fits(run, checkpoint):
        method.load_state_dict(state["method"])
        refine_training_cameras(config, scene, state)
    method.to(resolve_device(config.train.device))
    method.eval()
    return OpenedRun(config, scene, method, int(state["step"]))


def open_run_scene(path: Path | RunFolder) -> tuple[RunConfig, Scene, int]:
    """A run's configuration, its scene and the step of its newest intact checkpoint, the training
    cameras refined as :func:`open_run` gives them, without building the method (e.g. to export
    the cameras)."""
    run = RunFolder.find(Path(path))
    config = read_run_config(run)
    checkpoint = _newest_intact_checkpoint(run)
    scene = load_configured_scene(config)
    _check_same_transform(run, scene)
    state = load_checkpoint(checkpoint)
    with _checkpoint_fits(run, checkpoint):
        refine_training_cameras(config, scene, state)
    return config, scene, int(state["step"])


def refine_training_cameras(config: RunConfig, scene: Scene, state: dict) -> bool:
    """Give ``scene``'s training cameras the poses a run refined (``pose_refine=on``), so that
    whatever renders them after training (exports, ``render --split train``, the viewer) sees what
    the run learned; held-out cameras keep their poses. Sets ``scene.extras["refined_poses"]``.

    Returns:
        True when the poses were refined; False for a run without pose refinement (or a checkpoint
        written before it existed), whose cameras are left as loaded.
    """
    scene.extras["refined_poses"] = False
    if not config.train.poses.enabled or "poses" not in state:
        return False
    poses = PoseRefinement.for_scene(scene)
    poses.load_state_dict(state["poses"])
    ids = scene.split("train")
    if poses.image_ids.tolist() != list(ids):
        raise ValueError(f"its refined poses are of images {poses.image_ids.tolist()[:8]}, the scene's training "
                         f"images are {list(ids)[:8]}")
    with torch.no_grad():
        scene.cameras.c2w[ids] = poses.refined_c2w().to(scene.cameras.c2w)
    scene.extras["refined_poses"] = True
    return True


def _newest_intact_checkpoint(run: RunFolder) -> Path:
    """The checkpoint to open, or one sentence saying why there is none."""
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always")
        checkpoint = latest_checkpoint(run)
    for warning in skipped:            # newer damaged checkpoints: say so, once each
        if checkpoint is not None:
            warnings.warn(str(warning.message), stacklevel=3)
    if checkpoint is not None:
        return checkpoint
    listed = run.checkpoints()
    if listed:
        reason = (str(skipped[-1].message).removeprefix("Skipping unreadable checkpoint ")
                  if skipped else f"'{listed[-1][1]}' cannot be read")
        reason = reason.split(". ")[0].rstrip(".")        # torch's reasons run on for sentences
        raise NerfkitError(f"run '{run.path}' has no intact checkpoint: {reason}")
    raise NerfkitError(f"run '{run.path}' has no checkpoint yet: train it first (nerfkit train)")


@contextlib.contextmanager
def _checkpoint_fits(run: RunFolder, checkpoint: Path | None = None) -> Iterator[None]:
    """Turn a checkpoint that does not fit the run's method into one clear sentence."""
    try:
        yield
    except (RuntimeError, KeyError, ValueError, TypeError) as error:
        what = f"checkpoint '{checkpoint}'" if checkpoint else f"newest checkpoint of '{run.path}'"
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise NerfkitError(f"the {what} does not fit the run's method as configured in its "
                           f"config.yaml and scene (were they changed after training?): "
                           f"{reason}") from None


def _check_same_transform(run: RunFolder, scene: Scene) -> None:
    path = run.transform_file
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
        raise NerfkitError(f"the scene at '{scene.root}' changed since run '{run.path}' was trained "
                           "(its cameras normalise differently)")


def set_threads(config: RunConfig) -> None:
    """torch's CPU threads as the run asks (0: as they are: all cores, or a process's share)."""
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)


def _train_where(config: RunConfig, processes: ProcessShare | None) -> None:
    """A multi-process run trains on its processes' device (``cuda`` on one GPU each, or ``cpu``)."""
    if processes is not None and processes.world > 1:
        config.train.device = processes.device.type


def _silent(line: str) -> None:
    return None
