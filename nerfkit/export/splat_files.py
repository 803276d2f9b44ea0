"""Gaussian splat files by their name: the standard 3DGS ``.ply`` (:mod:`splat_ply`), SuperSplat's
compressed ``.ply`` (:mod:`splat_compressed`), the web viewers' ``.splat`` (:mod:`splat_web`) and
Niantic's ``.spz`` (:mod:`splat_spz`); plus the clean-ups applied before writing (opacity
threshold, crop box, fewer SH bands).

Every reader returns the in-memory Gaussian dict of :mod:`nerfkit.export.splat_ply` (CPU float32
``means quats scales opacities sh0 shN``), in the file's own coordinates.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from plyfile import PlyData
from torch import Tensor

from nerfkit.core.errors import NerfkitError
from nerfkit.export.splat_compressed import is_compressed_ply, read_compressed_ply, write_compressed_ply
from nerfkit.export.splat_ply import GAUSSIAN_KEYS, read_splat_ply, sh_degree_of, write_splat_ply
from nerfkit.export.splat_spz import read_spz, write_spz
from nerfkit.export.splat_web import read_splat_web, write_splat_web

SPLAT_SUFFIXES = (".ply", ".splat", ".spz")
PLY_FORMATS = ("standard", "compressed")
_HEADER_LIMIT = 1 << 16


def write_splat_file(path: str | os.PathLike, gaussians: Mapping[str, Tensor], ply_format: str = "standard") -> None:
    """Write ``gaussians`` in the format of ``path``'s extension (``.ply`` in ``ply_format``:
    standard or compressed; ``.splat``; ``.spz``), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        if ply_format not in PLY_FORMATS:
            raise NerfkitError(f"--format must be standard or compressed, got '{ply_format}'")
        (write_compressed_ply if ply_format == "compressed" else write_splat_ply)(path, gaussians)
    elif suffix == ".splat":
        write_splat_web(path, gaussians)
    elif suffix == ".spz":
        write_spz(path, gaussians)
    else:
        raise NerfkitError(f"'{path}' has the extension '{path.suffix}': expected a splat file "
                           f"{', '.join(SPLAT_SUFFIXES)}")


def ply_is_compressed(path: Path) -> bool:
    """Whether the PLY header of ``path`` declares SuperSplat's ``chunk`` element."""
    try:
        with open(path, "rb") as file:
            head = file.read(_HEADER_LIMIT)
    except OSError:
        return False                  # the reader names the problem
    header = head.split(b"end_header", 1)[0]
    return b"element chunk" in header and b"packed_position" in header


def read_splat_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read any splat file nerfkit writes (and the standard .ply of Inria 3DGS, gsplat,
    nerfstudio, SuperSplat) by its extension and, for .ply, its header.

    Raises:
        NerfkitError: the extension is not one of :data:`SPLAT_SUFFIXES` or the file is not in the
            format it names (one sentence each).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise NerfkitError(f"'{path}' does not exist: expected a Gaussian splat file "
                           f"({', '.join(SPLAT_SUFFIXES)})")
    if suffix == ".splat":
        return read_splat_web(path)
    if suffix == ".spz":
        return read_spz(path)
    if suffix != ".ply":
        raise NerfkitError(f"'{path}' has the extension '{path.suffix}': expected a Gaussian splat file "
                           f"({', '.join(SPLAT_SUFFIXES)})")
    if ply_is_compressed(path):
        try:
            ply = PlyData.read(str(path))
        except Exception as error:  # noqa: BLE001 - plyfile raises many kinds on bad input
            raise NerfkitError(f"'{path}' is not a readable PLY file ({str(error).splitlines()[0]}): "
                               f"expected SuperSplat's compressed .ply") from None
        if is_compressed_ply(ply):
            return read_compressed_ply(ply, path)
    return read_splat_ply(path)


def clean_gaussians(gaussians: Mapping[str, Tensor], min_opacity: float = 0.0,
                    crop: Sequence[float] | None = None, sh_degree: int | None = None) -> dict[str, Tensor]:
    """The Gaussians an export keeps (floaters and far-away junk removed, fewer SH bands).

    Args:
        min_opacity: drop Gaussians whose opacity sigmoid(logit) is below this (0..1).
        crop: ``(xmin, ymin, zmin, xmax, ymax, zmax)``: drop Gaussians whose mean is outside the box
            (in the coordinates of ``gaussians``).
        sh_degree: keep SH bands up to this degree (at most the Gaussians' own degree).
    Raises:
        NerfkitError: a value out of range, an empty box or a degree above the Gaussians'.
    """
    if not 0.0 <= min_opacity <= 1.0:
        raise NerfkitError(f"--min-opacity must be between 0 and 1, got {min_opacity}")
    keep = torch.sigmoid(gaussians["opacities"].float()) >= min_opacity
    if crop is not None:
        box = torch.tensor(list(crop), dtype=torch.float32)
        if box.shape != (6,) or not bool(torch.isfinite(box).all()) or not bool((box[:3] < box[3:]).all()):
            raise NerfkitError(f"--crop expects XMIN YMIN ZMIN XMAX YMAX ZMAX with each min below its max, "
                               f"got {list(crop)}")
        means = gaussians["means"].float().cpu()
        keep &= ((means >= box[:3]) & (means <= box[3:])).all(-1).to(keep.device)
    degree = sh_degree_of(gaussians["shN"])
    if sh_degree is not None:
        if not 0 <= sh_degree <= degree:
            raise NerfkitError(f"--sh-degree {sh_degree}: these Gaussians have SH degree {degree}; expected "
                               f"0..{degree}")
        degree = sh_degree
    out = {key: gaussians[key][keep] for key in GAUSSIAN_KEYS}
    out["shN"] = out["shN"][:, : (degree + 1) ** 2 - 1]
    return out
