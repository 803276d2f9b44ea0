"""`nerfkit export splat`: a splat run's Gaussians land in a 3DGS .ply in the scene's ORIGINAL world
coordinates (means mapped back by the inverse normalisation, log-scales shifted by -log s), render
the same image as the run from the same camera moved to world coordinates, go to RUN/exports/ by
default, and every bad input ends in one sentence with exit code 2 and no file written."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tiny_run import TINY_NGP
from nerfkit.cli import main
from nerfkit.methods.ngp_config import NGPConfig
from nerfkit.runs.config import RunConfig, TrainConfig
from nerfkit.methods.splat_config import SplatConfig
from nerfkit.core.settings import apply_overrides
from nerfkit.export.mesh_io import read_mesh
from nerfkit.export.splat_ply import read_splat_ply
from nerfkit.data.similarity import camera_to_world_from_scene
from nerfkit.runs.session import start_run
from nerfkit.render.splat import render_gaussians

STEPS = 4           # with the SH degree raised every step, the run ends at degree 3
WORLD_OFFSET = (3.0, -2.0, 1.5)


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def shifted_demo(tiny_demo, tmp_path_factory) -> Path:
    """The tiny demo scene with every pose moved by WORLD_OFFSET: its normalisation then both
    scales and translates, so an export left in scene coordinates cannot pass for world ones."""
    scene = tmp_path_factory.mktemp("shifted") / "shifted-demo"
    shutil.copytree(tiny_demo, scene)
    for split in ("train", "val", "test"):
        path = scene / f"transforms_{split}.json"
        data = json.loads(path.read_text())
        for frame in data["frames"]:
            for row, offset in enumerate(WORLD_OFFSET):
                frame["transform_matrix"][row][3] += offset
        path.write_text(json.dumps(data))
    return scene


@pytest.fixture(scope="module")
def splat_run(shifted_demo, tmp_path_factory):
    """A splat run trained for a few steps and checkpointed: (run folder, trainer)."""
    method = apply_overrides(SplatConfig(), {"init_points": 300, "init_from_views": False,
                                             "sh_degree_interval": 1, "refine_start": 1000}, "test")
    train = TrainConfig(scene=str(shifted_demo), output_dir=str(tmp_path_factory.mktemp("runs")),
                        max_steps=STEPS, method="splat", threads=2)
    with pytest.MonkeyPatch.context() as patch:      # the autouse fixture is function-scoped
        patch.setenv("NERFKIT_COMPILE", "0")
        trainer = start_run(RunConfig(train, method), log=_quiet)
        for _ in range(STEPS):
            trainer.step()
        trainer.save()
    return trainer.run_dir, trainer


@pytest.fixture(scope="module")
def ngp_run(tiny_demo, tmp_path_factory) -> Path:
    """An ngp run folder with a checkpoint (step 0 is enough to be a run)."""
    method = apply_overrides(NGPConfig(), dict(item.split("=") for item in TINY_NGP), "test")
    train = TrainConfig(scene=str(tiny_demo), output_dir=str(tmp_path_factory.mktemp("ngp")), threads=2)
    trainer = start_run(RunConfig(train, method), log=_quiet)
    trainer.save()
    return trainer.run_dir


def test_export_is_in_world_coordinates_and_renders_like_the_run(splat_run, tmp_path, capsys):
    run_dir, trainer = splat_run
    method, scene = trainer.method, trainer.scene
    out = tmp_path / "new" / "folders" / "scene.ply"            # missing folders are created
    assert main(["export", "splat", str(run_dir), "-o", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and str(out) in printed[0]
    assert f"{method.n_gaussians} Gaussians" in printed[0] and "SH degree 3" in printed[0]

    world = read_splat_ply(out)
    gaussians = {key: value.detach().cpu() for key, value in method.gaussians.items()}
    assert world["means"].shape[0] == method.n_gaussians == 300
    assert method.sh_degree_in_use == 3 and world["shN"].shape[1] == 15

    # The demo's normalisation is not the identity: it scales and (with the offset) translates.
    world_to_scene = scene.world_to_scene.double()
    scale = scene.scale
    assert abs(scale - 1.0) > 0.1 and world_to_scene[:3, 3].norm() > 1.0
    scene_to_world = torch.linalg.inv(world_to_scene)
    homogeneous = torch.cat([gaussians["means"].double(), torch.ones(len(world["means"]), 1)], 1)
    expected_means = (homogeneous @ scene_to_world.T)[:, :3]
    assert torch.allclose(world["means"].double(), expected_means, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(world["means"], gaussians["means"], atol=0.5)
    assert torch.allclose(world["scales"], gaussians["scales"] - math.log(scale), atol=1e-5)
    assert torch.equal(world["opacities"], gaussians["opacities"])
    assert torch.equal(world["sh0"], gaussians["sh0"])

    # The same test view, rendered by the run in scene coordinates and from the file in world ones.
    camera = scene.cameras[[scene.split("test")[0]]]
    background = torch.tensor([0.1, 0.2, 0.3])
    in_scene = method.render(camera, background)
    width, height = (int(v) for v in camera.sizes[0])
    c2w_world = camera_to_world_from_scene(camera.c2w[0].double(), world_to_scene).float()
    world_settings = dataclasses.replace(method.settings, near=method.settings.near / scale)

    def render_file(pose: torch.Tensor) -> dict:
        with torch.no_grad():
            return render_gaussians(world, pose, camera.intrinsics[0], width, height, background,
                                    method.sh_degree_in_use, world_settings)

    in_world = render_file(c2w_world)
    assert in_scene["alpha"].max() > 0.5 and in_scene["rgb"].std() > 0.01     # there is a picture
    assert (in_world["rgb"] - in_scene["rgb"]).abs().max() < 1e-4
    assert (in_world["alpha"] - in_scene["alpha"]).abs().max() < 1e-4
    assert torch.allclose(in_world["depth"] * scale, in_scene["depth"], rtol=1e-4, atol=1e-4)
    # not vacuous: the scene-coordinate camera does not see the exported Gaussians the same way
    assert (render_file(camera.c2w[0])["rgb"] - in_scene["rgb"]).abs().max() > 0.05


def test_default_output_is_the_run_folders_exports(splat_run, capsys):
    run_dir, trainer = splat_run
    output_root = run_dir.parents[2]                     # <root>/<scene>/splat/<run>: a parent works
    assert main(["export", "splat", str(output_root)]) == 0
    expected = run_dir / "exports" / "splat.ply"
    assert str(expected) in capsys.readouterr().out
    assert read_splat_ply(expected)["means"].shape[0] == trainer.method.n_gaussians


def _fails_with(capsys, args: list[str], *words: str) -> None:
    code = main(args)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (code, err)
    assert err.startswith("nerfkit: error: ") and "\n" not in err, err
    assert "Traceback" not in err and captured.out == ""
    for word in words:
        assert word in err, (word, err)


def test_a_run_of_another_method_is_refused(ngp_run, capsys):
    _fails_with(capsys, ["export", "splat", str(ngp_run)],
                str(ngp_run), "trained with ngp", "no Gaussians", "--method splat")
    assert not (ngp_run / "exports").exists()


@pytest.mark.parametrize("name, words", [
    ("scene.obj", ["scene.obj", "'.obj'", ".ply"]),
    ("scene", ["no extension", ".ply"]),
    ("folder.ply", ["folder.ply", "is a folder"]),
    ("a-file.txt/scene.ply", ["a-file.txt", "is a file"]),
])
def test_bad_output_paths_are_refused(splat_run, tmp_path, capsys, name, words):
    run_dir, _ = splat_run
    (tmp_path / "folder.ply").mkdir()
    (tmp_path / "a-file.txt").write_text("not a folder")
    _fails_with(capsys, ["export", "splat", str(run_dir), "-o", str(tmp_path / name)], *words)
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["a-file.txt", "folder.ply"]


def test_missing_run_and_run_without_checkpoint_are_refused(splat_run, tmp_path, capsys):
    _fails_with(capsys, ["export", "splat", str(tmp_path / "nowhere")], "nowhere", "does not exist")
    run_dir, _ = splat_run
    fresh = tmp_path / "fresh-run"
    shutil.copytree(run_dir, fresh, ignore=shutil.ignore_patterns("checkpoints", "exports"))
    _fails_with(capsys, ["export", "splat", str(fresh), "-o", str(tmp_path / "out.ply")],
                "fresh-run", "no checkpoint")
    assert not (tmp_path / "out.ply").exists()


def test_export_needs_a_kind(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export"])
    assert exit_info.value.code == 2
    assert "splat" in capsys.readouterr().err


def test_pointcloud_of_a_splat_run_is_its_opaque_centres_in_world_coordinates(splat_run, tmp_path, capsys):
    run_dir, trainer = splat_run
    splat_path, cloud_path = tmp_path / "splat.ply", tmp_path / "cloud.ply"
    assert main(["export", "splat", str(run_dir), "-o", str(splat_path)]) == 0
    assert main(["export", "pointcloud", str(run_dir), "-o", str(cloud_path)]) == 0
    capsys.readouterr()
    gaussians = read_splat_ply(splat_path)
    cloud = read_mesh(cloud_path)
    opacity = 1.0 / (1.0 + np.exp(-gaussians["opacities"].numpy().astype(np.float64)))
    opaque = opacity >= 0.1
    assert 20 < opaque.sum() < len(opaque)           # the filter matters here
    centres = gaussians["means"].numpy()[opaque]
    assert len(cloud["vertices"]) == len(centres) and len(cloud["faces"]) == 0
    # the same points as the world-coordinate splat file (which is tested to render like the run)
    assert np.abs(np.sort(cloud["vertices"], axis=0) - np.sort(centres, axis=0)).max() < 1e-4
    dc = gaussians["sh0"].numpy()[opaque, 0]
    expected = np.clip(np.round((dc * 0.28209479177387814 + 0.5) * 255), 0, 255)
    order_cloud, order_splat = np.lexsort(cloud["vertices"].T), np.lexsort(centres.T)
    assert np.abs(cloud["colors"][order_cloud].astype(int) - expected[order_splat]).max() <= 1
