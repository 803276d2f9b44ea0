"""The hash encoding's gradient with respect to the positions (what an SDF's normals are made of)
and its backward into the table (what an eikonal loss trains): against finite differences, against
autograd through a dense formulation of the encoding, and by gradcheck in float64."""

from __future__ import annotations

import pytest
import torch

from nerfkit.ops import hash_encode, hash_encode_position_grad, level_layout
from nerfkit.ops.reference import PRIMES


def layout(hashed: bool):
    """A small grid: dense levels only, or with hashed fine levels."""
    return level_layout(4, 6 if hashed else 16, 2, 12)


def dense_encode(x, table, offsets, resolutions):
    """The encoding written with plain differentiable torch ops (autograd does every derivative)."""
    out = []
    for level in range(resolutions.numel()):
        res = int(resolutions[level])
        start, size = int(offsets[level]), int(offsets[level + 1] - offsets[level])
        pos = x * res
        base = pos.detach().floor().clamp(0, max(res - 1, 0))
        frac = (pos - base).clamp(0.0, 1.0)
        feats = 0.0
        for corner in range(8):
            bits = torch.tensor([corner & 1, corner >> 1 & 1, corner >> 2 & 1], dtype=x.dtype)
            vertex = (base + bits).long()
            if (res + 1) ** 3 <= size:
                row = vertex[:, 0] + vertex[:, 1] * (res + 1) + vertex[:, 2] * (res + 1) ** 2
            else:
                row = (vertex[:, 0] * PRIMES[0]) ^ (vertex[:, 1] * PRIMES[1]) ^ (vertex[:, 2] * PRIMES[2])
                row = row & (size - 1)
            weight = torch.where(bits.bool(), frac, 1.0 - frac).prod(-1, keepdim=True)
            feats = feats + weight * table[start + row]
        out.append(feats)
    return torch.cat(out, -1)


def points(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 0.98 + 0.01


@pytest.mark.parametrize("hashed", [False, True])
def test_position_gradient_equals_finite_differences(hashed):
    resolutions, offsets = layout(hashed)
    table = torch.randn(int(offsets[-1]), 2, dtype=torch.float64)
    weights = torch.randn(40, resolutions.numel() * 2, dtype=torch.float64)
    x = points(40).requires_grad_(True)
    (grad,) = torch.autograd.grad((hash_encode(x, table, offsets, resolutions) * weights).sum(), x)
    eps = 1e-6
    for axis in range(3):
        step = torch.zeros(3, dtype=torch.float64)
        step[axis] = eps
        plus = (hash_encode(x.detach() + step, table, offsets, resolutions) * weights).sum(-1)
        minus = (hash_encode(x.detach() - step, table, offsets, resolutions) * weights).sum(-1)
        torch.testing.assert_close(grad[:, axis], (plus - minus) / (2 * eps), rtol=1e-5, atol=1e-6)
    assert grad.abs().max() > 0.1                                   # not vacuous


@pytest.mark.parametrize("hashed", [False, True])
def test_eikonal_style_second_order_matches_dense_autograd(hashed):
    """An eikonal loss on d(MLP(enc(x)))/dx: the same gradients for the table and the MLP as plain
    autograd through the dense formulation."""
    resolutions, offsets = layout(hashed)
    torch.manual_seed(1)
    table = torch.randn(int(offsets[-1]), 2, dtype=torch.float64)
    head = torch.nn.Sequential(torch.nn.Linear(resolutions.numel() * 2, 8), torch.nn.Softplus(),
                               torch.nn.Linear(8, 1)).double()
    x = points(64, seed=2)

    def loss_and_grads(encode):
        t = table.clone().requires_grad_(True)
        xs = x.clone().requires_grad_(True)
        sdf = head(encode(xs, t, offsets, resolutions))
        (normal,) = torch.autograd.grad(sdf.sum(), xs, create_graph=True)
        loss = ((normal.norm(dim=-1) - 1.0) ** 2).mean() + sdf.abs().mean()
        grads = torch.autograd.grad(loss, [t, *head.parameters()])
        return normal.detach(), grads

    ours_normal, ours = loss_and_grads(hash_encode)
    dense_normal, dense = loss_and_grads(dense_encode)
    torch.testing.assert_close(ours_normal, dense_normal, rtol=1e-9, atol=1e-10)
    for a, b in zip(ours, dense):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    assert ours[0].abs().sum() > 0                                 # the table learns from the eikonal term


def test_position_grad_op_gradchecks_in_table_and_upstream():
    resolutions, offsets = layout(True)
    table = torch.randn(int(offsets[-1]), 2, dtype=torch.float64, requires_grad=True)
    x = points(12, seed=3)
    upstream = torch.randn(12, resolutions.numel() * 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t, g: hash_encode_position_grad(x, t, g, offsets, resolutions), (table, upstream))


def test_position_grad_op_checks_its_inputs():
    resolutions, offsets = layout(False)
    table = torch.zeros(int(offsets[-1]), 2)
    with pytest.raises(ValueError, match="grad_out of shape"):
        hash_encode_position_grad(torch.rand(5, 3), table, torch.zeros(5, 3), offsets, resolutions)


def test_positions_without_grad_keep_the_table_only_path():
    resolutions, offsets = layout(True)
    table = torch.randn(int(offsets[-1]), 2, requires_grad=True)
    out = hash_encode(torch.rand(20, 3), table, offsets, resolutions)
    (grad,) = torch.autograd.grad(out.sum(), table)
    assert grad.shape == table.shape and grad.sum() == pytest.approx(20 * resolutions.numel() * 2, rel=1e-5)   # weights sum to 1
