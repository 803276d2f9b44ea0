"""The neus method: it trains on the tiny demo, its SDF's normals are its gradients, it resumes
exactly, unbounded scenes get the background field, and bad settings are one sentence."""

from __future__ import annotations

import torch
import pytest

from tiny_run import TINY_NEUS, tiny_neus_args
from nerfkit.cli import main
from nerfkit.core.settings import apply_overrides
from nerfkit.data.inputs import SceneInfo
from nerfkit.methods.capabilities import HasSDF
from nerfkit.methods.neus import NeuS
from nerfkit.methods.neus_config import NeuSConfig
from nerfkit.runs.config import RunConfig, TrainConfig
from nerfkit.runs.session import resume_run, start_run

BOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def _config(**extra) -> NeuSConfig:
    return apply_overrides(NeuSConfig(), {**dict(item.split("=") for item in TINY_NEUS), **extra}, "test")


def test_the_sdf_starts_as_a_sphere_and_its_normals_are_its_gradient():
    method = NeuS(_config(), SceneInfo(BOX, False, True))
    assert isinstance(method, HasSDF)
    points = torch.rand(256, 3) * 1.6 - 0.8
    sdf = method.sdf(points)
    assert (sdf - (points.norm(dim=-1) - 0.5)).abs().median() < 0.15        # geometric initialisation
    _, normals, _ = method.field.sdf_and_normals(points, create_graph=False)
    eps = 1e-3
    for axis in range(3):
        step = torch.zeros(3)
        step[axis] = eps
        numeric = (method.sdf(points + step) - method.sdf(points - step)) / (2 * eps)
        torch.testing.assert_close(normals[:, axis], numeric, rtol=1e-2, atol=2e-3)


def test_neus_trains_on_the_tiny_demo_and_scores_held_out_views(tiny_demo, tmp_path, capsys):
    assert main(tiny_neus_args(tiny_demo, tmp_path, "--max-steps", "200")) == 0
    import json

    metrics = json.loads(next(tmp_path.glob("*/neus/*/metrics.json")).read_text())
    assert metrics["steps"] == 200 and metrics["psnr"] > 20.0, metrics["psnr"]
    assert metrics["inv_s"] > 30.0                               # the sharpness grew from 20


def test_resume_continues_exactly_where_the_run_stopped(tiny_demo, tmp_path):
    def config(out):
        return RunConfig(TrainConfig(scene=str(tiny_demo), method="neus", output_dir=str(out), max_steps=12,
                                     threads=2), _config())

    straight = start_run(config(tmp_path / "a"))
    while not straight.done():
        straight.step()
    first = start_run(config(tmp_path / "b"))
    for _ in range(5):
        first.step()
    first.save()
    resumed = resume_run(tmp_path / "b")
    while not resumed.done():
        resumed.step()
    for key, value in straight.method.state_dict().items():
        assert torch.allclose(value.float(), resumed.method.state_dict()[key].float(), atol=1e-6), key


def test_unbounded_scenes_get_the_background_field_and_it_learns():
    method = NeuS(_config(), SceneInfo(BOX, True, False))
    assert method.background is not None
    assert NeuS(_config(), SceneInfo(BOX, False, True)).background is None
    origins = torch.tensor([[0.0, 0.0, -3.0]]).repeat(64, 1)
    directions = torch.nn.functional.normalize(torch.randn(64, 3) * 0.3 + torch.tensor([0.0, 0.0, 1.0]), dim=-1)
    out = method.render_rays(origins, directions, torch.zeros(64, 3))
    out["rgb"].sum().backward()
    assert method.background.encoding.table.grad.abs().sum() > 0


def test_coarse_to_fine_levels_grow_over_training():
    method = NeuS(_config(start_levels=2), SceneInfo(BOX, False, True))
    counts = []
    for progress in (0.0, 0.25, 0.5, 0.9):
        method.before_step(1, progress)
        counts.append(int(method.field.active_levels))
    assert counts[0] == 2 and counts[-1] == method.config.hash_grid.n_levels and counts == sorted(counts)


@pytest.mark.parametrize("setting, words", [("start_levels=0", ("start_levels",)),
                                             ("background=sky", ("background", "sky")),
                                             ("sphere_radius=2", ("sphere_radius",))])
def test_bad_neus_settings_are_one_sentence_errors(tiny_demo, tmp_path, capsys, setting, words):
    code = main(tiny_neus_args(tiny_demo, tmp_path, "--max-steps", "1", "--set", setting))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("nerfkit: error: ") and "\n" not in err, err
    assert all(word in err for word in words), err
