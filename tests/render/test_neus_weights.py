"""NeuS's opacity from an SDF (render/neus.py): for a plane, the weights concentrate at the true
intersection whatever the ray's angle (the 'unbiased' property, NeuS Sec. 3.2), sum to one behind a
surface, vanish in free space, and turn into densities that the compositing op reproduces."""

from __future__ import annotations

import math

import pytest
import torch

from nerfkit.ops import composite
from nerfkit.render.neus import (directional_slope, equivalent_density, logistic_density, neus_alpha)


def plane_ray(angle_deg: float, s: float, step: float = 0.01):
    """A unit ray from the origin at ``angle_deg`` from the normal of the plane z = 1 (SDF 1 - z)."""
    angle = math.radians(angle_deg)
    direction = torch.tensor([math.sin(angle), 0.0, math.cos(angle)])
    t = torch.arange(0.0, 3.0, step) + step / 2
    sdf = 1.0 - t * direction[2]
    normals = torch.tensor([0.0, 0.0, -1.0]).expand(len(t), 3)
    slope = directional_slope(direction.expand(len(t), 3), normals, cos_anneal=1.0)
    alpha = neus_alpha(sdf, slope, torch.full_like(t, step), torch.tensor(s))
    starts, ends = t - step / 2, t + step / 2
    out = composite(equivalent_density(alpha, ends - starts), torch.ones(len(t), 3), starts, ends,
                    torch.zeros(len(t), dtype=torch.int64), 1)
    return out, 1.0 / math.cos(angle)


@pytest.mark.parametrize("angle", [0.0, 30.0, 60.0])
def test_depth_is_the_true_intersection_at_any_angle(angle):
    out, truth = plane_ray(angle, s=400.0)
    assert float(out.alpha[0]) == pytest.approx(1.0, abs=1e-4)
    assert float(out.depth[0]) == pytest.approx(truth, abs=0.01)             # within one step


def test_weights_vanish_in_free_space_and_peak_at_the_surface():
    out, truth = plane_ray(0.0, s=400.0)
    t = torch.arange(0.0, 3.0, 0.01) + 0.005
    assert float(out.weights[t < truth - 0.05].max()) < 2e-5             # NeuS's 1e-5 floor per sample
    assert abs(float(t[out.weights.argmax()]) - truth) <= 0.01
    blurry, _ = plane_ray(0.0, s=20.0)                                       # a small s spreads them
    assert float(blurry.weights.max()) < 0.5 * float(out.weights.max())


def test_annealed_slope_never_lets_a_surface_seen_from_behind_vanish_at_the_start():
    direction = torch.tensor([[0.0, 0.0, 1.0]])
    away = torch.tensor([[0.0, 0.0, 1.0]])                                   # gradient along the ray
    assert float(directional_slope(direction, away, 0.0)) == pytest.approx(-0.0)
    assert float(directional_slope(direction, -away, 0.0)) == pytest.approx(-1.0)
    assert float(directional_slope(direction, -away, 1.0)) == pytest.approx(-1.0)
    side = torch.tensor([[1.0, 0.0, 0.0]])
    assert float(directional_slope(direction, side, 0.0)) == pytest.approx(-0.5)
    assert float(directional_slope(direction, side, 1.0)) == pytest.approx(0.0)


def test_equivalent_density_gives_back_the_opacity():
    alpha = torch.tensor([0.0, 0.3, 0.9, 1.0])
    deltas = torch.tensor([0.1, 0.2, 0.05, 0.1])
    back = 1.0 - torch.exp(-equivalent_density(alpha, deltas) * deltas)
    torch.testing.assert_close(back, alpha.clamp(max=1 - 1e-6), rtol=1e-5, atol=1e-6)


def test_logistic_density_integrates_to_one_and_peaks_at_s_over_four():
    x = torch.linspace(-1.0, 1.0, 20001, dtype=torch.float64)
    density = logistic_density(x, torch.tensor(50.0, dtype=torch.float64))
    assert float(torch.trapezoid(density, x)) == pytest.approx(1.0, abs=1e-6)
    assert float(density.max()) == pytest.approx(50.0 / 4, rel=1e-6)
