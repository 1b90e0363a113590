"""NCA function-space loss and multi-scale perception (issue 7 follow-up)."""
from __future__ import annotations

import math

import pytest
import torch

from nnmend.errors import RepairError
from nnmend.io import load_checkpoint, save_checkpoint
from nnmend.nets import get_layer, mlp
from nnmend.repair.nca import NCARule, NCATrainConfig, positional_channels, train_rule
from nnmend.repair.nca.function_loss import FunctionTarget, function_space_loss, function_target


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return mlp([36, 8, 3], flatten=False)


def test_function_target_records_inputs_and_sensitivity():
    net = _net()
    x = torch.rand(20, 36)
    t = function_target(net, "fc1", x)
    assert torch.equal(t.x, x) and t.g.shape == (8, 20)
    assert math.isclose(float(t.g.mean()), 1.0, rel_tol=1e-5) and (t.g >= 0).all()
    # a unit that is never active (ReLU off on every input) cannot move the logits
    with torch.no_grad():
        get_layer(net, "fc1").bias[2] = -1e3
    assert float(function_target(net, "fc1", x).g[2].abs().max()) == 0.0
    with pytest.raises(RepairError, match="dense"):
        function_target(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3)), "0", torch.rand(1, 1, 5, 5))


def test_function_space_loss_weights_errors_by_their_effect():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(400, 6, generator=gen)
    x[:, 5] = 0.0  # an input that is always 0 (like an MNIST border pixel)
    t = FunctionTarget(x, torch.ones(2, 400))
    rows = torch.tensor([[0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]])
    cols = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]])
    assert float(function_space_loss(t, torch.zeros(1, 12), rows, cols)) == 0.0
    irrelevant = torch.zeros(1, 12)
    irrelevant[0, [5, 11]] = 7.0  # errors only where the input is always 0
    assert float(function_space_loss(t, irrelevant, rows, cols)) == 0.0
    # i.i.d. unit-variance errors score about 1 on average (the normalisation)
    errs = torch.randn(300, 12, generator=gen)
    val = float(function_space_loss(t, errs, rows.expand(300, -1), cols.expand(300, -1)))
    assert 0.8 < val < 1.2
    # the crop-interior weight removes cells from the loss
    one = torch.zeros(1, 12)
    one[0, 0] = 1.0
    assert float(function_space_loss(t, one, rows, cols, weight=torch.zeros(1, 12))) == 0.0


def test_dilated_rule_saves_and_sees_further(tmp_path):
    rule = NCARule(hidden_channels=2, width=8, frequencies=1, meta={"weight_shape": [9, 9]}, n_rows=9, n_cols=9,
                   dilations=(1, 2, 4))
    state = torch.zeros(1, 3, 9, 9)
    state[0, 0, 4, 0] = 1.0  # 4 cells away from the centre
    p = rule.perceive(state, torch.zeros(1, 1, 9, 9))
    assert p.shape[1] == (4 + 3 + 3) * 4 and float(p[0, :, 4, 4].abs().sum()) > 0  # seen via dilation 4
    assert float(NCARule(2, 8, 1, n_rows=9, n_cols=9).perceive(state, torch.zeros(1, 1, 9, 9))[0, :, 4, 4]
                 .abs().sum()) == 0.0  # a 3×3 rule does not see it
    torch.nn.init.normal_(rule.fc2.weight)
    loaded = load_checkpoint(save_checkpoint(rule, tmp_path / "r.pt")).model
    assert loaded.dilations == (1, 2, 4)
    pos, trust = positional_channels((1, 9, 9), 1), torch.full((1, 1, 9, 9), 0.5)
    a = rule.step(state, pos, trust, torch.Generator().manual_seed(1))
    assert torch.allclose(a, loaded.step(state, pos, trust, torch.Generator().manual_seed(1)))
    with pytest.raises(RepairError, match="dilations"):
        NCARule(2, 8, 1, dilations=(2,))


def test_training_with_function_loss_runs_and_needs_data():
    net = _net()
    cfg = NCATrainConfig(iterations=6, batch_size=2, pool_size=4, steps_min=2, steps_max=3, hidden_channels=3,
                         width=8, tile=4, margin=1, function_weight=0.5, dilations=(1, 2), function_samples=30)
    with pytest.raises(RepairError, match="needs data"):
        train_rule(net, "fc1", cfg)
    with pytest.raises(RepairError, match="function_weight"):
        train_rule(net, "fc1", NCATrainConfig(function_weight=1.5), data=torch.rand(4, 36))
    for layout in ("receptive_field", "correlation"):
        rule, hist = train_rule(net, "fc1", NCATrainConfig(**{**cfg.__dict__, "layout": layout}),
                                data=torch.rand(40, 36))
        assert len(hist.loss) == 6 and all(math.isfinite(v) for v in hist.loss)
        assert rule.dilations == (1, 2)
