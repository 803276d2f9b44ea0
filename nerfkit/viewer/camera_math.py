"""Camera conversions between viser's browser camera and 4x4 camera-to-world matrices.

viser reports a client's camera as ``position`` (3,) and ``wxyz`` (4,), a unit quaternion of the
rotation R in ``P_world = R p_camera + position``, with OpenCV camera axes (x right, y down,
z forward) and ``fov`` the vertical field of view in radians. So the camera-to-world matrix is
simply ``[R | position]`` with no axis flip (tested against viser's own look-at maths).
"""

from __future__ import annotations

import numpy as np


def quaternion_to_matrix(wxyz: np.ndarray) -> np.ndarray:
    """Unit quaternion (4,) ``w, x, y, z`` -> (3, 3) float64 rotation matrix (normalised first)."""
    w, x, y, z = np.asarray(wxyz, dtype=np.float64) / np.linalg.norm(wxyz)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix -> (4,) float64 unit quaternion ``w, x, y, z`` with w >= 0.

    Shepperd's method: pick the largest of the four squared components to divide by, which keeps
    the result accurate for every rotation (including 180 degree turns).
    """
    m = np.asarray(rotation, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    squares = np.array([1 + trace, 1 + 2 * m[0, 0] - trace, 1 + 2 * m[1, 1] - trace, 1 + 2 * m[2, 2] - trace])
    largest = int(np.argmax(squares))
    root = 2.0 * np.sqrt(max(squares[largest], 1e-12))     # 4 * |component|
    if largest == 0:
        q = [root / 4, (m[2, 1] - m[1, 2]) / root, (m[0, 2] - m[2, 0]) / root, (m[1, 0] - m[0, 1]) / root]
    elif largest == 1:
        q = [(m[2, 1] - m[1, 2]) / root, root / 4, (m[0, 1] + m[1, 0]) / root, (m[0, 2] + m[2, 0]) / root]
    elif largest == 2:
        q = [(m[0, 2] - m[2, 0]) / root, (m[0, 1] + m[1, 0]) / root, root / 4, (m[1, 2] + m[2, 1]) / root]
    else:
        q = [(m[1, 0] - m[0, 1]) / root, (m[0, 2] + m[2, 0]) / root, (m[1, 2] + m[2, 1]) / root, root / 4]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def pose_to_matrix(wxyz: np.ndarray, position: np.ndarray) -> np.ndarray:
    """viser camera pose -> (4, 4) float64 camera-to-world, OpenCV axes."""
    c2w = np.eye(4)
    c2w[:3, :3] = quaternion_to_matrix(wxyz)
    c2w[:3, 3] = np.asarray(position, dtype=np.float64)
    return c2w


def matrix_to_pose(camera_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(4, 4) camera-to-world, OpenCV axes -> (wxyz (4,), position (3,)) as viser expects.

    The rotation part is orthonormalised first (via SVD) so a slightly scaled or noisy matrix
    still gives a unit quaternion.
    """
    u, _, vt = np.linalg.svd(np.asarray(camera_to_world, dtype=np.float64)[:3, :3])
    rotation = u @ vt
    if np.linalg.det(rotation) < 0:
        rotation = u @ np.diag([1.0, 1.0, -1.0]) @ vt
    return matrix_to_quaternion(rotation), np.asarray(camera_to_world, dtype=np.float64)[:3, 3].copy()


def image_size(aspect: float, long_side: int) -> tuple[int, int]:
    """(width, height) in pixels with the given aspect (width / height) and longer side."""
    aspect = float(aspect) if np.isfinite(aspect) and aspect > 0 else 1.0
    if aspect >= 1.0:
        return int(long_side), max(1, int(round(long_side / aspect)))
    return max(1, int(round(long_side * aspect))), int(long_side)


def z_depth_from_ray_distance(distance: np.ndarray, focal: float) -> np.ndarray:
    """(H, W) distance along each pixel's ray -> (H, W) distance along the camera z axis.

    A pixel at offset (dx, dy) from the image centre has a ray whose z component is
    ``f / sqrt(f^2 + dx^2 + dy^2)`` for a unit direction.
    """
    height, width = distance.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    dx, dy = xs + 0.5 - width / 2, ys + 0.5 - height / 2
    return (distance * focal / np.sqrt(focal ** 2 + dx ** 2 + dy ** 2)).astype(np.float32)
