"""Option groups of the fields, shared by every method that builds one (plain settings, no torch).

The names are the flat keys of presets and ``--set`` (see :mod:`nerfkit.core.settings`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nerfkit.core.errors import NerfkitError
from nerfkit.core.settings import Settings
from nerfkit.render.estimators.options import ProposalOptions


@dataclass
class HashGridOptions(Settings):
    """A multiresolution hash grid (Mueller et al. 2022, Sec. 3).

    Attributes:
        n_levels: resolutions, geometric from ``base_resolution`` to ``max_resolution``.
        features_per_level: features per level (the encoding has ``n_levels * features_per_level``).
        log2_table_size: rows per level's table (levels with fewer vertices are dense).
        base_resolution, max_resolution: cells per axis of the coarsest and finest level.
        hash_backend: ``auto`` (tinycudann on CUDA when importable), ``nerfkit`` or ``tcnn``.
    """

    n_levels: int = 16
    features_per_level: int = 2
    log2_table_size: int = 17
    base_resolution: int = 16
    max_resolution: int = 512
    hash_backend: Literal["auto", "nerfkit", "tcnn"] = "auto"

    def validate(self) -> None:
        if min(self.n_levels, self.features_per_level, self.base_resolution) < 1:
            raise NerfkitError(f"hash grid n_levels, features_per_level and base_resolution must be at "
                               f"least 1, got {self.n_levels}, {self.features_per_level}, "
                               f"{self.base_resolution}")
        if not 3 <= self.log2_table_size <= 30:
            raise NerfkitError(f"log2_table_size must be between 3 and 30, got {self.log2_table_size}")
        if self.max_resolution < self.base_resolution:
            raise NerfkitError(f"max_resolution ({self.max_resolution}) must be at least base_resolution "
                               f"({self.base_resolution})")

    def for_proposals(self, proposal: ProposalOptions) -> "HashGridOptions":
        """The hash grid of a proposal field: this one, with the proposal sizes."""
        return HashGridOptions(**{**vars(self), "n_levels": proposal.proposal_n_levels,
                                  "log2_table_size": proposal.proposal_log2_table_size,
                                  "max_resolution": proposal.proposal_max_resolution})


@dataclass
class FieldHeadOptions(Settings):
    """The small MLPs on top of a hash grid (instant-ngp's field).

    Attributes:
        hidden_dim: width of both MLPs.
        geo_feat_dim: geometry features passed from the density MLP to the colour MLP.
        sh_degree: spherical-harmonics bands of the view direction (1..5; 4 = 16 coefficients).
        color_hidden_layers: hidden layers of the colour MLP.
    """

    hidden_dim: int = 64
    geo_feat_dim: int = 15
    sh_degree: int = 4
    color_hidden_layers: int = 2

    def validate(self) -> None:
        if not 1 <= self.sh_degree <= 5:
            raise NerfkitError(f"sh_degree must be 1..5 bands for a field's view directions, got {self.sh_degree}")
        if self.hidden_dim < 1 or self.geo_feat_dim < 0 or self.color_hidden_layers < 0:
            raise NerfkitError(f"hidden_dim must be >= 1 and geo_feat_dim, color_hidden_layers >= 0, got "
                               f"{self.hidden_dim}, {self.geo_feat_dim}, {self.color_hidden_layers}")


@dataclass
class MipMLPOptions(Settings):
    """Mip-NeRF's field: integrated positional encoding into an MLP (Barron et al. 2021, Sec. 3).

    Attributes:
        min_deg, max_deg: IPE frequencies ``2^min_deg .. 2^(max_deg - 1)``.
        mlp_depth, mlp_width: the trunk; ``skip_layer``: the input is concatenated again after this
            many layers (0 = never).
        view_deg, view_width: positional encoding of the view direction and the colour layer.
        density_bias: density = softplus(raw + bias); rgb_padding: colours span [-p, 1 + p].
    """

    min_deg: int = 0
    max_deg: int = 16
    mlp_depth: int = 8
    mlp_width: int = 256
    skip_layer: int = 4
    view_deg: int = 4
    view_width: int = 128
    density_bias: float = -1.0
    rgb_padding: float = 0.001

    def validate(self) -> None:
        if not self.max_deg > self.min_deg >= 0:
            raise NerfkitError(f"mipnerf needs 0 <= min_deg < max_deg, got {self.min_deg}, {self.max_deg}")
        if not (1 <= self.skip_layer <= self.mlp_depth or self.skip_layer == 0):
            raise NerfkitError(f"mipnerf skip_layer must be 0 (none) or within 1..mlp_depth, got "
                               f"{self.skip_layer}")


@dataclass
class SDFNetworkOptions(Settings):
    """The MLPs of an SDF field (:class:`~nerfkit.fields.sdf_field.SDFField`).

    Attributes:
        sdf_hidden_dim, sdf_hidden_layers: the SDF MLP (Softplus of sharpness ``softplus_beta``).
        geo_feat_dim: geometry features passed from the SDF MLP to the colour MLP.
        sphere_radius: the SDF starts as a sphere of this radius (in [-1, 1]^3 field units).
        color_hidden_dim, color_hidden_layers: the colour MLP (point, normal, view SH, features).
        view_sh_degree: spherical-harmonics bands of the view direction (1..5).
    """

    sdf_hidden_dim: int = 64
    sdf_hidden_layers: int = 1
    geo_feat_dim: int = 15
    sphere_radius: float = 0.5
    softplus_beta: float = 100.0
    color_hidden_dim: int = 64
    color_hidden_layers: int = 2
    view_sh_degree: int = 4

    def validate(self) -> None:
        if self.sdf_hidden_layers < 1 or self.sdf_hidden_dim < 1 or self.color_hidden_dim < 1:
            raise NerfkitError(f"sdf_hidden_layers, sdf_hidden_dim and color_hidden_dim must be at least 1, got "
                               f"{self.sdf_hidden_layers}, {self.sdf_hidden_dim}, {self.color_hidden_dim}")
        if not 1 <= self.view_sh_degree <= 5:
            raise NerfkitError(f"view_sh_degree must be 1..5, got {self.view_sh_degree}")
        if not 0.0 < self.sphere_radius < 1.0:
            raise NerfkitError(f"sphere_radius must be in (0, 1) (field units), got {self.sphere_radius}")
