"""The Instant-NGP field: hash grid -> tiny density MLP; SH(direction) + geometry features -> colour MLP."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nerfkit.config import NGPConfig
from nerfkit.fields.encodings import make_hash_grid, sh_encode
from nerfkit.render.contraction import to_unit_cube


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
        config: the method's hyper-parameters.
        aabb: (2, 3) scene box; unbounded: contract space outside it.
    """

    def __init__(self, config: NGPConfig, aabb: Tensor, unbounded: bool) -> None:
        super().__init__()
        self.register_buffer("aabb", aabb.clone().float())
        self.unbounded = unbounded
        self.encoding = make_hash_grid(config.hash_backend, config.n_levels, config.features_per_level,
                                       config.log2_table_size, config.base_resolution,
                                       config.max_resolution)
        self.density_net = mlp(self.encoding.out_dim, config.hidden_dim, 1 + config.geo_feat_dim, 1)
        self.sh_degree = config.sh_degree
        self.color_net = mlp(config.sh_degree ** 2 + config.geo_feat_dim, config.hidden_dim, 3,
                             config.color_hidden_layers)

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
        sigma, geo = self._geometry(x)
        rgb = torch.sigmoid(self.color_net(torch.cat([sh_encode(directions, self.sh_degree), geo], -1)))
        return sigma, rgb
