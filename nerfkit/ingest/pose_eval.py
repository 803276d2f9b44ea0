"""Estimated camera poses against ground truth: similarity alignment and per-camera pose errors.

Poses estimated from photos (COLMAP, ``nerfkit process``) live in an arbitrary similarity gauge:
any scale, rotation and translation of the world fits the photos equally well. Before comparing
them with true poses we fit the similarity that maps the estimated camera centres onto the true
ones (:func:`align_poses`, Umeyama's closed form), apply it, and measure what is left
(:func:`pose_errors`). All poses are camera-to-world (N, 4, 4) with OpenCV axes (x right, y down,
z forward); :func:`read_true_poses` converts an OpenGL/Blender ``transforms.json``.

Typical use::

    true = read_true_poses(Path("transforms.json"))
    match = match_by_stem(estimated_names, true)
    estimated = estimated_c2w[match.indices]
    similarity = align_poses(estimated, match.c2w)
    errors = pose_errors(estimated, match.c2w, similarity)
    errors["median_rotation_deg"], errors["median_position_relative"]
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import torch
from torch import Tensor

from nerfkit.core.errors import NerfkitError
from nerfkit.data.images import IMAGE_SUFFIXES
from nerfkit.data.normalize import check_poses
from nerfkit.data.similarity import transform_c2w
from nerfkit.data.transforms_json import frame_c2w, frame_value, json_frames, read_json

# A centred point set whose second singular value is below this fraction of its first is collinear.
_RANK_RTOL = 1e-9
# Robust start: every 3-camera subset when there are at most this many, else this many at random.
_MAX_CANDIDATES = 512
_CANDIDATE_SEED = 0
# Rows of the pairwise-distance matrix computed at once for the scene size.
_DISTANCE_CHUNK = 1024


def umeyama_similarity(source: Tensor, target: Tensor) -> Tensor:
    """The least-squares similarity mapping ``source`` points onto ``target`` points.

    Minimises ``sum_i |target_i - (s R source_i + t)|^2`` over scale ``s > 0``, rotation ``R``
    (``det R = +1``, never a reflection) and translation ``t``, in closed form (S. Umeyama,
    "Least-squares estimation of transformation parameters between two point patterns", IEEE
    TPAMI 13(4), 1991): means ``mu_x``, ``mu_y`` (eqs. 34-35), source variance ``sigma_x^2``
    (eq. 36), cross-covariance ``Sigma_xy = 1/n sum (y_i - mu_y)(x_i - mu_x)^T = U D V^T``
    (eq. 38), ``S = diag(1, 1, det(U) det(V))`` (eqs. 39, 43), ``R = U S V^T`` (eq. 40),
    ``s = tr(D S) / sigma_x^2`` (eq. 42), ``t = mu_y - s R mu_x`` (eq. 41).

    Args:
        source: (N, 3) points, N >= 3, not all on one line.
        target: (N, 3) corresponding points, not all on one line.
    Returns:
        (4, 4) float64 ``[[s R, t], [0, 1]]``, so ``target ~= (similarity @ [source, 1])[:3]``.
    Raises:
        ValueError: wrong shapes, non-finite values, fewer than 3 points, or collinear points.

    Example:
        >>> source = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
        >>> target = 2 * source[:, [1, 0, 2]] * torch.tensor([1.0, 1, -1]) + 5
        >>> umeyama_similarity(source, target).round(decimals=6) + 0.0   # + 0.0: no "-0."
        tensor([[ 0.,  2.,  0.,  5.],
                [ 2.,  0.,  0.,  5.],
                [ 0.,  0., -2.,  5.],
                [ 0.,  0.,  0.,  1.]], dtype=torch.float64)
    """
    if source.ndim != 2 or source.shape[-1] != 3 or source.shape != target.shape:
        raise ValueError(f"source and target must both be (N, 3) point sets, got "
                         f"{tuple(source.shape)} and {tuple(target.shape)}")
    if source.shape[0] < 3:
        raise ValueError(f"a similarity needs at least 3 corresponding points, got "
                         f"{source.shape[0]}")
    source, target = source.double(), target.double()
    if not bool(torch.isfinite(source).all() and torch.isfinite(target).all()):
        raise ValueError("source and target points must be finite (no NaN or inf)")
    for label, points in (("source", source), ("target", target)):
        spread = torch.linalg.svdvals(points - points.mean(0))
        if float(spread[1]) <= _RANK_RTOL * float(spread[0]) or float(spread[0]) == 0.0:
            raise ValueError(f"the {label} points lie on one line (or one point), so the rotation "
                             "about that line is undetermined")
    return _umeyama(source[None], target[None])[0]


def _umeyama(source: Tensor, target: Tensor) -> Tensor:
    """Batched :func:`umeyama_similarity` without checks: (B, N, 3) x2 float64 -> (B, 4, 4)."""
    mu_x, mu_y = source.mean(1, keepdim=True), target.mean(1, keepdim=True)
    x, y = source - mu_x, target - mu_y
    sigma2_x = x.square().sum((1, 2)) / source.shape[1]
    cov = y.transpose(1, 2) @ x / source.shape[1]                                 # (B, 3, 3)
    u, d, vh = torch.linalg.svd(cov)
    sign = torch.ones_like(d)
    sign[:, 2] = torch.linalg.det(u) * torch.linalg.det(vh)
    rot = u @ torch.diag_embed(sign) @ vh
    scale = (d * sign).sum(-1) / sigma2_x.clamp_min(torch.finfo(torch.float64).tiny)
    trans = mu_y[:, 0] - scale[:, None] * (rot @ mu_x[:, 0, :, None])[..., 0]
    out = torch.zeros(source.shape[0], 4, 4, dtype=torch.float64, device=source.device)
    out[:, :3, :3] = scale[:, None, None] * rot
    out[:, :3, 3] = trans
    out[:, 3, 3] = 1.0
    return out


def _apply(similarity: Tensor, points: Tensor) -> Tensor:
    """(..., 4, 4) similarities applied to (..., N, 3) points."""
    return points @ similarity[..., :3, :3].transpose(-1, -2) + similarity[..., None, :3, 3]


def align_poses(estimated_c2w: Tensor, true_c2w: Tensor, robust: bool = True,
                inlier_fraction: float = 0.9, rounds: int = 5) -> Tensor:
    """The similarity taking estimated camera centres onto the true ones.

    Only the centres are fitted (orientations are what :func:`pose_errors` then checks), so the
    cameras must not all stand on one line.

    With ``robust=False`` this is :func:`umeyama_similarity` on all centres. With ``robust=True``
    (default), a few badly estimated cameras cannot drag the fit:

    1. Start: fit every 3-camera subset (512 fixed-seed random subsets when there are more) and
       the all-camera fit; keep the one with the least median residual (least median of squares,
       Rousseeuw 1984), which ignores up to half the cameras being wrong.
    2. Refine, at most ``rounds`` times: refit on the ``ceil(inlier_fraction * N)`` cameras
       (at least 3) with the smallest residual under the current fit; stop when that set repeats.

    With no bad cameras the result equals the least-squares fit on the best 90% of them, which is
    as accurate for noisy poses; more than ``1 - inlier_fraction`` bad cameras leak into the fit.

    Args:
        estimated_c2w: (N, 4, 4) estimated camera-to-world, any gauge.
        true_c2w: (N, 4, 4) true camera-to-world of the same cameras, same order.
        robust: see above.
        inlier_fraction: share of cameras the refinement fits, in (0, 1].
        rounds: most refinement rounds.
    Returns:
        (4, 4) float64 similarity, estimated world -> true world.
    Raises:
        ValueError: shapes differ, fewer than 3 cameras, or the centres are collinear.
    """
    _check_pose_pair(estimated_c2w, true_c2w)
    if not 0.0 < inlier_fraction <= 1.0:
        raise ValueError(f"inlier_fraction must be in (0, 1], got {inlier_fraction}")
    source, target = estimated_c2w[:, :3, 3].double(), true_c2w[:, :3, 3].double()
    similarity = umeyama_similarity(source, target)
    n = source.shape[0]
    if not robust or n <= 3:
        return similarity

    subsets = _triplets(n, source.device)
    candidates = torch.cat([similarity[None], _umeyama(source[subsets], target[subsets])])
    residuals = (_apply(candidates, source[None]) - target).norm(dim=-1)          # (B, N)
    scores = torch.nan_to_num(residuals.median(-1).values, nan=math.inf)
    similarity = candidates[int(scores.argmin())]

    keep = min(n, max(3, math.ceil(inlier_fraction * n)))
    inliers = None
    for _ in range(rounds):
        residual = (_apply(similarity, source) - target).norm(dim=-1)
        chosen = residual.argsort()[:keep].sort().values
        if inliers is not None and torch.equal(chosen, inliers):
            break
        inliers = chosen
        try:
            similarity = umeyama_similarity(source[chosen], target[chosen])
        except ValueError:   # the inliers happen to be collinear: keep the previous fit
            break
    return similarity


def _triplets(n: int, device: torch.device) -> Tensor:
    """(B, 3) int64 camera indices: all 3-subsets of ``n``, or ``_MAX_CANDIDATES`` random ones."""
    if math.comb(n, 3) <= _MAX_CANDIDATES:
        return torch.combinations(torch.arange(n, device=device), 3)
    generator = torch.Generator().manual_seed(_CANDIDATE_SEED)
    # Three distinct indices per row: the second skips the first, the third skips both.
    first = torch.randint(n, (_MAX_CANDIDATES,), generator=generator)
    second = (first + 1 + torch.randint(n - 1, (_MAX_CANDIDATES,), generator=generator)) % n
    third = torch.randint(n - 2, (_MAX_CANDIDATES,), generator=generator)
    low, high = torch.minimum(first, second), torch.maximum(first, second)
    third = third + (third >= low).long()
    third = third + (third >= high).long()
    return torch.stack([first, second, third], -1).to(device)


def rotation_angle_deg(rot_a: Tensor, rot_b: Tensor) -> Tensor:
    """(...,) angle in degrees of the rotation ``rot_a^T rot_b`` between (..., 3, 3) rotations.

    ``atan2(sin, cos)`` from the skew and trace parts stays accurate near 0 and 180 degrees,
    where ``acos((tr - 1) / 2)`` loses half the digits.
    """
    m = rot_a.double().transpose(-1, -2) @ rot_b.double()
    cos = 0.5 * (m.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0)
    skew = torch.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                        m[..., 1, 0] - m[..., 0, 1]], -1)
    return torch.rad2deg(torch.atan2(0.5 * skew.norm(dim=-1), cos))


def pose_errors(estimated_c2w: Tensor, true_c2w: Tensor, similarity: Tensor) -> dict:
    """Per-camera errors of estimated poses after applying ``similarity`` to them.

    The similarity ``[[s R, t], [0, 1]]`` moves each estimated camera: centre ``c -> s R c + t``,
    orientation ``R_cam -> R R_cam``. Then per camera the rotation error is the angle of
    ``R_true^T R_aligned`` and the position error the distance between the centres, in the true
    poses' units. Medians interpolate between the two middle values for even N.

    ``scene_size`` is the largest distance between two true camera centres (the diameter of the
    camera set, exact, computed in chunks), so ``median_position_relative`` reads the same whatever
    unit the true poses use; it is NaN when all true centres coincide.

    Args:
        estimated_c2w: (N, 4, 4) estimated camera-to-world.
        true_c2w: (N, 4, 4) true camera-to-world, same cameras, same order.
        similarity: (4, 4) estimated world -> true world, e.g. from :func:`align_poses`.
    Returns:
        ``rotation_deg`` (N,) and ``position`` (N,) float64 tensors; floats ``median_rotation_deg``,
        ``median_position``, ``max_rotation_deg``, ``max_position``, ``scene_size`` and
        ``median_position_relative``.
    """
    _check_pose_pair(estimated_c2w, true_c2w, min_cameras=1)
    if similarity.shape != (4, 4):
        raise ValueError(f"similarity must be (4, 4), got {tuple(similarity.shape)}")
    true_c2w = true_c2w.double()
    aligned = transform_c2w(similarity, estimated_c2w)
    rotation_deg = rotation_angle_deg(true_c2w[:, :3, :3], aligned[:, :3, :3])
    position = (aligned[:, :3, 3] - true_c2w[:, :3, 3]).norm(dim=-1)
    scene_size = _diameter(true_c2w[:, :3, 3])
    median_position = float(torch.quantile(position, 0.5))
    return {
        "rotation_deg": rotation_deg,
        "position": position,
        "median_rotation_deg": float(torch.quantile(rotation_deg, 0.5)),
        "median_position": median_position,
        "max_rotation_deg": float(rotation_deg.max()),
        "max_position": float(position.max()),
        "scene_size": scene_size,
        "median_position_relative": median_position / scene_size if scene_size > 0 else math.nan,
    }


def _diameter(points: Tensor) -> float:
    """Largest distance between two of the (N, 3) points."""
    return max(float(torch.cdist(points[i:i + _DISTANCE_CHUNK], points).max())
               for i in range(0, points.shape[0], _DISTANCE_CHUNK))


def _check_pose_pair(estimated_c2w: Tensor, true_c2w: Tensor, min_cameras: int = 3) -> None:
    """ValueError unless both are (N, 4, 4) with the same N >= ``min_cameras``."""
    if estimated_c2w.ndim != 3 or estimated_c2w.shape[1:] != (4, 4) or \
            estimated_c2w.shape != true_c2w.shape:
        raise ValueError(f"estimated and true poses must both be (N, 4, 4), got "
                         f"{tuple(estimated_c2w.shape)} and {tuple(true_c2w.shape)}")
    if estimated_c2w.shape[0] < min_cameras:
        raise ValueError(f"need at least {min_cameras} cameras, got {estimated_c2w.shape[0]}")


def read_true_poses(transforms_json: Path) -> dict[str, Tensor]:
    """Ground-truth poses from a NeRF-style ``transforms.json`` (OpenGL camera-to-world).

    Keys are the basenames of ``frames[i].file_path`` as written: ``"./train/r_0"`` -> ``"r_0"``,
    ``"images/frame_0001.png"`` -> ``"frame_0001.png"`` (the files are not looked up on disk, so
    an extension-less path stays without one). Estimated poses are named after the image files,
    usually with an extension, so pair them with :func:`match_by_stem`, which compares names
    without their image extension.

    Args:
        transforms_json: the file; ``transform_matrix`` may be 4x4 or 3x4.
    Returns:
        {basename: (4, 4) float64 OpenCV camera-to-world}, in file order.
    Raises:
        NerfkitError: unreadable JSON, no frames, a missing or malformed ``file_path`` or
            ``transform_matrix``, a pose that is not a rotation plus translation, or two frames
            with the same basename.
    """
    path = Path(transforms_json)
    frames = json_frames(read_json(path), path)
    if not frames:
        raise NerfkitError(f"'{path}' has an empty 'frames' list, so there are no poses to compare")
    poses: dict[str, Tensor] = {}
    for index, frame in enumerate(frames):
        file_path = frame_value(frame, "file_path", index, path)
        name = ""
        if isinstance(file_path, str):
            name = PurePosixPath(file_path.replace("\\", "/")).name
        if not name:
            raise NerfkitError(f"'file_path' of frame {index} in '{path}' does not end in a file "
                               f"name: {file_path!r}")
        if name in poses:
            raise NerfkitError(f"frames in '{path}' name the image '{name}' twice, so its true "
                               "pose is ambiguous")
        poses[name] = frame_c2w(frame, index, path)
    check_poses(torch.stack(list(poses.values())), list(poses))
    return poses


def image_stem(name: str) -> str:
    """A file name's basename without an image extension: ``"./a/r_0.PNG"`` -> ``"r_0"``.

    Only the extensions nerfkit reads as images are removed (``"frame.0001"`` stays whole);
    the rest of the name keeps its case.
    """
    base = PurePosixPath(name.replace("\\", "/")).name
    suffix = PurePosixPath(base).suffix
    return base[:-len(suffix)] if suffix and suffix.lower() in IMAGE_SUFFIXES else base


class PoseMatch(NamedTuple):
    """Which of a list of image names have a true pose (:func:`match_by_stem`).

    Attributes:
        indices: (M,) int64 positions in ``names`` with a true pose, increasing.
        c2w: (M, 4, 4) float64 true camera-to-world for those names, same order.
        missing: the names without a true pose.
    """

    indices: Tensor
    c2w: Tensor
    missing: list[str]


def match_by_stem(names: list[str], poses: dict[str, Tensor]) -> PoseMatch:
    """Pair image names with true poses by :func:`image_stem` (basename without image extension).

    ``"images/r_0.png"`` matches the key ``"r_0"`` and ``"r_0.jpg"``; folders never matter, case
    does. Index estimated poses with ``indices`` to line them up with ``c2w``; check ``missing``
    (or ``len(indices)``) before aligning, since :func:`align_poses` needs 3 cameras.

    Args:
        names: N image names of the estimated poses (paths or basenames).
        poses: {name: (4, 4) c2w}, e.g. from :func:`read_true_poses`.
    Raises:
        NerfkitError: two names, or two keys of ``poses``, share a stem.
    """
    by_stem: dict[str, str] = {}
    for key in poses:
        stem = image_stem(key)
        if stem in by_stem:
            raise NerfkitError(f"true poses '{by_stem[stem]}' and '{key}' both match images named "
                               f"'{stem}', so the pairing is ambiguous")
        by_stem[stem] = key
    seen: dict[str, str] = {}
    indices, matched, missing = [], [], []
    for index, name in enumerate(names):
        stem = image_stem(name)
        if stem in seen:
            raise NerfkitError(f"images '{seen[stem]}' and '{name}' share the name '{stem}', so "
                               "they cannot be told apart when matching true poses")
        seen[stem] = name
        if stem in by_stem:
            indices.append(index)
            matched.append(poses[by_stem[stem]].double())
        else:
            missing.append(name)
    c2w = torch.stack(matched) if matched else torch.zeros(0, 4, 4, dtype=torch.float64)
    return PoseMatch(torch.tensor(indices, dtype=torch.int64), c2w, missing)
