"""NCA weight repair: layouts, rule, training smoke, repair modes, bad input, baselines."""
from __future__ import annotations

import math

import pytest
import torch

from nnmend.corruption import corrupt_values, corruption_mask
from nnmend.errors import RepairError
from nnmend.io import load_checkpoint, save_checkpoint
from nnmend.nets import get_layer, mlp
from nnmend.repair.nca import (NCAProblem, NCARepairConfig, NCARule, NCATrainConfig, half_precision, make_layout,
                               positional_channels, repair, repair_trajectory, repair_weight, storage_bytes, train_rule,
                               train_rule_for_weight)
from nnmend.repair.nca.baselines import biharmonic_fill, mean_fill, replica, replica_repair, soft_impute

TINY = NCATrainConfig(iterations=30, batch_size=4, pool_size=8, steps_min=6, steps_max=8, hidden_channels=5, width=24,
                      tile=12, margin=4, lr=3e-3, seed=0, function_weight=0.0, dilations=(1,),
                      fraction_range=(0.05, 0.95))


def smooth_matrix(r: int = 16, c: int = 16) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0, 1, r), torch.linspace(0, 1, c), indexing="ij")
    return 0.1 * torch.sin(3 * x + 2 * y) + 0.05 * torch.cos(5 * y)


@pytest.fixture(scope="module")
def tiny_rule() -> NCARule:
    rule, hist = train_rule_for_weight(smooth_matrix(), TINY, layer="fc1")
    assert all(math.isfinite(v) for v in hist.loss)
    return rule


def test_rule_training_is_deterministic(tiny_rule):
    again, _ = train_rule_for_weight(smooth_matrix(), TINY, layer="fc1")
    for (k, a), b in zip(tiny_rule.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_layouts_are_bijections():
    w = torch.randn(12, 36)
    for kind, kw in (("matrix", {}), ("receptive_field", {"image_shape": (6, 6)}), ("correlation", {})):
        lay = make_layout(w, kind, **kw)
        g = lay.to_grid(w)
        assert g.shape[1] == 1 and g.shape[0] * g.shape[2] * g.shape[3] == w.numel()
        assert torch.equal(lay.from_grid(g), w)
        assert torch.equal(lay.row_perm.sort().values, torch.arange(12))
    assert make_layout(w, "receptive_field", image_shape=(6, 6)).grid_shape == (12, 6, 6)
    with pytest.raises(RepairError, match="image_shape"):
        make_layout(w, "receptive_field", image_shape=(5, 6))
    with pytest.raises(RepairError, match="layout"):
        make_layout(w, "hexagonal")


def test_correlation_layout_puts_correlated_rows_together():
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(2, 30, generator=gen)
    rows = torch.cat([base[0] + 0.05 * torch.randn(5, 30, generator=gen), base[1] + 0.05 * torch.randn(5, 30, generator=gen)])
    shuffled = rows[torch.randperm(10, generator=gen)]
    lay = make_layout(shuffled, "correlation")
    group = (lay.to_grid(shuffled)[0, 0] @ base[0] > (lay.to_grid(shuffled)[0, 0] @ base[1])).int()
    assert int((group[1:] != group[:-1]).sum()) == 1  # the two clusters are contiguous after seriation


def test_positional_channels_shape_and_range():
    pos = positional_channels((3, 5, 7), 2)
    assert pos.shape == (3, 10, 5, 7)
    assert pos.abs().max() <= 1.0 + 1e-6


def test_untrained_rule_is_identity_and_saves(tmp_path):
    rule = NCARule(hidden_channels=3, width=8, frequencies=1, meta={"weight_shape": [4, 5]}, n_rows=4, n_cols=5)
    state = torch.randn(1, 4, 4, 5)
    pos, trust = positional_channels((1, 4, 5), 1), torch.full((1, 1, 4, 5), 0.5)
    assert torch.equal(rule.step(state, pos, trust, torch.Generator().manual_seed(0)), state)
    torch.nn.init.normal_(rule.fc2.weight)
    path = save_checkpoint(rule, tmp_path / "r.pt")
    loaded = load_checkpoint(path).model
    assert isinstance(loaded, NCARule)
    a = rule.step(state, pos, trust, torch.Generator().manual_seed(1))
    b = loaded.step(state, pos, trust, torch.Generator().manual_seed(1))
    assert torch.allclose(a, b) and not torch.equal(a, state)


@pytest.mark.slow   # 39 CPU s measured (training; includes the tiny_rule fixture)
def test_training_learns_to_inpaint(tiny_rule):
    w = smooth_matrix()
    gen = torch.Generator().manual_seed(3)
    mask = corruption_mask(w, "scatter", 0.3, gen)
    bad = corrupt_values(w, mask, "zero", gen)
    # at the tiny rule's own (8-step) horizon: the 3x default suits pool-trained long-horizon rules only
    fixed, _ = repair_weight(tiny_rule, bad, ~mask, config=NCARepairConfig(horizon_multiple=1.0))
    assert torch.equal(fixed[~mask], w[~mask])  # informed: trusted cells untouched
    mean_err = (mean_fill(bad, mask) - w)[mask].pow(2).mean()  # what the untrained (identity) rule gives
    err_after = (fixed - w)[mask].pow(2).mean()
    assert err_after < 0.7 * mean_err


def test_repair_contract_and_bad_input(tiny_rule):
    net = mlp([16, 16, 3], flatten=False)
    with torch.no_grad():
        get_layer(net, "fc1").weight.copy_(smooth_matrix())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    res = repair(net, NCAProblem("fc1", tiny_rule), NCARepairConfig(steps=5))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # input unchanged
    assert res.method == "nca" and res.details["mode"] == "blind"
    assert res.network(torch.rand(2, 16)).shape == (2, 3)
    assert res.details["storage"]["extra_state_bytes"] == 0 and res.details["storage"]["rule_bytes"] > 0
    # NaN/Inf weights: treated as corrupted, not a crash
    with torch.no_grad():
        get_layer(net, "fc1").weight[0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    res = repair(net, NCAProblem("fc1", tiny_rule), NCARepairConfig(steps=5))
    assert torch.isfinite(get_layer(res.network, "fc1").weight).all()
    assert res.details["nonfinite_cells"] == 3 and res.details["detected"][0, :3].all()
    # a rule for another shape, a mask of the wrong shape, a non-dense layer
    with pytest.raises(RepairError, match=r"trained for a layer of shape \(16, 16\)"):
        repair(net, NCAProblem("fc2", tiny_rule))
    with pytest.raises(RepairError, match=r"mask has shape \(3, 3\)"):
        repair(net, NCAProblem("fc1", tiny_rule, torch.ones(3, 3, dtype=torch.bool)))


def test_storage_report(tiny_rule):
    s = storage_bytes(tiny_rule)
    perms = 8 * (16 + 16) if tiny_rule.meta["layout"] == "correlation" else 0
    assert s["rule_bytes"] == 4 * tiny_rule.n_parameters() + perms
    assert s["weight_bytes"] == 16 * 16 * 4
    assert math.isclose(s["overhead_fraction"], s["rule_bytes"] / s["weight_bytes"])
    half = half_precision(tiny_rule)
    assert storage_bytes(half)["rule_bytes"] == 2 * tiny_rule.n_parameters() + perms
    for p, q in zip(half.parameters(), tiny_rule.parameters()):
        assert torch.equal(p, p.half().float()) and torch.allclose(p, q, rtol=1e-3, atol=1e-4)
    assert "param_bytes" not in tiny_rule.meta  # the original is untouched


def test_train_rule_rejects_bad_config_and_layers():
    net = mlp([16, 16, 3], flatten=False)
    with pytest.raises(RepairError, match="steps_min"):
        train_rule(net, "fc1", NCATrainConfig(steps_min=5, steps_max=2))
    with pytest.raises(RepairError, match="layout"):
        train_rule(net, "fc1", NCATrainConfig(layout="spiral"))


def test_biharmonic_fills_smooth_fields():
    w = smooth_matrix(12, 14)
    mask = corruption_mask(w, "scatter", 0.5, torch.Generator().manual_seed(0))
    bad = torch.where(mask, torch.zeros(()), w)
    out = biharmonic_fill(bad, mask, make_layout(w, "matrix"))
    assert torch.equal(out[~mask], w[~mask])
    assert (out - w)[mask].norm() < 0.1 * (mean_fill(bad, mask) - w)[mask].norm()
    const = torch.full((6, 6), 0.3)
    holes = torch.arange(36).view(6, 6) % 3 == 0
    filled = biharmonic_fill(torch.where(holes, torch.zeros(()), const), holes, make_layout(const, "matrix"))
    assert torch.allclose(filled, const, atol=1e-6)  # constants are reproduced exactly


def test_soft_impute_completes_low_rank():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(30, 2, generator=gen) @ torch.randn(2, 40, generator=gen)
    mask = corruption_mask(w, "scatter", 0.4, gen)
    out = soft_impute(torch.where(mask, torch.zeros(()), w), mask, iters=200)
    assert (out - w)[mask].norm() < 0.2 * w[mask].norm()
    assert torch.equal(out[~mask], w[~mask])


def test_mean_fill_and_replica():
    w = torch.randn(8, 10)
    mask = torch.zeros_like(w, dtype=torch.bool)
    mask[0] = True
    filled = mean_fill(w, mask)
    assert torch.allclose(filled[0], w[1:].mean().expand(10))
    exact, info = replica(w, budget_bytes=w.numel() * 4)
    assert info["kind"] == "exact" and torch.equal(exact, w)
    q, info = replica(w, budget_bytes=w.numel())  # 8 bits per weight
    assert info["kind"] == "quantised" and info["bits"] == 8 and info["rms_error"] < 0.02 * float(w.abs().max())
    big = torch.randn(40, 50)
    _, info_lr = replica(big, budget_bytes=4 * (40 + 50))  # 1.4 bits per weight → a rank-1 copy
    assert info_lr["kind"] == "low_rank" and info_lr["rank"] == 1
    bad = w.clone()
    bad[0] = 100.0
    blind = replica_repair(bad, q, info["rms_error"])
    assert torch.equal(blind[0], q[0]) and torch.equal(blind[1:], w[1:])  # only the far-off row replaced
    assert torch.equal(replica_repair(bad, q, info["rms_error"], mask)[0], q[0])


def test_blind_cross_check_finds_and_fixes_outliers(tiny_rule):
    w = smooth_matrix()
    gen = torch.Generator().manual_seed(5)
    mask = corruption_mask(w, "scatter", 0.05, gen)
    bad = torch.where(mask, torch.full_like(w, 3.0), w)  # exponent-bit-flip-like outliers
    fixed, score = repair_weight(tiny_rule, bad, None, config=NCARepairConfig(steps=8))
    assert score[mask].min() > score[~mask].max()  # perfect separation on gross outliers
    assert (fixed - w)[mask].abs().max() < 0.1 * 3.0
    from nnmend.repair.nca.repair import blind_threshold

    unflagged = score <= blind_threshold(tiny_rule, NCARepairConfig())
    assert unflagged.any() and torch.equal(fixed[unflagged], w[unflagged])  # unflagged cells: exactly as stored
    assert (fixed - w)[~mask].abs().max() < 0.1 * 3.0
    with pytest.raises(RepairError, match="blind_strategy"):
        repair_weight(tiny_rule, bad, None, config=NCARepairConfig(blind_strategy="vote"))


def test_trajectory_matches_separate_runs(tiny_rule):
    """Stability reads one long run at several step counts; each reading equals a run of that length."""
    w = smooth_matrix()
    mask = corruption_mask(w, "scatter", 0.5, torch.Generator().manual_seed(1))
    bad = corrupt_values(w, mask, "zero", torch.Generator().manual_seed(1))
    cfg = NCARepairConfig(seed=3, average_last=4)
    outs, _ = repair_trajectory(tiny_rule, bad, ~mask, (5, 12), config=cfg)
    for steps, got in zip((5, 12), outs):
        want, _ = repair_weight(tiny_rule, bad, ~mask, config=NCARepairConfig(seed=3, average_last=4, steps=steps))
        assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(outs[0], outs[1])  # the readings are of different states
    blind, score = repair_trajectory(tiny_rule, bad, None, (4, 9), config=cfg)
    assert len(blind) == 2 and score.shape == w.shape
    with pytest.raises(RepairError, match="checkpoints"):
        repair_trajectory(tiny_rule, bad, ~mask, (0, 3))


@pytest.mark.slow   # 36 CPU s measured (a second training run)
def test_training_continues_from_an_init_rule(tiny_rule):
    import dataclasses

    frozen = dataclasses.replace(TINY, iterations=2, lr=0.0, steps_min=10, steps_max=12)   # lr 0: nothing may move
    cont, _ = train_rule_for_weight(smooth_matrix(), frozen, layer="fc1", init=tiny_rule)
    for (k, a), b in zip(tiny_rule.state_dict().items(), cont.state_dict().values()):
        assert torch.equal(a, b), k
    assert cont.meta["horizon"] == 12 and cont.meta["init_from"]["horizon"] == TINY.steps_max
    moved, _ = train_rule_for_weight(smooth_matrix(), dataclasses.replace(frozen, lr=3e-3), layer="fc1", init=tiny_rule)
    assert any(not torch.equal(a, b) for a, b in zip(tiny_rule.parameters(), moved.parameters()))
    with pytest.raises(RepairError, match="weight_shape"):
        train_rule_for_weight(smooth_matrix(16, 20), frozen, layer="fc1", init=tiny_rule)
    with pytest.raises(RepairError, match="architecture differs"):
        train_rule_for_weight(smooth_matrix(), dataclasses.replace(frozen, width=16), layer="fc1", init=tiny_rule)


def test_blind_threshold_is_calibrated_on_the_clean_weight(tiny_rule):
    from nnmend.repair.nca import calibrate_blind
    from nnmend.repair.nca.repair import blind_threshold

    thr = tiny_rule.meta["blind_threshold"]
    assert thr > 0 and tiny_rule.meta["blind_false_positive"] == 1e-3
    assert blind_threshold(tiny_rule, NCARepairConfig()) == thr
    assert blind_threshold(tiny_rule, NCARepairConfig(detect_threshold=0.5)) == 0.5
    w = smooth_matrix()
    net = mlp([16, 16, 4])
    with torch.no_grad():
        get_layer(net, "fc1").weight.copy_(w)
    res = repair(net, NCAProblem("fc1", tiny_rule), NCARepairConfig(seed=0))
    assert res.details["detect_threshold"] == thr
    assert float(res.details["detected"].float().mean()) <= 0.01          # intact weights are not flagged
    loose = repair(net, NCAProblem("fc1", tiny_rule), NCARepairConfig(seed=0, detect_threshold=1e-6))
    assert float(loose.details["detected"].float().mean()) > 0.5          # the threshold really gates detection
    old = NCARule.from_spec(tiny_rule.spec_args(), {})
    old.meta.pop("blind_threshold")
    assert blind_threshold(old, NCARepairConfig()) == 1.0                 # rules trained before calibration
    assert calibrate_blind(old, w, false_positive=0.5) <= thr
    with pytest.raises(RepairError, match="false_positive"):
        calibrate_blind(old, w, false_positive=0.0)


def test_shrinkage_is_calibrated_and_applied(tiny_rule):
    """α(f) is the clean-weight least-squares factor; a rule that has learnt nothing of a weight shrinks to mean fill."""
    from nnmend.repair.nca import calibrate_shrink
    from nnmend.repair.nca.repair import shrink_factor

    cal = tiny_rule.meta["shrink"]
    assert len(cal["alpha"]) == len(cal["fractions"]) and all(0.0 <= a <= 1.0 for a in cal["alpha"])
    assert cal["alpha"][0] > 0.5                     # smooth weights: the rule's regeneration is trusted
    w = smooth_matrix()
    mask = corruption_mask(w, "scatter", 0.5, torch.Generator().manual_seed(2))
    raw, _ = repair_weight(tiny_rule, w, ~mask, config=NCARepairConfig(seed=1, shrink=False))
    shrunk, _ = repair_weight(tiny_rule, w, ~mask, config=NCARepairConfig(seed=1))
    mu, a = tiny_rule.meta["mu"], shrink_factor(tiny_rule, 0.5)
    assert a < 1.0 and cal["steps"] == 24                   # 3 × the tiny rule's 8-step horizon
    assert torch.allclose(shrunk[mask], mu + a * (raw[mask] - mu), atol=1e-6)
    assert torch.equal(shrunk[~mask], w[~mask])
    other, _ = repair_weight(tiny_rule, w, ~mask, config=NCARepairConfig(seed=1, steps=12))   # not the calibrated length
    assert torch.equal(other, repair_weight(tiny_rule, w, ~mask, config=NCARepairConfig(seed=1, steps=12, shrink=False))[0])
    # the same rule on an unrelated random weight of that shape: its regeneration is noise → α ≈ 0
    noise = NCARule.from_spec(tiny_rule.spec_args(), {})
    noise.load_state_dict(tiny_rule.state_dict())
    wn = torch.randn(w.shape, generator=torch.Generator().manual_seed(9)) * float(w.std()) + tiny_rule.meta["mu"]
    alphas = calibrate_shrink(noise, wn, fractions=(0.3, 0.9))
    assert max(alphas) < 0.35
    fixed, _ = repair_weight(noise, wn, ~mask, config=NCARepairConfig(seed=1))
    raw_n, _ = repair_weight(noise, wn, ~mask, config=NCARepairConfig(seed=1, shrink=False))
    assert (fixed - wn)[mask].norm() < (raw_n - wn)[mask].norm()
    assert shrink_factor(noise, 0.1) == alphas[0] and shrink_factor(noise, 0.99) == alphas[1]
    assert shrink_factor(noise, 0.1, steps=5) == 1.0
    assert shrink_factor(noise, 0.6) == pytest.approx((alphas[0] + alphas[1]) / 2)
    with pytest.raises(RepairError, match="fractions"):
        calibrate_shrink(noise, wn, fractions=(0.9, 0.3))


def test_repair_reports_shrinkage(tiny_rule):
    w = smooth_matrix()
    net = mlp([16, 16, 4])
    mask = corruption_mask(w, "scatter", 0.5, torch.Generator().manual_seed(4))
    with torch.no_grad():
        get_layer(net, "fc1").weight.copy_(torch.where(mask, torch.zeros(()), w))
    res = repair(net, NCAProblem("fc1", tiny_rule, ~mask), NCARepairConfig(seed=0))
    from nnmend.repair.nca.repair import shrink_factor

    assert res.details["regenerated_fraction"] == pytest.approx(float(mask.float().mean()))
    assert res.details["shrink_alpha"] == pytest.approx(shrink_factor(tiny_rule, float(mask.float().mean())))
    off = repair(net, NCAProblem("fc1", tiny_rule, ~mask), NCARepairConfig(seed=0, shrink=False))
    assert off.details["shrink_alpha"] == 1.0
    none = repair(net, NCAProblem("fc1", tiny_rule), NCARepairConfig(seed=0, blind_strategy="none"))
    raw = repair(net, NCAProblem("fc1", tiny_rule), NCARepairConfig(seed=0, blind_strategy="none", shrink=False))
    assert none.details["shrink_alpha"] == 1.0      # blind "none" regenerates every cell: never shrunk
    assert torch.equal(get_layer(none.network, "fc1").weight, get_layer(raw.network, "fc1").weight)


def test_fused_update_equals_perception_then_mlp(tiny_rule):
    """delta() folds the fixed filters into fc1; it must equal the unfused perceive → fc1 → ReLU → fc2."""
    import torch.nn.functional as F

    rule = NCARule(hidden_channels=4, width=16, frequencies=1, n_rows=9, n_cols=11, dilations=(1, 2, 4))
    torch.nn.init.normal_(rule.fc2.weight)
    gen = torch.Generator().manual_seed(0)
    state = torch.randn(2, rule.channels, 9, 11, generator=gen)
    trust = (torch.rand(2, 1, 9, 11, generator=gen) < 0.5).float()
    pos = positional_channels((2, 9, 11), 1)
    want = rule.fc2(F.relu(rule.fc1(torch.cat([rule.perceive(state, trust), pos], 1))))
    assert torch.allclose(rule.delta(state, pos, trust), want, atol=1e-5)
    assert torch.allclose(rule.delta(state, pos, trust, rule.position_term(pos)), want, atol=1e-5)
