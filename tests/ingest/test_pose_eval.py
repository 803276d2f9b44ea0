"""Umeyama is exact and optimal; alignment undoes a gauge; pose errors show where they were made."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nerfkit.data.similarity import transform_c2w
from nerfkit.ingest.pose_eval import (align_poses, image_stem, match_by_stem, pose_errors,
                                    read_true_poses, rotation_angle_deg, umeyama_similarity)
from nerfkit.core.errors import NerfkitError

EYE = torch.eye(4)
_POINTS = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))


def random_rotation(generator: torch.Generator) -> torch.Tensor:
    """(3, 3) float64 rotation (det +1) from the QR of a Gaussian matrix."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q if float(torch.linalg.det(q)) > 0 else -q


def axis_angle(axis, degrees: float) -> torch.Tensor:
    """(3, 3) float64 rotation by ``degrees`` about ``axis`` (Rodrigues)."""
    axis = torch.as_tensor(axis, dtype=torch.float64)
    axis = axis / axis.norm()
    k = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]],
                      [-axis[1], axis[0], 0.0]], dtype=torch.float64)
    angle = math.radians(degrees)
    return torch.eye(3, dtype=torch.float64) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def similarity(scale: float, rotation: torch.Tensor, translation) -> torch.Tensor:
    """(4, 4) float64 ``[[s R, t], [0, 1]]``."""
    out = torch.eye(4, dtype=torch.float64)
    out[:3, :3] = scale * rotation
    out[:3, 3] = torch.as_tensor(translation, dtype=torch.float64)
    return out


def random_cameras(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 4, 4) float64 c2w with random orientations and centres spread over a few units."""
    generator = torch.Generator().manual_seed(seed)
    c2w = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    for i in range(n):
        c2w[i, :3, :3] = random_rotation(generator)
    c2w[:, :3, 3] = 3.0 * torch.randn(n, 3, generator=generator, dtype=torch.float64)
    return c2w


def gauge() -> torch.Tensor:
    """A known similarity from the true world to an 'estimated' world (what COLMAP might pick)."""
    return similarity(0.37, random_rotation(torch.Generator().manual_seed(7)), [4.0, -1.5, 9.0])


def test_umeyama_recovers_a_known_similarity_exactly():
    generator = torch.Generator().manual_seed(1)
    truth = similarity(2.7, random_rotation(generator), [1.0, -2.0, 0.5])
    source = torch.randn(20, 3, generator=generator, dtype=torch.float64)
    target = source @ truth[:3, :3].T + truth[:3, 3]
    fit = umeyama_similarity(source, target)
    assert fit.dtype == torch.float64 and fit.shape == (4, 4)
    torch.testing.assert_close(fit, truth, rtol=0, atol=1e-12)


def test_umeyama_with_noise_is_close_and_no_worse_than_the_truth():
    generator = torch.Generator().manual_seed(2)
    rotation = random_rotation(generator)
    truth = similarity(0.5, rotation, [3.0, 0.0, -1.0])
    source = torch.randn(200, 3, generator=generator, dtype=torch.float64)
    target = source @ truth[:3, :3].T + truth[:3, 3]
    target = target + 1e-3 * torch.randn(200, 3, generator=generator, dtype=torch.float64)
    fit = umeyama_similarity(source, target)
    scale = float(torch.linalg.det(fit[:3, :3])) ** (1 / 3)
    assert scale == pytest.approx(0.5, rel=1e-3)
    assert float(rotation_angle_deg(rotation, fit[:3, :3] / scale)) < 0.05
    assert float((fit[:3, 3] - truth[:3, 3]).norm()) < 1e-3

    def cost(t):
        return float((source @ t[:3, :3].T + t[:3, 3] - target).square().sum())

    assert cost(fit) <= cost(truth)   # least squares: the generating similarity cannot beat it


def test_umeyama_never_returns_a_reflection():
    generator = torch.Generator().manual_seed(3)
    source = torch.randn(10, 3, generator=generator, dtype=torch.float64)
    mirrored = source * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    fit = umeyama_similarity(source, mirrored)
    assert float(torch.linalg.det(fit[:3, :3])) > 0


@pytest.mark.parametrize("source, target", [
    (torch.tensor([[0.0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3]]), _POINTS[:4]),   # collinear
    (_POINTS[:4], torch.tensor([[0.0, 0, 1]]).repeat(4, 1)),                    # one point
    (_POINTS[:2], _POINTS[1:3]),                                                # too few
    (_POINTS, _POINTS[:4]),                                                     # shapes differ
    (_POINTS[:, :2], _POINTS[:, 1:]),                                           # not 3-D
    (torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, math.nan]]), _POINTS[:3]),    # NaN
])
def test_degenerate_input_raises_value_error(source, target):
    with pytest.raises(ValueError):
        umeyama_similarity(source, target)


def test_collinear_camera_centres_cannot_be_aligned():
    c2w = random_cameras(5)
    along = torch.linspace(0, 1, 5, dtype=torch.float64)[:, None]
    c2w[:, :3, 3] = along * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="one line"):
        align_poses(c2w, c2w)


@pytest.mark.parametrize("robust", [True, False])
def test_alignment_undoes_a_known_gauge_and_leaves_zero_error(robust):
    true = random_cameras(12)
    estimated = transform_c2w(gauge(), true)
    fit = align_poses(estimated, true, robust=robust)
    torch.testing.assert_close(fit, torch.linalg.inv(gauge()), rtol=0, atol=1e-10)
    errors = pose_errors(estimated, true, fit)
    assert errors["max_rotation_deg"] < 1e-6 and errors["max_position"] < 1e-10
    assert errors["rotation_deg"].shape == errors["position"].shape == (12,)


def test_a_two_degree_rotation_on_one_camera_shows_on_that_camera_only():
    true = random_cameras(10)
    estimated = transform_c2w(gauge(), true)
    estimated[4, :3, :3] = estimated[4, :3, :3] @ axis_angle([0.3, -1.0, 0.5], 2.0)
    errors = pose_errors(estimated, true, align_poses(estimated, true))
    assert float(errors["rotation_deg"][4]) == pytest.approx(2.0, abs=1e-9)
    others = torch.cat([errors["rotation_deg"][:4], errors["rotation_deg"][5:]])
    assert float(others.max()) < 1e-6
    assert errors["max_rotation_deg"] == pytest.approx(2.0, abs=1e-9)
    assert errors["max_position"] < 1e-10   # the centre did not move


@pytest.mark.parametrize("n, wrong", [(12, [5]), (40, [3, 17, 31])])   # all subsets / sampled ones
def test_robust_alignment_ignores_wildly_wrong_cameras(n, wrong):
    true = random_cameras(n)
    estimated = transform_c2w(gauge(), true)
    estimated[wrong, :3, 3] += torch.tensor([40.0, -25.0, 60.0], dtype=torch.float64)
    estimated[wrong, :3, :3] = estimated[wrong, :3, :3] @ axis_angle([1.0, 0.0, 0.0], 90.0)
    good = torch.ones(n, dtype=torch.bool)
    good[wrong] = False

    errors = pose_errors(estimated, true, align_poses(estimated, true, robust=True))
    assert float(errors["position"][good].max()) < 1e-9
    assert float(errors["rotation_deg"][good].max()) < 1e-6
    assert float(errors["position"][~good].min()) > 10.0
    assert errors["rotation_deg"][~good].tolist() == pytest.approx([90.0] * len(wrong), abs=1e-6)

    plain = pose_errors(estimated, true, align_poses(estimated, true, robust=False))
    assert float(plain["position"][good].median()) > 0.1   # least squares alone is dragged off


def test_robust_alignment_is_as_good_as_least_squares_on_noisy_poses():
    true = random_cameras(30, seed=5)
    estimated = transform_c2w(gauge(), true)
    generator = torch.Generator().manual_seed(6)
    estimated[:, :3, 3] += 0.01 * torch.randn(30, 3, generator=generator, dtype=torch.float64)
    robust = pose_errors(estimated, true, align_poses(estimated, true, robust=True))
    plain = pose_errors(estimated, true, align_poses(estimated, true, robust=False))
    assert robust["median_position"] < 1.5 * plain["median_position"]
    assert plain["median_position"] < 0.1   # noise 0.01 in a gauge of scale 0.37 -> ~0.03


def test_pose_errors_summaries_and_scene_size():
    true = torch.eye(4, dtype=torch.float64).repeat(4, 1, 1)
    true[:, :3, 3] = torch.tensor([[0.0, 0, 0], [3, 0, 0], [0, 4, 0], [1, 1, 0]])
    estimated = true.clone()
    estimated[:, 0, 3] += torch.tensor([0.0, 0.1, 0.2, 0.4], dtype=torch.float64)
    errors = pose_errors(estimated, true, torch.eye(4, dtype=torch.float64))
    torch.testing.assert_close(errors["position"], torch.tensor([0.0, 0.1, 0.2, 0.4],
                                                                dtype=torch.float64))
    assert errors["median_position"] == pytest.approx(0.15)        # mean of the middle two
    assert errors["max_position"] == pytest.approx(0.4)
    assert errors["scene_size"] == pytest.approx(5.0)               # |(3,0,0) - (0,4,0)|
    assert errors["median_position_relative"] == pytest.approx(0.03)
    assert errors["median_rotation_deg"] == 0.0 and errors["max_rotation_deg"] == 0.0
    assert all(isinstance(errors[key], float) for key in
               ("median_rotation_deg", "median_position", "max_rotation_deg", "max_position",
                "scene_size", "median_position_relative"))


@pytest.mark.parametrize("degrees", [1e-7, 0.5, 2.0, 90.0, 179.9999, 180.0])
def test_rotation_angle_is_accurate_from_tiny_to_half_turn(degrees):
    base = random_rotation(torch.Generator().manual_seed(8))
    turned = base @ axis_angle([0.2, 0.9, -0.4], degrees)
    assert float(rotation_angle_deg(base, turned)) == pytest.approx(degrees, rel=1e-6, abs=1e-12)


def write_json(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_read_true_poses_converts_opengl_to_opencv(tmp_path):
    # Blender camera at (0, 0, 5) with identity rotation: OpenGL looks along -z, towards the origin.
    at_five = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 5], [0, 0, 0, 1]]
    turned = [[0, 0, 1, 2], [1, 0, 0, 0], [0, 1, 0, 0]]           # 3x4 is accepted
    path = write_json(tmp_path / "transforms.json", {"camera_angle_x": 0.7, "frames": [
        {"file_path": "./train/r_0", "transform_matrix": at_five},
        {"file_path": "images/frame_0001.png", "transform_matrix": turned},
    ]})
    poses = read_true_poses(path)
    assert list(poses) == ["r_0", "frame_0001.png"]
    r_0 = poses["r_0"]
    assert r_0.dtype == torch.float64 and r_0.shape == (4, 4)
    torch.testing.assert_close(r_0[:3, 3], torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64))
    torch.testing.assert_close(r_0[:3, 0], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(r_0[:3, 1], torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(r_0[:3, 2], torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64))
    # OpenCV +z (forward) now points from the camera at the origin.
    assert float(r_0[:3, 2] @ (torch.zeros(3, dtype=torch.float64) - r_0[:3, 3])) > 0
    expected = torch.tensor([[0.0, 0, -1, 2], [1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]],
                            dtype=torch.float64)
    torch.testing.assert_close(poses["frame_0001.png"], expected)


@pytest.mark.parametrize("content", [
    "not json {",
    json.dumps([1, 2]),
    json.dumps({"camera_angle_x": 0.7}),
    json.dumps({"frames": []}),
    json.dumps({"frames": [{"transform_matrix": EYE.tolist()}]}),
    json.dumps({"frames": [{"file_path": "a.png"}]}),
    json.dumps({"frames": [{"file_path": 3, "transform_matrix": EYE.tolist()}]}),
    json.dumps({"frames": [{"file_path": "./", "transform_matrix": EYE.tolist()}]}),
    json.dumps({"frames": [{"file_path": "a.png", "transform_matrix": [[1, 0], [0, 1]]}]}),
    json.dumps({"frames": [{"file_path": "a.png", "transform_matrix": "eye"}]}),
    json.dumps({"frames": [{"file_path": "a.png", "transform_matrix": (2 * EYE).tolist()}]}),
    json.dumps({"frames": [{"file_path": "x/a.png", "transform_matrix": EYE.tolist()},
                           {"file_path": "y/a.png", "transform_matrix": EYE.tolist()}]}),
])
def test_malformed_transforms_raise_nerfkit_error(tmp_path, content):
    path = tmp_path / "transforms.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(NerfkitError):
        read_true_poses(path)


def test_missing_file_raises_nerfkit_error(tmp_path):
    with pytest.raises(NerfkitError, match="missing.json"):
        read_true_poses(tmp_path / "missing.json")


def test_image_stem_strips_only_image_extensions():
    assert image_stem("./train/r_0") == "r_0"
    assert image_stem("images/r_0.PNG") == "r_0"
    assert image_stem("C:\\shots\\IMG_7.jpeg") == "IMG_7"
    assert image_stem("frame.0001") == "frame.0001"


def test_match_by_stem_pairs_names_with_and_without_extensions():
    poses = {"r_0": EYE.double(), "b.png": 2 * EYE.double()}
    match = match_by_stem(["images/r_0.png", "x.jpg", "b.PNG"], poses)
    assert match.indices.tolist() == [0, 2]
    assert match.missing == ["x.jpg"]
    torch.testing.assert_close(match.c2w, torch.stack([poses["r_0"], poses["b.png"]]))
    empty = match_by_stem(["nothing.png"], poses)
    assert empty.indices.numel() == 0 and empty.c2w.shape == (0, 4, 4)


def test_match_by_stem_refuses_ambiguous_names():
    eye = torch.eye(4, dtype=torch.float64)
    with pytest.raises(NerfkitError, match="ambiguous"):
        match_by_stem(["a.png"], {"a.png": eye, "a.jpg": eye})
    with pytest.raises(NerfkitError, match="apart"):
        match_by_stem(["one/a.png", "two/a.png"], {"a": eye})


def test_transforms_json_to_errors_end_to_end(tmp_path):
    true_opencv = random_cameras(8, seed=9)
    frames = [{"file_path": f"./images/img_{i}",
               "transform_matrix": (true_opencv[i] @ torch.diag(torch.tensor(
                   [1.0, -1.0, -1.0, 1.0], dtype=torch.float64))).tolist()} for i in range(8)]
    path = write_json(tmp_path / "transforms.json", {"frames": frames})
    names = [f"img_{i}.jpg" for i in reversed(range(8))]       # estimated order differs
    estimated = transform_c2w(gauge(), true_opencv.flip(0))
    match = match_by_stem(names, read_true_poses(path))
    errors = pose_errors(estimated[match.indices], match.c2w,
                         align_poses(estimated[match.indices], match.c2w))
    assert errors["max_rotation_deg"] < 1e-6 and errors["max_position"] < 1e-10
