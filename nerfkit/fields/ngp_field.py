"""The Instant-NGP field: hash grid -> tiny density MLP; SH(direction) + geometry features -> colour MLP."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nerfkit.fields.encodings import make_hash_grid
from nerfkit.fields.options import FieldHeadOptions, HashGridOptions
from nerfkit.render.contraction import to_unit_cube
from nerfkit.render.spherical_harmonics import sh_encode


class _TruncExp(torch.autograd.Function):
    """exp with its gradient clamped (instant-ngp's density activation, stable in float32)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: Tensor) -> Tensor:
    return _TruncExp.apply(x)


def mlp(in_dim: int, hidden: int, out_dim: int, hidden_layers: int) -> nn.Sequential:
    """Linear-ReLU stack without output activation."""
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(hidden_layers):
        layers += [nn.Linear(dim, hidden), nn.ReLU(inplace=True)]
        dim = hidden
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


class NGPField(nn.Module):
    """Density and view-dependent colour at scene points.

    Args:
        aabb: (2, 3) scene box; unbounded: contract space outside it.
        hash_grid: the encoding's options; heads: the MLPs' options.
        density_only: no colour head (a proposal field: only :meth:`density`).
    """

    def __init__(self, aabb: Tensor, unbounded: bool, hash_grid: HashGridOptions,
                 heads: FieldHeadOptions, density_only: bool = False) -> None:
        super().__init__()
        self.register_buffer("aabb", aabb.clone().float())
        self.unbounded = unbounded
        self.encoding = make_hash_grid(hash_grid)
        geo_feat_dim = 0 if density_only else heads.geo_feat_dim
        self.density_net = mlp(self.encoding.out_dim, heads.hidden_dim, 1 + geo_feat_dim, 1)
        self.sh_degree = heads.sh_degree
        self.color_net = None if density_only else mlp(heads.sh_degree ** 2 + geo_feat_dim, heads.hidden_dim, 3,
                                                       heads.color_hidden_layers)

    def _geometry(self, x: Tensor) -> tuple[Tensor, Tensor]:
        unit = to_unit_cube(x, self.aabb, self.unbounded)
        inside = ((unit >= 0) & (unit <= 1)).all(-1)
        h = self.density_net(self.encoding(unit.clamp(0.0, 1.0)))
        sigma = trunc_exp(h[:, 0] - 1.0) * inside
        return sigma, h[:, 1:]

    def density(self, x: Tensor) -> Tensor:
        """(N, 3) scene points -> (N,) density (1 / scene unit), 0 outside the box."""
        return self._geometry(x)[0]

    def forward(self, x: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 3) points and (N, 3) unit directions -> density (N,) and colour (N, 3) in [0, 1]."""
        if self.color_net is None:
            raise ValueError("a density-only NGPField has no colour: call density()")
        sigma, geo = self._geometry(x)
        rgb = torch.sigmoid(self.color_net(torch.cat([sh_encode(directions, self.sh_degree), geo], -1)))
        return sigma, rgb
