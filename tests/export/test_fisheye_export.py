"""Exports of a fisheye capture: a point cloud back-projects each fisheye pixel's depth along its
fisheye ray, and a TSDF mesh fuses pinhole views rendered at the fisheye poses; both land on the
true surface. The "method" is an oracle that ray traces the demo object through each camera's own
lens (fisheye angles by the test helper's bisection, not nerfkit's inversion)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfkit.data import load_scene
from nerfkit.data.demo import demo_sdf, shade_demo, trace_demo
from nerfkit.data.similarity import invert_similarity, transform_points
from nerfkit.export.mesh import MeshOptions, export_mesh
from nerfkit.export.pointcloud import export_pointcloud
from nerfkit.export.views import render_view, to_world, view_points

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "methods"))
from fisheye_scenes import fisheye_ray_angle, write_fisheye_demo  # noqa: E402


class DemoOracle:
    """Renders the demo object exactly, in scene coordinates, through pinholes and fisheyes."""

    def __init__(self, world_to_scene: torch.Tensor) -> None:
        self.world_to_scene = world_to_scene.double()
        self.scene_to_world = invert_similarity(self.world_to_scene)
        self.scale = float(self.world_to_scene[:3, :3].det() ** (1 / 3))

    def _local_directions(self, camera) -> torch.Tensor:
        width, height = (int(v) for v in camera.sizes[0])
        fx, fy, cx, cy = (float(v) for v in camera.intrinsics[0])
        ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64) + 0.5,
                                torch.arange(width, dtype=torch.float64) + 0.5, indexing="ij")
        xy = torch.stack([(xs - cx) / fx, (ys - cy) / fy], -1).reshape(-1, 2)
        if not bool(camera.fisheye[0]):
            assert not camera.has_distortion
            return torch.cat([xy, torch.ones_like(xy[:, :1])], -1)
        radius = xy.norm(dim=-1)
        theta = fisheye_ray_angle(radius, tuple(float(k) for k in camera.distortion[0, :4]))
        return torch.cat([xy * (torch.sin(theta) / radius.clamp_min(1e-12))[:, None], torch.cos(theta)[:, None]], -1)

    def render(self, camera, background: torch.Tensor) -> dict[str, torch.Tensor]:
        width, height = (int(v) for v in camera.sizes[0])
        c2w = camera.c2w[0].double()
        dirs = self._local_directions(camera) @ c2w[:3, :3].T
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        origin = transform_points(self.scene_to_world, c2w[None, :3, 3])       # (1, 3) world
        t, hit = trace_demo(origin.float().expand(len(dirs), 3).contiguous(), dirs.float())
        rgb = background.float().expand(len(dirs), 3).clone()
        rgb[hit] = shade_demo(origin.float() + t[hit, None] * dirs[hit].float())
        depth = torch.where(hit, t * self.scale, torch.zeros_like(t))        # scene units along the unit ray
        return {"rgb": rgb.reshape(height, width, 3), "depth": depth.reshape(height, width).float(),
                "alpha": hit.float().reshape(height, width)}


@pytest.fixture(scope="module")
def fisheye_scene(tmp_path_factory):
    return load_scene(write_fisheye_demo(tmp_path_factory.mktemp("fisheye") / "scene", n_train=6, n_test=2))


def test_a_point_cloud_of_fisheye_views_lies_on_the_surface(fisheye_scene):
    assert fisheye_scene.cameras.has_fisheye
    oracle = DemoOracle(fisheye_scene.world_to_scene)
    cloud = export_pointcloud(oracle, fisheye_scene)
    distance = demo_sdf(torch.from_numpy(cloud.points).float()).abs()
    print(f"point cloud: {len(distance)} points, median |sdf| {float(distance.median()):.5f}")
    assert len(distance) > 1000 and float(distance.median()) < 2e-3
    # not vacuous: the same depths along the rays of a pinhole of the same focal length miss the surface
    index = fisheye_scene.split("train")[0]
    view = render_view(oracle, fisheye_scene.cameras[index])
    wrong = view_points(fisheye_scene, index, view, fisheye_scene.cameras[index].without_distortion())[0]
    wrong_distance = demo_sdf(torch.from_numpy(to_world(wrong.numpy(), fisheye_scene.world_to_scene)).float()).abs()
    print(f"along pinhole rays: median |sdf| {float(wrong_distance.median()):.5f}")
    assert float(wrong_distance.median()) > 0.01


def test_a_tsdf_mesh_of_a_fisheye_capture_lies_on_the_surface(fisheye_scene):
    mesh = export_mesh(DemoOracle(fisheye_scene.world_to_scene), fisheye_scene,
                       MeshOptions(resolution=64, fill_holes=False))
    distance = demo_sdf(torch.from_numpy(np.asarray(mesh.vertices)).float()).abs()
    print(f"mesh: {len(mesh.vertices)} vertices, median |sdf| {float(distance.median()):.5f}")
    assert len(mesh.faces) > 500 and float(distance.median()) < 0.02
