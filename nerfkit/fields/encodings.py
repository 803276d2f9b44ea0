"""The multiresolution hash grid as a module: nerfkit's (over :func:`nerfkit.ops.hash_encode`) and
tiny-cuda-nn's, with the same layout parameters."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nerfkit.core.errors import NerfkitError
from nerfkit.fields.options import HashGridOptions
from nerfkit.ops import hash_encode, level_layout


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


def make_hash_grid(options: HashGridOptions) -> nn.Module:
    """The grid ``options`` describe: tinycudann's when ``hash_backend`` is ``tcnn``, or ``auto`` and
    it imports on a CUDA machine; nerfkit's otherwise."""
    if options.hash_backend == "tcnn" and not tcnn_available():
        raise NerfkitError("hash_backend 'tcnn' needs tinycudann and a CUDA GPU; use auto or nerfkit")
    use_tcnn = options.hash_backend == "tcnn" or (options.hash_backend == "auto" and tcnn_available())
    kind = TcnnHashGrid if use_tcnn else HashGrid
    return kind(n_levels=options.n_levels, features_per_level=options.features_per_level,
                log2_table_size=options.log2_table_size, base_resolution=options.base_resolution,
                max_resolution=options.max_resolution)


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
