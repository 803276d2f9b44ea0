"""The OpenCV equidistant fisheye: its projection is COLMAP's, its rays (Newton-inverted angles)
project back onto their pixels to far below a pixel, also beyond 90 degrees from the axis, and it
mixes with pinhole and OpenCV cameras in one batch."""

from __future__ import annotations

import math

import numpy as np
import pycolmap
import pytest
import torch

from nerfkit.data.cameras import (
    Cameras,
    camera_directions,
    fisheye_angle,
    fisheye_radius,
    generate_rays,
    image_pixels,
    project,
)

WIDTH, HEIGHT = 640, 480
# k1, k2, k3, k4 as calibrations of real fisheye lenses give them
LENSES = {
    "gopro_like": [0.05, -0.01, 0.004, -0.0008],
    "equidistant": [0.0, 0.0, 0.0, 0.0],
    "compressing": [-0.03, 0.002, -0.0004, 0.00005],
}
# fx = fy = 190: the image corners are ~115 degrees from the axis (a 230-degree diagonal)
WIDE = [190.0, 191.0, 321.3, 239.2]
NARROW = [420.0, 418.0, 321.3, 239.2]


def _fisheye(intrinsics: list[float], lens: list[float], n: int = 1) -> Cameras:
    c2w = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    return Cameras(c2w, torch.tensor([intrinsics] * n, dtype=torch.float64), torch.tensor([[WIDTH, HEIGHT]] * n),
                   torch.tensor([lens + [0.0]] * n, dtype=torch.float64), torch.ones(n, dtype=torch.bool))


def _pixels_all_over_and_the_corners() -> torch.Tensor:
    """Every 7th pixel centre (row-major, so all over the image), the border's and the 4 corners."""
    pixels = image_pixels(WIDTH, HEIGHT).double()
    border = pixels[(pixels[:, 0] < 1) | (pixels[:, 0] > WIDTH - 1) | (pixels[:, 1] < 1) | (pixels[:, 1] > HEIGHT - 1)]
    corners = torch.tensor([[0.0, 0.0], [WIDTH, 0.0], [0.0, HEIGHT], [WIDTH, HEIGHT]], dtype=torch.float64)
    return torch.cat([pixels[::7], border, corners])


def test_fisheye_angle_inverts_the_radius_polynomial():
    theta = torch.linspace(0.0, math.radians(120.0), 2001, dtype=torch.float64)
    for lens in LENSES.values():
        k = torch.tensor(lens, dtype=torch.float64)
        radius = fisheye_radius(theta, k)
        assert bool((radius[1:] > radius[:-1]).all())            # these lenses are monotone to 120 degrees
        torch.testing.assert_close(fisheye_angle(radius, k), theta, atol=1e-12, rtol=0)


@pytest.mark.parametrize("lens", LENSES)
@pytest.mark.parametrize("intrinsics", [WIDE, NARROW], ids=["wide", "narrow"])
def test_project_of_the_ray_of_a_pixel_is_that_pixel(lens, intrinsics):
    camera = _fisheye(intrinsics, LENSES[lens])
    pixels = _pixels_all_over_and_the_corners()
    ids = torch.zeros(len(pixels), dtype=torch.long)
    directions = camera_directions(camera, ids, pixels)
    torch.testing.assert_close(directions.norm(dim=-1), torch.ones(len(pixels), dtype=torch.float64))
    error = (project(camera, ids, 2.5 * directions) - pixels).norm(dim=-1)
    assert float(error.max()) < 1e-5, float(error.max())
    if intrinsics is WIDE:          # the corners look backwards: rays no pinhole has
        assert float(directions[-4:, 2].max()) < -0.3


@pytest.mark.parametrize("model", ["OPENCV_FISHEYE", "RADIAL_FISHEYE"])
def test_projection_and_rays_are_colmaps(model):
    k = LENSES["gopro_like"] if model == "OPENCV_FISHEYE" else LENSES["gopro_like"][:2] + [0.0, 0.0]
    fx, fy, cx, cy = NARROW if model == "OPENCV_FISHEYE" else [NARROW[0], NARROW[0], *NARROW[2:]]
    reference = pycolmap.Camera.create_from_model_name(1, model, 1.0, WIDTH, HEIGHT)
    reference.params = [fx, fy, cx, cy, *k] if model == "OPENCV_FISHEYE" else [fx, cx, cy, *k[:2]]
    camera = _fisheye([fx, fy, cx, cy], k)
    local = np.random.default_rng(0).uniform([-1.0, -1.0, 0.3], [1.0, 1.0, 2.0], (500, 3))   # up to ~78 degrees
    ids = torch.zeros(len(local), dtype=torch.long)
    ours = project(camera, ids, torch.from_numpy(local)).numpy()
    np.testing.assert_allclose(ours, reference.img_from_cam(local), atol=1e-5, rtol=0)
    directions = camera_directions(camera, ids, torch.from_numpy(ours)).numpy()
    np.testing.assert_allclose(directions[:, :2] / directions[:, 2:], reference.cam_from_img(ours), atol=1e-8, rtol=0)


def test_fisheye_pinhole_and_opencv_cameras_share_a_batch():
    c2w = torch.eye(4).repeat(3, 1, 1)
    c2w[:, :3, 3] = torch.tensor([[0.0, 0.0, 0.0], [1.0, -0.5, 0.2], [-0.3, 0.4, 1.0]])
    cameras = Cameras(c2w, torch.tensor([NARROW] * 3), torch.tensor([[WIDTH, HEIGHT]] * 3),
                      torch.tensor([[0.0] * 5, [-0.28, 0.09, 1.2e-3, -6e-4, -0.01], LENSES["gopro_like"] + [0.0]]),
                      torch.tensor([False, False, True]))
    pixels = image_pixels(WIDTH, HEIGHT)[::37]
    ids = torch.arange(len(pixels)) % 3
    origins, directions = generate_rays(cameras, ids, pixels)
    assert directions.dtype == torch.float32
    back = project(cameras, ids, origins + 3.0 * directions)
    torch.testing.assert_close(back, pixels.double(), atol=2e-3, rtol=0)        # float32 rays
    alone = generate_rays(cameras[2], torch.zeros(int((ids == 2).sum()), dtype=torch.long), pixels[ids == 2])[1]
    torch.testing.assert_close(directions[ids == 2], alone)
    # not vacuous: a pinhole of the fisheye's focal length misses its pixels by tens of pixels
    naive = project(cameras.without_distortion(), ids, origins + 3.0 * directions)
    assert float((naive - pixels)[ids == 2].abs().max()) > 20.0
    assert not cameras.without_distortion().has_distortion and cameras[2].has_fisheye


def test_scaling_keeps_the_lens_and_its_angles():
    camera = _fisheye(NARROW, LENSES["gopro_like"])
    half = camera.downscaled(2)
    assert bool(half.fisheye.all()) and bool(camera.scaled(0.5).fisheye.all()) and bool(camera.to("cpu").fisheye.all())
    full = camera_directions(camera, torch.zeros(1, dtype=torch.long), torch.tensor([[600.0, 400.0]]))
    small = camera_directions(half, torch.zeros(1, dtype=torch.long), torch.tensor([[300.0, 200.0]]))
    torch.testing.assert_close(small, full)
