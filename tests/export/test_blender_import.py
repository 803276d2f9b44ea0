"""A real client: Blender (the ``bpy`` package of the test extras) imports our exported .ply and
textured .obj with the vertex count we wrote, the colours and the texture, at the demo scene's
ground-truth placement in world coordinates (Z up).

Blender runs in a subprocess (``blender_check.py``) so its libraries never share a process with
torch. Without ``bpy`` (it exists for CPython 3.11 only) the tests skip, saying so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from blender_check import REPORT_PREFIX
from nerfkit.cli import main
from nerfkit.export.mesh_io import read_mesh

CHECK = Path(__file__).with_name("blender_check.py")
BBOX_TOLERANCE = 0.1      # world units, as for the demo mesh in test_export_mesh_cli.py (gt diagonal ~2.6)


def _blender_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("bpy") is not None


pytestmark = pytest.mark.skipif(not _blender_available(),
                                reason="bpy (Blender as a Python module, CPython 3.11) is not installed")


def blender_import(path: Path) -> dict:
    """What Blender made of ``path`` (see blender_check.py)."""
    result = subprocess.run([sys.executable, str(CHECK), str(path)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith(REPORT_PREFIX)]
    assert len(lines) == 1, result.stdout[-2000:]
    report = json.loads(lines[0][len(REPORT_PREFIX):])
    assert "error" not in report, report
    return report


def _check_placement(report: dict, written: dict, gt_vertices: np.ndarray) -> None:
    box = np.array([report["bbox_min"], report["bbox_max"]])
    ours = np.stack([written["vertices"].min(0), written["vertices"].max(0)])
    gt_box = np.stack([gt_vertices.min(0), gt_vertices.max(0)])
    assert np.abs(box - ours).max() < 1e-4, (box, ours)          # Blender put it where we wrote it
    assert np.abs(box - gt_box).max() < BBOX_TOLERANCE, (box, gt_box)   # ... which is the scene's


def test_blender_imports_the_ply_with_vertex_colours_in_world_coordinates(trained_run, gt_surface, tmp_path):
    out = tmp_path / "mesh.ply"
    assert main(["export", "mesh", str(trained_run), "-o", str(out), "--resolution", "64"]) == 0
    written = read_mesh(out)
    report = blender_import(out)
    assert report["vertices"] == len(written["vertices"]) and report["faces"] == len(written["faces"])
    _check_placement(report, written, gt_surface[0])
    colors = np.array(report["colors"])
    assert report["color_attributes"] and colors.shape == written["colors"].shape
    assert np.abs(colors - written["colors"].astype(int)).max() <= 1    # the same colours, in order
    assert len(np.unique(colors, axis=0)) > 50


def test_blender_imports_the_textured_obj_with_its_texture(trained_run, gt_surface, tmp_path):
    out = tmp_path / "textured" / "mesh.obj"
    assert main(["export", "mesh", str(trained_run), "-o", str(out), "--resolution", "64",
                 "--texture", "--texture-size", "256", "--faces", "3000"]) == 0
    written = read_mesh(out)
    report = blender_import(out)
    assert report["vertices"] == len(written["vertices"]) and report["faces"] == len(written["faces"])
    assert report["faces"] <= 3000
    _check_placement(report, written, gt_surface[0])
    textures = report["textures"]
    assert len(textures) == 1, textures
    texture = textures[0]
    assert Path(texture["file"]).name == "mesh.png" and texture["size"] == [256, 256]
    assert texture["has_data"] and texture["std"] > 0.05 and texture["distinct"] > 100
