"""The standard 3DGS Gaussian .ply: write Gaussians that other splat viewers open; read theirs.

The file (docs/design.md, "Gaussian .ply") is a binary little-endian PLY with one ``vertex`` element, one
row per Gaussian, and only float32 properties, in this order::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  f_rest_0 .. f_rest_{3K-1}  opacity  scale_0..2  rot_0..3

- ``x y z``: the mean; ``nx ny nz``: always zero (3DGS writes them, viewers ignore them).
- ``f_dc_c``: the degree-0 SH coefficient of colour channel ``c``.
- ``f_rest_*``: the K higher-band SH coefficients (K = 0, 3, 8, 15 for degree 0..3), channel-major:
  ``f_rest_{c*K + k} = shN[:, k, c]``, i.e. all of red's coefficients, then green's, then blue's.
- ``opacity``: the logit of the opacity; ``scale_i``: the log of the std-dev along axis ``i``;
  ``rot_0..3``: the rotation as a (w, x, y, z) quaternion, as optimised (not necessarily unit).

In memory the Gaussians are a dict of tensors with gsplat's names and shapes (N Gaussians)::

    means (N, 3)  quats (N, 4)  scales (N, 3)  opacities (N,)  sh0 (N, 1, 3)  shN (N, K, 3)

and the values are the same parameters the file holds (logits, log-scales, raw quaternions), so a
write then a read gives back the float32 tensors bit for bit.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement, PlyListProperty, PlyParseError
from torch import Tensor

from nerfkit.core.errors import NerfkitError
from nerfkit.core.files import atomic_write

MAX_SH_DEGREE = 3
"""The highest SH degree a 3DGS .ply holds (45 ``f_rest`` properties)."""

GAUSSIAN_KEYS = ("means", "quats", "scales", "opacities", "sh0", "shN")
"""The keys of an in-memory Gaussian dict, as gsplat names them."""

_REQUIRED_PROPERTIES = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                        "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
_F_REST = re.compile(r"f_rest_(0|[1-9][0-9]*)")
_F_REST_COUNTS = tuple(3 * ((degree + 1) ** 2 - 1) for degree in range(MAX_SH_DEGREE + 1))
_EXPECTED = "expected a 3DGS Gaussian .ply"


def sh_degree_of(shN: Tensor) -> int:
    """The SH degree of the higher bands ``shN`` (shape ``(..., K, 3)``): K = (degree + 1)² - 1.

    >>> sh_degree_of(torch.zeros(5, 15, 3)), sh_degree_of(torch.zeros(5, 0, 3))
    (3, 0)

    Raises:
        ValueError: ``shN`` is not ``(..., K, 3)`` or K + 1 is not a square (0, 3, 8, 15, 24, ...).
    """
    if shN.ndim < 2 or shN.shape[-1] != 3:
        raise ValueError(f"shN must have shape (..., K, 3), got {tuple(shN.shape)}")
    count = shN.shape[-2]
    degree = math.isqrt(count + 1) - 1
    if (degree + 1) ** 2 != count + 1:
        raise ValueError(f"shN holds {count} SH coefficients per channel: expected "
                         f"(degree + 1)² - 1, i.e. 0, 3, 8 or 15 for degree 0..3")
    return degree


def splat_ply_property_names(sh_degree: int) -> list[str]:
    """The ``vertex`` property names of a 3DGS .ply of ``sh_degree``, in file order.

    >>> splat_ply_property_names(1)[6:13]
    ['f_dc_0', 'f_dc_1', 'f_dc_2', 'f_rest_0', 'f_rest_1', 'f_rest_2', 'f_rest_3']
    >>> len(splat_ply_property_names(3))
    62
    """
    if not 0 <= sh_degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh_degree must be 0..{MAX_SH_DEGREE}, got {sh_degree}")
    rest = _F_REST_COUNTS[sh_degree]
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def write_splat_ply(path: str | os.PathLike, gaussians: Mapping[str, Tensor]) -> None:
    """Write ``gaussians`` to ``path`` as a standard 3DGS Gaussian .ply (see the module docstring).

    Args:
        path: the file to (over)write; its folder is created when missing.
        gaussians: ``means (N, 3)``, ``quats (N, 4)`` (w, x, y, z), ``scales (N, 3)`` (log),
            ``opacities (N,)`` (logit), ``sh0 (N, 1, 3)``, ``shN (N, K, 3)`` with K in
            {0, 3, 8, 15}; any floating dtype and device, gradients ignored, written as float32.
            Other keys are ignored. N may be 0. Values are written as they are (NaN included).

    The file is written atomically: to a hidden temp file in the same folder, fsync'ed, then
    renamed over ``path``, so a failure leaves an earlier file at ``path`` untouched.

    Raises:
        ValueError: a key is missing or a tensor has the wrong shape.
        NerfkitError: the file could not be written (permissions, disk full, ...).
    """
    path = Path(path)
    arrays = _checked_arrays(gaussians)
    count = arrays["means"].shape[0]
    sh_count = arrays["shN"].shape[1]
    f_rest = arrays["shN"].transpose(0, 2, 1).reshape(count, 3 * sh_count)  # [:, c * K + k]
    table = np.concatenate([arrays["means"], np.zeros((count, 3), np.float32),
                            arrays["sh0"].reshape(count, 3), f_rest, arrays["opacities"][:, None],
                            arrays["scales"], arrays["quats"]], axis=1)
    names = splat_ply_property_names(sh_degree_of(torch.from_numpy(arrays["shN"])))
    row = np.dtype([(name, "<f4") for name in names])
    vertices = np.ascontiguousarray(table, dtype="<f4").view(row).reshape(count)
    ply = PlyData([PlyElement.describe(vertices, "vertex")], text=False, byte_order="<")
    try:
        with atomic_write(path) as file:
            ply.write(file)
    except OSError as error:
        raise NerfkitError(f"'{path}' could not be written: {error.strerror or error}") from None


def read_splat_ply(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a 3DGS Gaussian .ply written by nerfkit or any other 3DGS trainer.

    Properties may come in any order and any numeric type (binary or ASCII PLY); properties and
    elements other than the ones listed in the module docstring (normals, colours, ...) are
    ignored. The SH degree follows from the number of ``f_rest_*`` properties (0, 9, 24, 45).

    Returns:
        CPU float32 tensors: ``means (N, 3)``, ``quats (N, 4)``, ``scales (N, 3)``,
        ``opacities (N,)``, ``sh0 (N, 1, 3)``, ``shN (N, K, 3)`` with K = 0, 3, 8 or 15.

    Raises:
        NerfkitError: the file is missing or not a PLY, has no ``vertex`` element, lacks a
            required property, or holds a number of ``f_rest_*`` properties other than 0/9/24/45.
    """
    path = Path(path)
    vertex = _read_vertex_element(path)
    properties = {prop.name: prop for prop in vertex.properties}
    missing = [name for name in _REQUIRED_PROPERTIES if name not in properties]
    if missing:
        raise NerfkitError(f"'{path}' lacks the vertex properties {', '.join(missing)}: "
                           f"{_EXPECTED} with {' '.join(_REQUIRED_PROPERTIES)}")
    rest_names = _f_rest_names(path, properties)
    lists = [name for name in (*_REQUIRED_PROPERTIES, *rest_names)
             if isinstance(properties[name], PlyListProperty)]
    if lists:
        raise NerfkitError(f"'{path}' stores {', '.join(lists)} as lists: {_EXPECTED} with one "
                           f"number per Gaussian in each property")

    data = vertex.data
    count = len(data)

    def columns(*names: str) -> Tensor:
        stacked = np.empty((count, len(names)), np.float32)
        for i, name in enumerate(names):
            stacked[:, i] = data[name]
        return torch.from_numpy(stacked)

    sh_count = len(rest_names) // 3
    return {
        "means": columns("x", "y", "z"),
        "quats": columns("rot_0", "rot_1", "rot_2", "rot_3"),
        "scales": columns("scale_0", "scale_1", "scale_2"),
        "opacities": columns("opacity").reshape(count),
        "sh0": columns("f_dc_0", "f_dc_1", "f_dc_2").reshape(count, 1, 3),
        # channel-major in the file: f_rest_{c * K + k} = shN[:, k, c]
        "shN": columns(*rest_names).reshape(count, 3, sh_count).transpose(1, 2).contiguous(),
    }


def _checked_arrays(gaussians: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
    """``gaussians`` as contiguous CPU float32 arrays, after checking every key and shape."""
    missing = [key for key in GAUSSIAN_KEYS if key not in gaussians]
    if missing:
        raise ValueError(f"gaussians lacks {', '.join(missing)}: expected the keys "
                         f"{', '.join(GAUSSIAN_KEYS)}")
    tensors = {key: torch.as_tensor(gaussians[key]) for key in GAUSSIAN_KEYS}
    means, shN = tensors["means"], tensors["shN"]
    if means.ndim != 2 or means.shape[1] != 3:
        raise ValueError(f"means must have shape (N, 3), got {tuple(means.shape)}")
    count = means.shape[0]
    sh_count = shN.shape[1] if shN.ndim == 3 else -1
    expected = {"quats": (count, 4), "scales": (count, 3), "opacities": (count,),
                "sh0": (count, 1, 3), "shN": (count, sh_count, 3)}
    names = {"quats": "(N, 4)", "scales": "(N, 3)", "opacities": "(N,)", "sh0": "(N, 1, 3)",
             "shN": "(N, K, 3)"}
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            raise ValueError(f"{key} must have shape {names[key]} with N = {count} (from means), "
                             f"got {tuple(tensors[key].shape)}")
    if sh_degree_of(shN) > MAX_SH_DEGREE:
        raise ValueError(f"shN holds SH degree {sh_degree_of(shN)}: a 3DGS .ply holds degree 0.."
                         f"{MAX_SH_DEGREE} (K = 0, 3, 8 or 15)")
    return {key: tensor.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
            for key, tensor in tensors.items()}


def _read_vertex_element(path: Path) -> PlyElement:
    """The ``vertex`` element of the PLY at ``path``, read into memory."""
    try:
        ply = PlyData.read(str(path), mmap=False)
    except FileNotFoundError:
        raise NerfkitError(f"'{path}' does not exist: {_EXPECTED}") from None
    except OSError as error:
        raise NerfkitError(f"'{path}' could not be read ({error.strerror or error}): "
                           f"{_EXPECTED}") from None
    except (PlyParseError, UnicodeDecodeError, ValueError) as error:
        raise NerfkitError(f"'{path}' is not a readable PLY file ({str(error).splitlines()[0]}): "
                           f"{_EXPECTED}") from None
    if "vertex" not in ply:
        found = ", ".join(element.name for element in ply.elements) or "none"
        raise NerfkitError(f"'{path}' has no vertex element (elements: {found}): {_EXPECTED} "
                           f"with one vertex per Gaussian")
    return ply["vertex"]


def _f_rest_names(path: Path, properties: Mapping[str, object]) -> list[str]:
    """``f_rest_0 .. f_rest_{M-1}`` of the file, checking M is 0, 9, 24 or 45 with none skipped."""
    indices = sorted(int(match.group(1)) for name in properties
                     if (match := _F_REST.fullmatch(name)))
    allowed = ", ".join(str(count) for count in _F_REST_COUNTS)
    if len(indices) not in _F_REST_COUNTS:
        raise NerfkitError(f"'{path}' has {len(indices)} f_rest properties: {_EXPECTED} with "
                           f"{allowed} of them (SH degree 0..{MAX_SH_DEGREE})")
    if indices != list(range(len(indices))):
        raise NerfkitError(f"'{path}' has f_rest properties numbered {indices[0]}..{indices[-1]} "
                           f"with gaps: {_EXPECTED} with f_rest_0 .. f_rest_{len(indices) - 1}")
    return [f"f_rest_{index}" for index in indices]
