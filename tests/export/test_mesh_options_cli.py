"""`nerfkit export mesh` options: --texture writes .obj + .mtl + .png whose uv atlas covers the
faces, --faces decimates, --crop keeps only the box (world coordinates), --max-views thins the
views, --fill-holes closes the mesh; bad values are one sentence each and write nothing."""

from __future__ import annotations

import numpy as np
import pytest

from test_export_mesh_cli import CHAMFER_BOUND, _chamfer, _one_error
from nerfkit.cli import main
from nerfkit.export.mesh_io import read_mesh

RESOLUTION = "64"


def _boundary_edges(faces: np.ndarray) -> int:
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return int((counts == 1).sum())


def test_textured_obj_has_atlas_texture_and_the_geometry(trained_run, gt_surface, tmp_path, capsys):
    out = tmp_path / "mesh.obj"
    assert main(["export", "mesh", str(trained_run), "-o", str(out), "--resolution", RESOLUTION,
                 "--texture", "--texture-size", "256"]) == 0
    printed = capsys.readouterr().out
    for name in ("mesh.obj", "mesh.mtl", "mesh.png"):
        assert (tmp_path / name).is_file() and name in printed
    mesh = read_mesh(out)
    assert mesh["texture"] == tmp_path / "mesh.png"
    assert mesh["face_uvs"].shape == mesh["faces"].shape and mesh["uvs"].min() >= 0 and mesh["uvs"].max() <= 1
    from PIL import Image

    image = np.asarray(Image.open(mesh["texture"]).convert("RGB"))
    assert image.shape == (256, 256, 3)
    covered = image.any(axis=-1).mean()
    assert covered > 0.3 and len(np.unique(image.reshape(-1, 3), axis=0)) > 100
    assert _chamfer(mesh, gt_surface[1]) < CHAMFER_BOUND


def test_faces_decimates_and_keeps_the_surface(trained_run, gt_surface, tmp_path):
    full, small = tmp_path / "full.ply", tmp_path / "small.ply"
    assert main(["export", "mesh", str(trained_run), "-o", str(full), "--resolution", RESOLUTION]) == 0
    assert main(["export", "mesh", str(trained_run), "-o", str(small), "--resolution", RESOLUTION,
                 "--faces", "2000"]) == 0
    full_mesh, small_mesh = read_mesh(full), read_mesh(small)
    assert len(full_mesh["faces"]) > 4000 and 1500 <= len(small_mesh["faces"]) <= 2000
    assert small_mesh["colors"] is not None and len(np.unique(small_mesh["colors"], axis=0)) > 50
    assert _chamfer(small_mesh, gt_surface[1]) < CHAMFER_BOUND


def test_crop_box_keeps_only_what_is_inside_it(trained_run, gt_surface, tmp_path):
    gt_vertices = gt_surface[0]
    low, high = gt_vertices.min(0), gt_vertices.max(0)
    middle = 0.5 * (low + high)
    crop = [low[0] - 0.1, low[1] - 0.1, low[2] - 0.1, middle[0], high[1] + 0.1, high[2] + 0.1]
    out = tmp_path / "half.ply"
    assert main(["export", "mesh", str(trained_run), "-o", str(out), "--resolution", RESOLUTION,
                 "--crop", *map(str, crop)]) == 0
    vertices = read_mesh(out)["vertices"]
    voxel = (high - low).max() / 64
    assert vertices[:, 0].max() <= middle[0] + voxel             # nothing right of the cut
    assert vertices[:, 0].min() < low[0] + 0.1                   # the left half is there
    assert len(vertices) > 500


def test_fill_holes_closes_the_mesh_and_no_fill_leaves_it_open(trained_run, tmp_path):
    closed, open_ = tmp_path / "closed.ply", tmp_path / "open.ply"
    assert main(["export", "mesh", str(trained_run), "-o", str(closed), "--resolution", RESOLUTION,
                 "--fill-holes"]) == 0
    assert main(["export", "mesh", str(trained_run), "-o", str(open_), "--resolution", RESOLUTION,
                 "--no-fill-holes"]) == 0
    assert _boundary_edges(read_mesh(closed)["faces"]) == 0
    assert _boundary_edges(read_mesh(open_)["faces"]) > 0


def test_max_views_fuses_fewer_views(trained_run, tmp_path, capsys):
    out = tmp_path / "few.ply"
    assert main(["export", "mesh", str(trained_run), "-o", str(out), "--resolution", "32",
                 "--max-views", "4"]) == 0
    assert "4 views" in capsys.readouterr().out


@pytest.mark.parametrize("args, words", [
    (["--crop", "0", "0", "0", "1", "-1", "1"], "is empty"),
    (["--crop", "0", "0", "0", "0", "1", "1"], "is empty"),
    (["--crop", "5", "5", "5", "6", "6", "6"], "no surface"),
    (["--texture", "-o", "{tmp}/mesh.ply"], "expected an .obj"),
    (["--faces", "3"], "--faces"),
    (["--max-views", "-1"], "--max-views"),
    (["--texture-size", "16", "--texture", "-o", "{tmp}/m.obj"], "--texture-size"),
])
def test_bad_mesh_options_are_one_sentence_and_write_nothing(trained_run, tmp_path, capsys, args, words):
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "out.ply")]
    assert main(["export", "mesh", str(trained_run), "--resolution", "16", *args]) == 2
    assert words in _one_error(capsys)
    assert list(tmp_path.iterdir()) == []
