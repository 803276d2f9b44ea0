"""NaN/inf in the loss or the parameters, and running out of memory, during real tiny training runs.

A NaN is injected into one step of a real ngp run (the 16x12 px blender base of the corpus, so
the final evaluation is quick); the guard must catch it in that same step, before any optimizer
update with it and before any checkpoint holds it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from outcomes import run_cli
from tiny_run import TINY_NGP, tiny_train_args
from nerfkit.runs.checkpoints import latest_checkpoint, load_checkpoint
from nerfkit.methods.ngp_config import NGPConfig
from nerfkit.runs.config import RunConfig, TrainConfig
from nerfkit.core.settings import apply_overrides
from nerfkit.core.errors import NerfkitError
from nerfkit.methods.ngp import NGP
from nerfkit.runs.session import start_run
from nerfkit.runs.folder import RunFolder
from nerfkit.runs.guard import MAX_ROLLBACKS, out_of_memory_message


def list_checkpoints(run):
    return RunFolder(run).checkpoints()


def _args(scene: Path, output: Path, *extra: str) -> list[str]:
    """Tiny CLI training arguments on one thread (a second one only contends on a busy machine)."""
    return tiny_train_args(scene, output, "--threads", "1", *extra)


def _trainer(scene: Path, output: Path, steps: int = 12, on_nan: str = "stop"):
    method = apply_overrides(NGPConfig(), dict(item.split("=") for item in TINY_NGP), "test")
    train = TrainConfig(scene=str(scene), output_dir=str(output), max_steps=steps, threads=1,
                        checkpoint_every=3, on_nan=on_nan)
    messages: list[str] = []
    trainer = start_run(RunConfig(train, method), log=messages.append)
    return trainer, messages


def _poison_loss(trainer, at_steps, once: bool = True) -> list[int]:
    """Make the loss NaN in the given (1-based) steps (``once``: the first time each runs).

    Returns the steps it was poisoned in, in order.
    """
    original = trainer.method.train_step
    poisoned: list[int] = []

    def train_step(batch, step, progress):
        out = original(batch, step, progress)
        if step + 1 in at_steps and not (once and step + 1 in poisoned):
            poisoned.append(step + 1)
            out["loss"] = out["loss"] * float("nan")
        return out

    trainer.method.train_step = train_step
    return poisoned


def _all_finite(state: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def _checkpoint_steps(run_dir: Path) -> list[int]:
    return [step for step, _ in list_checkpoints(run_dir)]


def test_nan_loss_stops_in_that_step_and_keeps_the_last_good_checkpoint(bases, tmp_path):
    trainer, _ = _trainer(bases["blender"], tmp_path)
    _poison_loss(trainer, {7})
    before = {k: v.clone() for k, v in trainer.method.state_dict().items()}
    with pytest.raises(NerfkitError) as info:
        trainer.train(progress_bar=False)
    message = str(info.value)
    assert "training diverged at step 7: the loss is nan" in message
    assert "step-0000006.pt' is kept" in message and "on_nan=rollback" in message
    assert trainer.stats.step == 6                       # the poisoned step never counted
    assert _checkpoint_steps(trainer.run_dir) == [3, 6]   # nothing written after the NaN
    assert _all_finite(load_checkpoint(latest_checkpoint(trainer.run_dir))["method"])
    assert _all_finite(trainer.method.state_dict())      # no update was applied with the NaN
    assert any(not torch.equal(before[k], v) for k, v in trainer.method.state_dict().items())


def test_a_parameter_that_turns_nan_is_named_in_the_step_it_happens(bases, tmp_path):
    trainer, _ = _trainer(bases["blender"], tmp_path)
    original = trainer.method.after_backward

    def after_backward(step, optimizer):
        original(step, optimizer)
        if step + 1 == 5:                                 # a gradient blows up: Adam writes NaN
            param = next(p for p in trainer.method.parameters() if p.grad is not None)
            param.grad.fill_(float("inf"))

    trainer.method.after_backward = after_backward
    with pytest.raises(NerfkitError, match=r"diverged at step 5: parameter '.+' holds \d+ NaN/inf"):
        trainer.train(progress_bar=False)
    assert _checkpoint_steps(trainer.run_dir) == [3]
    assert _all_finite(load_checkpoint(latest_checkpoint(trainer.run_dir))["method"])


def test_rollback_reloads_the_last_good_checkpoint_and_finishes(bases, tmp_path):
    trainer, messages = _trainer(bases["blender"], tmp_path, on_nan="rollback")
    poisoned = _poison_loss(trainer, {7})
    metrics = trainer.train(progress_bar=False)
    assert poisoned == [7]
    assert any("rolled back to" in m and "step-0000006.pt (step 6)" in m for m in messages)
    assert metrics["steps"] == 12 and trainer.stats.step == 12
    assert _all_finite(trainer.method.state_dict())
    assert _checkpoint_steps(trainer.run_dir)[-1] == 12
    assert 0.0 < metrics["psnr"] < 100.0


def test_rollback_gives_up_after_repeated_divergence(bases, tmp_path):
    trainer, messages = _trainer(bases["blender"], tmp_path, on_nan="rollback")
    poisoned = _poison_loss(trainer, set(range(7, 13)), once=False)
    with pytest.raises(NerfkitError, match=f"again after {MAX_ROLLBACKS} rollbacks"):
        trainer.train(progress_bar=False)
    assert poisoned == [7] * (MAX_ROLLBACKS + 1)
    assert sum("rolled back" in m for m in messages) == MAX_ROLLBACKS
    assert _checkpoint_steps(trainer.run_dir)[-1] == 6


def test_rollback_before_the_first_checkpoint_goes_back_to_step_0(bases, tmp_path):
    trainer, messages = _trainer(bases["blender"], tmp_path, steps=4, on_nan="rollback")
    _poison_loss(trainer, {2})
    assert trainer.train(progress_bar=False)["steps"] == 4
    assert any("step-0000000.pt (step 0)" in m for m in messages)


def test_nan_on_the_command_line_is_one_sentence_and_exit_2(bases, tmp_path, monkeypatch):
    original = NGP.train_step

    def train_step(self, batch, step, progress):
        out = original(self, batch, step, progress)
        if step + 1 == 7:
            out["loss"] = out["loss"] + float("inf")
        return out

    monkeypatch.setattr(NGP, "train_step", train_step)
    outcome = run_cli(_args(bases["blender"], tmp_path, "--max-steps", "10",
                                      "--checkpoint-every", "5"))
    assert outcome.problems("diverged at step 7: the loss is inf") == []
    assert outcome.code == 2
    run = next(tmp_path.glob("*/ngp/*"))
    assert _checkpoint_steps(run) == [5]
    assert not (run / "metrics.json").exists()


def test_a_bad_on_nan_value_is_refused(bases, tmp_path):
    outcome = run_cli(_args(bases["blender"], tmp_path, "--set", "on_nan=ignore"))
    assert outcome.problems("on_nan must be stop or rollback, got 'ignore'") == []


def test_out_of_memory_names_the_flags_that_reduce_memory(bases, tmp_path, monkeypatch):
    original = NGP.train_step

    def train_step(self, batch, step, progress):
        if step + 1 == 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, batch, step, progress)

    monkeypatch.setattr(NGP, "train_step", train_step)
    outcome = run_cli(_args(bases["blender"], tmp_path, "--max-steps", "20",
                                      "--checkpoint-every", "2"))
    assert outcome.problems("ran out of CPU memory at step 4 (method ngp)") == []
    line = outcome.stderr.strip()
    for flag in ("--downscale 2", "--set target_samples=", "--set render_chunk=", "--resume"):
        assert flag in line, flag
    assert _checkpoint_steps(next(tmp_path.glob("*/ngp/*"))) == [2]


def test_other_runtime_errors_are_not_called_out_of_memory(bases, tmp_path, monkeypatch):
    def train_step(self, batch, step, progress):
        raise RuntimeError("a bug, not memory")

    monkeypatch.setattr(NGP, "train_step", train_step)
    outcome = run_cli(_args(bases["blender"], tmp_path, "--max-steps", "5"))
    assert outcome.code is None and "a bug, not memory" in outcome.traceback


def test_out_of_memory_message_per_method():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    splat = out_of_memory_message("splat", cuda, 100)
    assert splat.startswith("training ran out of GPU memory at step 100 (method splat)")
    assert "--set cap_max=" in splat and "target_samples" not in splat
    assert "ran out of CPU memory" in out_of_memory_message("ngp", cpu, 1)
