"""The normalising similarity: original world coordinates -> nerfkit's scene coordinates.

``x_scene = world_to_scene @ x_world`` with ``world_to_scene = [[s*I, -s*c], [0, 1]]``: a
translation of the centre ``c`` to the origin and a uniform scale ``s`` (no rotation, so "up" stays
up). Two rules choose ``c`` and ``s``:

- **object** (NeRF-synthetic, instant-ngp objects): ``c`` is the point closest, in least squares, to
  all optical axes; ``s`` puts the cameras at mean distance ``1 / 0.375 ~= 2.667``, so an object
  within 0.375 x the camera distance of ``c`` fits the ``[-1, 1]^3`` box (instant-ngp's
  ``[-1.5, 1.5]`` box for cameras at radius 4, rescaled).
- **unbounded** (COLMAP captures, instant-ngp ``aabb_scale > 1``): ``c`` is the median of the sparse
  points when there are at least 100, else the optical-axis point (else the mean camera centre);
  ``s`` puts the farthest camera at distance 1. ``[-1, 1]^3`` is the foreground; methods contract
  or cascade beyond it.

All inputs are camera-to-world (N, 4, 4) with OpenCV axes, in world units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from nerfkit.core.errors import NerfkitError

KINDS = ("object", "unbounded")
OBJECT_CAMERA_DISTANCE = 1.0 / 0.375
MIN_POINTS_FOR_MEDIAN = 100
MAX_DISTANCE_RATIO = 1e6     # a camera farther than this x the median distance has a broken pose
_AXES_RCOND = 1e-3          # optical axes closer to parallel than this have no look-at point
_INWARD_MAX_ANGLE_DEG = 45.0
_INWARD_MAX_MEAN_DIRECTION = 0.95   # |mean view direction| above this = forward-facing capture


@dataclass(frozen=True)
class Normalization:
    """The result of :func:`normalize_poses`.

    Attributes:
        world_to_scene: (4, 4) float64 similarity, ``x_scene = world_to_scene @ x_world``.
        aabb: (2, 3) float32 region of interest in scene coordinates (min, max).
        unbounded: whether the content extends beyond ``aabb``.
    """

    world_to_scene: Tensor
    aabb: Tensor
    unbounded: bool

    @property
    def scale(self) -> float:
        """Scene units per world unit."""
        return float(self.world_to_scene[0, 0])


def check_poses(c2w: Tensor, names: Sequence[str] | None = None) -> None:
    """Raise :class:`NerfkitError` naming the first frame whose (4, 4) c2w is not a rigid pose.

    Args:
        c2w: (N, 4, 4) camera-to-world matrices.
        names: N frame names for the message (image paths); indices when None.
    """
    c2w = c2w.double()
    eye = torch.eye(3, dtype=torch.float64)
    for i in range(c2w.shape[0]):
        name = f"'{names[i]}'" if names is not None else f"#{i}"
        pose = c2w[i]
        if not bool(torch.isfinite(pose).all()):
            raise NerfkitError(f"the pose of frame {name} contains non-finite values (NaN or inf)")
        rot = pose[:3, :3]
        det = float(torch.linalg.det(rot))
        orthogonal = float((rot.T @ rot - eye).abs().max())
        if abs(det - 1.0) > 1e-2 or orthogonal > 1e-2:
            raise NerfkitError(
                f"the pose of frame {name} is not a rotation plus translation "
                f"(rotation determinant {det:.4g}, expected 1)")
        last_row = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
        if float((pose[3] - last_row).abs().max()) > 1e-6:
            raise NerfkitError(f"the pose of frame {name} has last row {pose[3].tolist()}, "
                               "expected [0, 0, 0, 1]")


def optical_axis_center(c2w: Tensor) -> Tensor | None:
    """(3,) float64 point closest in least squares to all optical axes, or None.

    None when the axes are (nearly) parallel or the point lies behind the cameras on average.
    Minimises ``sum_i |(I - d_i d_i^T)(p - o_i)|^2`` with ``o_i`` the centres, ``d_i`` the +z axes.
    """
    c2w = c2w.double()
    if c2w.shape[0] < 2:
        return None
    origins, dirs = c2w[:, :3, 3], c2w[:, :3, 2]
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    proj = torch.eye(3, dtype=torch.float64) - dirs[:, :, None] * dirs[:, None, :]   # (N, 3, 3)
    a = proj.sum(0)
    b = torch.einsum("nij,nj->i", proj, origins)
    eig = torch.linalg.eigvalsh(a)
    if float(eig[0]) <= _AXES_RCOND * float(eig[-1]):
        return None
    center = torch.linalg.solve(a, b)
    if float(((center - origins) * dirs).sum(-1).mean()) <= 0:
        return None
    return center


def cameras_look_inward(c2w: Tensor) -> bool:
    """True when the cameras surround one point and look at it (an object capture).

    Every camera must see the optical-axis point within 45 degrees of its axis, and the view
    directions must spread (the norm of their mean below 0.95), which rules out forward-facing
    captures.
    """
    center = optical_axis_center(c2w)
    if center is None:
        return False
    c2w = c2w.double()
    dirs = c2w[:, :3, 2] / c2w[:, :3, 2].norm(dim=-1, keepdim=True)
    to_center = center - c2w[:, :3, 3]
    cos = (to_center * dirs).sum(-1) / to_center.norm(dim=-1).clamp_min(1e-12)
    min_cos = torch.cos(torch.deg2rad(torch.tensor(_INWARD_MAX_ANGLE_DEG, dtype=torch.float64)))
    return bool((cos > min_cos).all()) and float(dirs.mean(0).norm()) < _INWARD_MAX_MEAN_DIRECTION


def resolve_kind(hint: str, c2w: Tensor, override: str | None = None) -> str:
    """``"object"`` or ``"unbounded"``.

    Args:
        hint: the format's guess, ``"object"``, ``"unbounded"`` or ``"auto"`` (decide by
            :func:`cameras_look_inward`).
        c2w: (N, 4, 4) world camera-to-world, used for ``"auto"``.
        override: the user's choice, which wins when given.
    """
    if override is not None:
        if override not in KINDS:
            raise NerfkitError(f"scene kind '{override}' is not one of {', '.join(KINDS)}")
        return override
    if hint == "auto":
        return "object" if cameras_look_inward(c2w) else "unbounded"
    return hint


def similarity(center: Tensor, scale: float) -> Tensor:
    """(4, 4) float64 ``[[s*I, -s*c], [0, 1]]``: ``center`` (3,) to 0, then scale by ``s``."""
    out = torch.eye(4, dtype=torch.float64)
    out[:3, :3] *= scale
    out[:3, 3] = -scale * center.double()
    return out


def normalize_poses(c2w: Tensor, points: Tensor | None = None, kind: str = "object",
                    names: Sequence[str] | None = None) -> Normalization:
    """Choose the normalising similarity for cameras (and sparse points).

    Args:
        c2w: (N, 4, 4) world camera-to-world, OpenCV axes, world units.
        points: (P, 3) sparse world points (COLMAP), or None.
        kind: ``"object"`` or ``"unbounded"`` (see the module docstring).
        names: N frame names for pose errors.
    Returns:
        :class:`Normalization` with ``aabb = [-1, 1]^3``.
    """
    if kind not in KINDS:
        raise NerfkitError(f"scene kind '{kind}' is not one of {', '.join(KINDS)}")
    if c2w.shape[0] == 0:
        raise NerfkitError("the scene has no cameras")
    check_poses(c2w, names)
    c2w = c2w.double()
    origins = c2w[:, :3, 3]
    _check_outliers(origins, names)
    center = None
    if kind == "unbounded" and points is not None and points.shape[0] >= MIN_POINTS_FOR_MEDIAN:
        center = points.double().median(dim=0).values
    if center is None:
        center = optical_axis_center(c2w)
    if center is None:
        center = origins.mean(0)
    distances = (origins - center).norm(dim=-1)
    if kind == "object":
        reference, target = float(distances.mean()), OBJECT_CAMERA_DISTANCE
    else:
        reference, target = float(distances.max()), 1.0
    scale = target / reference if reference > 1e-12 else 1.0
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], dtype=torch.float32)
    return Normalization(similarity(center, scale), aabb, kind == "unbounded")


def camera_outlier(origins: Tensor) -> tuple[int, float, float] | None:
    """The camera absurdly far from the others, if any: ``(index, its distance, median distance)``.

    Distances of the (N, 3) ``origins`` are taken from their per-axis median; the limit is
    :data:`MAX_DISTANCE_RATIO` times the median distance, far beyond any real capture.
    """
    distances = (origins - origins.median(dim=0).values).norm(dim=-1)
    median = float(distances.median())
    far = int(distances.argmax())
    farthest = float(distances[far])
    if not math.isfinite(farthest) or (median > 0 and farthest > MAX_DISTANCE_RATIO * median):
        return far, farthest, median
    return None


def _check_outliers(origins: Tensor, names: Sequence[str] | None) -> None:
    """Refuse a camera absurdly far from the others (a broken pose that would collapse the scene).

    Distances are taken from the per-axis median camera position; the limit,
    :data:`MAX_DISTANCE_RATIO` times the median distance, is far beyond any real capture.
    """
    outlier = camera_outlier(origins)
    if outlier is not None:
        far, farthest, median = outlier
        name = f"'{names[far]}'" if names is not None else f"#{far}"
        raise NerfkitError(f"the camera of frame {name} is {farthest:.3g} units from the other "
                           f"cameras, over {MAX_DISTANCE_RATIO:.0e} times their median distance "
                           f"{median:.3g}: its pose is probably broken")
