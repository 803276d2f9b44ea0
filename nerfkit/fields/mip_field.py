"""Fields queried on conical frusta (Gaussians) rather than points: Mip-NeRF's MLP and a hash grid.

Both take :class:`Frusta` in *normalised* coordinates: the scene box mapped to [-1, 1]^3 for objects,
or the contracted space [-2, 2]^3 of unbounded scenes (``extent`` = 1 or 2), and return densities
in 1 / scene unit and colours in [0, 1].

* :class:`MipMLPField` (Mip-NeRF, Sec. 3): integrated positional encoding of each frustum's Gaussian
  (Eq. 14), an MLP with a skip connection, softplus density; view directions with the plain
  positional encoding feed the colour head.
* :class:`MipHashField` (the anti-aliasing idea of Zip-NeRF, Barron et al. 2023, Sec. 2): a hash grid
  queried at the Gaussian's mean, each level's features multiplied by ``erf(1 / sqrt(8 sigma^2 n^2))``
  for a Gaussian of radial std ``sigma`` and a level of ``n`` cells per unit length, i.e. the
  attenuation of a level's features under blurring with the Gaussian: levels finer than the
  pixel footprint fade out instead of aliasing. (Zip-NeRF also multisamples each frustum; this field
  does not.)
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from nerfkit.fields.encodings import make_hash_grid
from nerfkit.fields.mip import integrated_pos_enc
from nerfkit.fields.ngp_field import mlp, trunc_exp
from nerfkit.fields.options import FieldHeadOptions, HashGridOptions, MipMLPOptions
from nerfkit.ops import level_layout
from nerfkit.render.spherical_harmonics import sh_encode


class Frusta(NamedTuple):
    """N conical frusta as Gaussians in normalised coordinates.

    Attributes:
        means: (N, 3) centres.
        variances: (N, 3) diagonal of the covariance (normalised units^2).
        radial_stds: (N,) standard deviation across the ray (the pixel footprint), normalised units.
    """

    means: Tensor
    variances: Tensor
    radial_stds: Tensor

    @staticmethod
    def points(xyz: Tensor) -> "Frusta":
        """Points as frusta of zero size (a field queried at a point, e.g. for mesh export)."""
        return Frusta(xyz, torch.zeros_like(xyz), torch.zeros_like(xyz[:, 0]))


def pos_enc(x: Tensor, degrees: int) -> Tensor:
    """NeRF's positional encoding with the input appended: (N, D) -> (N, D + 2 * D * degrees)."""
    return torch.cat([x, integrated_pos_enc(x, torch.zeros_like(x), 0, degrees)], -1)


class MipMLPField(nn.Module):
    """Mip-NeRF's field: IPE -> ``mlp_depth`` x ``mlp_width`` ReLU MLP (input again after
    ``skip_layer`` layers) -> density and a bottleneck; bottleneck + PE(direction) -> one
    ``view_width`` layer -> colour.

    Args:
        options: the encoding and MLP sizes (:class:`~nerfkit.fields.options.MipMLPOptions`).
        density_only: a Mip-NeRF 360 proposal field (no colour head).
    """

    def __init__(self, options: MipMLPOptions, density_only: bool = False) -> None:
        super().__init__()
        self.min_deg, self.max_deg, self.view_deg = options.min_deg, options.max_deg, options.view_deg
        self.skip, self.density_bias, self.rgb_padding = options.skip_layer, options.density_bias, options.rgb_padding
        width = options.mlp_width
        in_dim = 6 * (options.max_deg - options.min_deg)
        self.layers = nn.ModuleList()
        dim = in_dim
        for index in range(options.mlp_depth):
            self.layers.append(nn.Linear(dim, width))
            dim = width + (in_dim if index + 1 == self.skip else 0)
        self.density_out = nn.Linear(dim, 1)
        self.density_only = density_only
        if not density_only:
            self.bottleneck = nn.Linear(dim, width)
            self.view_layer = nn.Linear(width + 3 + 6 * options.view_deg, options.view_width)
            self.rgb_out = nn.Linear(options.view_width, 3)

    def _trunk(self, frusta: Frusta) -> Tensor:
        encoded = integrated_pos_enc(frusta.means, frusta.variances, self.min_deg, self.max_deg)
        h = encoded
        for index, layer in enumerate(self.layers):
            h = F.relu(layer(h))
            if index + 1 == self.skip:
                h = torch.cat([h, encoded], -1)
        return h

    def density(self, frusta: Frusta) -> Tensor:
        """(N,) density >= 0."""
        return F.softplus(self.density_out(self._trunk(frusta))[:, 0] + self.density_bias)

    def forward(self, frusta: Frusta, directions: Tensor) -> tuple[Tensor, Tensor]:
        """Frusta and (N, 3) unit view directions -> density (N,), colour (N, 3)."""
        h = self._trunk(frusta)
        sigma = F.softplus(self.density_out(h)[:, 0] + self.density_bias)
        view = torch.cat([self.bottleneck(h), pos_enc(directions, self.view_deg)], -1)
        rgb = torch.sigmoid(self.rgb_out(F.relu(self.view_layer(view))))
        return sigma, rgb * (1 + 2 * self.rgb_padding) - self.rgb_padding


class MipHashField(nn.Module):
    """Hash grid with footprint-weighted levels -> density MLP; SH(direction) + features -> colour.

    Args:
        extent: half-size of the normalised cube (1 for objects, 2 for contracted space).
        hash_grid: the grid's options; heads: the MLPs' options.
        density_only: a proposal field (density MLP with one output, no colour head).
    """

    def __init__(self, extent: float, hash_grid: HashGridOptions, heads: FieldHeadOptions,
                 density_only: bool = False) -> None:
        super().__init__()
        self.extent = extent
        self.encoding = make_hash_grid(hash_grid)
        resolutions, _ = level_layout(hash_grid.n_levels, hash_grid.log2_table_size, hash_grid.base_resolution,
                                      hash_grid.max_resolution)
        self.register_buffer("resolutions", resolutions.float(), persistent=False)
        self.features_per_level = hash_grid.features_per_level
        self.density_only = density_only
        self.density_net = mlp(self.encoding.out_dim, heads.hidden_dim, 1 if density_only else 1 + heads.geo_feat_dim, 1)
        self.sh_degree = heads.sh_degree
        if not density_only:
            self.color_net = mlp(heads.sh_degree ** 2 + heads.geo_feat_dim, heads.hidden_dim, 3,
                                 heads.color_hidden_layers)

    def level_weights(self, radial_stds: Tensor) -> Tensor:
        """(N,) radial std in normalised units -> (N, L) weights erf(1 / sqrt(8 sigma^2 n^2)) in (0, 1].

        ``sigma`` is measured in the grid's [0, 1] units (the normalised std / (2 extent)); a zero
        std gives weight 1 (a point query).
        """
        sigma = radial_stds / (2.0 * self.extent)
        scaled = (8.0 ** 0.5) * sigma[:, None] * self.resolutions[None, :]
        return torch.erf(1.0 / scaled.clamp_min(1e-12))

    def _geometry(self, frusta: Frusta) -> Tensor:
        unit = (frusta.means / (2.0 * self.extent) + 0.5).clamp(0.0, 1.0)
        features = self.encoding(unit)
        weights = self.level_weights(frusta.radial_stds)
        features = features.view(features.shape[0], weights.shape[1], self.features_per_level) * weights[..., None]
        return self.density_net(features.flatten(1))

    def density(self, frusta: Frusta) -> Tensor:
        """(N,) density >= 0 (0 outside the cube)."""
        return self._density(self._geometry(frusta), frusta)

    def _density(self, h: Tensor, frusta: Frusta) -> Tensor:
        inside = (frusta.means.abs() <= self.extent).all(-1)
        return trunc_exp(h[:, 0] - 1.0) * inside

    def forward(self, frusta: Frusta, directions: Tensor) -> tuple[Tensor, Tensor]:
        """Frusta and (N, 3) unit view directions -> density (N,), colour (N, 3)."""
        h = self._geometry(frusta)
        rgb = torch.sigmoid(self.color_net(torch.cat([sh_encode(directions, self.sh_degree), h[:, 1:]], -1)))
        return self._density(h, frusta), rgb
