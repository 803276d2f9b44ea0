"""Mesh decimation to a face count, keeping vertex colours.

Quadric edge collapse (Garland & Heckbert, "Surface Simplification Using Quadric Error Metrics",
SIGGRAPH 1997) through ``fast_simplification`` (the pyvista project's wrapper of Sven Forstmann's
Fast-Quadric-Mesh-Simplification): a well-kept, fast implementation, so we do not write our own.
It moves the kept vertices to the quadric optimum, so colours are carried over from the nearest
vertex of the input mesh.
"""

from __future__ import annotations

import numpy as np


def decimate(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None,
             target_faces: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Reduce a triangle mesh to about ``target_faces`` faces (quadric edge collapse).

    Meshes that already have at most ``target_faces`` faces are returned unchanged.

    Args:
        vertices: (V, 3) float.
        faces: (F, 3) int.
        colors: (V, 3) uint8 per-vertex colours, or None.
        target_faces: wanted number of faces, >= 4.
    Returns:
        ``(vertices (V', 3) float32, faces (F', 3) int64, colors (V', 3) uint8 or None)`` with
        ``F' <= target_faces`` up to the collapse granularity (a few faces).
    """
    import fast_simplification
    from scipy.spatial import cKDTree

    if target_faces < 4:
        raise ValueError(f"target_faces must be at least 4, got {target_faces}")
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    if len(faces) <= target_faces:
        return vertices.astype(np.float32), faces, colors
    new_vertices, new_faces = fast_simplification.simplify(vertices, faces.astype(np.int32),
                                                           target_count=int(target_faces))
    new_colors = None
    if colors is not None:
        nearest = cKDTree(vertices).query(new_vertices)[1]
        new_colors = np.asarray(colors, np.uint8)[nearest]
    return new_vertices.astype(np.float32), np.asarray(new_faces, np.int64), new_colors


def remove_degenerate_faces(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Drop faces that importers drop or choke on, then the vertices no face uses.

    Removed: faces with a repeated vertex index, faces of zero area, and every copy of a face whose
    three vertices another face also has (edge collapses can leave such back-to-back pairs, fins of
    no volume; Blender's importers silently keep only one, so the face count would not match).

    Args:
        vertices: (V, 3) float; faces: (F, 3) int; colors: (V, 3) uint8 or None.
    Returns:
        ``(vertices (V', 3), faces (F', 3) int64, colors (V', 3) or None)``, order kept.
    """
    vertices = np.asarray(vertices)
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    tri = vertices[faces].astype(np.float64)
    area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=-1)
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    keep &= area2 > 0
    _, inverse, counts = np.unique(np.sort(faces, axis=1), axis=0, return_inverse=True, return_counts=True)
    keep &= counts[inverse.reshape(-1)] == 1
    faces = faces[keep]
    used = np.unique(faces)
    remap = np.full(len(vertices), -1, np.int64)
    remap[used] = np.arange(len(used))
    return vertices[used], remap[faces], (None if colors is None else np.asarray(colors)[used])
