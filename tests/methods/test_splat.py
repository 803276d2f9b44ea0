"""The splat method end to end on the tiny demo: quality, densification, resume, .ply, schedules."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from nerfkit.cli import main
from nerfkit.runs.config import RunConfig, TrainConfig
from nerfkit.methods.splat_config import SplatConfig
from nerfkit.core.settings import apply_overrides, flat_dict
from nerfkit.export.splat_ply import read_splat_ply, write_splat_ply
from nerfkit.data.inputs import SceneInfo
from nerfkit.methods.splat import Splat, initial_gaussians, scene_extent
from nerfkit.runs.session import open_run, resume_run, start_run
from nerfkit.render.splat import RasterSettings, render_gaussians
from tiny_run import TINY_SPLAT


def _config(scene: Path, output: Path, steps: int, *extra: str) -> RunConfig:
    method = apply_overrides(SplatConfig(), dict(item.split("=") for item in TINY_SPLAT + list(extra)), "test")
    train = TrainConfig(scene=str(scene), output_dir=str(output), max_steps=steps, threads=2, method="splat",
                        checkpoint_every=10)
    return RunConfig(train, method)


def _quiet(_: str) -> None:
    return None


def test_tiny_demo_splat_trains_past_psnr_threshold(tiny_demo, tmp_path, capsys):
    args = ["train", str(tiny_demo), "--method", "splat", "--output-dir", str(tmp_path), "--no-progress",
            "--threads", "2", "--max-steps", "300"]
    for item in TINY_SPLAT:
        args += ["--set", item]
    assert main(args) == 0
    run = next(tmp_path.glob("*/splat/*/metrics.json")).parent
    metrics = json.loads((run / "metrics.json").read_text())
    # Untrained Gaussians give ~11 dB here (grey blobs on white); trained ones resolve the primitives.
    assert metrics["psnr"] > 22.0, metrics["psnr"]
    assert metrics["steps"] == 300 and metrics["gaussians"] > 500
    assert main(["eval", str(run)]) == 0
    assert abs(json.loads((run / "eval-test.json").read_text())["psnr"] - metrics["psnr"]) < 1e-6


def test_densification_changes_the_count_and_resume_is_exact(tiny_demo, tmp_path):
    straight = start_run(_config(tiny_demo, tmp_path / "a", 70), log=_quiet)
    start_count = straight.method.n_gaussians
    for _ in range(45):
        straight.step()
    middle_count = straight.method.n_gaussians
    for _ in range(25):
        straight.step()
    # refine steps 40 (before the checkpoint) and 60 (after it) both grow the set
    assert start_count < middle_count < straight.method.n_gaussians

    first = start_run(_config(tiny_demo, tmp_path / "b", 70), log=_quiet)
    for _ in range(45):
        first.step()
    first.save()
    del first
    resumed = resume_run(tmp_path / "b", log=_quiet)
    assert resumed.stats.step == 45 and resumed.method.n_gaussians == middle_count
    while not resumed.done():
        resumed.step()
    assert resumed.method.n_gaussians == straight.method.n_gaussians
    for key, value in straight.method.state_dict().items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(resumed.method.state_dict()[key], value, atol=1e-6, rtol=1e-5, msg=key)


def test_trained_gaussians_survive_a_ply_round_trip(tiny_demo, tmp_path):
    trainer = start_run(_config(tiny_demo, tmp_path, 30), log=_quiet)
    for _ in range(30):
        trainer.step()
    method = trainer.method
    path = tmp_path / "splat.ply"
    write_splat_ply(path, {k: v.detach() for k, v in method.gaussians.items()})
    loaded = read_splat_ply(path)
    camera = trainer.scene.cameras[trainer.scene.split("test")[0]]
    width, height = (int(v) for v in camera.sizes[0])
    background = torch.ones(3)
    direct = method.render(camera, background)["rgb"]
    again = render_gaussians(loaded, camera.c2w[0], camera.intrinsics[0], width, height, background,
                             method.sh_degree_in_use, method.settings)["rgb"]
    torch.testing.assert_close(again, direct, atol=1e-6, rtol=0)


def test_a_finished_run_reopens_with_its_gaussian_count(tiny_demo, tmp_path):
    trainer = start_run(_config(tiny_demo, tmp_path, 30), log=_quiet)
    for _ in range(30):
        trainer.step()
    trainer.save()
    _, _, method, step = open_run(tmp_path)
    assert step == 30 and method.n_gaussians == trainer.method.n_gaussians
    assert method.sh_degree_in_use == trainer.method.sh_degree_in_use == 0   # interval 30: raised at step 30


def _scene(points: torch.Tensor | None = None, sampler=None) -> SceneInfo:
    centers = torch.tensor([[2.0, 0, 0], [-2.0, 0, 0], [0, 2.0, 0], [0, -2.0, 0]])
    return SceneInfo(torch.tensor([[-1.0, -1, -1], [1.0, 1, 1]]), False, True, points,
                     None if points is None else torch.full((points.shape[0], 3), 255, dtype=torch.uint8),
                     centers, sampler)


def test_initialisation_prefers_sparse_points_then_the_visual_hull_then_the_box():
    config = apply_overrides(SplatConfig(), {"init_points": 500}, "test")
    points = torch.rand(50, 3) * 0.1
    from_points = initial_gaussians(config, _scene(points, lambda n: (torch.zeros(n, 3), torch.zeros(n, 3))))
    torch.testing.assert_close(from_points["means"], points)
    torch.testing.assert_close(from_points["sh0"][:, 0], torch.full((50, 3), 0.5 / 0.28209479177387814))
    hull = torch.rand(500, 3) * 0.2 + 0.5
    from_hull = initial_gaussians(config, _scene(None, lambda n: (hull[:n], torch.zeros(n, 3, dtype=torch.uint8))))
    torch.testing.assert_close(from_hull["means"], hull)
    from_box = initial_gaussians(config, _scene(None, lambda n: None))
    assert from_box["means"].shape == (500, 3) and float(from_box["means"].abs().max()) <= 1.0
    assert float(from_box["means"].std()) > 0.4                       # spread over the box
    spacing = math.exp(float(from_box["scales"].mean()))
    assert 0.03 < spacing < 0.3                                        # ~ neighbour distance of 500 points in a 2-cube
    assert from_box["shN"].shape == (500, 15, 3) and float(torch.sigmoid(from_box["opacities"]).mean()) == pytest.approx(0.1)


def test_schedules_for_sh_degree_and_position_learning_rate():
    config = apply_overrides(SplatConfig(), {"init_points": 100, "sh_degree_interval": 1000}, "test")
    method = Splat(config, _scene(None, None))
    assert [method.sh_degree_at(s) for s in (0, 999, 1000, 2000, 2999, 3000, 10_000)] == [0, 0, 1, 2, 2, 3, 3]
    assert method.lr_factor(0, 0.0)["means"] == pytest.approx(1.0)
    assert method.lr_factor(0, 0.5)["means"] == pytest.approx(0.1)     # 1.6e-4 -> 1.6e-6: x0.01 over the run
    assert method.lr_factor(0, 1.0)["means"] == pytest.approx(0.01)
    assert scene_extent(_scene()) == pytest.approx(2.2)
    groups = {g["name"]: g["lr"] for g in method.param_groups()}
    assert groups["means"] == pytest.approx(1.6e-4 * 2.2) and groups["opacities"] == pytest.approx(0.05)


def test_forcing_gsplat_without_a_gpu_is_a_clear_error():
    from nerfkit.core.errors import NerfkitError
    from nerfkit.render.splat import choose_backend

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(NerfkitError, match="needs a CUDA device"):
        choose_backend(RasterSettings(backend="gsplat"), torch.device("cpu"))
    assert choose_backend(RasterSettings(), torch.device("cpu")) == "nerfkit"


def test_schedule_fills_unset_step_counts_by_device_and_keeps_explicit_ones():
    gpu = flat_dict(SplatConfig().resolve("cuda"))
    assert tuple(gpu[k] for k in ("schedule", "refine_start", "refine_every", "refine_stop", "reset_every",
                                  "sh_degree_interval", "init_points")) == ("3dgs", 500, 100, 15_000, 3000, 1000,
                                                                            100_000)
    cpu_config = SplatConfig().resolve("cpu")
    cpu = flat_dict(cpu_config)
    assert tuple(cpu[k] for k in ("schedule", "refine_start", "refine_every", "reset_every", "init_points")) == (
        "short", 100, 50, -1, 20_000)
    explicit = flat_dict(apply_overrides(SplatConfig(), {"refine_every": 7}, "test").resolve("cpu"))
    assert explicit["refine_every"] == 7 and explicit["refine_start"] == 100
    assert SplatConfig(schedule="3dgs").resolve("cpu").refine.refine_start == 500
    assert cpu_config.resolve("cuda") == cpu_config                      # resolving twice changes nothing
    from nerfkit.core.errors import NerfkitError
    with pytest.raises(NerfkitError, match="schedule must be .*, got 'weekly'"):
        SplatConfig(schedule="weekly").resolve("cpu")


@pytest.mark.parametrize("preset", ["splat-mcmc", "splat-3dgs"])
def test_presets_load_and_mcmc_antialiased_training_grows_by_five_percent(tiny_demo, tmp_path, preset):
    from nerfkit.runs.config import load_preset

    values = load_preset(preset)
    assert values["train"]["method"] == "splat"
    overrides = {**values["method"], "refine_start": 5, "refine_every": 10, "refine_stop": 100,
                 "rasterize_mode": "antialiased", "init_points": 400, "sh_degree_interval": 10}
    method = apply_overrides(SplatConfig(), overrides, "test")
    train = TrainConfig(scene=str(tiny_demo), output_dir=str(tmp_path), max_steps=21, threads=2, method="splat")
    trainer = start_run(RunConfig(train, method), log=_quiet)
    counts = []
    for _ in range(21):
        trainer.step()
        counts.append(trainer.method.n_gaussians)
    assert math.isfinite(trainer.stats.loss)
    if preset == "splat-mcmc":                       # steps 10 and 20 add int(0.05 N) each
        assert counts[9] == 400 and counts[10] == 420 and counts[20] == 441
    else:
        assert counts[0] == 400


@pytest.mark.parametrize("setting, message", [
    ("strategy=annealing", "strategy must be default or mcmc, got 'annealing'"),
    ("rasterize_mode=fancy", "rasterize_mode must be classic or antialiased"),
    ("sh_degree=5", "sh_degree must be 0..3"),
    ("schedule=weekly", "schedule must be auto, 3dgs or short, got 'weekly'"),
])
def test_bad_splat_settings_are_one_sentence_errors(tiny_demo, tmp_path, capsys, setting, message):
    args = ["train", str(tiny_demo), "--method", "splat", "--output-dir", str(tmp_path), "--no-progress",
            "--max-steps", "1", "--set", setting]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nerfkit: error:") and message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_geometry_regularisers_start_on_time_and_flatten_the_depth(tiny_demo, tmp_path):
    """With the 2DGS-style terms on, they appear from ``geometry_start`` on, and the trained depth
    layers are thinner (a lower depth distortion) than without them."""
    def distortion_after(*extra: str) -> tuple[list[str], float]:
        trainer = start_run(_config(tiny_demo, tmp_path / str(len(extra)), 80, "init_points=300", *extra), log=_quiet)
        seen = []
        for _ in range(80):
            seen.append(sorted(key for key in trainer.step() if key.startswith("depth_")))
        method = trainer.method
        camera = trainer.scene.cameras[trainer.scene.split("train")[0]]
        with torch.no_grad():
            out = method._render(camera, torch.ones(3), method.sh_degree_in_use, geometry=True)
        from nerfkit.render.splat_geometry import depth_distortion_loss

        return seen, float(depth_distortion_loss(out["alpha"], out["z"], out["extra"][..., 3]))

    seen, with_terms = distortion_after("depth_normal_weight=0.05", "depth_distortion_weight=50",
                                        "geometry_start=0.5")
    assert seen[0] == [] and seen[39] == [] and seen[40] == ["depth_distortion", "depth_normal"]
    _, without = distortion_after()
    assert with_terms < 0.8 * without, (with_terms, without)
