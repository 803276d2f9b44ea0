"""ngp's two estimators: instant-ngp's occupancy grid (the default on objects) and Mip-NeRF 360's
proposal fields (the default on captures: 32 samples per ray where the grid stays half full)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tiny_run import TINY_NGP, tiny_train_args
from nerfkit.cli import main
from nerfkit.core.errors import NerfkitError
from nerfkit.core.settings import apply_overrides, flat_dict
from nerfkit.data.inputs import RayBatch, SceneInfo
from nerfkit.methods.ngp import NGP
from nerfkit.methods.ngp_config import NGPConfig
from nerfkit.render.samplers import packed_intervals

OBJECT = SceneInfo(torch.tensor([[-1.5] * 3, [1.5] * 3]), unbounded=False, has_alpha=True)
UNBOUNDED = SceneInfo(torch.tensor([[-1.0] * 3, [1.0] * 3]), unbounded=True, has_alpha=False)
TINY_PROPOSAL = ["proposal_samples=24", "nerf_samples=16", "proposal_max_resolution=32",
                 "proposal_log2_table_size=14"]


def _config(*items: str) -> NGPConfig:
    return apply_overrides(NGPConfig(), dict(item.split("=") for item in [*TINY_NGP, *items]), "test")


def _rays(n: int, seed: int = 0) -> RayBatch:
    g = torch.Generator().manual_seed(seed)
    origins = torch.tensor([[0.0, 0.0, -0.9]]).expand(n, 3).contiguous()
    directions = torch.nn.functional.normalize(torch.randn(n, 3, generator=g) * 0.3 + torch.tensor([0, 0, 1.0]),
                                               dim=-1)
    return RayBatch(origins, directions, torch.rand(n, 3, generator=g), torch.ones(n, 3),
                    torch.zeros(n, dtype=torch.int64))


def test_auto_picks_the_grid_on_objects_and_proposals_with_their_profile_on_captures():
    assert NGPConfig().sampler == "auto"
    method = NGP(NGPConfig(), OBJECT)
    assert method.sampler == "occupancy" and hasattr(method, "grid") and len(method.proposals) == 0
    assert flat_dict(method.config)["log2_table_size"] == 17 and method.config.lr_decay == "steps"
    method = NGP(NGPConfig(), UNBOUNDED)
    assert method.sampler == "proposal" and len(method.proposals) == 2 and not hasattr(method, "grid")
    resolved = flat_dict(NGPConfig().resolve_scene(True))
    assert [resolved[key] for key in ("sampler", "log2_table_size", "max_resolution", "lr_warmup_steps",
                                      "weight_decay", "lr_decay")] == ["proposal", 18, 2048, 20, 0.0, "log_linear"]
    # the profile never undoes a setting the user (or a preset) chose, and an explicit sampler stays
    mine = flat_dict(NGPConfig().updated(max_resolution=1024).resolve_scene(True))
    assert mine["max_resolution"] == 1024 and mine["log2_table_size"] == 18
    assert NGPConfig().updated(sampler="occupancy").resolve_scene(True) == NGPConfig().updated(sampler="occupancy")
    with pytest.raises(NerfkitError, match="near < far"):
        NGPConfig().updated(near=2.0, far=1.0)
    with pytest.raises(NerfkitError, match="lr_final_factor"):
        NGPConfig().updated(lr_final_factor=0.0)


def test_learning_rate_schedules_steps_and_log_linear():
    steps = NGP(NGPConfig().updated(sampler="occupancy"), OBJECT)
    assert steps.lr_factor(0, 0.0) == pytest.approx(1 / 100)                      # warm-up
    assert [steps.lr_factor(500, p) for p in (0.4, 0.6, 0.8, 0.95)] == pytest.approx(
        [1.0, 0.33, 0.33 ** 2, 0.33 ** 3])
    smooth = NGP(NGPConfig(), UNBOUNDED)                                          # the capture profile
    assert smooth.lr_factor(0, 0.0) == pytest.approx(1 / 20)
    assert [smooth.lr_factor(500, p) for p in (0.0, 0.5, 1.0)] == pytest.approx([1.0, 0.1 ** 0.5, 0.1])


def test_a_run_saved_before_sampler_auto_loads_as_the_occupancy_run_it_was(tmp_path):
    from nerfkit.runs.config import RunConfig
    saved = {"train": {"method": "ngp", "scene": "x"}, "method": {"log2_table_size": 17}}
    old = RunConfig.from_dict(saved, "config.yaml", saved_run=True).method
    assert old.sampler == "occupancy" and old.resolve_scene(True).sampler == "occupancy"
    new = RunConfig.from_dict(saved, "a preset").method              # presets leave it to auto
    assert new.sampler == "auto" and new.resolve_scene(True).sampler == "proposal"


def test_proposal_sampler_trains_the_proposals_with_the_interlevel_loss():
    method = NGP(_config("sampler=proposal", *TINY_PROPOSAL), UNBOUNDED)
    assert len(method.proposals) == 2 and not hasattr(method, "grid")
    assert method.proposals[0].color_net is None                     # density-only fields
    batch = _rays(64)
    method.before_step(0, 0.0)                                       # no grid to refresh: a no-op
    out = method.train_step(batch, step=0, progress=0.0)
    assert out["rays"] == 64 and out["samples"] == 64 * 16           # nerf_samples per ray
    assert out["interlevel"] >= 0.0 and out["distortion"] > 0.0
    expected = out["mse"] + out["interlevel"] + 0.01 * out["distortion"]
    assert out["loss"].item() == pytest.approx(expected, rel=1e-4)
    out["loss"].backward()
    for field in method.proposals:                                   # each level gets a gradient
        assert field.encoding.table.grad.abs().sum() > 0
    assert method.field.encoding.table.grad.abs().sum() > 0
    assert method.batch_request(1).rays == 1024                      # the batch does not adapt
    groups = {group["name"]: group["params"] for group in method.param_groups()}
    assert {id(p) for p in method.parameters() if p.requires_grad} == {
        id(p) for params in groups.values() for p in params}


def test_proposal_samples_span_near_to_far_in_contracted_space_and_stay_sorted():
    method = NGP(_config("sampler=proposal", *TINY_PROPOSAL), UNBOUNDED).eval()
    batch = _rays(32)
    with torch.no_grad():
        out = method.render_rays(batch.origins, batch.directions, batch.background)
        edges = method._propose(batch.origins, batch.directions).t_edges
    assert edges.shape == (32, 17)
    assert bool((edges[:, 1:] >= edges[:, :-1]).all())
    assert torch.allclose(edges[:, 0], torch.full((32,), 0.05)) and torch.allclose(edges[:, -1], torch.full((32,), 1000.0))
    starts, ends, rays = packed_intervals(edges)
    assert rays.tolist() == sorted(rays.tolist()) and bool((ends >= starts).all())
    assert out["rgb"].shape == (32, 3) and bool(((out["alpha"] >= 0) & (out["alpha"] <= 1 + 1e-5)).all())
    assert out["median_depth"].shape == (32,)


def test_an_unbounded_proposal_run_fits_its_photos_and_resumes(tiny_demo, tmp_path):
    # the RGBA demo on a white background stands in for an opaque capture (see test_mipnerf.py: 12
    # images of 32 px do not pin down a contracted space, so the fit to the training views is the test)
    extra = ["sampler=proposal", "train_background=white", "max_resolution=256", "log2_table_size=16",
             *TINY_PROPOSAL]
    args = tiny_train_args(tiny_demo, tmp_path, "--max-steps", "150", "--scene-kind", "unbounded",
                           "--eval-every", "0")
    assert main(args + [arg for item in extra for arg in ("--set", item)]) == 0
    run = next(tmp_path.glob("*/ngp/*/config.yaml")).parent
    assert "sampler: proposal" in (run / "config.yaml").read_text()
    assert main(["eval", str(run), "--split", "train"]) == 0
    fitted = json.loads((run / "eval-train.json").read_text())
    assert fitted["psnr"] > 19.0, fitted["psnr"]        # measured 21.7; white on white: ~11 dB
    assert main(["train", "--resume", str(run), "--max-steps", "160", "--no-progress", "--no-viewer"]) == 0

