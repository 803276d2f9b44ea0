"""Splat files from any tool in nerfkit (issue 20): a standard 3DGS .ply in a scene's world
coordinates, read back and placed with that scene's cameras, renders exactly what the run rendered;
an Inria-layout file (other property order, normals, no nerfkit writer) opens too; without a scene
the Gaussians get a fitted frame; `nerfkit export mesh FILE.ply --scene SCENE` meshes it in world
coordinates like `export mesh RUN`; `nerfkit view FILE.ply` serves it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from nerfkit.cli import main
from nerfkit.data.load import load_scene
from nerfkit.export.mesh_io import read_mesh
from nerfkit.export.splat_scene import fitted_frame, load_splat_scene
from nerfkit.image.metrics import psnr
from nerfkit.methods.capabilities import HasGaussians

MESH_ARGS = ["--resolution", "40", "--max-views", "4", "--min-component", "0"]


@pytest.fixture(scope="module")
def splat_run(tiny_demo, tmp_path_factory):
    from nerfkit.core.settings import apply_overrides
    from nerfkit.methods.splat_config import SplatConfig
    from nerfkit.runs.config import RunConfig, TrainConfig
    from nerfkit.runs.session import start_run

    method = apply_overrides(SplatConfig(), {"init_points": 500, "sh_degree_interval": 5,
                                             "refine_start": 1000}, "test")
    train = TrainConfig(scene=str(tiny_demo), output_dir=str(tmp_path_factory.mktemp("runs")), max_steps=30,
                        method="splat", threads=2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NERFKIT_COMPILE", "0")
        trainer = start_run(RunConfig(train, method), log=lambda line: None)
        for _ in range(30):
            trainer.step()
        trainer.save()
    ply = tmp_path_factory.mktemp("files") / "scene.ply"
    assert main(["export", "splat", str(trainer.run_dir), "-o", str(ply)]) == 0
    return trainer, ply


def _inria_layout(source, target) -> None:
    """Rewrite a .ply as another tool might: properties in another order, doubles for positions."""
    vertex = PlyData.read(str(source))["vertex"].data
    names = list(vertex.dtype.names)
    reordered = ["rot_0", "rot_1", "rot_2", "rot_3", "x", "y", "z"] + [n for n in names if n not in
                                                                         ("rot_0", "rot_1", "rot_2", "rot_3", "x", "y", "z")]
    rows = np.zeros(len(vertex), [(n, "<f8" if n in "xyz" else "<f4") for n in reordered])
    for name in reordered:
        rows[name] = vertex[name]
    PlyData([PlyElement.describe(rows, "vertex")], text=False, comments=["written by another tool"]).write(str(target))


def test_a_file_in_world_coordinates_renders_like_the_run(splat_run, tiny_demo, tmp_path):
    trainer, ply = splat_run
    other = tmp_path / "inria.ply"
    _inria_layout(ply, other)
    scene = load_scene(tiny_demo)
    camera = scene.cameras[scene.split("test")[0]]
    background = torch.ones(3)
    trainer.method.eval()
    expected = trainer.method.render(camera, background)["rgb"]
    for path in (ply, other):
        method, world_to_scene, frame = load_splat_scene(path, scene)
        assert isinstance(method, HasGaussians) and frame is None
        assert torch.equal(world_to_scene, scene.world_to_scene.double())
        assert method.n_gaussians == trainer.method.n_gaussians
        out = method.render(camera, background)
        assert set(out) == {"rgb", "depth", "alpha"}
        assert psnr(out["rgb"], expected) > 45, path                 # the same image, up to float rounding


def test_without_a_scene_the_frame_is_fitted():
    generator = torch.Generator().manual_seed(0)
    count = 2000
    means = torch.randn(count, 3, generator=generator) * 7.0 + torch.tensor([100.0, -50.0, 20.0])
    gaussians = {"means": means, "opacities": torch.full((count,), 2.0)}
    frame = fitted_frame(gaussians)
    placed = means.double() @ frame.world_to_scene[:3, :3].T + frame.world_to_scene[:3, 3]
    distance = placed.norm(dim=-1)
    assert float(placed.median(dim=0).values.abs().max()) < 1e-6
    assert abs(float((distance <= 1.0).double().mean()) - 0.9) < 0.01
    assert torch.equal(frame.up, torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))


def test_export_mesh_of_a_file_with_the_scene_cameras(splat_run, tiny_demo, tmp_path, capsys):
    trainer, ply = splat_run
    from_run, from_file = tmp_path / "run.ply", tmp_path / "file.ply"
    assert main(["export", "mesh", str(trainer.run_dir), "-o", str(from_run), *MESH_ARGS]) == 0
    assert main(["export", "mesh", str(ply), "--scene", str(tiny_demo), "-o", str(from_file), *MESH_ARGS]) == 0
    assert "Gaussians" in capsys.readouterr().out
    run_mesh, file_mesh = read_mesh(from_run), read_mesh(from_file)
    assert len(file_mesh["faces"]) > 50
    assert abs(len(file_mesh["faces"]) - len(run_mesh["faces"])) <= 0.02 * len(run_mesh["faces"])
    np.testing.assert_allclose(file_mesh["vertices"].min(0), run_mesh["vertices"].min(0), atol=2e-3)
    np.testing.assert_allclose(file_mesh["vertices"].max(0), run_mesh["vertices"].max(0), atol=2e-3)

    assert main(["export", "mesh", str(ply)]) == 2
    err = capsys.readouterr().err
    assert "--scene" in err and "splat file" in err and "\n" not in err.strip()


@pytest.mark.timeout(180)
def test_view_serves_a_splat_file(splat_run, tmp_path):
    _, ply = splat_run
    process = subprocess.Popen([sys.executable, "-m", "nerfkit.cli", "view", str(ply), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()
        match = re.search(r"(http://\S+)", line)
        assert match and "Gaussians" in line, line
        with urllib.request.urlopen(match.group(1), timeout=20) as page:
            assert page.status == 200 and b"<html" in page.read(2000).lower()
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    assert code == 0
