"""One Trainer for all methods: steps, schedules, checkpoints, evaluation, progress.

A run folder ``<output>/<scene>/<method>/<timestamp>/`` holds ``config.yaml``, ``transform.json``,
``checkpoints/step-NNNNNNN.pt`` (atomic), ``metrics.json`` and ``renders/``. Training stops at
``max_steps`` or after ``max_time`` seconds of training (evaluation time excluded); a killed run
resumes from its newest intact checkpoint with the same step, time, optimizer and random state.

With ``pose_refine=on`` the trainer also trains a correction of each training camera's pose
(:mod:`nerfkit.render.pose_refine`): each batch is moved by its cameras' corrections before the
method's ``train_step`` sees it, and the corrections are one more optimizer group (``poses``) with
their own schedule, saved in the checkpoint as ``poses``.

A run on several processes gives the trainer a :class:`~nerfkit.runs.parallel.ProcessShare`: each
step then trains on this process's share of the batch and joins the others' gradients, and only the
main process writes checkpoints and metrics and evaluates.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from nerfkit.core.errors import NerfkitError
from nerfkit.core.files import write_json_atomic
from nerfkit.data.inputs import SceneInfo
from nerfkit.data.sampler import make_sampler
from nerfkit.data.scene import Scene
from nerfkit.image.metrics import psnr_from_mse
from nerfkit.methods.base import Method
from nerfkit.methods.registry import build_method
from nerfkit.render.pose_refine import POSE_GROUP, PoseRefinement
from nerfkit.runs.checkpoints import (
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from nerfkit.runs.config import RunConfig, resolve_device
from nerfkit.runs.evaluate import evaluate_split
from nerfkit.runs.folder import RunFolder
from nerfkit.runs.guard import (
    MAX_ROLLBACKS,
    NonFinite,
    check_loss,
    check_parameters,
    diverged_message,
    is_out_of_memory,
    out_of_memory_message,
)
from nerfkit.runs.loggers import TrainingLogger, open_training_logger
from nerfkit.runs.parallel import ProcessLost, ProcessShare


@dataclass
class TrainStats:
    """Live statistics (also what the viewer shows)."""

    step: int = 0
    loss: float = float("nan")
    psnr: float = float("nan")
    rays_per_second: float = 0.0
    train_seconds: float = 0.0
    rays_seen: int = 0
    eval_psnr: float = float("nan")
    extra: dict[str, float] = field(default_factory=dict)   # method-specific numbers (e.g. gaussians)
    history: list[dict[str, float]] = field(default_factory=list)


class Trainer:
    """Trains ``method`` on ``scene``, writing into ``run_dir``.

    Args:
        config: the run's configuration.
        scene: the loaded scene.
        run: an existing run folder (``config.yaml`` and ``transform.json`` already written).
        log: called with one line of text for events (checkpoints, evals); None: silent.
        processes: this process's share of a multi-process run (None: a single process).
    """

    def __init__(self, config: RunConfig, scene: Scene, run: RunFolder | Path,
                 log: Callable[[str], None] | None = None, processes: ProcessShare | None = None) -> None:
        self.config, self.scene, self.run = config, scene, RunFolder(run)
        self.processes = processes or ProcessShare()
        self.log = log or (lambda line: None)
        torch.manual_seed(config.train.seed)
        self.device = resolve_device(config.train.device)
        self.method: Method = build_method(config.train.method, config.method, SceneInfo.from_scene(scene))
        self.method.to(self.device)
        groups = self.method.param_groups()
        # Pose refinement: the training cameras' corrections, trained beside the method's parameters
        # with their own group and schedule; each batch is corrected before train_step sees it.
        self.poses = self._pose_refinement(config, scene)
        self.trained: nn.Module = self.method if self.poses is None else nn.ModuleDict(
            {"method": self.method, "poses": self.poses})
        if self.poses is not None:
            groups.append(self.poses.param_group(config.train.poses.pose_lr))
        self.base_lrs = [group["lr"] for group in groups]
        self.optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99))   # groups may set their own
        # Random backgrounds for every scene by default (as instant-ngp): RGBA targets are composited
        # on them, and RGB scenes learn to be opaque, so the eval background cannot show through.
        self.sampler = make_sampler(scene, scene.split("train"), self.method.batch_request(0),
                                    seed=config.train.seed)
        self.processes.check(self.method.batch_request(0), config.train.images_per_step)
        self.method.distribute(self.processes)
        self.stats = TrainStats()
        self.after_step: Callable[[], None] | None = None   # e.g. the live viewer's turn to draw
        self.on_nan = config.train.on_nan
        self.rollbacks: dict[Path, int] = {}                 # checkpoint -> times rolled back to it
        # Logs and training.png (opened by train(); set one beforehand to log elsewhere or not at all).
        self.logger: TrainingLogger | None = None

    @property
    def run_dir(self) -> Path:
        return self.run.path

    def _pose_refinement(self, config: RunConfig, scene: Scene) -> PoseRefinement | None:
        if not config.train.poses.enabled:
            return None
        return PoseRefinement.for_scene(scene).to(self.device)

    # --- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"step": self.stats.step, "train_seconds": self.stats.train_seconds,
                "rays_seen": self.stats.rays_seen, "method": self.method.state_dict(),
                "optimizer": self.optimizer.state_dict(), "rng": capture_rng_state(),
                "sampler_rng": self.sampler.generator.get_state(), "method_name": self.method.name,
                **({} if self.poses is None else {"poses": self.poses.state_dict()})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state["method"])
        if self.poses is not None and "poses" in state:
            self.poses.load_state_dict(state["poses"])
        self.optimizer.load_state_dict(state["optimizer"])   # moves its state to the params' device
        restore_rng_state(state["rng"])
        self.sampler.generator.set_state(state["sampler_rng"])
        self.stats.step = int(state["step"])
        self.stats.train_seconds = float(state["train_seconds"])
        self.stats.rays_seen = int(state.get("rays_seen", 0))

    def resume(self) -> bool:
        """Load the newest intact checkpoint of the run folder; False when there is none."""
        path = latest_checkpoint(self.run_dir)
        if path is None:
            return False
        self.load_state_dict(load_checkpoint(path))
        self.log(f"resumed from {path} (step {self.stats.step}, {self.stats.train_seconds:.0f} s trained)")
        return True

    def save(self) -> Path | None:
        """Write a checkpoint (the main process only; the others return None)."""
        if not self.processes.is_main:
            return None
        return save_checkpoint(self.run_dir, self.stats.step, self.state_dict())

    # --- loop ---------------------------------------------------------------------------------
    def progress(self) -> float:
        """Fraction of the run done, by steps or by time, whichever is further."""
        train = self.config.train
        by_steps = self.stats.step / max(train.max_steps, 1)
        by_time = self.stats.train_seconds / train.max_time if train.max_time > 0 else 0.0
        return min(1.0, max(by_steps, by_time))

    def done(self) -> bool:
        return self.progress() >= 1.0

    def step(self) -> dict[str, Any]:
        """One optimisation step; returns the method's outputs (over all processes of the run)."""
        step, progress = self.stats.step, self.progress()
        start = time.perf_counter()
        self.method.before_step(step, progress)
        self._set_learning_rates(step, progress)
        self.optimizer.zero_grad(set_to_none=True)
        part = self.processes.step_part(self.sampler, self.method.batch_request(step),
                                        self.config.train.images_per_step)
        outs = []
        for batch in part.batches:                       # one, unless a step has several images
            batch = batch.to(self.device)
            if self.poses is not None:
                batch = self.poses.apply(batch)
            with self.processes.own_randomness(self.config.train.seed, step):
                out = self.method.train_step(batch, step, progress)
            out["loss"].backward()
            outs.append(out)
        out = self.processes.combine(self.trained, outs, part.weight)  # and the gradients likewise
        check_loss(out["loss"], step + 1)                  # NaN/inf: caught within the step
        self.method.after_backward(step, self.optimizer)
        self.optimizer.step()
        check_parameters(self.trained, step + 1)
        elapsed = self.processes.end_step(time.perf_counter() - start)
        self._record(out, elapsed)
        return out

    def _set_learning_rates(self, step: int, progress: float) -> None:
        """Each group's rate at this step: the method's schedule, the pose group's own."""
        factor = self.method.lr_factor(step, progress)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            name = group.get("name", "")
            if name == POSE_GROUP and self.poses is not None:
                group["lr"] = base * self.config.train.poses.lr_factor(progress)
            else:
                group["lr"] = base * (factor.get(name, 1.0) if isinstance(factor, dict) else factor)

    def _record(self, out: dict[str, Any], elapsed: float) -> None:
        stats = self.stats
        stats.step += 1
        stats.train_seconds += elapsed
        stats.rays_seen += int(out["rays"])
        stats.loss = float(out["mse"])
        stats.psnr = psnr_from_mse(stats.loss)
        stats.extra = {key: value for key, value in out.items()
                       if key not in ("loss", "mse", "rays", "samples") and isinstance(value, (int, float))}
        rate = out["rays"] / max(elapsed, 1e-9)
        stats.rays_per_second = rate if stats.step == 1 else 0.9 * stats.rays_per_second + 0.1 * rate

    def train(self, progress_bar: bool = False) -> dict[str, Any]:
        """Run until done; checkpoint periodically; evaluate at the end. Returns the metrics."""
        from tqdm import tqdm

        train = self.config.train
        by_time = train.max_time > 0
        bar = tqdm(total=int(train.max_time) if by_time else train.max_steps, disable=not progress_bar,
                   unit="s" if by_time else "step", dynamic_ncols=True,
                   bar_format="{percentage:3.0f}%|{bar}| {desc}")   # desc: our live stats
        if self.on_nan == "rollback" and latest_checkpoint(self.run_dir) is None:
            self.save()                                     # something to roll back to
        last_save_time, last_save_step = self.stats.train_seconds, self.stats.step
        if self.logger is None:                             # only the main process writes logs
            self.logger = (open_training_logger(train.logger, self.run, train.log_every, self.device, self.log)
                           if self.processes.is_main else TrainingLogger(None, None))
        try:
            while not self.done():
                try:
                    self.step()
                except NonFinite as error:
                    self._on_non_finite(error)
                    last_save_time, last_save_step = self.stats.train_seconds, self.stats.step
                    continue
                if self.stats.step % 10 == 0 or self.done():
                    bar.n = min(bar.total, int(self.stats.train_seconds) if by_time else self.stats.step)
                    bar.set_description_str(self._postfix())
                self.logger.step(self.stats, self.optimizer.param_groups, last=self.done())
                if train.eval_every > 0 and self.stats.step % train.eval_every == 0:
                    self._quick_eval()
                if (self.stats.step - last_save_step >= train.checkpoint_every
                        or self.stats.train_seconds - last_save_time >= train.checkpoint_seconds):
                    self.save()
                    last_save_time, last_save_step = self.stats.train_seconds, self.stats.step
                if self.after_step is not None:
                    self.after_step()
                if self.processes.stopping:                 # Ctrl-C in a multi-process run
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            bar.close()
            self.logger.close()
            path = self.save()
            self.log(f"interrupted at step {self.stats.step}; saved {path} (continue with --resume)")
            raise
        except ProcessLost as error:
            bar.close()
            self.logger.close(plot=False)
            raise self._lost_message(error) from None
        except NerfkitError:
            bar.close()
            self.logger.close(plot=False)
            raise
        except RuntimeError as error:                       # torch.OutOfMemoryError included
            self.logger.close(plot=False)
            if not is_out_of_memory(error):
                raise
            bar.close()
            raise NerfkitError(out_of_memory_message(self.method.name, self.device,
                                                     self.stats.step + 1)) from None
        bar.close()
        self.save()
        metrics = self.finish()
        self.logger.test(self.stats.step, metrics)
        self.logger.close()                                 # and training.png
        return metrics

    def _on_non_finite(self, error: NonFinite) -> None:
        """Stop with one sentence (keeping the last good checkpoint), or roll back to it (every
        process of a run to what the main process read)."""
        stop, state, checkpoint, rollbacks = None, None, None, 0
        if self.processes.is_main:
            checkpoint = latest_checkpoint(self.run_dir)
            count = self.rollbacks.get(checkpoint, 0) if checkpoint is not None else 0
            if self.on_nan != "rollback" or checkpoint is None or count >= MAX_ROLLBACKS:
                stop = diverged_message(error, checkpoint, count)
            else:
                self.rollbacks[checkpoint] = count + 1
                state, rollbacks = load_checkpoint(checkpoint), sum(self.rollbacks.values())
        stop, state, rollbacks = self.processes.from_main((stop, state, rollbacks))
        if stop is not None:
            raise self.processes.stop_error(stop) from None
        self.load_state_dict(state)
        # A different batch order from here on, so the same batch does not diverge again.
        self.sampler.generator.manual_seed(self.config.train.seed + 7919 * rollbacks)
        self.log(f"training diverged at {error}; rolled back to {checkpoint} (step {self.stats.step})")

    def _lost_message(self, error: ProcessLost) -> NerfkitError:
        """One sentence for a run whose other process ended: where it stopped, how to go on."""
        checkpoint = latest_checkpoint(self.run_dir) if self.processes.is_main else None
        kept = (f"resume it from its last checkpoint '{checkpoint}' with: nerfkit train --resume "
                f"{self.run_dir} --nproc {self.processes.world}" if checkpoint is not None
                else "no checkpoint had been written yet")
        return self.processes.stop_error(f"training stopped at step {self.stats.step + 1}: {error}; {kept}")

    def _postfix(self) -> str:
        stats = self.stats
        remaining = 1.0 - self.progress()
        rate = self.progress() / max(stats.train_seconds, 1e-9)
        eta = remaining / rate if rate > 0 else float("inf")
        eta_text = f"{int(eta // 60)}:{int(eta % 60):02d}" if math.isfinite(eta) else "?"
        extra = "".join(f" {key} {value:,}" for key, value in stats.extra.items())
        return (f"step {stats.step} loss {stats.loss:.4f} psnr {stats.psnr:.2f} rays/s {stats.rays_per_second:,.0f}"
                f"{extra} eta {eta_text}")

    def _quick_eval(self) -> None:
        if not self.processes.is_main:
            return
        images: dict = {}
        result = evaluate_split(self.method, self.scene, "val", self.config.train.eval_background, limit=1,
                                on_render=lambda name, pictures: images.update(
                                    {f"eval/{kind}": picture for kind, picture in pictures.items()}))
        if self.logger is not None:
            self.logger.eval(self.stats.step, self.stats.train_seconds, result["psnr"], result["ssim"], images)
        self.stats.eval_psnr = result["psnr"]
        self.stats.history.append({"step": self.stats.step, "train_seconds": self.stats.train_seconds,
                                   "eval_psnr": result["psnr"]})
        self.log(f"step {self.stats.step}: eval PSNR {result['psnr']:.2f} dB")

    def finish(self) -> dict[str, Any]:
        """Full test-split evaluation, renders and ``metrics.json`` (by the main process; the others
        return only their step count)."""
        if not self.processes.is_main:
            return {"steps": self.stats.step}
        from nerfkit.image.lpips import load_lpips

        result = evaluate_split(self.method, self.scene, "test", self.config.train.eval_background,
                                out_dir=self.run.renders("test"), lpips=load_lpips("alex", device=self.device))
        metrics = {
            "scene": self.scene.name, "method": self.method.name, "steps": self.stats.step,
            "train_seconds": round(self.stats.train_seconds, 2),
            "rays_per_second": round(self.stats.rays_seen / max(self.stats.train_seconds, 1e-9), 1),
            "psnr": result["psnr"], "ssim": result["ssim"],
            **{key: result[key] for key in ("lpips", "lpips_net", "lpips_note") if key in result},
            "test_images": len(result["images"]),
            **self.stats.extra, **self.processes.metrics(),
            "eval_background": result["background"], "per_image": result["images"],
            "history": self.stats.history,
        }
        write_json_atomic(self.run.metrics_file, metrics)
        return metrics
