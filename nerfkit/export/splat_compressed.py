"""SuperSplat's compressed .ply (PlayCanvas, ``*.compressed.ply``): Gaussians quantised in chunks of
256, about a quarter of the standard file's size without SH and ~4x smaller with it.

The binary little-endian PLY has three elements::

    element chunk C       18 float32: min_x min_y min_z max_x max_y max_z
                                      min_scale_x .. max_scale_z  (log std-devs)
                                      min_r min_g min_b max_r max_g max_b  (base colours)
    element vertex N      4 uint32:   packed_position packed_rotation packed_scale packed_color
    element sh N          3K uint8:   f_rest_0 .. f_rest_{3K-1}   (only when SH degree > 0)

Gaussian ``i`` belongs to chunk ``i // 256``; the Gaussians are stored in Morton (Z-curve) order of
their means, so a chunk's box is small. Within its chunk's range ``[min, max]`` a value ``v`` is
stored as the unsigned integer ``round((v - min) / (max - min) * (2^bits - 1))``:

- ``packed_position``: x (11 bits) << 21 | y (10 bits) << 11 | z (11 bits);
- ``packed_scale``: the log scales, laid out the same way (range clamped to [-20, 20]);
- ``packed_color``: r << 24 | g << 16 | b << 8 | opacity, 8 bits each; rgb = 0.5 + SH_C0 * f_dc in
  the chunk's colour range, the opacity as sigmoid(logit) in [0, 1];
- ``packed_rotation``: the unit quaternion (w, x, y, z) with its largest component made positive:
  that component's index (2 bits) << 30, then the other three in order, 10 bits each, from
  ``[-1/sqrt 2, 1/sqrt 2]`` (``v * sqrt(2) / 2 + 0.5`` in [0, 1]); the largest is recovered as
  ``sqrt(1 - a^2 - b^2 - c^2)``;
- ``sh``: ``floor((v / 8 + 0.5) * 256)`` clamped to 0..255 (values in [-4, 4)), read back at the
  bucket centre, channel-major as the standard .ply's ``f_rest_*``.

Files without the colour range in their chunks (SuperSplat's first version) store rgb directly in
[0, 1]; they are read too.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyElement
from torch import Tensor

from nerfkit.core.errors import NerfkitError
from nerfkit.core.files import atomic_write
from nerfkit.export.splat_web import logit, numpy_gaussians, sigmoid
from nerfkit.render.spherical_harmonics import SH_C0

CHUNK = 256
CHUNK_PROPERTIES = ("min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
                    "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z",
                    "min_r", "min_g", "min_b", "max_r", "max_g", "max_b")
VERTEX_PROPERTIES = ("packed_position", "packed_rotation", "packed_scale", "packed_color")
SCALE_LIMIT = 20.0
_HALF_SQRT2 = math.sqrt(2.0) * 0.5


def is_compressed_ply(ply: PlyData) -> bool:
    """Whether a parsed PLY is in the compressed layout (a ``chunk`` element and packed vertices)."""
    return ("chunk" in ply and "vertex" in ply
            and all(name in ply["vertex"].data.dtype.names for name in VERTEX_PROPERTIES))


def morton_order(means: np.ndarray) -> np.ndarray:
    """(N, 3) points -> (N,) indices sorting them along a Z-order curve (10 bits per axis over their
    bounding box)."""
    if means.shape[0] == 0:
        return np.zeros(0, np.int64)
    low, high = means.min(0), means.max(0)
    cells = ((means - low) / np.maximum(high - low, 1e-12) * 1023).round().clip(0, 1023).astype(np.uint64)
    code = np.zeros(means.shape[0], np.uint64)
    for bit in range(10):
        for axis in range(3):
            code |= ((cells[:, axis] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit + (2 - axis))
    return np.argsort(code, kind="stable")


def _chunk_range(values: np.ndarray, chunk_of: np.ndarray, chunks: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-chunk (min, max) of (N, D) values: two (C, D) arrays."""
    low = np.full((chunks, values.shape[1]), np.inf)
    high = np.full((chunks, values.shape[1]), -np.inf)
    np.minimum.at(low, chunk_of, values)
    np.maximum.at(high, chunk_of, values)
    return low, high


def _quantise(values: np.ndarray, low: np.ndarray, high: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    span = high - low
    unit = np.where(span > 0, (values - low) / np.where(span > 0, span, 1.0), 0.0)
    return np.round(np.clip(unit, 0.0, 1.0) * top).astype(np.uint32)


def _dequantise(codes: np.ndarray, low: np.ndarray, high: np.ndarray, bits: int) -> np.ndarray:
    return low + codes.astype(np.float64) / ((1 << bits) - 1) * (high - low)


def _pack_11_10_11(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    return ((_quantise(values[:, 0], low[:, 0], high[:, 0], 11) << 21)
            | (_quantise(values[:, 1], low[:, 1], high[:, 1], 10) << 11)
            | _quantise(values[:, 2], low[:, 2], high[:, 2], 11))


def _unpack_11_10_11(packed: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    return np.stack([_dequantise(packed >> 21 & 0x7FF, low[:, 0], high[:, 0], 11),
                     _dequantise(packed >> 11 & 0x3FF, low[:, 1], high[:, 1], 10),
                     _dequantise(packed & 0x7FF, low[:, 2], high[:, 2], 11)], 1)


def pack_rotations(quats: np.ndarray) -> np.ndarray:
    """(N, 4) (w, x, y, z) quaternions, any norm > 0 -> (N,) uint32 'smallest three' codes."""
    q = quats.astype(np.float64) / np.maximum(np.linalg.norm(quats, axis=1, keepdims=True), 1e-12)
    largest = np.abs(q).argmax(1)
    q = np.where(q[np.arange(len(q)), largest][:, None] < 0, -q, q)
    packed = largest.astype(np.uint32) << 30
    others = np.array([[j for j in range(4) if j != i] for i in range(4)])[largest]     # (N, 3)
    for slot in range(3):
        value = q[np.arange(len(q)), others[:, slot]] * _HALF_SQRT2 + 0.5
        packed |= np.round(np.clip(value, 0.0, 1.0) * 1023).astype(np.uint32) << (20 - 10 * slot)
    return packed


def unpack_rotations(packed: np.ndarray) -> np.ndarray:
    """(N,) uint32 codes -> (N, 4) unit (w, x, y, z) quaternions."""
    largest = (packed >> 30).astype(np.int64)
    others = np.array([[j for j in range(4) if j != i] for i in range(4)])[largest]
    q = np.zeros((packed.shape[0], 4))
    rows = np.arange(packed.shape[0])
    for slot in range(3):
        code = (packed >> (20 - 10 * slot)) & 0x3FF
        q[rows, others[:, slot]] = (code.astype(np.float64) / 1023 - 0.5) / _HALF_SQRT2
    q[rows, largest] = np.sqrt(np.maximum(0.0, 1.0 - (q ** 2).sum(1)))
    return q


def write_compressed_ply(path: str | os.PathLike, gaussians: Mapping[str, Tensor]) -> None:
    """Write ``gaussians`` (the dict of :mod:`nerfkit.export.splat_ply`) as a compressed .ply,
    atomically, in Morton order (see the module docstring)."""
    g = numpy_gaussians(gaussians)
    order = morton_order(g["means"])
    g = {key: value[order] for key, value in g.items()}
    count = g["means"].shape[0]
    chunks = max(1, math.ceil(count / CHUNK))
    chunk_of = np.arange(count) // CHUNK
    scales = np.clip(g["scales"].astype(np.float64), -SCALE_LIMIT, SCALE_LIMIT)
    colours = 0.5 + SH_C0 * g["sh0"].reshape(count, 3).astype(np.float64)
    ranges = [_chunk_range(values, chunk_of, chunks) for values in (g["means"].astype(np.float64), scales, colours)]
    table = np.zeros(chunks, [(name, "<f4") for name in CHUNK_PROPERTIES])
    for group, (low, high) in enumerate(ranges):
        low, high = np.where(np.isfinite(low), low, 0.0), np.where(np.isfinite(high), high, 0.0)
        for axis in range(3):
            table[CHUNK_PROPERTIES[6 * group + axis]] = low[:, axis]
            table[CHUNK_PROPERTIES[6 * group + 3 + axis]] = high[:, axis]
    # Quantise against the float32 bounds the file holds, so reading back uses the same numbers.
    bounds = [(np.stack([table[CHUNK_PROPERTIES[6 * group + a]] for a in range(3)], 1).astype(np.float64)[chunk_of],
               np.stack([table[CHUNK_PROPERTIES[6 * group + 3 + a]] for a in range(3)], 1).astype(np.float64)[chunk_of])
              for group in range(3)]
    vertices = np.zeros(count, [(name, "<u4") for name in VERTEX_PROPERTIES])
    vertices["packed_position"] = _pack_11_10_11(g["means"].astype(np.float64), *bounds[0])
    vertices["packed_scale"] = _pack_11_10_11(scales, *bounds[1])
    vertices["packed_rotation"] = pack_rotations(g["quats"])
    rgb = [_quantise(colours[:, c], bounds[2][0][:, c], bounds[2][1][:, c], 8) for c in range(3)]
    alpha = np.round(np.clip(sigmoid(g["opacities"]), 0, 1) * 255).astype(np.uint32)
    vertices["packed_color"] = rgb[0] << 24 | rgb[1] << 16 | rgb[2] << 8 | alpha
    elements = [PlyElement.describe(table, "chunk"), PlyElement.describe(vertices, "vertex")]
    sh_count = g["shN"].shape[1]
    if sh_count:
        f_rest = g["shN"].transpose(0, 2, 1).reshape(count, 3 * sh_count)       # channel-major
        codes = np.clip(np.floor((f_rest.astype(np.float64) / 8.0 + 0.5) * 256.0), 0, 255).astype(np.uint8)
        sh = np.zeros(count, [(f"f_rest_{i}", "u1") for i in range(3 * sh_count)])
        for i in range(3 * sh_count):
            sh[f"f_rest_{i}"] = codes[:, i]
        elements.append(PlyElement.describe(sh, "sh"))
    ply = PlyData(elements, text=False, byte_order="<", comments=["Generated by nerfkit (compressed 3DGS)"])
    try:
        with atomic_write(Path(path)) as file:
            ply.write(file)
    except OSError as error:
        raise NerfkitError(f"'{path}' could not be written: {error.strerror or error}") from None


def read_compressed_ply(ply: PlyData, path: Path) -> dict[str, Tensor]:
    """The Gaussians of a parsed compressed .ply (file order), as the dict of
    :mod:`nerfkit.export.splat_ply` (CPU float32)."""
    chunk, vertex = ply["chunk"].data, ply["vertex"].data
    names = chunk.dtype.names
    missing = [name for name in CHUNK_PROPERTIES[:12] if name not in names]
    if missing:
        raise NerfkitError(f"'{path}' has a chunk element without {', '.join(missing)}: expected "
                           f"SuperSplat's compressed .ply")
    count = vertex.shape[0]
    if chunk.shape[0] * CHUNK < count:
        raise NerfkitError(f"'{path}' has {chunk.shape[0]} chunks for {count} Gaussians: expected one "
                           f"chunk per {CHUNK}")
    chunk_of = np.arange(count) // CHUNK

    def bounds(first: int) -> tuple[np.ndarray, np.ndarray]:
        low = np.stack([chunk[CHUNK_PROPERTIES[first + a]] for a in range(3)], 1).astype(np.float64)
        high = np.stack([chunk[CHUNK_PROPERTIES[first + 3 + a]] for a in range(3)], 1).astype(np.float64)
        return low[chunk_of], high[chunk_of]

    means = _unpack_11_10_11(vertex["packed_position"].astype(np.uint32), *bounds(0))
    scales = _unpack_11_10_11(vertex["packed_scale"].astype(np.uint32), *bounds(6))
    colour = vertex["packed_color"].astype(np.uint32)
    codes = np.stack([colour >> 24 & 0xFF, colour >> 16 & 0xFF, colour >> 8 & 0xFF], 1).astype(np.float64) / 255
    if all(name in names for name in CHUNK_PROPERTIES[12:]):
        low, high = bounds(12)
        rgb = low + codes * (high - low)
    else:
        rgb = codes
    alpha = (colour & 0xFF).astype(np.float64) / 255
    shN = np.zeros((count, 0, 3))
    if "sh" in ply:
        sh = ply["sh"].data
        rest = sorted((n for n in sh.dtype.names if n.startswith("f_rest_")), key=lambda n: int(n[7:]))
        if len(rest) % 3 or sh.shape[0] != count:
            raise NerfkitError(f"'{path}' has an sh element of {len(rest)} f_rest properties for "
                               f"{sh.shape[0]} rows: expected 3K properties for {count} Gaussians")
        values = np.stack([sh[name] for name in rest], 1).astype(np.float64) if rest else np.zeros((count, 0))
        values = ((values + 0.5) / 256.0 - 0.5) * 8.0
        shN = values.reshape(count, 3, len(rest) // 3).transpose(0, 2, 1)

    def tensor(array: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    return {"means": tensor(means), "quats": tensor(unpack_rotations(vertex["packed_rotation"].astype(np.uint32))),
            "scales": tensor(scales), "opacities": tensor(logit(alpha)),
            "sh0": tensor((rgb - 0.5) / SH_C0).reshape(count, 1, 3), "shN": tensor(shN)}
