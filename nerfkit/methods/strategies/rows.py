"""Editing the rows of the Gaussians together with their Adam moments, and drawing rows by weight.

Gaussians live in a dict of ``nn.Parameter`` (gsplat naming): ``means`` (N, 3), ``quats`` (N, 4)
(w, x, y, z), ``scales`` (N, 3) log std-devs, ``opacities`` (N,) logits, ``sh0`` (N, 1, 3), ``shN``
(N, K, 3). One Adam optimizer holds one group per attribute. Whenever rows are added or removed the
*same* Parameter objects get new data (``param.data = ...``, ``param.grad = None``) and their Adam
moments are edited row by row, so the optimizer never has to be rebuilt (see :func:`apply_row_op`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

Params = dict[str, nn.Parameter]


def apply_row_op(params: Params, optimizer: torch.optim.Optimizer,
                 param_op: Callable[[str, Tensor], Tensor],
                 state_op: Callable[[str, Tensor], Tensor]) -> None:
    """Replace every parameter's rows with ``param_op(name, data)`` and its Adam moments likewise.

    The Parameter objects stay the same (the optimizer keeps referring to them); their gradient is
    dropped because it no longer matches the rows. ``state_op(name, moment)`` is applied to every
    state tensor shaped like the parameter (``exp_avg``, ``exp_avg_sq``, ...); scalars such as
    ``step`` are left alone, and a parameter without state yet (before the first step) is fine.
    """
    for name, param in params.items():
        state = optimizer.state.get(param, {})
        old_shape = param.shape
        param.data = param_op(name, param.data)
        param.grad = None
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == old_shape:
                state[key] = state_op(name, value)


def keep_rows(params: Params, optimizer: torch.optim.Optimizer, keep: Tensor) -> None:
    """Keep only the rows where ``keep`` (N,) bool is True, in order, moments included."""
    index = keep.nonzero().squeeze(1)
    apply_row_op(params, optimizer, lambda _, data: data[index], lambda _, moment: moment[index])


def append_rows(params: Params, optimizer: torch.optim.Optimizer, rows: dict[str, Tensor]) -> None:
    """Append new Gaussians ``rows[name]`` (M, ...) to every parameter; their moments start at 0."""
    def zeros_after(_: str, moment: Tensor) -> Tensor:
        count = next(iter(rows.values())).shape[0]
        return torch.cat([moment, moment.new_zeros((count,) + moment.shape[1:])])
    apply_row_op(params, optimizer, lambda name, data: torch.cat([data, rows[name].to(data)]),
                 zeros_after)


def write_rows(params: Params, optimizer: torch.optim.Optimizer, index: Tensor,
               values: dict[str, Tensor]) -> None:
    """Overwrite rows ``index`` (M,) of the parameters named in ``values`` (M, ...) in place.

    The rows count as new Gaussians: the moments of *every* parameter are zeroed there.
    Repeated indices must carry equal values.
    """
    def write(name: str, data: Tensor) -> Tensor:
        if name in values:
            data[index] = values[name].to(data).reshape(data[index].shape)
        return data

    def zero(_: str, moment: Tensor) -> Tensor:
        moment[index] = 0
        return moment
    apply_row_op(params, optimizer, write, zero)


def zero_state(optimizer: torch.optim.Optimizer, param: nn.Parameter) -> None:
    """Zero all moments of one parameter (all rows); ``step`` stays."""
    for value in optimizer.state.get(param, {}).values():
        if torch.is_tensor(value) and value.shape == param.shape:
            value.zero_()


def group_lr(optimizer: torch.optim.Optimizer, name: str) -> float:
    """The current learning rate of the param group named ``name``."""
    for group in optimizer.param_groups:
        if group.get("name") == name:
            return float(group["lr"])
    raise KeyError(f"optimizer has no param group named '{name}'")


def sample_proportional(weights: Tensor, count: int) -> Tensor:
    """``count`` indices drawn with replacement with probability ∝ ``weights`` (N,) >= 0.

    Inverse-CDF sampling with the global torch RNG (no 2^24 category limit, unlike multinomial).
    """
    cdf = torch.cumsum(weights.double(), 0)
    draws = torch.rand(count, dtype=torch.float64, device=weights.device) * cdf[-1]
    return torch.searchsorted(cdf, draws, right=True).clamp_(max=weights.shape[0] - 1)
