"""Densification strategies: schedules, clone/split/prune, Adam-state bookkeeping, MCMC relocation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nerfkit.methods.splat_config import SplatConfig
from nerfkit.core.errors import NerfkitError
from nerfkit.methods.strategies.base import Strategy, make_strategy
from nerfkit.methods.strategies.default import DefaultStrategy, split_children
from nerfkit.methods.strategies.mcmc import MCMCStrategy, relocation, relocation_denominator
from nerfkit.methods.strategies.rows import append_rows, keep_rows, sample_proportional
from nerfkit.render.gaussians import covariance_3d

THREE_DGS = SplatConfig(schedule="3dgs").resolve("cpu")   # the paper's step counts

EXTENT = 2.0


def make_params(n: int, *, opacity: float = 0.5, scale: float = 0.001, sh_rest: int = 15,
                seed: int = 0) -> dict[str, nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return {
        "means": nn.Parameter(torch.randn(n, 3, generator=g)),
        "quats": nn.Parameter(torch.randn(n, 4, generator=g)),
        "scales": nn.Parameter(torch.full((n, 3), math.log(scale))),
        "opacities": nn.Parameter(torch.full((n,), math.log(opacity / (1 - opacity)))),
        "sh0": nn.Parameter(torch.randn(n, 1, 3, generator=g)),
        "shN": nn.Parameter(torch.randn(n, sh_rest, 3, generator=g)),
    }


def make_optimizer(params: dict[str, nn.Parameter]) -> torch.optim.Adam:
    return torch.optim.Adam([{"name": k, "params": [p], "lr": 1e-3} for k, p in params.items()])


def take_adam_step(params: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer) -> None:
    """One real step with a loss touching every row, so every moment is non-zero."""
    optimizer.zero_grad()
    loss = sum((p * torch.linspace(1, 2, p.numel()).reshape(p.shape)).sum() for p in params.values())
    loss.backward()
    optimizer.step()


def info_for(grad: torch.Tensor, radii: torch.Tensor, width: int = 100, height: int = 50) -> dict:
    means2d = torch.zeros_like(grad, requires_grad=True)
    means2d.grad = grad.clone()
    return {"means2d": means2d, "radii": radii, "width": width, "height": height}


def config(**kwargs) -> SplatConfig:
    return THREE_DGS.updated(**kwargs)


def built(cfg: SplatConfig) -> Strategy:
    """The strategy a splat run with these settings uses."""
    return make_strategy(cfg.strategy, cfg.refine, cfg.default_strategy, cfg.mcmc, EXTENT)


def default_strategy(cfg: SplatConfig, extent: float) -> DefaultStrategy:
    return DefaultStrategy(cfg.refine, cfg.default_strategy, extent)


def mcmc_strategy(cfg: SplatConfig, extent: float) -> MCMCStrategy:
    return MCMCStrategy(cfg.refine, cfg.mcmc, extent)


# ----------------------------------------------------------------------------- factory, schedules

def test_make_strategy_picks_by_name_and_rejects_unknown():
    assert isinstance(built(config(strategy="default")), DefaultStrategy)
    assert isinstance(built(config(strategy="mcmc")), MCMCStrategy)
    assert isinstance(built(config()), Strategy)
    with pytest.raises(NerfkitError, match="unknown densification strategy 'adc'"):
        make_strategy("adc", THREE_DGS.refine, THREE_DGS.default_strategy, THREE_DGS.mcmc, EXTENT)
    with pytest.raises(NerfkitError, match="'adc'"):
        config(strategy="adc")


def test_refine_and_reset_schedule_small():
    cfg = config(refine_start=5, refine_stop=50, refine_every=10, reset_every=20)
    strategy = default_strategy(cfg, EXTENT)
    assert [s for s in range(200) if strategy.is_refine_step(s)] == [10, 20, 30, 40]
    assert [s for s in range(200) if strategy.is_reset_step(s)] == [20, 40]
    assert strategy.is_accumulate_step(49) and not strategy.is_accumulate_step(50)


def test_default_schedule_matches_3dgs():
    strategy = default_strategy(THREE_DGS, EXTENT)
    refine = [s for s in range(30_000) if strategy.is_refine_step(s)]
    assert refine[0] == 600 and refine[-1] == 14_900 and len(refine) == 144
    assert [s for s in range(30_000) if strategy.is_reset_step(s)] == [3000, 6000, 9000, 12000]
    mcmc = mcmc_strategy(THREE_DGS, EXTENT)
    assert [s for s in range(30_000) if mcmc.is_refine_step(s)] == refine
    assert not any(mcmc.is_reset_step(s) for s in range(30_000))


def test_nothing_changes_after_refine_stop():
    cfg = config(refine_start=0, refine_stop=10, refine_every=5, reset_every=5, grad_threshold=0.0)
    strategy, params = default_strategy(cfg, EXTENT), make_params(8, opacity=0.001)
    optimizer = make_optimizer(params)
    info = info_for(torch.ones(8, 2), torch.ones(8))
    before = {k: p.detach().clone() for k, p in params.items()}
    for step in (10, 15, 20):
        assert strategy.step_post_backward(params, optimizer, step, info) == {}
    assert all(torch.equal(before[k], p) for k, p in params.items())
    assert strategy.grad2d is None                           # no statistics accumulated either


# ----------------------------------------------------------------------------- default strategy

def test_accumulate_uses_ndc_gradients_of_visible_gaussians():
    strategy = default_strategy(THREE_DGS, EXTENT)
    params = make_params(3)
    grad = torch.tensor([[0.02, 0.0], [0.0, 0.04], [1.0, 1.0]])
    radii = torch.tensor([10.0, 0.0, 30.0])
    strategy.accumulate(params, info_for(grad, radii, width=100, height=50))
    strategy.accumulate(params, info_for(grad, radii * 0.5, width=100, height=50))
    assert torch.allclose(strategy.grad2d, torch.tensor([2 * 0.02 * 50, 0.0, 2 * math.hypot(50, 25)]))
    assert torch.equal(strategy.count, torch.tensor([2.0, 0.0, 2.0]))
    assert torch.allclose(strategy.max_radii, torch.tensor([0.1, 0.0, 0.3]))
    missing = {"means2d": torch.zeros(3, 2, requires_grad=True), "radii": radii, "width": 1, "height": 1}
    strategy.accumulate(params, missing)                      # grad None: nothing rendered
    assert torch.equal(strategy.count, torch.tensor([2.0, 0.0, 2.0]))


def _four_gaussians():
    """g0 small + high grad (clone), g1 large + high grad (split), g2 transparent (prune), g3 kept."""
    params = make_params(4)
    with torch.no_grad():
        params["means"].copy_(torch.tensor([[0.0, 0, 0], [5, 0, 0], [0, 5, 0], [0, 0, 5]]))
        params["scales"][1] = torch.log(torch.tensor([0.2, 0.1, 0.05]))  # > 0.01 * extent
        params["opacities"][2] = -8.0
    grad = torch.tensor([[0.01, 0.0], [0.01, 0.0], [0.0, 0.0], [0.0, 0.0]])
    return params, info_for(grad, torch.ones(4), width=100, height=100)


def test_clone_split_prune_outcome():
    cfg = config(refine_start=0, refine_every=1, reset_every=3000)
    strategy, (params, info) = default_strategy(cfg, EXTENT), _four_gaussians()
    parent = {k: p.detach().clone() for k, p in params.items()}
    optimizer = make_optimizer(params)
    stats = strategy.step_post_backward(params, optimizer, 1, info)
    assert stats == {"cloned": 1, "split": 1, "pruned": 1}
    # rows now: g0, g3, clone of g0, two children of g1
    means = params["means"].detach()
    assert means.shape == (5, 3)
    for key in ("means", "quats", "scales", "opacities", "sh0", "shN"):
        assert torch.equal(params[key][0], parent[key][0]) and torch.equal(params[key][2], parent[key][0])
        assert torch.equal(params[key][1], parent[key][3])
    assert not (means == parent["means"][1]).all(-1).any()          # the split parent is gone
    assert not (means == parent["means"][2]).all(-1).any()          # the pruned one is gone
    children = slice(3, 5)
    assert torch.allclose(params["scales"][children], parent["scales"][1] - math.log(1.6))
    assert torch.equal(params["quats"][children], parent["quats"][1].expand(2, 4))
    assert torch.equal(params["opacities"][children], parent["opacities"][1].expand(2))
    assert ((means[children] - parent["means"][1]).norm(dim=-1) < 5 * 0.2).all()
    assert not torch.equal(means[3], means[4])
    assert torch.equal(strategy.grad2d, torch.zeros(5)) and torch.equal(strategy.count, torch.zeros(5))


def test_split_children_follow_parent_covariance():
    torch.manual_seed(0)
    params = make_params(4000, scale=1.0)
    with torch.no_grad():
        params["means"][:] = torch.tensor([1.0, -2.0, 3.0])
        params["quats"][:] = torch.tensor([0.9, 0.3, -0.2, 0.25])
        params["scales"][:] = torch.log(torch.tensor([0.5, 0.2, 0.05]))
    children = split_children(params, torch.arange(4000))
    assert children["means"].shape == (8000, 3)
    offsets = children["means"] - torch.tensor([1.0, -2.0, 3.0])
    expected = covariance_3d(params["quats"][:1].detach(), params["scales"][:1].detach())[0]
    assert offsets.mean(0).abs().max() < 0.03
    assert torch.allclose(offsets.T @ offsets / 8000, expected, atol=0.012)
    assert torch.allclose(children["scales"].exp(), torch.tensor([0.5, 0.2, 0.05]) / 1.6)


def test_large_gaussians_pruned_only_after_first_reset():
    cfg = config(refine_start=0, refine_every=1, reset_every=100, prune_scale3d=0.1, grow_scale3d=0.01)
    params = make_params(3)
    with torch.no_grad():
        params["scales"][1] = math.log(0.3)                  # > 0.1 * extent
    zero_info = info_for(torch.zeros(3, 2), torch.ones(3))
    strategy = default_strategy(cfg, EXTENT)
    optimizer = make_optimizer(params)
    assert strategy.step_post_backward(params, optimizer, 50, zero_info)["pruned"] == 0
    assert strategy.step_post_backward(params, optimizer, 101, zero_info)["pruned"] == 1
    assert params["means"].shape[0] == 2 and (params["scales"].exp() < 0.01).all()


def test_screen_size_pruning_before_scale2d_stop():
    cfg = config(refine_start=0, refine_every=1, reset_every=10, prune_scale2d=0.15, refine_scale2d_stop=200)
    strategy, params = default_strategy(cfg, EXTENT), make_params(3)
    optimizer = make_optimizer(params)
    info = info_for(torch.zeros(3, 2), torch.tensor([5.0, 20.0, 0.0]), width=100, height=80)
    assert strategy.step_post_backward(params, optimizer, 20, info)["pruned"] == 1   # 20/100 > 0.15
    assert params["means"].shape[0] == 2
    late = default_strategy(cfg, EXTENT)
    params = make_params(3)
    assert late.step_post_backward(params, make_optimizer(params), 300, info)["pruned"] == 0


def test_adam_state_follows_rows_and_optimizer_still_steps():
    cfg = config(refine_start=0, refine_every=1, reset_every=3000)
    strategy, (params, info) = default_strategy(cfg, EXTENT), _four_gaussians()
    optimizer = make_optimizer(params)
    take_adam_step(params, optimizer)
    old = {k: {s: v.clone() for s, v in optimizer.state[p].items()} for k, p in params.items()}
    strategy.step_post_backward(params, optimizer, 1, info)
    for key, param in params.items():
        state = optimizer.state[param]
        assert param.grad is None
        assert torch.equal(state["step"], old[key]["step"])
        for moment in ("exp_avg", "exp_avg_sq"):
            assert state[moment].shape == param.shape and param.shape[0] == 5
            assert torch.equal(state[moment][0], old[key][moment][0])      # g0 kept
            assert torch.equal(state[moment][1], old[key][moment][3])      # g3 kept
            assert (old[key][moment][[0, 3]] != 0).any()
            assert not state[moment][2:].any()                             # clone + children
    take_adam_step(params, optimizer)
    assert all(torch.isfinite(p).all() and p.shape[0] == 5 for p in params.values())
    assert optimizer.state[params["means"]]["exp_avg"][2:].abs().min() > 0


def test_densify_before_first_optimizer_step_and_empty_sh():
    cfg = config(refine_start=0, refine_every=1, reset_every=3000)
    strategy, (params, info) = default_strategy(cfg, EXTENT), _four_gaussians()
    params["shN"] = nn.Parameter(torch.zeros(4, 0, 3))
    optimizer = make_optimizer(params)
    strategy.step_post_backward(params, optimizer, 1, info)
    assert params["shN"].shape == (5, 0, 3) and len(optimizer.state) == 0
    take_adam_step(params, optimizer)
    assert optimizer.state[params["means"]]["exp_avg"].shape == (5, 3)


def test_row_helpers_keep_and_append():
    params = make_params(3)
    optimizer = make_optimizer(params)
    take_adam_step(params, optimizer)
    moments = optimizer.state[params["sh0"]]["exp_avg_sq"].clone()
    sh0 = params["sh0"].detach().clone()
    identity = params["sh0"]
    keep_rows(params, optimizer, torch.tensor([True, False, True]))
    append_rows(params, optimizer, {k: torch.ones((2,) + p.shape[1:]) for k, p in params.items()})
    assert params["sh0"] is identity
    assert torch.equal(params["sh0"][:2], sh0[[0, 2]]) and torch.equal(params["sh0"][2:], torch.ones(2, 1, 3))
    state = optimizer.state[params["sh0"]]["exp_avg_sq"]
    assert torch.equal(state[:2], moments[[0, 2]]) and not state[2:].any()


def test_opacity_reset_caps_at_twice_prune_threshold():
    cfg = config(refine_start=0, refine_every=1000, reset_every=30, prune_opacity=0.005)
    strategy, params = default_strategy(cfg, EXTENT), make_params(3)
    with torch.no_grad():
        params["opacities"].copy_(torch.tensor([-6.0, 0.0, 3.0]))
    optimizer = make_optimizer(params)
    take_adam_step(params, optimizer)
    before = params["opacities"].detach().clone()
    scale_moment = optimizer.state[params["scales"]]["exp_avg"].clone()
    info = info_for(torch.zeros(3, 2), torch.ones(3))
    stats = strategy.step_post_backward(params, optimizer, 30, info)
    assert stats == {"opacity_reset": 1}
    expected = torch.minimum(torch.sigmoid(before), torch.tensor(0.01))
    assert torch.allclose(torch.sigmoid(params["opacities"]), expected, rtol=1e-5)
    assert expected[0] < 0.01 and torch.isclose(expected[1], torch.tensor(0.01))
    assert not optimizer.state[params["opacities"]]["exp_avg"].any()
    assert torch.equal(optimizer.state[params["scales"]]["exp_avg"], scale_moment)
    assert strategy.step_post_backward(params, optimizer, 31, info) == {}


def test_default_state_dict_round_trip_matches_uninterrupted_run():
    cfg = config(refine_start=0, refine_every=4, reset_every=3000, grad_threshold=0.3)
    grads = [torch.rand(6, 2, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    radii = torch.tensor([1.0, 0.0, 2.0, 3.0, 1.0, 1.0])
    straight, params_a = default_strategy(cfg, EXTENT), make_params(6)
    resumed, params_b = default_strategy(cfg, EXTENT), make_params(6)
    opt_a, opt_b = make_optimizer(params_a), make_optimizer(params_b)
    for step in range(1, 3):
        straight.step_post_backward(params_a, opt_a, step, info_for(grads[step], radii))
    saved = straight.state_dict()
    resumed.load_state_dict(saved)
    saved["count"].fill_(99)                                   # the strategy holds its own copy
    assert torch.equal(resumed.state_dict()["count"], straight.count)
    assert resumed.count.sum() > 0
    for step in range(3, 5):
        torch.manual_seed(step)
        a = straight.step_post_backward(params_a, opt_a, step, info_for(grads[step - 1], radii))
        torch.manual_seed(step)
        b = resumed.step_post_backward(params_b, opt_b, step, info_for(grads[step - 1], radii))
        assert a == b
    assert a["cloned"] > 0 and params_a["means"].shape[0] > 6
    assert all(torch.equal(params_a[k], params_b[k]) for k in params_a)
    assert default_strategy(cfg, EXTENT).state_dict() == {}


def test_default_loss_is_zero():
    assert default_strategy(THREE_DGS, EXTENT).loss(make_params(3)).item() == 0.0


# ----------------------------------------------------------------------------- MCMC

def paper_denominator(o_new: float, n: int) -> float:
    """Eq. 9 of 3DGS-MCMC as printed: the double sum."""
    return sum(math.comb(i - 1, k) * (-1) ** k * o_new ** (k + 1) / math.sqrt(k + 1)
               for i in range(1, n + 1) for k in range(i))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13])
def test_relocation_matches_paper_and_preserves_opacity(n):
    o = torch.tensor([0.01, 0.3, 0.7, 0.95, 0.999])
    scales = torch.tensor([[0.1, 0.2, 0.3]]).expand(5, 3)
    new_o, new_s = relocation(o, scales, torch.full((5,), n))
    assert torch.allclose(1 - (1 - new_o.double()) ** n, o.double(), rtol=1e-5)
    expected = torch.tensor([[s * o_i / paper_denominator(no, n) for s in (0.1, 0.2, 0.3)]
                             for o_i, no in zip(o.tolist(), new_o.double().tolist())], dtype=torch.float64)
    assert torch.allclose(new_s.double(), expected, rtol=1e-4)
    if n == 1:
        assert torch.allclose(new_o, o) and torch.allclose(new_s, scales)
    else:
        assert (new_o < o).all()


def test_relocation_is_stable_for_many_copies():
    x = torch.tensor([0.001, 0.02, 0.1], dtype=torch.float64)
    for n in (20, 40):
        direct = torch.tensor([paper_denominator(v, n) for v in x.tolist()], dtype=torch.float64)
        assert torch.allclose(relocation_denominator(x, n), direct, rtol=1e-6)
    new_o, new_s = relocation(torch.tensor([0.9, 1.0]), torch.ones(2, 3), torch.tensor([500, 3]))
    assert torch.isfinite(new_s).all() and (new_s > 0).all() and (new_o < 1).all()


def test_sample_proportional_follows_weights():
    torch.manual_seed(0)
    draws = sample_proportional(torch.tensor([0.0, 1.0, 3.0]), 20_000)
    freq = torch.bincount(draws, minlength=3).float() / 20_000
    assert freq[0] == 0 and abs(freq[1] - 0.25) < 0.02 and abs(freq[2] - 0.75) < 0.02


def test_mcmc_adds_five_percent_and_respects_cap():
    torch.manual_seed(0)
    params = make_params(100)
    strategy = mcmc_strategy(config(strategy="mcmc", refine_start=0, refine_every=10), EXTENT)
    optimizer = make_optimizer(params)
    take_adam_step(params, optimizer)
    stats = strategy.step_post_backward(params, optimizer, 10, {})
    assert stats == {"relocated": 0, "added": 5}
    assert all(p.shape[0] == 105 for p in params.values())
    assert all(optimizer.state[p]["exp_avg"].shape[0] == 105 for p in params.values())
    assert not optimizer.state[params["sh0"]]["exp_avg"][100:].any()
    assert strategy.step_post_backward(params, optimizer, 11, {}) == {}    # not a refine step
    capped = mcmc_strategy(config(strategy="mcmc", refine_start=0, refine_every=10, cap_max=103), EXTENT)
    capped.step_post_backward(params, optimizer, 20, {})
    assert params["means"].shape[0] == 105                                 # already above the cap
    params = make_params(100)
    capped.step_post_backward(params, make_optimizer(params), 20, {})
    assert params["means"].shape[0] == 103


def test_mcmc_added_copies_share_their_source_opacity():
    torch.manual_seed(1)
    params = make_params(40, opacity=0.6)
    strategy = mcmc_strategy(config(strategy="mcmc"), EXTENT)
    assert strategy.add_new(params, make_optimizer(params)) == 2
    o = torch.sigmoid(params["opacities"].detach())
    for source in range(40):
        group = (params["sh0"].detach() == params["sh0"][source].detach()).all(-1).all(-1)
        n = int(group.sum())
        assert torch.allclose(1 - (1 - o[group]) ** n, torch.tensor(0.6), atol=1e-5)


def test_mcmc_relocates_dead_gaussians_onto_live_ones():
    torch.manual_seed(2)
    params = make_params(20, opacity=0.9)
    with torch.no_grad():
        params["opacities"][10:15] = -10.0                             # dead
        params["opacities"][15:] = math.log(0.004 / 0.996)             # dead too (<= 0.005)
    optimizer = make_optimizer(params)
    take_adam_step(params, optimizer)
    old_means = params["means"].detach().clone()
    old_o = torch.sigmoid(params["opacities"].detach())             # ~0.9, moved by the Adam step
    old_moments = optimizer.state[params["means"]]["exp_avg"].clone()
    strategy = mcmc_strategy(config(strategy="mcmc"), EXTENT)
    assert strategy.relocate_dead(params, optimizer) == 10
    o = torch.sigmoid(params["opacities"].detach())
    assert (o > 0.005).all() and params["means"].shape[0] == 20
    means = params["means"].detach()
    moments = optimizer.state[params["means"]]["exp_avg"]
    for row in range(10, 20):                                          # each dead row copies a live one
        assert (means[row] == old_means[:10]).all(-1).any()
        assert not moments[row].any()
    for source in range(10):
        n = int((means == old_means[source]).all(-1).sum())
        assert torch.isclose(1 - (1 - o[source]) ** n, old_o[source], atol=1e-5)
        if n == 1:                                                     # untouched: unchanged
            assert torch.equal(moments[source], old_moments[source])
        else:
            assert not moments[source].any()


def test_mcmc_noise_moves_transparent_gaussians_more():
    torch.manual_seed(3)
    params = make_params(400, scale=0.1)
    with torch.no_grad():
        params["opacities"][:200] = math.log(0.001 / 0.999)
        params["opacities"][200:] = math.log(0.9 / 0.1)
    optimizer = make_optimizer(params)
    optimizer.param_groups[0]["lr"] = 1e-4
    before = params["means"].detach().clone()
    strategy = mcmc_strategy(config(strategy="mcmc", noise_lr=5e5), EXTENT)
    assert strategy.step_post_backward(params, optimizer, 1, {}) == {}
    moved = (params["means"].detach() - before).norm(dim=-1)
    assert moved[:200].mean() > 1e-3 and moved[200:].max() < 1e-12
    # expected magnitude: |Sigma eps| with Sigma = 0.01 I, times gate(0.001) ~ 0.599, lr x noise_lr = 50
    gate = torch.sigmoid(torch.tensor(-100 * (0.001 - 0.005)))
    assert abs(moved[:200].mean() / (0.01 * 50 * gate * math.sqrt(3)) - 1) < 0.15
    optimizer.param_groups[0]["lr"] = 0.0
    before = params["means"].detach().clone()
    strategy.step_post_backward(params, optimizer, 2, {})
    assert torch.equal(params["means"], before)


def test_mcmc_loss_terms_and_state_dict():
    params = make_params(4, opacity=0.25, scale=0.5)
    strategy = mcmc_strategy(config(strategy="mcmc", opacity_reg=0.1, scale_reg=0.2), EXTENT)
    loss = strategy.loss(params)
    assert loss.shape == () and math.isclose(loss.item(), 0.1 * 0.25 + 0.2 * 0.5, rel_tol=1e-6)
    loss.backward()
    assert params["opacities"].grad.abs().sum() > 0 and params["scales"].grad.abs().sum() > 0
    assert strategy.state_dict() == {}
    strategy.load_state_dict({})
