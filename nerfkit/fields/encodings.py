"""Input encodings: real spherical harmonics for directions and the multiresolution hash grid."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nerfkit.errors import NerfkitError
from nerfkit.ops import hash_encode, level_layout


def sh_encode(directions: Tensor, degree: int) -> Tensor:
    """Real spherical harmonics of unit directions, bands 0..degree-1.

    Args:
        directions: (N, 3) unit vectors.
        degree: number of bands, 1..5 (instant-ngp uses 4: 16 coefficients).
    Returns:
        (N, degree**2) orthonormal real SH basis values (Condon-Shortley phase included).
    """
    if not 1 <= degree <= 5:
        raise ValueError(f"sh_encode supports 1..5 bands, got {degree}")
    x, y, z = directions.unbind(-1)
    out = [torch.full_like(x, 0.28209479177387814)]
    if degree > 1:
        c1 = 0.4886025119029199
        out += [-c1 * y, c1 * z, -c1 * x]
    if degree > 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [1.0925484305920792 * xy, -1.0925484305920792 * yz,
                0.31539156525252005 * (3 * zz - 1), -1.0925484305920792 * xz,
                0.5462742152960396 * (xx - yy)]
    if degree > 3:
        out += [-0.5900435899266435 * y * (3 * xx - yy), 2.890611442640554 * xy * z,
                -0.4570457994644658 * y * (5 * zz - 1), 0.3731763325901154 * z * (5 * zz - 3),
                -0.4570457994644658 * x * (5 * zz - 1), 1.445305721320277 * z * (xx - yy),
                -0.5900435899266435 * x * (xx - 3 * yy)]
    if degree > 4:
        out += [2.5033429417967046 * xy * (xx - yy), -1.7701307697799304 * yz * (3 * xx - yy),
                0.9461746957575601 * xy * (7 * zz - 1), -0.6690465435572892 * yz * (7 * zz - 3),
                0.10578554691520431 * (35 * zz * zz - 30 * zz + 3),
                -0.6690465435572892 * xz * (7 * zz - 3), 0.47308734787878004 * (xx - yy) * (7 * zz - 1),
                -1.7701307697799304 * xz * (xx - 3 * yy),
                0.6258357354491761 * (xx * (xx - 3 * yy) - yy * (3 * xx - yy))]
    return torch.stack(out, -1)


def tcnn_available() -> bool:
    """True when tinycudann imports and a CUDA GPU is present."""
    if not torch.cuda.is_available():
        return False
    try:
        import tinycudann  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return False
    return True


class TcnnHashGrid(nn.Module):
    """tiny-cuda-nn's fused hash-grid encoding with the same layout parameters (CUDA only).

    Its parameters live inside tinycudann's module, so checkpoints of the two backends differ.
    """

    def __init__(self, n_levels: int, features_per_level: int, log2_table_size: int,
                 base_resolution: int, max_resolution: int) -> None:
        super().__init__()
        import tinycudann as tcnn

        growth = (max_resolution / base_resolution) ** (1.0 / max(n_levels - 1, 1))
        self.encoding = tcnn.Encoding(3, {
            "otype": "HashGrid", "n_levels": n_levels, "n_features_per_level": features_per_level,
            "log2_hashmap_size": log2_table_size, "base_resolution": base_resolution,
            "per_level_scale": growth})
        self.out_dim = n_levels * features_per_level

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3) positions in [0, 1]^3 -> (N, L*F) float32 features."""
        return self.encoding(x).float()


def make_hash_grid(backend: str, n_levels: int, features_per_level: int, log2_table_size: int,
                   base_resolution: int, max_resolution: int) -> nn.Module:
    """``auto``: tinycudann when importable on a CUDA machine, else nerfkit's; or ``nerfkit`` / ``tcnn``."""
    if backend not in ("auto", "nerfkit", "tcnn"):
        raise NerfkitError(f"hash_backend must be auto, nerfkit or tcnn, got '{backend}'")
    if backend == "tcnn" and not tcnn_available():
        raise NerfkitError("hash_backend 'tcnn' needs tinycudann and a CUDA GPU; use auto or nerfkit")
    use_tcnn = backend == "tcnn" or (backend == "auto" and tcnn_available())
    kind = TcnnHashGrid if use_tcnn else HashGrid
    return kind(n_levels, features_per_level, log2_table_size, base_resolution, max_resolution)


class HashGrid(nn.Module):
    """A learned multiresolution hash grid over [0, 1]^3 (see :func:`nerfkit.ops.hash_encode`)."""

    def __init__(self, n_levels: int, features_per_level: int, log2_table_size: int,
                 base_resolution: int, max_resolution: int) -> None:
        super().__init__()
        resolutions, offsets = level_layout(n_levels, log2_table_size, base_resolution, max_resolution)
        self.register_buffer("resolutions", resolutions, persistent=False)
        self.register_buffer("offsets", offsets, persistent=False)
        rows = int(offsets[-1])
        self.table = nn.Parameter(torch.empty(rows, features_per_level).uniform_(-1e-4, 1e-4))
        self.out_dim = n_levels * features_per_level

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3) positions in [0, 1]^3 -> (N, L*F) features."""
        return hash_encode(x, self.table, self.offsets, self.resolutions)
