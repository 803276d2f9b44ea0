"""Moving Gaussians and cameras by a similarity: rotated SH keep every view's colour, covariances
become s^2 R Sigma R^T, the inverse undoes the move, a scene rendered in scene coordinates and the
same scene moved to world coordinates give the same image (depths scaled), and similarities with a
non-uniform scale or a reflection are refused."""

from __future__ import annotations

import math

import pytest
import torch

from nerfkit.data.similarity import (
    camera_to_world_from_scene,
    decompose_similarity,
    invert_similarity,
    transform_c2w,
    transform_camera,
)
from nerfkit.export.transform import gaussians_to_world, transform_gaussians
from nerfkit.render.gaussians import covariance_3d
from nerfkit.render.spherical_harmonics import rotate_sh, sh_encode, sh_rotation_matrix
from nerfkit.render.splat import RasterSettings, render_gaussians

SH_COUNT = {0: 0, 1: 3, 2: 8, 3: 15}  # K, the higher-band SH coefficients per channel


def random_rotation(generator: torch.Generator) -> torch.Tensor:
    """(3, 3) float64 rotation, uniform over SO(3) (QR of a Gaussian matrix, signs fixed)."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_directions(count: int, generator: torch.Generator) -> torch.Tensor:
    directions = torch.randn(count, 3, generator=generator, dtype=torch.float64)
    return torch.nn.functional.normalize(directions, dim=-1)


def colour(sh: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """(N, M, C) coefficients seen along (P, 3) unit directions -> (N, P, C), 3DGS's sum Y_k sh_k + 0.5."""
    degree = math.isqrt(sh.shape[1]) - 1
    return torch.einsum("pk,nkc->npc", sh_encode(directions, degree + 1), sh) + 0.5


def similarity(scale: float, rotation: torch.Tensor, translation: list[float]) -> torch.Tensor:
    out = torch.eye(4, dtype=torch.float64)
    out[:3, :3] = scale * rotation
    out[:3, 3] = torch.tensor(translation, dtype=torch.float64)
    return out


def random_gaussians(count: int, degree: int, generator: torch.Generator,
                     dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=dtype)

    return {"means": randn(count, 3), "quats": randn(count, 4) * 2.0, "scales": randn(count, 3) - 2.0,
            "opacities": randn(count), "sh0": randn(count, 1, 3),
            "shN": randn(count, SH_COUNT[degree], 3)}


# --- spherical harmonics ---------------------------------------------------------------------------

@pytest.mark.parametrize("degree", [0, 1, 2, 3, 4])
def test_rotated_sh_give_the_same_colour_along_the_rotated_direction(degree):
    generator = torch.Generator().manual_seed(degree)
    sh = torch.randn(6, (degree + 1) ** 2, 3, generator=generator, dtype=torch.float64)
    directions = random_directions(500, generator)
    for _ in range(5):
        rotation = random_rotation(generator)
        rotated = rotate_sh(sh, rotation)
        expected = colour(sh, directions)
        assert torch.allclose(colour(rotated, directions @ rotation.T), expected, rtol=0, atol=1e-12)
    if degree:   # not vacuous: the unrotated coefficients give other colours along R d
        assert (colour(sh, directions @ rotation.T) - expected).abs().max() > 0.1


def test_band_one_rotates_like_a_vector():
    # Band 1 is (-y, z, -x) * c1, so its coefficients (a, b, c) describe d -> c1 (-c, -a, b) . d
    # and rotating the function by R rotates that vector by R.
    generator = torch.Generator().manual_seed(1)
    sh = torch.randn(10, 4, 1, generator=generator, dtype=torch.float64)
    rotation = random_rotation(generator)
    rotated = rotate_sh(sh, rotation)

    def vector(coefficients: torch.Tensor) -> torch.Tensor:
        a, b, c = coefficients[:, 1:, 0].unbind(-1)
        return torch.stack([-c, -a, b], -1)

    assert torch.allclose(vector(rotated), vector(sh) @ rotation.T, rtol=0, atol=1e-12)
    assert torch.equal(rotated[:, 0], sh[:, 0])


def test_identity_leaves_coefficients_unchanged():
    sh = torch.randn(20, 16, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.allclose(rotate_sh(sh, torch.eye(3, dtype=torch.float64)), sh, rtol=0, atol=1e-13)
    assert torch.allclose(sh_rotation_matrix(torch.eye(3), 3), torch.eye(16, dtype=torch.float64),
                          rtol=0, atol=1e-13)


def test_rotating_twice_equals_rotating_by_the_product():
    generator = torch.Generator().manual_seed(3)
    sh = torch.randn(20, 16, 3, generator=generator, dtype=torch.float64)
    first, second = random_rotation(generator), random_rotation(generator)
    assert torch.allclose(rotate_sh(rotate_sh(sh, first), second), rotate_sh(sh, second @ first),
                          rtol=0, atol=1e-12)
    inverse = rotate_sh(rotate_sh(sh, first), first.T)
    assert torch.allclose(inverse, sh, rtol=0, atol=1e-12)


def test_sh_rotation_matrix_is_orthogonal_and_block_diagonal_per_band():
    matrix = sh_rotation_matrix(random_rotation(torch.Generator().manual_seed(4)), 3)
    assert torch.allclose(matrix @ matrix.T, torch.eye(16, dtype=torch.float64), rtol=0, atol=1e-12)
    band = torch.tensor([0] + [1] * 3 + [2] * 5 + [3] * 7)
    other_band = band[:, None] != band[None, :]
    assert torch.all(matrix[other_band].abs() < 1e-13)
    assert torch.all(matrix[band[:, None] == band[None, :]].abs().sum() > 1.0)


def test_rotate_sh_keeps_dtype_and_rejects_a_non_square_coefficient_count():
    sh = torch.randn(5, 9, 3)
    rotation = random_rotation(torch.Generator().manual_seed(5)).float()
    out = rotate_sh(sh, rotation)
    assert out.dtype == torch.float32 and out.shape == sh.shape
    assert torch.allclose(out, rotate_sh(sh.double(), rotation.double()).float(), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="degree"):
        rotate_sh(torch.zeros(5, 8, 3), rotation)
    with pytest.raises(ValueError, match="0..4"):
        sh_rotation_matrix(rotation, 5)


# --- Gaussian geometry -----------------------------------------------------------------------------

def test_transformed_gaussians_have_mapped_means_and_covariances_s2_r_sigma_rt():
    generator = torch.Generator().manual_seed(6)
    gaussians = random_gaussians(50, 3, generator, torch.float64)
    rotation = random_rotation(generator)
    moved = transform_gaussians(gaussians, similarity(2.7, rotation, [0.3, -1.2, 2.0]))
    assert torch.allclose(moved["means"], 2.7 * gaussians["means"] @ rotation.T
                          + torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64), rtol=0, atol=1e-12)
    expected = 2.7 ** 2 * rotation @ covariance_3d(gaussians["quats"], gaussians["scales"]) @ rotation.T
    assert torch.allclose(covariance_3d(moved["quats"], moved["scales"]), expected, rtol=1e-10, atol=1e-14)
    assert torch.allclose(moved["scales"], gaussians["scales"] + math.log(2.7), rtol=0, atol=1e-12)
    assert torch.allclose(moved["quats"].norm(dim=-1), gaussians["quats"].norm(dim=-1), rtol=1e-12)
    assert torch.equal(moved["opacities"], gaussians["opacities"])
    assert torch.equal(moved["sh0"], gaussians["sh0"])
    directions = random_directions(100, generator)
    sh, sh_moved = (torch.cat([g["sh0"], g["shN"]], 1) for g in (gaussians, moved))
    assert torch.allclose(colour(sh_moved, directions @ rotation.T), colour(sh, directions),
                          rtol=0, atol=1e-12)


def test_inverse_similarity_gives_back_the_input():
    generator = torch.Generator().manual_seed(7)
    gaussians = random_gaussians(100, 2, generator)
    forward = similarity(0.37, random_rotation(generator), [4.0, -2.0, 0.5])
    back = transform_gaussians(transform_gaussians(gaussians, forward), invert_similarity(forward))
    assert sorted(back) == sorted(gaussians)
    for key in ("means", "scales", "opacities", "sh0", "shN"):
        assert back[key].dtype == torch.float32
        assert torch.allclose(back[key], gaussians[key], rtol=1e-5, atol=1e-5), key
    same_sign = torch.sign((back["quats"] * gaussians["quats"]).sum(-1, keepdim=True))
    assert torch.allclose(back["quats"] * same_sign, gaussians["quats"], rtol=1e-5, atol=1e-5)
    assert torch.allclose(invert_similarity(forward) @ forward, torch.eye(4, dtype=torch.float64),
                          rtol=0, atol=1e-12)


def test_gaussians_to_world_undoes_world_to_scene_and_keeps_dtypes():
    generator = torch.Generator().manual_seed(8)
    world = random_gaussians(30, 1, generator)
    world["extra"] = torch.zeros(30)
    world_to_scene = similarity(2.7, random_rotation(generator), [0.3, -1.2, 2.0]).float()
    back = gaussians_to_world(transform_gaussians(world, world_to_scene), world_to_scene)
    assert "extra" not in back
    for key in ("means", "quats", "scales", "shN"):
        assert back[key].dtype == torch.float32
        assert torch.allclose(back[key], world[key], rtol=1e-5, atol=1e-5), key


def test_degree_zero_gaussians_and_an_empty_set_are_moved():
    generator = torch.Generator().manual_seed(9)
    move = similarity(1.5, random_rotation(generator), [1.0, 2.0, 3.0])
    for count in (0, 7):
        moved = transform_gaussians(random_gaussians(count, 0, generator), move)
        assert moved["shN"].shape == (count, 0, 3) and moved["means"].shape == (count, 3)


def test_camera_to_world_from_scene_is_the_same_camera_in_world_units():
    generator = torch.Generator().manual_seed(10)
    world_to_scene = similarity(2.7, random_rotation(generator), [0.3, -1.2, 2.0])
    c2w_scene = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
    for i in range(3):
        c2w_scene[i, :3, :3] = random_rotation(generator)
        c2w_scene[i, :3, 3] = torch.randn(3, generator=generator, dtype=torch.float64)
    c2w_world = camera_to_world_from_scene(c2w_scene, world_to_scene)
    rotations = c2w_world[:, :3, :3]
    identity = torch.eye(3, dtype=torch.float64).expand(3, 3, 3)
    assert torch.allclose(rotations @ rotations.transpose(1, 2), identity, rtol=0, atol=1e-12)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(3, dtype=torch.float64))
    # a world point has the same camera coordinates in both, up to the scale s
    points_world = torch.randn(20, 3, generator=generator, dtype=torch.float64)
    points_scene = points_world @ world_to_scene[:3, :3].T + world_to_scene[:3, 3]
    for scene_pose, world_pose in zip(c2w_scene, c2w_world):
        in_scene_camera = (points_scene - scene_pose[:3, 3]) @ scene_pose[:3, :3]
        in_world_camera = (points_world - world_pose[:3, 3]) @ world_pose[:3, :3]
        assert torch.allclose(in_scene_camera, 2.7 * in_world_camera, rtol=0, atol=1e-12)
    # and nerfkit's loader-side transform takes it back to the scene pose
    assert torch.allclose(transform_c2w(world_to_scene, c2w_world), c2w_scene, rtol=0, atol=1e-12)
    single = camera_to_world_from_scene(c2w_scene[0].float(), world_to_scene)
    assert single.dtype == torch.float32 and torch.allclose(single.double(), c2w_world[0], atol=1e-5)


# --- the outcome: the same image from the world-coordinate scene -----------------------------------

def look_at(eye: list[float], target: list[float]) -> torch.Tensor:
    """(4, 4) OpenCV camera-to-world (x right, y down, z forward) at ``eye`` looking at ``target``."""
    eye_t, target_t = torch.tensor(eye, dtype=torch.float64), torch.tensor(target, dtype=torch.float64)
    forward = torch.nn.functional.normalize(target_t - eye_t, dim=0)
    up_hint = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, up_hint), dim=0)
    down = torch.linalg.cross(forward, right)
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, eye_t
    return pose


def test_scene_moved_to_world_renders_the_same_image_with_depths_divided_by_s(one_torch_thread):
    generator = torch.Generator().manual_seed(11)
    count = 300
    scene = {"means": (torch.rand(count, 3, generator=generator) - 0.5) * 1.6,
             "quats": torch.randn(count, 4, generator=generator),
             "scales": torch.log(0.03 + 0.09 * torch.rand(count, 3, generator=generator)),
             "opacities": torch.randn(count, generator=generator),
             "sh0": 0.5 * torch.randn(count, 1, 3, generator=generator),
             "shN": 0.3 * torch.randn(count, 15, 3, generator=generator)}
    c2w_scene = look_at([1.2, -0.8, -2.8], [0.05, 0.0, 0.1])
    intrinsics = torch.tensor([60.0, 62.0, 31.0, 25.0])
    background = torch.tensor([0.2, 0.3, 0.4])
    scale = 2.7
    rotation = torch.tensor([[0.36, 0.48, -0.8], [-0.8, 0.6, 0.0], [0.48, 0.64, 0.6]], dtype=torch.float64)
    world_to_scene = similarity(scale, rotation, [0.3, -1.2, 2.0])

    def render(gaussians: dict[str, torch.Tensor], pose: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return render_gaussians(gaussians, pose, intrinsics, 64, 48, background, 3, RasterSettings())

    world = gaussians_to_world(scene, world_to_scene)
    c2w_world = camera_to_world_from_scene(c2w_scene, world_to_scene)
    assert not torch.allclose(world["means"], scene["means"], atol=0.1)
    in_scene, in_world = render(scene, c2w_scene), render(world, c2w_world)

    assert in_scene["alpha"].mean() > 0.3 and in_scene["alpha"].min() < 0.5   # content, and edges
    assert (in_scene["rgb"] - in_world["rgb"]).abs().max() < 2e-5
    assert (in_scene["alpha"] - in_world["alpha"]).abs().max() < 2e-5
    assert torch.allclose(in_world["depth"] * scale, in_scene["depth"], rtol=1e-5, atol=1e-5)

    # not vacuous: leaving the SH unrotated changes the picture
    unrotated = dict(world, shN=scene["shN"])
    assert (render(unrotated, c2w_world)["rgb"] - in_scene["rgb"]).abs().max() > 0.05


# --- refused similarities --------------------------------------------------------------------------

def bad_similarities() -> dict[str, tuple[torch.Tensor, str]]:
    rotation = random_rotation(torch.Generator().manual_seed(12))
    non_uniform = similarity(1.0, rotation, [0.0, 0.0, 1.0])
    non_uniform[:3, :3] = rotation @ torch.diag(torch.tensor([1.0, 1.0, 1.1], dtype=torch.float64))
    reflection = similarity(2.0, rotation @ torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)),
                            [0.0, 0.0, 0.0])
    projective = similarity(1.0, rotation, [0.0, 0.0, 0.0])
    projective[3, 0] = 0.5
    singular = torch.eye(4, dtype=torch.float64)
    singular[:3, :3] = 0.0
    not_finite = similarity(1.0, rotation, [0.0, float("nan"), 0.0])
    return {"non-uniform": (non_uniform, "scale all axes alike"), "reflection": (reflection, "reflection"),
            "projective": (projective, "last row"), "singular": (singular, "singular"),
            "not finite": (not_finite, "NaN"), "3x3": (torch.eye(3), r"\(4, 4\)")}


@pytest.mark.parametrize("case", sorted(bad_similarities()))
def test_similarities_that_are_not_uniform_scale_rotations_are_refused(case):
    matrix, message = bad_similarities()[case]
    gaussians = random_gaussians(3, 1, torch.Generator().manual_seed(13))
    with pytest.raises(ValueError, match=message):
        transform_gaussians(gaussians, matrix)
    with pytest.raises(ValueError, match=message):
        gaussians_to_world(gaussians, matrix)
    with pytest.raises(ValueError, match=message):
        camera_to_world_from_scene(torch.eye(4), matrix)
    with pytest.raises(ValueError, match=message):
        transform_camera(torch.eye(4), matrix)


def test_float32_similarity_is_accepted_and_its_rotation_made_orthonormal():
    rotation = random_rotation(torch.Generator().manual_seed(14))
    scale, exact, translation = decompose_similarity(similarity(2.7, rotation, [1.0, 2.0, 3.0]).float())
    assert abs(scale - 2.7) < 1e-6
    assert torch.allclose(translation, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    assert torch.allclose(exact @ exact.T, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-14)
    assert torch.allclose(exact, rotation, atol=1e-6)


def test_missing_gaussian_keys_are_named():
    gaussians = random_gaussians(3, 1, torch.Generator().manual_seed(15))
    del gaussians["quats"]
    with pytest.raises(ValueError, match="quats"):
        transform_gaussians(gaussians, torch.eye(4))
