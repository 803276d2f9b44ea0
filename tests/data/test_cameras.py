"""Camera maths: OpenCV distortion inverts, the OpenGL->OpenCV flip is an involution that turns the
camera around, and generate_rays / project are inverse to each other (pinhole and distorted)."""

from __future__ import annotations

import math

import pytest
import torch

from nerfkit.data.cameras import (
    Cameras,
    distort,
    generate_rays,
    image_pixels,
    opengl_to_opencv,
    pixel_footprint_radii,
    project,
    undistort,
)

WIDTH, HEIGHT = 640, 480
INTRINSICS = [500.0, 510.0, 322.0, 238.5]                     # fx, fy, cx, cy
# k1, k2, p1, p2, k3 in the ranges COLMAP/OpenCV calibrations of ordinary lenses produce
LENSES = {
    "barrel": [-0.28, 0.09, 1.2e-3, -6e-4, -0.01],
    "pincushion": [0.08, -0.02, -4e-4, 8e-4, 0.0],
    "tangential_only": [0.0, 0.0, 2e-3, -1.5e-3, 0.0],
}


def _normalised_image_grid(step: int = 16) -> torch.Tensor:
    """Normalised undistorted coordinates of pixels all over the image, corners included."""
    xs = torch.cat([torch.arange(0, WIDTH, step), torch.tensor([WIDTH])]).double()
    ys = torch.cat([torch.arange(0, HEIGHT, step), torch.tensor([HEIGHT])]).double()
    px, py = torch.meshgrid(xs, ys, indexing="ij")
    fx, fy, cx, cy = INTRINSICS
    return torch.stack([(px - cx) / fx, (py - cy) / fy], -1).reshape(-1, 2)


def test_distort_follows_the_opencv_formula_and_coefficient_order():
    k1, k2, p1, p2, k3 = 0.1, -0.05, 0.01, 0.02, 0.003
    x, y = 0.3, -0.2
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    want = [x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y]
    got = distort(torch.tensor([x, y], dtype=torch.float64),
                  torch.tensor([k1, k2, p1, p2, k3], dtype=torch.float64))
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), atol=1e-15, rtol=0)
    torch.testing.assert_close(distort(torch.tensor([x, y]), torch.zeros(5)), torch.tensor([x, y]))


@pytest.mark.parametrize("lens", sorted(LENSES))
def test_undistort_inverts_distort_over_the_whole_image(lens):
    xy = _normalised_image_grid()
    coeffs = torch.tensor(LENSES[lens], dtype=torch.float64)
    distorted = distort(xy, coeffs)
    assert float((distorted - xy).abs().max()) > 1e-3          # the lens does move points
    recovered = undistort(distorted, coeffs)
    # 1e-10 in normalised units is 5e-8 pixels
    torch.testing.assert_close(recovered, xy, atol=1e-10, rtol=0)
    torch.testing.assert_close(distort(undistort(xy, coeffs), coeffs), xy, atol=1e-10, rtol=0)


def test_undistort_broadcasts_per_point_coefficients():
    xy = _normalised_image_grid(64)
    coeffs = torch.tensor([LENSES["barrel"], LENSES["pincushion"]], dtype=torch.float64)
    coeffs = coeffs[torch.arange(xy.shape[0]) % 2]
    torch.testing.assert_close(undistort(distort(xy, coeffs), coeffs), xy, atol=1e-10, rtol=0)


# ------------------------------------------------------------------------------ pose conventions

def _rotation(seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q


def _c2w(seed: int, position: list[float]) -> torch.Tensor:
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = _rotation(seed)
    c2w[:3, 3] = torch.tensor(position, dtype=torch.float64)
    return c2w


def test_opengl_to_opencv_is_an_involution():
    poses = torch.stack([_c2w(s, [s, -1.0, 2.0]) for s in range(5)])
    torch.testing.assert_close(opengl_to_opencv(opengl_to_opencv(poses)), poses, atol=1e-15, rtol=0)
    assert opengl_to_opencv(poses.float()).dtype == torch.float32


def test_opengl_to_opencv_turns_the_camera_around_and_keeps_it_in_place():
    gl = _c2w(7, [0.5, 1.0, -2.0])
    cv = opengl_to_opencv(gl)
    torch.testing.assert_close(cv[:3, 3], gl[:3, 3])                       # same centre
    torch.testing.assert_close(cv[:3, 0], gl[:3, 0])                       # same right
    torch.testing.assert_close(cv[:3, 1], -gl[:3, 1])                      # image down = -up
    torch.testing.assert_close(cv[:3, 2], -gl[:3, 2])                      # viewing direction flips
    assert float(torch.det(cv[:3, :3])) == pytest.approx(1.0)
    # a point the OpenGL camera sees (camera -z) is in front of the OpenCV camera (camera +z)
    point = gl @ torch.tensor([0.2, 0.1, -4.0, 1.0], dtype=torch.float64)
    local = torch.linalg.inv(cv) @ point
    torch.testing.assert_close(local[:3], torch.tensor([0.2, -0.1, 4.0], dtype=torch.float64))


# ---------------------------------------------------------------------------- rays and project

def _cameras(distortions: list[list[float]]) -> Cameras:
    n = len(distortions)
    return Cameras(
        c2w=torch.stack([_c2w(10 + i, [i * 0.7, -0.3, 1.5 - i]) for i in range(n)]).float(),
        intrinsics=torch.tensor([INTRINSICS] * n),
        sizes=torch.tensor([[WIDTH, HEIGHT]] * n),
        distortion=torch.tensor(distortions, dtype=torch.float32),
    )


@pytest.mark.parametrize("distortions", [
    [[0.0] * 5, [0.0] * 5],
    [LENSES["barrel"], LENSES["pincushion"]],
    [[0.0] * 5, LENSES["barrel"]],
], ids=["pinhole", "distorted", "mixed"])
def test_point_at_distance_3_along_a_ray_projects_back_to_its_pixel(distortions):
    cams = _cameras(distortions)
    pixels = image_pixels(WIDTH, HEIGHT)[::97]
    pixels = torch.cat([pixels, torch.tensor([[0.0, 0.0], [WIDTH, HEIGHT], [0.5, HEIGHT - 0.5]])])
    ids = torch.arange(pixels.shape[0]) % len(cams)
    origins, dirs = generate_rays(cams, ids, pixels)
    assert origins.dtype == torch.float32 and dirs.dtype == torch.float32
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(dirs.shape[0]))
    torch.testing.assert_close(origins, cams.c2w[ids, :3, 3])
    back = project(cams, ids, origins + 3.0 * dirs)
    torch.testing.assert_close(back, pixels.double(), atol=2e-3, rtol=0)   # float32 rays
    if any(any(d) for d in distortions):
        # not vacuous: ignoring the lens would miss the corners by pixels
        pinhole = Cameras(cams.c2w, cams.intrinsics, cams.sizes, torch.zeros_like(cams.distortion))
        naive = project(pinhole, ids, origins + 3.0 * dirs)
        assert float((naive - pixels).abs().max()) > 5.0


def test_the_principal_point_looks_down_the_camera_z_axis():
    radial_barrel = [-0.28, 0.09, 0.0, 0.0, -0.01]
    cams = _cameras([radial_barrel])
    _, dirs = generate_rays(cams, torch.zeros(1, dtype=torch.int64),
                            torch.tensor([[INTRINSICS[2], INTRINSICS[3]]]))
    torch.testing.assert_close(dirs[0], cams.c2w[0, :3, 2])
    # a pixel to the right of it looks towards camera +x, one below it towards camera +y
    _, side = generate_rays(cams, torch.zeros(2, dtype=torch.int64),
                            torch.tensor([[INTRINSICS[2] + 100, INTRINSICS[3]],
                                          [INTRINSICS[2], INTRINSICS[3] + 100]]))
    local = side @ cams.c2w[0, :3, :3]
    assert float(local[0, 0]) > 0.1 and abs(float(local[0, 1])) < 1e-6
    assert float(local[1, 1]) > 0.1 and abs(float(local[1, 0])) < 1e-6
    # barrel distortion squeezes the image: undistorted, the pixel looks further out than a pinhole's
    pinhole_angle = math.atan(100 / INTRINSICS[0])
    assert math.atan2(float(local[0, 0]), float(local[0, 2])) > pinhole_angle + 1e-3


# ---------------------------------------------------------------------------- pixel footprints

@pytest.mark.parametrize("distortions", [[[0.0] * 5], [LENSES["barrel"]]], ids=["pinhole", "distorted"])
def test_pixel_footprint_radius_is_the_pixel_angle_over_sqrt3_and_widens_with_downscaling(distortions):
    cams = _cameras(distortions)
    centre = torch.tensor([[INTRINSICS[2], INTRINSICS[3]]])
    ids = torch.zeros(1, dtype=torch.int64)
    radius = pixel_footprint_radii(cams, ids, centre)
    # at the principal point a pixel spans 1/fx radians; Mip-NeRF's radius is that * 2/sqrt(12)
    torch.testing.assert_close(radius, torch.tensor([1.0 / INTRINSICS[0] / 3.0 ** 0.5]), rtol=2e-3, atol=0)
    for factor in (2, 4):
        small = cams.downscaled(factor)
        wide = pixel_footprint_radii(small, ids, centre / factor)
        torch.testing.assert_close(wide, radius * factor, rtol=5e-3, atol=0)
    given = pixel_footprint_radii(cams, ids, centre, generate_rays(cams, ids, centre)[1])
    torch.testing.assert_close(given, radius, rtol=0, atol=0)     # the caller's own directions: same radius
    corner = pixel_footprint_radii(cams, ids, torch.tensor([[0.5, 0.5]]))
    assert float(corner) != pytest.approx(float(radius), rel=1e-3)   # measured per ray, not one constant
