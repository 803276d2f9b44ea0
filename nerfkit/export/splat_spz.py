"""Niantic's ``.spz`` (github.com/nianticlabs/spz): gzip-compressed, quantised Gaussians, about a
tenth of the standard .ply. nerfkit writes version 3 (the gzip container every spz reader takes) and
reads versions 1 to 3. Written by our own code: the PyPI ``spz`` package builds from Rust source
that fetches crates at install time, and no other maintained pure package writes it.

The gzip stream holds a 16-byte header, then the arrays one after another (N Gaussians, K SH
coefficients per channel)::

    magic 0x5053474e ("NGSP"), version, N (uint32 each); sh_degree, fractional_bits, flags,
    reserved (uint8 each)
    positions  N x 3 x 24-bit signed fixed point, value * 2^fractional_bits (12), little endian
    alphas     N x uint8     sigmoid(opacity) * 255
    colors     N x 3 uint8   f_dc * 0.15 * 255 + 127.5
    scales     N x 3 uint8   (log std-dev + 10) * 16
    rotations  N x 4 bytes   (v3) the unit quaternion (x, y, z, w), largest component made
                             positive: its index (2 bits), then the other three in order, each a
                             sign bit and 9 bits of |v| / (1/sqrt 2), as one little-endian uint32
                             (v1, v2: 3 bytes x, y, z as v * 127.5 + 127.5, w >= 0 recovered)
    sh         N x K x 3 uint8, coefficient-major (RGB interleaved): round(v * 128) + 128,
               snapped to buckets of 8 (degree 1, 5 bits) or 16 (degrees 2-3, 4 bits)

Values are rounded and clamped to their byte range (version 1 stores positions as float16).

Axes: spz files are in the RUB convention (x right, y up, z back, as three.js) and .ply files in
RDF (x right, y down, z forward); spz's own tools turn one into the other by a half turn about x,
so nerfkit does the same on write and read (:func:`nerfkit.export.transform.transform_gaussians`,
the SH rotated with it), and a file written here opens the same way up as one converted from our
.ply by Niantic's library.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nerfkit.core.errors import NerfkitError
from nerfkit.core.files import atomic_write
from nerfkit.export.splat_web import logit, numpy_gaussians, sigmoid, to_uint8
from nerfkit.export.transform import transform_gaussians

MAGIC = 0x5053474E
VERSION = 3
HEADER = struct.Struct("<IIIBBBB")
FRACTIONAL_BITS = 12
COLOR_SCALE = 0.15
SH1_BITS, SH_REST_BITS = 5, 4
FLAG_ANTIALIASED = 0x1
MAX_SH_DEGREE = 3
_SQRT1_2 = math.sqrt(0.5)
HALF_TURN_X = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))
"""RDF <-> RUB: a half turn about x (its own inverse)."""


def quantize_sh(values: np.ndarray, bits: int) -> np.ndarray:
    """SH coefficients -> uint8 at ``bits`` of precision (buckets of ``2^(8 - bits)``, 0 exact)."""
    bucket = 1 << (8 - bits)
    q = np.round(values.astype(np.float64) * 128.0).astype(np.int64) + 128
    q = (q + bucket // 2) // bucket * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


def pack_quaternions(quats_wxyz: np.ndarray) -> np.ndarray:
    """(N, 4) (w, x, y, z) quaternions -> (N, 4) uint8, spz v3 'smallest three'."""
    q = quats_wxyz[:, [1, 2, 3, 0]].astype(np.float64)                    # (x, y, z, w)
    q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    rows = np.arange(q.shape[0])
    largest = np.abs(q).argmax(1)
    negate = q[rows, largest] < 0
    packed = largest.astype(np.uint32)
    for i in range(4):
        keep = largest != i
        negbit = ((q[:, i] < 0) ^ negate).astype(np.uint32)
        magnitude = np.floor(511.0 * (np.abs(q[:, i]) / _SQRT1_2) + 0.5).astype(np.uint32)
        packed = np.where(keep, (packed << 10) | (negbit << 9) | np.minimum(magnitude, 511), packed)
    return packed.astype("<u4").view(np.uint8).reshape(-1, 4)


def unpack_quaternions(data: np.ndarray) -> np.ndarray:
    """(N, 4) uint8 spz v3 rotations -> (N, 4) unit (w, x, y, z) quaternions."""
    packed = data.reshape(-1, 4).copy().view("<u4").reshape(-1).astype(np.uint64)
    largest = (packed >> 30).astype(np.int64)
    q = np.zeros((packed.shape[0], 4))
    rows = np.arange(packed.shape[0])
    work = packed.copy()
    for i in (3, 2, 1, 0):
        take = largest != i
        magnitude = (work & 511).astype(np.float64)
        sign = np.where((work >> 9) & 1, -1.0, 1.0)
        q[:, i] = np.where(take, sign * _SQRT1_2 * magnitude / 511.0, q[:, i])
        work = np.where(take, work >> 10, work)
    q[rows, largest] = np.sqrt(np.maximum(0.0, 1.0 - (q ** 2).sum(1)))
    return q[:, [3, 0, 1, 2]]


def write_spz(path: str | os.PathLike, gaussians: Mapping[str, Tensor], antialiased: bool = False) -> None:
    """Write ``gaussians`` (the dict of :mod:`nerfkit.export.splat_ply`, RDF axes) as an spz v3
    file, atomically (see the module docstring)."""
    g = numpy_gaussians(transform_gaussians(gaussians, HALF_TURN_X.to(torch.float32)))
    count = g["means"].shape[0]
    sh_count = g["shN"].shape[1]
    degree = math.isqrt(sh_count + 1) - 1
    fixed = np.round(g["means"].astype(np.float64) * (1 << FRACTIONAL_BITS)).astype(np.int64)
    fixed = np.clip(fixed, -(1 << 23), (1 << 23) - 1).astype("<i4")
    positions = fixed.view(np.uint8).reshape(count, 3, 4)[:, :, :3]           # low three bytes
    sh = g["shN"].reshape(count, sh_count, 3)
    sh_bytes = np.concatenate([quantize_sh(sh[:, :3], SH1_BITS), quantize_sh(sh[:, 3:], SH_REST_BITS)], 1)
    parts = [HEADER.pack(MAGIC, VERSION, count, degree, FRACTIONAL_BITS,
                         FLAG_ANTIALIASED if antialiased else 0, 0),
             positions.tobytes(), to_uint8(sigmoid(g["opacities"]) * 255.0).tobytes(),
             to_uint8(g["sh0"].reshape(count, 3) * (COLOR_SCALE * 255.0) + 0.5 * 255.0).tobytes(),
             to_uint8((g["scales"] + 10.0) * 16.0).tobytes(), pack_quaternions(g["quats"]).tobytes(),
             sh_bytes.tobytes()]
    try:
        with atomic_write(Path(path)) as file:
            file.write(gzip.compress(b"".join(parts), compresslevel=9, mtime=0))
    except OSError as error:
        raise NerfkitError(f"'{path}' could not be written: {error.strerror or error}") from None


def read_spz(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read an spz file (versions 1-3) into the Gaussian dict (CPU float32, RDF axes as a .ply).

    Raises:
        NerfkitError: the file is missing, not gzip, not spz, of another version, or cut short.
    """
    path = Path(path)
    expected = "expected an .spz Gaussian file (gzip, NGSP header, version 1-3)"
    try:
        raw = gzip.decompress(path.read_bytes())
    except OSError as error:
        reason = error.strerror or str(error)
        raise NerfkitError(f"'{path}' could not be read ({reason}): {expected}") from None
    except (EOFError, zlib.error) as error:
        raise NerfkitError(f"'{path}' is cut short or corrupt ({error}): {expected}") from None
    if len(raw) < HEADER.size:
        raise NerfkitError(f"'{path}' holds {len(raw)} bytes after gunzip: {expected}")
    magic, version, count, degree, fractional, flags, _ = HEADER.unpack_from(raw)
    if magic != MAGIC or not 1 <= version <= VERSION:
        raise NerfkitError(f"'{path}' has magic 0x{magic:08x}, version {version}: {expected}")
    if degree > MAX_SH_DEGREE:
        raise NerfkitError(f"'{path}' holds SH degree {degree}: expected 0..{MAX_SH_DEGREE}")
    sh_count = (degree + 1) ** 2 - 1
    position_bytes = 6 if version == 1 else 9
    rotation_bytes = 4 if version >= 3 else 3
    sizes = [position_bytes, 1, 3, 3, rotation_bytes, 3 * sh_count]
    if len(raw) < HEADER.size + count * sum(sizes):
        raise NerfkitError(f"'{path}' is cut short: {len(raw) - HEADER.size} bytes for {count} Gaussians, "
                           f"expected {count * sum(sizes)}")
    offset, arrays = HEADER.size, []
    for size in sizes:
        arrays.append(np.frombuffer(raw, np.uint8, count * size, offset).reshape(count, size))
        offset += count * size
    positions, alphas, colors, scales, rotations, sh = arrays
    if version == 1:
        means = positions.copy().view("<f2").astype(np.float64)
    else:
        padded = np.zeros((count, 3, 4), np.uint8)
        padded[:, :, :3] = positions.reshape(count, 3, 3)
        padded[:, :, 3] = np.where(padded[:, :, 2] & 0x80, 0xFF, 0)            # sign extension
        means = padded.view("<i4").reshape(count, 3).astype(np.float64) / (1 << fractional)
    if version >= 3:
        quats = unpack_quaternions(rotations)
    else:
        xyz = rotations.astype(np.float64) / 127.5 - 1.0
        quats = np.concatenate([np.sqrt(np.maximum(0.0, 1.0 - (xyz ** 2).sum(1, keepdims=True))), xyz], 1)

    def tensor(array: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    in_rub = {"means": tensor(means), "quats": tensor(quats),
              "scales": tensor(scales.astype(np.float64) / 16.0 - 10.0),
              "opacities": tensor(logit(alphas[:, 0].astype(np.float64) / 255.0)),
              "sh0": tensor((colors.astype(np.float64) / 255.0 - 0.5) / COLOR_SCALE).reshape(count, 1, 3),
              "shN": tensor((sh.astype(np.float64) - 128.0) / 128.0).reshape(count, sh_count, 3)}
    return transform_gaussians(in_rub, HALF_TURN_X.to(torch.float32))
