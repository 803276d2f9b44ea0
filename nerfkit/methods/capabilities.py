"""What only some methods can do, each as a small protocol that callers test with ``isinstance``
(so export and the viewer never ask for a method by name).

- :class:`HasGaussians`: the scene is a set of 3D Gaussians (splat): ``export splat`` writes them,
  ``export pointcloud`` takes their centres.
- :class:`RendersMedianDepth`: ``render`` also returns ``median_depth`` (H, W), the distance where
  the accumulated weight reaches half of alpha (NeRF methods); mesh export prefers it to
  ``depth / alpha``, which haze and floaters pull off the surface.
- :class:`HasDensity`: ``density(xyz)`` at scene points.
- :class:`HasSDF`: ``sdf(xyz)``, a signed distance whose zero level set is the surface, and
  ``surface_colors(xyz)`` there; mesh export runs marching cubes on it instead of fusing depth.
- :class:`RendersPinholeOnly`: ``render`` ignores lens distortion (a rasterizer); evaluation renders
  a covering pinhole camera and warps it into the photo's lens (:mod:`nerfkit.data.lens`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor, nn


@runtime_checkable
class HasGaussians(Protocol):
    """A method whose scene is a set of 3D Gaussians.

    Attributes:
        gaussians: ``means`` (N, 3), ``quats`` (N, 4) (w, x, y, z), ``scales`` (N, 3) log std-devs,
            ``opacities`` (N,) logits, ``sh0`` (N, 1, 3), ``shN`` (N, K, 3), in scene coordinates.
        sh_degree_in_use: the SH degree the method renders with now (0..3).
    """

    gaussians: nn.ParameterDict
    sh_degree_in_use: int


@runtime_checkable
class RendersMedianDepth(Protocol):
    """``render`` also returns ``median_depth`` (H, W) (``renders_median_depth`` is True)."""

    renders_median_depth: bool


@runtime_checkable
class HasDensity(Protocol):
    """A volume density at points."""

    def density(self, xyz: Tensor) -> Tensor:
        """(N, 3) scene points -> (N,) density (1 / scene unit)."""


@runtime_checkable
class HasSDF(Protocol):
    """A signed distance field: negative inside, zero on the surface."""

    def sdf(self, xyz: Tensor) -> Tensor:
        """(N, 3) scene points -> (N,) signed distance in scene units."""

    def surface_colors(self, xyz: Tensor) -> Tensor:
        """(N, 3) points on the surface -> (N, 3) colours in [0, 1] (view-independent)."""


@runtime_checkable
class RendersPinholeOnly(Protocol):
    """``render`` treats every camera as a pinhole (``pinhole_only`` is True)."""

    pinhole_only: bool


def renders_pinhole_only(method: object) -> bool:
    """Whether ``method.render`` ignores a camera's lens distortion."""
    return isinstance(method, RendersPinholeOnly) and bool(method.pinhole_only)


def renders_median_depth(method: object) -> bool:
    """Whether ``method.render`` returns a ``median_depth``."""
    return isinstance(method, RendersMedianDepth) and bool(method.renders_median_depth)
