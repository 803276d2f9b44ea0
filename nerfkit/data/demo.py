"""The built-in demo scene: a few textured analytic primitives, rendered by sphere tracing.

``nerfkit train`` without a scene trains on this, and the tests use tiny versions of it. The
object is the union of exact signed distance functions (a rounded cylinder as pedestal, a rounded
box, a sphere and a torus) with procedural albedo textures and Lambert shading from a fixed world
light baked in (view-independent). Everything is in world units, Z up, inside roughly [-0.8, 0.8]^3
around the origin, so the true surface is known exactly: :func:`demo_sdf`, :func:`demo_albedo`,
and ``gt_mesh.ply`` beside the images.

It is written in the NeRF-synthetic (Blender) layout: ``{train,val,test}/r_{i}.png`` (RGBA, 8-bit,
straight alpha) and ``transforms_{split}.json`` with ``camera_angle_x`` and OpenGL camera-to-world
matrices (camera looks down its -z axis, y up), exactly like the Blender scenes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from plyfile import PlyData, PlyElement
from torch import Tensor

from nerfkit.core.errors import NerfkitError
from nerfkit.core.files import user_cache_dir
from nerfkit.data.cameras import opengl_to_opencv, undistort

DEMO_NAME = "demo-v1"                 # bump the version when the scene's look or layout changes
CAMERA_ANGLE_X = math.radians(40.0)   # horizontal field of view, radians
CAMERA_RADIUS = 4.0                   # world units from the origin
TRAIN_ELEVATION_DEG = (10.0, 70.0)
TEST_ELEVATION_DEG = 30.0
VAL_ELEVATION_DEG = (15.0, 65.0)
LIGHT_DIR = (0.45, -0.35, 0.82)       # towards the light, world (normalised where used)
AMBIENT = 0.3                         # shade = AMBIENT + (1 - AMBIENT) * max(n . l, 0)
SUPERSAMPLE = 2                       # s x s rays per pixel in the written images
TRACE_BOX = ((-0.85, -0.85, -0.85), (0.85, 0.85, 0.85))  # rays are traced only inside this box
MESH_BOX = ((-0.9, -0.9, -0.9), (0.9, 0.9, 0.9))          # marching-cubes grid bounds
MESH_RESOLUTION = 160                 # grid points per axis for gt_mesh.ply
TRACE_ITERATIONS = 128
HIT_EPS = 1e-4                        # |sdf| below this (world units) ends a ray as a hit


@dataclass(frozen=True)
class Primitive:
    """One textured primitive; its local frame is ``Rz(-yaw) @ (p - center)``.

    ``dims`` by kind: sphere (radius,); box (half_x, half_y, half_z, rounding); cylinder (radius,
    half_height, rounding), axis local z; torus (major_radius, minor_radius), axis local y.
    """

    kind: str
    center: tuple[float, float, float]
    dims: tuple[float, ...]
    yaw: float
    texture: str
    colors: tuple[tuple[float, float, float], tuple[float, float, float]]


DIM_NAMES = {"sphere": ("radius",), "box": ("half_x", "half_y", "half_z", "rounding"),
             "cylinder": ("radius", "half_height", "rounding"),
             "torus": ("major_radius", "minor_radius")}

PRIMITIVES = (
    Primitive("cylinder", (0.0, 0.0, -0.7), (0.75, 0.1, 0.03), 0.0, "polar checker",
              ((0.22, 0.28, 0.45), (0.78, 0.78, 0.82))),
    Primitive("box", (-0.3, -0.2, -0.34), (0.26, 0.26, 0.28, 0.04), 0.5, "3d checker",
              ((0.85, 0.15, 0.10), (0.95, 0.90, 0.78))),
    Primitive("sphere", (0.35, 0.3, -0.26), (0.35,), 0.3, "spherical checker",
              ((0.15, 0.65, 0.25), (0.95, 0.80, 0.20))),
    Primitive("torus", (-0.3, -0.2, 0.31), (0.3, 0.08), 0.5, "segments",
              ((0.15, 0.35, 0.90), (0.98, 0.55, 0.10))),
)


XYZ = tuple[Tensor, Tensor, Tensor]    # P points as three contiguous (P,) tensors x, y, z


@contextmanager
def _one_thread():
    """Run torch on one thread inside: these small elementwise kernels gain little from more,
    and OpenMP teams stall by orders of magnitude when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _components(points: Tensor) -> XYZ:
    """(P, 3) points -> three contiguous (P,) float32 tensors."""
    x, y, z = points.float().T.contiguous()
    return x, y, z


def _local(xyz: XYZ, prim: Primitive) -> XYZ:
    """World coordinates -> the primitive's local coordinates ``Rz(-yaw) (p - center)``."""
    x, y, z = (xyz[i] - prim.center[i] for i in range(3))
    c, s = math.cos(prim.yaw), math.sin(prim.yaw)
    return c * x + s * y, c * y - s * x, z


def _length(*components: Tensor) -> Tensor:
    """Euclidean norm of vectors given as (P,) components."""
    return sum(c * c for c in components).sqrt()


def _primitive_sdf(q: XYZ, prim: Primitive) -> Tensor:
    """Exact signed distance (P,) of local points ``q`` to one primitive, world units."""
    x, y, z = q
    d = prim.dims
    if prim.kind == "sphere":
        return _length(x, y, z) - d[0]
    if prim.kind == "box":
        e = [c.abs() - (half - d[3]) for c, half in zip(q, d[:3])]
        inside = torch.maximum(torch.maximum(e[0], e[1]), e[2]).clamp(max=0.0)
        return _length(*(c.clamp(min=0.0) for c in e)) + inside - d[3]
    if prim.kind == "cylinder":
        e = [_length(x, y) - (d[0] - d[2]), z.abs() - (d[1] - d[2])]
        return _length(*(c.clamp(min=0.0) for c in e)) + torch.maximum(*e).clamp(max=0.0) - d[2]
    if prim.kind == "torus":
        return _length(_length(x, z) - d[0], y) - d[1]
    raise ValueError(f"unknown primitive kind {prim.kind!r}")


def _sdf(xyz: XYZ) -> Tensor:
    """The union of all primitives: world coordinates -> (P,) signed distance."""
    out = _primitive_sdf(_local(xyz, PRIMITIVES[0]), PRIMITIVES[0])
    for prim in PRIMITIVES[1:]:
        out = torch.minimum(out, _primitive_sdf(_local(xyz, prim), prim))
    return out


def demo_sdf(points: Tensor) -> Tensor:
    """Signed distance to the demo object: (P, 3) world points -> (P,) float32, world units, < 0 inside.

    The union (minimum) of exact primitive SDFs: exact outside the object, a bound inside.
    """
    return _sdf(_components(points))


def _hash01(i: Tensor, j: Tensor, k: Tensor) -> Tensor:
    """(P,) int64 lattice coordinates -> (P,) deterministic pseudo-random floats in [0, 1]."""
    h = (i * 73856093) ^ (j * 19349663) ^ (k * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFF).float() / 65535.0


def _value_noise(xyz: XYZ, frequency: float) -> Tensor:
    """Smooth 3D value noise in [0, 1] at world points -> (P,); features about 1/frequency wide."""
    cells, fades = [], []
    for c in xyz:
        scaled = c * frequency
        cell = torch.floor(scaled)
        f = scaled - cell
        cells.append(cell.long())
        fades.append(f * f * (3.0 - 2.0 * f))
    out = torch.zeros_like(xyz[0])
    for corner in range(8):
        bits = ((corner >> 2) & 1, (corner >> 1) & 1, corner & 1)
        weight = math.prod(u if b else 1.0 - u for u, b in zip(fades, bits))
        out = out + weight * _hash01(*(c + b for c, b in zip(cells, bits)))
    return out


def _pattern(q: XYZ, prim: Primitive) -> Tensor:
    """(P,) bool two-colour pattern of one primitive at local points ``q``: True -> colors[0]."""
    x, y, z = q
    azimuth = torch.atan2(y, x) / (2 * math.pi) + 0.5                     # [0, 1]
    if prim.texture == "polar checker":
        pick = torch.floor(_length(x, y) * 12.0) + torch.floor(azimuth * 32.0)
    elif prim.texture == "3d checker":
        pick = torch.floor(x / 0.09) + torch.floor(y / 0.09) + torch.floor(z / 0.09)
    elif prim.texture == "spherical checker":
        polar = torch.acos((z / _length(x, y, z).clamp(min=1e-9)).clamp(-1.0, 1.0)) / math.pi
        pick = torch.floor(azimuth * 12.0) + torch.floor(polar * 8.0)
    elif prim.texture == "segments":
        pick = torch.floor((torch.atan2(z, x) / (2 * math.pi) + 0.5) * 20.0)
    else:
        raise ValueError(f"unknown texture {prim.texture!r}")
    return pick.remainder(2) == 0


def demo_albedo(points: Tensor) -> Tensor:
    """Unshaded colour of the demo surface: (P, 3) world points -> (P, 3) float32 sRGB in [0, 1].

    Each point takes the pattern of its nearest primitive, darkened by two octaves of value noise
    (features ~8 cm and ~2.5 cm) so the images carry high-frequency detail.
    """
    xyz = _components(points)
    nearest = torch.full_like(xyz[0], math.inf)
    albedo = xyz[0].new_zeros(xyz[0].shape[0], 3)
    for prim in PRIMITIVES:
        q = _local(xyz, prim)
        d = _primitive_sdf(q, prim)
        colour = torch.where(_pattern(q, prim)[:, None], *(xyz[0].new_tensor(c) for c in prim.colors))
        albedo = torch.where((d < nearest)[:, None], colour, albedo)
        nearest = torch.minimum(nearest, d)
    grain = 0.72 + 0.18 * _value_noise(xyz, 12.0) + 0.12 * _value_noise(xyz, 40.0)
    return (albedo * grain[:, None]).clamp(0.0, 1.0)


def demo_normals(points: Tensor, eps: float = 1e-3) -> Tensor:
    """Unit outward normals (P, 3) at world points (P, 3): central differences of :func:`demo_sdf`."""
    xyz = _components(points)
    shifted = [[tuple(c + sign * eps if i == axis else c for i, c in enumerate(xyz)) for sign in (1, -1)]
               for axis in range(3)]
    grad = torch.stack([_sdf(plus) - _sdf(minus) for plus, minus in shifted], -1)
    return grad / grad.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def _box_interval(origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
    """Slab test against TRACE_BOX: (R, 3) origins, unit dirs -> entry (>= 0) and exit (R,)."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    t_a, t_b = ((origins.new_tensor(corner) - origins) * inv for corner in TRACE_BOX)
    return torch.minimum(t_a, t_b).amax(-1).clamp(min=0.0), torch.maximum(t_a, t_b).amin(-1)


def trace_demo(origins: Tensor, dirs: Tensor, iterations: int = TRACE_ITERATIONS) -> tuple[Tensor, Tensor]:
    """Sphere-trace rays against :func:`demo_sdf` (Hart 1996), at most ``iterations`` steps each.

    Args:
        origins: (R, 3) float32 ray origins, world units.
        dirs: (R, 3) float32 unit ray directions.
    Returns:
        t (R,) distance along the unit ray to the surface (world units, meaningless on a miss) and
        hit (R,) bool, True where the ray ends on the surface (|sdf| < ``HIT_EPS``).
    """
    t, t_exit = _box_interval(origins, dirs)
    o, d = _components(origins), _components(dirs)
    active = torch.nonzero(t < t_exit).squeeze(-1)
    # All rays step together; every 8 steps the converged or escaped ones are dropped.
    for _ in range(0, iterations, 8):
        if active.numel() == 0:
            break
        oa, da, ta = [c[active] for c in o], [c[active] for c in d], t[active]
        for _ in range(8):
            ta = ta + _sdf(tuple(oc + ta * dc for oc, dc in zip(oa, da)))
        t[active] = ta
        keep = (_sdf(tuple(oc + ta * dc for oc, dc in zip(oa, da))).abs() >= HIT_EPS) & (ta < t_exit[active])
        active = active[keep]
    hit = (t < t_exit) & (_sdf(tuple(oc + t * dc for oc, dc in zip(o, d))).abs() < HIT_EPS)
    return t, hit


def shade_demo(points: Tensor) -> Tensor:
    """Lambert-shaded colour (P, 3) in [0, 1] of surface points (P, 3), fixed world light + ambient."""
    light = points.new_tensor(LIGHT_DIR)
    lambert = (demo_normals(points) @ (light / light.norm())).clamp(min=0.0)
    return (demo_albedo(points) * (AMBIENT + (1.0 - AMBIENT) * lambert)[:, None]).clamp(0.0, 1.0)


def render_demo_view(c2w_opencv: Tensor, fx: float, fy: float, cx: float, cy: float, w: int, h: int,
                     supersample: int = 1, distortion: Tensor | None = None) -> dict[str, Tensor]:
    """Render the demo object from one camera (a pinhole unless ``distortion`` is given), on the CPU.

    Args:
        c2w_opencv: (4, 4) camera-to-world, OpenCV axes (x right, y down, z forward), world units.
        fx, fy, cx, cy: intrinsics in pixels; the top-left pixel's centre is at (0.5, 0.5).
        w, h: image size in pixels.
        supersample: s traces s x s rays per pixel on a regular grid and averages them.
        distortion: (5,) OpenCV ``k1, k2, p1, p2, k3`` of the lens, or None (a pinhole).
    Returns:
        ``rgb`` (h, w, 3) float32 in [0, 1], straight (not premultiplied) colour, 0 on background;
        ``alpha`` (h, w) float32 hit fraction (exactly 1 where every ray hits, 0 where none does);
        ``depth`` (h, w) float32 distance along the unit ray to the surface in world units (as
        ``nerfkit.ops.composite`` reports it; the mean over the pixel's hitting rays, exact for
        ``supersample=1``), 0 where nothing is hit.
    """
    s = int(supersample)
    xs = (torch.arange(w * s, dtype=torch.float64) + 0.5) / s
    ys = (torch.arange(h * s, dtype=torch.float64) + 0.5) / s
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    cam = torch.stack([(xx - cx) / fx, (yy - cy) / fy, torch.ones_like(xx)], -1).reshape(-1, 3)
    if distortion is not None:
        with _one_thread():
            cam[:, :2] = undistort(cam[:, :2], distortion.double())
    return render_demo_rays(c2w_opencv, cam, w, h, s)


def render_demo_rays(c2w_opencv: Tensor, directions: Tensor, w: int, h: int, supersample: int = 1) -> dict[str, Tensor]:
    """Render the demo object along given camera-frame rays and average them per pixel (any lens).

    Args:
        c2w_opencv: (4, 4) camera-to-world, OpenCV axes, world units.
        directions: (h * s * w * s, 3) ray directions in the camera frame (any length), row by row
            over the supersampled pixel grid (s = ``supersample`` rays per pixel side).
    Returns:
        as :func:`render_demo_view`.
    """
    s = int(supersample)
    c2w = c2w_opencv.detach().double().cpu()
    with _one_thread():
        dirs = directions.double() @ c2w[:3, :3].T
        dirs = (dirs / dirs.norm(dim=-1, keepdim=True)).float()
        origins = c2w[:3, 3].float().expand_as(dirs).contiguous()
        t, hit = trace_demo(origins, dirs)
        colour = torch.zeros_like(dirs)
        colour[hit] = shade_demo(origins[hit] + t[hit, None] * dirs[hit])
        weight = hit.float()[:, None]

        def pool(x: Tensor) -> Tensor:                       # (h*s*w*s, C) -> (h, w, C) sums
            return x.reshape(h, s, w, s, -1).sum((1, 3))

        count = pool(weight)
        rgb = pool(colour * weight) / count.clamp(min=1.0)
        depth = pool(t[:, None] * weight) / count.clamp(min=1.0)
    return {"rgb": rgb, "alpha": count[..., 0] / (s * s), "depth": depth[..., 0]}


def look_at_opengl(positions: Tensor) -> Tensor:
    """(..., 3) camera positions -> (..., 4, 4) float64 OpenGL/Blender camera-to-world looking at
    the origin, world Z up: x right, y up, z pointing away from the origin."""
    positions = positions.double()
    back = positions / positions.norm(dim=-1, keepdim=True)
    right = torch.linalg.cross(positions.new_tensor([0.0, 0.0, 1.0]).expand_as(back), back)
    right = right / right.norm(dim=-1, keepdim=True)
    c2w = torch.eye(4, dtype=torch.float64).expand(*positions.shape[:-1], 4, 4).clone()
    c2w[..., :3, :] = torch.stack([right, torch.linalg.cross(back, right), back, positions], -1)
    return c2w


def _on_sphere(azimuth: Tensor, elevation: Tensor) -> Tensor:
    """Angles in radians (N,) -> (N, 3) float64 points at CAMERA_RADIUS, Z up."""
    return CAMERA_RADIUS * torch.stack([elevation.cos() * azimuth.cos(), elevation.cos() * azimuth.sin(),
                                        elevation.sin()], -1)


def demo_camera_poses(n_train: int, n_test: int, n_val: int, seed: int) -> dict[str, Tensor]:
    """OpenGL camera-to-world poses (N, 4, 4) float64 per split, at CAMERA_RADIUS looking at the origin.

    train: an equal-area Fibonacci spiral over elevations 10..70 degrees (seeded azimuth offset);
    test: an orbit at 30 degrees elevation; val: seeded uniform random azimuth and elevation.
    """
    gen = torch.Generator().manual_seed(seed)
    offset, u_az, u_el = (torch.rand(n, generator=gen, dtype=torch.float64) for n in (1, n_val, n_val))
    lo, hi = (math.sin(math.radians(e)) for e in TRAIN_ELEVATION_DEG)
    k = torch.arange(n_train, dtype=torch.float64)
    golden = math.pi * (3.0 - math.sqrt(5.0))
    train = _on_sphere(2 * math.pi * offset + k * golden,
                       torch.asin(lo + (hi - lo) * (k + 0.5) / max(n_train, 1)))
    k = torch.arange(n_test, dtype=torch.float64)
    test = _on_sphere(2 * math.pi * (k + 0.5) / max(n_test, 1),
                      torch.full_like(k, math.radians(TEST_ELEVATION_DEG)))
    el_lo, el_hi = (math.radians(e) for e in VAL_ELEVATION_DEG)
    val = _on_sphere(2 * math.pi * u_az, el_lo + (el_hi - el_lo) * u_el)
    return {"train": look_at_opengl(train), "val": look_at_opengl(val), "test": look_at_opengl(test)}


def _write_mesh(path: Path, resolution: int) -> None:
    """Marching cubes of :func:`demo_sdf` on a ``resolution``^3 grid over MESH_BOX -> binary PLY."""
    from skimage.measure import marching_cubes

    lo, hi = np.array(MESH_BOX[0]), np.array(MESH_BOX[1])
    x, y, z = (torch.linspace(float(lo[i]), float(hi[i]), resolution) for i in range(3))
    with _one_thread():                                          # the grid by broadcasting
        values = _sdf((x[:, None, None], y[None, :, None], z[None, None, :]))
    spacing = tuple((hi - lo) / (resolution - 1))
    verts, faces, _, _ = marching_cubes(values.numpy(), level=0.0, spacing=spacing,
                                        gradient_direction="ascent")
    verts = (verts + lo).astype(np.float32)
    faces = faces[:, ::-1]                  # counter-clockwise seen from outside (normals point out)
    with _one_thread():
        colours = (demo_albedo(torch.from_numpy(verts)) * 255.0).round().to(torch.uint8).numpy()
    vertex = np.empty(len(verts), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"),
                                         ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = verts.T
    vertex["red"], vertex["green"], vertex["blue"] = colours.T
    face = np.empty(len(faces), dtype=[("vertex_indices", "i4", (3,))])
    face["vertex_indices"] = faces.astype(np.int32)
    PlyData([PlyElement.describe(vertex, "vertex"), PlyElement.describe(face, "face")],
            text=False, byte_order="<").write(str(path))


def scene_description(params: dict) -> dict:
    """The ``scene.json`` content: what the object is made of and how the scene was written."""
    return {
        "name": DEMO_NAME, "generator": "nerfkit.data.demo", "up": "+z", "units": "world",
        "description": "Union of exact SDF primitives with procedural albedo and baked Lambert shading; "
                       "local frame of a primitive = Rz(-yaw) (p - center).",
        "primitives": [{"type": p.kind, "center": list(p.center), "yaw": p.yaw, "texture": p.texture,
                        **dict(zip(DIM_NAMES[p.kind], p.dims))} for p in PRIMITIVES],
        "light": {"direction": list(LIGHT_DIR), "ambient": AMBIENT},
        "camera_radius": CAMERA_RADIUS, "supersample": SUPERSAMPLE,
        "mesh": {"file": "gt_mesh.ply", "box": [list(MESH_BOX[0]), list(MESH_BOX[1])]},
        "params": params,
    }


def write_demo_scene(out_dir: Path, size: int = 100, n_train: int = 60, n_test: int = 10, n_val: int = 5,
                     seed: int = 0, mesh_resolution: int = MESH_RESOLUTION) -> Path:
    """Render the demo scene into ``out_dir`` (NeRF-synthetic layout) and return ``out_dir``.

    Writes ``{train,val,test}/r_{i}.png`` (size x size RGBA), ``transforms_{split}.json``,
    ``gt_mesh.ply`` (world coordinates, vertex colours = albedo) and, last, ``scene.json``.
    Deterministic: the same arguments give byte-identical files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    focal = 0.5 * size / math.tan(0.5 * CAMERA_ANGLE_X)
    for split, poses in demo_camera_poses(n_train, n_test, n_val, seed).items():
        (out_dir / split).mkdir(exist_ok=True)
        frames = []
        for i, c2w in enumerate(poses):
            view = render_demo_view(opengl_to_opencv(c2w), focal, focal, size / 2, size / 2, size, size,
                                    supersample=SUPERSAMPLE)
            rgba = torch.cat([view["rgb"], view["alpha"][..., None]], -1)
            iio.imwrite(out_dir / split / f"r_{i}.png", (rgba * 255.0).round().to(torch.uint8).numpy())
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": (c2w + 0.0).tolist()})
        text = json.dumps({"camera_angle_x": CAMERA_ANGLE_X, "frames": frames}, indent=2)
        (out_dir / f"transforms_{split}.json").write_text(text + "\n")
    _write_mesh(out_dir / "gt_mesh.ply", mesh_resolution)
    params = {"size": size, "n_train": n_train, "n_test": n_test, "n_val": n_val, "seed": seed,
              "mesh_resolution": mesh_resolution}
    (out_dir / "scene.json").write_text(json.dumps(scene_description(params), indent=2) + "\n")
    return out_dir


def default_demo_dir() -> Path:
    """Where ``nerfkit train`` keeps the demo scene: ``$NERFKIT_CACHE/demo-v1``, else
    ``$XDG_CACHE_HOME/nerfkit/demo-v1``, else ``~/.cache/nerfkit/demo-v1``."""
    return user_cache_dir() / DEMO_NAME


def _is_complete(folder: Path, params: dict) -> bool:
    """True when ``folder`` holds a finished demo scene written with ``params``."""
    try:
        description = json.loads((folder / "scene.json").read_text())
        if description.get("name") != DEMO_NAME or description.get("params") != params:
            return False
        for split in ("train", "val", "test"):
            frames = json.loads((folder / f"transforms_{split}.json").read_text())["frames"]
            if not all((folder / (f["file_path"] + ".png")).is_file() for f in frames):
                return False
        return (folder / "gt_mesh.ply").is_file()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def ensure_demo_scene(size: int = 100, n_train: int = 60, n_test: int = 10, n_val: int = 5, seed: int = 0,
                      out_dir: Path | None = None) -> Path:
    """Return a complete demo scene folder, writing it first if needed.

    ``out_dir`` defaults to :func:`default_demo_dir` for the default arguments and to a sibling
    named after the arguments otherwise. The scene is written to a temporary folder beside it and
    renamed into place, so an interrupted write never leaves a half scene behind.
    """
    params = {"size": size, "n_train": n_train, "n_test": n_test, "n_val": n_val, "seed": seed,
              "mesh_resolution": MESH_RESOLUTION}
    if out_dir is None:
        out_dir = default_demo_dir()
        if (size, n_train, n_test, n_val, seed) != (100, 60, 10, 5, 0):
            out_dir = out_dir.with_name(f"{DEMO_NAME}-{size}px-{n_train}-{n_val}-{n_test}-seed{seed}")
    out_dir = Path(out_dir)
    if _is_complete(out_dir, params):
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "scene.json").is_file():
        raise NerfkitError(f"{out_dir} exists and is not a nerfkit demo scene; "
                           "remove it or pick another folder.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):          # left by killed writers
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    tmp.chmod(0o755)                                   # mkdtemp makes it private
    try:
        write_demo_scene(tmp, size, n_train, n_test, n_val, seed)
        if out_dir.exists():                       # an older or different demo scene: replace it
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
            os.replace(out_dir, old / "old")
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, out_dir)
        except OSError:
            if not _is_complete(out_dir, params):  # another process may have just finished it
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
