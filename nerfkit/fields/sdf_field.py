"""A signed distance field on a multiresolution hash grid and its colour network (NeuS2 /
instant-nsr-pl style): ``f(x)`` in scene units, positive outside, with geometry features for the
colour network, which sees the point, the SDF normal, the view direction and those features
(NeuS's "IDR" colour mode).

The SDF network starts as a sphere (geometric initialisation, Atzmon & Lipman 2020, "SAL"): the
point's coordinates go through a Softplus MLP initialised to output ``|x| - r``, and the hash
features enter through weights initialised to zero, so they add detail on top of the sphere.
Coarse-to-fine (Neuralangelo, Li et al. 2023): only the coarsest ``active_levels`` of the grid take
part; the method raises the count during training.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nerfkit.fields.encodings import make_hash_grid
from nerfkit.fields.options import HashGridOptions, SDFNetworkOptions
from nerfkit.render.spherical_harmonics import sh_encode


class SDFField(nn.Module):
    """SDF and colour at scene points inside the box ``aabb``.

    Args:
        aabb: (2, 3) box in scene coordinates; the field works in the cube of the box's longest half
            side around its centre, mapped to [-1, 1]^3 (SDF values are returned in scene units).
        hash_grid: the encoding's options; network: the MLPs' options.
    """

    def __init__(self, aabb: Tensor, hash_grid: HashGridOptions, network: SDFNetworkOptions) -> None:
        super().__init__()
        aabb = aabb.clone().float()
        self.register_buffer("centre", (aabb[0] + aabb[1]) * 0.5)
        self.register_buffer("half_size", ((aabb[1] - aabb[0]) * 0.5).max().reshape(()))
        self.encoding = make_hash_grid(hash_grid)
        self.n_levels, self.features_per_level = hash_grid.n_levels, hash_grid.features_per_level
        self.register_buffer("active_levels", torch.tensor(hash_grid.n_levels))
        self.geo_feat_dim = network.geo_feat_dim
        self.sdf_net = _sphere_mlp(3, self.encoding.out_dim, network.sdf_hidden_dim, network.sdf_hidden_layers,
                                   1 + network.geo_feat_dim, network.sphere_radius, network.softplus_beta)
        self.sh_degree = network.view_sh_degree
        layers: list[nn.Module] = []
        dim = 3 + 3 + network.view_sh_degree ** 2 + network.geo_feat_dim
        for _ in range(network.color_hidden_layers):
            layers += [nn.Linear(dim, network.color_hidden_dim), nn.ReLU(inplace=True)]
            dim = network.color_hidden_dim
        layers.append(nn.Linear(dim, 3))
        self.color_net = nn.Sequential(*layers)

    def normalise(self, x: Tensor) -> Tensor:
        """(N, 3) scene points -> (N, 3) field coordinates (the box's cube is [-1, 1]^3)."""
        return (x - self.centre) / self.half_size

    def _level_mask(self) -> Tensor:
        """(L * F,) 1 for the features of the active levels, 0 for the finer ones."""
        level = torch.arange(self.n_levels, device=self.half_size.device).repeat_interleave(self.features_per_level)
        return (level < self.active_levels).to(self.half_size.dtype)

    def geometry(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 3) scene points -> SDF (N,) in scene units and geometry features (N, G)."""
        unit = self.normalise(x)
        grid = ((unit + 1.0) * 0.5).clamp(0.0, 1.0)
        features = self.encoding(grid) * self._level_mask()
        h = self.sdf_net(torch.cat([unit, features], -1))
        return h[:, 0] * self.half_size, h[:, 1:]

    def sdf(self, x: Tensor) -> Tensor:
        """(N, 3) scene points -> (N,) signed distance in scene units, positive outside."""
        return self.geometry(x)[0]

    def sdf_and_normals(self, x: Tensor, create_graph: bool) -> tuple[Tensor, Tensor, Tensor]:
        """SDF (N,), its gradient (N, 3) (the unnormalised normal) and geometry features (N, G).

        ``create_graph``: keep the gradient differentiable (training: the eikonal loss and the
        colour network's use of the normal train the field through it).
        """
        with torch.enable_grad():
            # positions that carry a gradient already (rays of refined camera poses) keep it, so the
            # SDF trains the poses too; the normals' own dependence on x (the curvature) is not provided
            points = x if x.requires_grad else x.detach().requires_grad_(True)
            sdf, features = self.geometry(points)
            (normals,) = torch.autograd.grad(sdf.sum(), points, create_graph=create_graph)
        if not create_graph:
            sdf, features, normals = sdf.detach(), features.detach(), normals.detach()
        return sdf, normals, features

    def color(self, x: Tensor, normals: Tensor, directions: Tensor, features: Tensor) -> Tensor:
        """Colour (N, 3) in [0, 1] of points (N, 3) seen along unit ``directions`` (N, 3)."""
        unit_normals = nn.functional.normalize(normals, dim=-1)
        inputs = torch.cat([self.normalise(x), unit_normals, sh_encode(directions, self.sh_degree), features], -1)
        return torch.sigmoid(self.color_net(inputs))


def _sphere_mlp(coord_dim: int, feature_dim: int, hidden: int, layers: int, out_dim: int, radius: float,
                beta: float) -> nn.Sequential:
    """A Softplus MLP on ``[coords, features]`` whose first output is initialised to ``|coords| - radius``.

    Geometric initialisation (SAL): hidden layers ``N(0, 2 / width)`` with the feature inputs'
    weights zero, the SDF output ``N(sqrt(pi / width), 1e-4)`` with bias ``-radius``.
    """
    modules: list[nn.Module] = []
    dim = coord_dim + feature_dim
    for index in range(layers):
        linear = nn.Linear(dim, hidden)
        nn.init.normal_(linear.weight, 0.0, math.sqrt(2.0) / math.sqrt(hidden))
        nn.init.zeros_(linear.bias)
        if index == 0:
            nn.init.zeros_(linear.weight[:, coord_dim:])
        modules += [linear, nn.Softplus(beta=beta)]
        dim = hidden
    last = nn.Linear(dim, out_dim)
    nn.init.normal_(last.weight, 0.0, 1e-4)
    nn.init.normal_(last.weight[:1], math.sqrt(math.pi) / math.sqrt(dim), 1e-4)
    nn.init.zeros_(last.bias)
    nn.init.constant_(last.bias[:1], -radius)
    modules.append(last)
    return nn.Sequential(*modules)
