"""NNrepair building blocks: patterns, Eq. 4, exactness of every constraint row, solver modes, experts."""
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from nnmend.repair.nnrepair.constraints import (decision_rows, keep_rows_intermediate, keep_rows_last,
                                                  pattern_decision_rows, pattern_rows)
from nnmend.repair.nnrepair.experts import ExpertEnsemble, f1_scores
from nnmend.repair.nnrepair.localize import edge_scores, faulty_neurons, top_edges
from nnmend.repair.nnrepair.patterns import learn_patterns, tree_labels
from nnmend.repair.nnrepair.record import Record
from nnmend.repair.nnrepair.solve import Infeasible, solve_system
from nnmend.repair.nnrepair.constraints import LinearSystem, TARGET, KEEP
import scipy.sparse as sp


def test_patterns_are_tree_leaves_with_their_support():
    g = torch.Generator().manual_seed(0)
    sig = torch.rand(600, 12, generator=g) > 0.5
    y = torch.where(sig[:, 3] & ~sig[:, 5], 0, 1)
    pred = y.clone()
    pred[:40] = 1 - y[:40]                                   # 40 failing inputs
    labels = tree_labels(y, pred, 2, "ideal")
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    assert (labels[:40] == 2 + y[:40].numpy()).all()
    by_pred = tree_labels(y, pred, 2, "predicted")
    assert (by_pred[:40] == 2 + pred[:40].numpy()).all()
    pats = learn_patterns(sig, labels, num_classes=2, min_support=5)
    for store in (pats.correct, pats.incorrect):
        for c, plist in store.items():
            for p in plist:
                # a root-to-leaf path: exactly the training signatures at the leaf satisfy it
                assert int(p.satisfied(sig).sum()) == p.support
                assert [q.support for q in plist] == sorted((q.support for q in plist), reverse=True)
    assert all(p.support >= 5 for ps in pats.correct.values() for p in ps)
    assert pats.incorrect, "failing inputs give incorrect-classification patterns"


def test_edge_scores_are_eq4_and_topk():
    g = torch.Generator().manual_seed(1)
    af, ap, w = torch.randn(7, 9, generator=g), torch.randn(11, 9, generator=g), torch.randn(3, 9, generator=g)
    s = edge_scores(af, ap, w)
    for n in range(3):
        for i in range(9):
            ref = np.mean([abs(af[x, i] * w[n, i]) for x in range(7)]) - np.mean([abs(ap[x, i] * w[n, i]) for x in range(11)])
            assert s[n, i].item() == pytest.approx(float(ref), abs=1e-5)
    top = top_edges(s, 4)
    assert top.shape == (3, 4) and (s.gather(1, top)[:, -1:] >= s.max(1, keepdim=True).values * 0 + s.sort(1, descending=True).values[:, 3:4]).all()
    dis = torch.tensor([[True, False, False], [False, False, True]])
    assert faulty_neurons(dis, torch.tensor([4, 7, 9])).tolist() == [4, 9]
    assert faulty_neurons(dis, torch.tensor([4, 7, 9]), "pattern").tolist() == [4, 7, 9]


def _setup(seed=0, n=40, d_in=8, d_out=6, C=4):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, d_in, generator=g)
    W, b = torch.randn(d_out, d_in, generator=g), torch.randn(d_out, generator=g) * 0.3
    R = torch.randn(C, d_out, generator=g)
    return g, a, W, b, R


def _dense(delta, var_out, var_in, shape):
    D = torch.zeros(shape, dtype=torch.float64)
    D[torch.as_tensor(var_out), torch.as_tensor(var_in)] = torch.as_tensor(delta)
    return D


def test_pattern_rows_hold_exactly_when_the_real_signs_agree():
    g, a, W, b, _ = _setup()
    z = a @ W.T + b
    neurons, edges = torch.tensor([1, 4]), torch.tensor([[0, 2, 5], [1, 3, 7]])
    want = torch.rand(len(a), 2, generator=g) > 0.5
    sysm = pattern_rows(a, z, neurons, edges, want, margin=0.0)
    for trial in range(5):
        delta = (torch.rand(6, generator=g) * 2 - 1).double().numpy()
        ok = (sysm.residual(delta) >= -1e-9).reshape(len(a), 2)
        Wn = W.double() + _dense(delta, sysm.var_out, sysm.var_in, W.shape)
        zn = a.double() @ Wn.T + b.double()
        real = torch.where(want, zn[:, neurons] >= 0, zn[:, neurons] <= 0)
        assert torch.equal(torch.as_tensor(ok), real)


def test_last_layer_decision_and_keep_rows_are_exact():
    g, a, W, b, _ = _setup(seed=2, d_out=4)
    logits = a @ W.T + b
    cls, edges = 2, torch.tensor([0, 3, 6])
    tgt = decision_rows(a, logits, cls, edges, margin=0.0)
    keep = keep_rows_last(a, logits, cls, edges, margin=0.0, bound=10.0)
    for trial in range(5):
        delta = (torch.rand(3, generator=g) * 4 - 2).double().numpy()
        Wn = W.double().clone()
        Wn[cls, edges] += torch.as_tensor(delta)
        new = a.double() @ Wn.T + b.double()
        wins = new.argmax(1) == cls
        assert torch.equal(torch.as_tensor((tgt.residual(delta) >= -1e-9).reshape(len(a), 3).all(1)), wins)
        # keep rows: inputs whose decision is not already cls keep their decision iff their row holds
        kept = torch.as_tensor(keep.residual(delta) >= -1e-9)
        idx = torch.as_tensor(keep.sample)
        assert torch.equal(kept, new[idx].argmax(1) == logits[idx].argmax(1))


def test_intermediate_keep_and_decision_rows_are_exact_while_signs_hold():
    g, a, W, b, Rw = _setup(seed=3)
    z = a @ W.T + b
    logits = z.clamp(min=0) @ Rw.T
    neurons, edges = torch.tensor([0, 2, 5]), torch.tensor([[1, 2], [0, 7], [3, 4]])
    rows = keep_rows_intermediate(a, z, logits, neurons, edges, Rw, margin=0.0, bound=1.0)
    on = torch.tensor([True, False, True])
    dec = pattern_decision_rows(Record(a, z, logits), 1, neurons, edges, on, Rw, margin=0.0)
    pat = pattern_rows(a, z, neurons, edges, on[None].expand(len(a), -1), margin=0.0)
    for trial in range(8):
        delta = ((torch.rand(6, generator=g) * 2 - 1) * 0.3).double().numpy()
        Wn = W.double() + _dense(delta, rows[0].var_out, rows[0].var_in, W.shape)
        zn = a.double() @ Wn.T + b.double()
        new = zn.clamp(min=0) @ Rw.double().T
        signs_ok = np.ones(len(a), bool)
        np.logical_and.at(signs_ok, rows[0].sample, rows[0].residual(delta) >= -1e-9)
        idx = rows[1].sample
        res = rows[1].residual(delta) >= -1e-9
        # where every sign row of an input holds, its decision rows are exact
        for r, i in enumerate(idx):
            if signs_ok[i]:
                rival_ok = res[idx == i].all()
                if rival_ok:
                    assert new[i].argmax() == logits[i].argmax()
        # pattern decision rows: exact where the pattern rows hold for that input
        pat_ok = (pat.residual(delta) >= -1e-9).reshape(len(a), 3).all(1)
        dres = dec.residual(delta).reshape(len(a), -1)
        rivals = [c for c in range(Rw.shape[0]) if c != 1]
        for i in np.nonzero(pat_ok)[0]:
            np.testing.assert_allclose(dres[i], (new[i, 1] - new[i, rivals]).numpy(), atol=1e-6)


def _system(rows, lb, kinds=None):
    A = sp.csr_array(np.asarray(rows, dtype=float))
    kinds = np.full(len(lb), TARGET, np.int8) if kinds is None else np.asarray(kinds, np.int8)
    return LinearSystem(A, np.asarray(lb, float), kinds, np.arange(len(lb)), np.zeros(A.shape[1], int),
                        np.arange(A.shape[1]))


def test_solver_modes_objectives_and_infeasibility():
    s = _system([[1.0, 1.0]], [1.0])
    l1 = solve_system(s, mode="hard", objective="l1", bound=1.0)
    assert l1.satisfied.all() and l1.l1 == pytest.approx(1.0, abs=1e-6)
    linf = solve_system(s, mode="hard", objective="linf", bound=1.0)
    assert linf.max_abs == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(Infeasible):
        solve_system(_system([[1.0, 0.0]], [2.0]), mode="hard", bound=1.0)
    # conflicting soft rows: maxsat keeps 2 of 3, soft returns something in the box
    conflict = _system([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]], [0.5, 0.5, 0.2])
    ms = solve_system(conflict, mode="maxsat", bound=1.0)
    assert int(ms.satisfied.sum()) == 2 and ms.satisfied[[0, 2]].all() and ms.delta[0] == pytest.approx(0.5, abs=1e-6)
    soft = solve_system(conflict, mode="soft", bound=1.0)
    assert np.abs(soft.delta).max() <= 1.0 + 1e-9
    # KEEP rows stay hard in soft / maxsat modes
    keep = _system([[1.0, 0.0], [-1.0, 0.0]], [0.5, 0.0], kinds=[TARGET, KEEP])
    sol = solve_system(keep, mode="maxsat", bound=1.0)
    assert sol.satisfied[1] and not sol.satisfied[0]
    at = solve_system(_system([[1.0, 0.0]], [1.0]), mode="hard", bound=1.0)
    assert at.at_bound == 1 and at.nonzero == 1


def _toy_ensemble(strategy):
    g = torch.Generator().manual_seed(5)
    lin = nn.Linear(6, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(3, 6, generator=g))
        lin.bias.zero_()
    head = nn.Sequential(OrderedDict([("fc", lin)]))
    labels = torch.tensor([0, 1, 2])
    index = torch.stack([torch.tensor([0, 1]), torch.tensor([6, 7]), torch.tensor([12, 13])])
    value = torch.randn(3, 2, generator=g) * 2
    return ExpertEnsemble(nn.Sequential(nn.Flatten()), head, labels, index, value, strategy=strategy, merge="sum").eval()


@pytest.mark.parametrize("strategy", ["naive", "confidence", "voting", "merged"])
def test_combination_rules_match_a_plain_reference(strategy, tmp_path):
    ens = _toy_ensemble(strategy)
    x = torch.randn(300, 6, generator=torch.Generator().manual_seed(6))
    W = ens.head[0].weight.detach()
    D = ens.deltas()
    out = ens(x).argmax(1)
    if strategy == "merged":
        ref = (x @ (W + D.sum(0)).T + ens.head[0].bias).argmax(1)
        assert torch.equal(out, ref)
        assert torch.equal(ens.merged_network()(x).argmax(1), ref)
    else:
        orig = (x @ W.T).argmax(1)
        exp = [(x @ (W + D[k]).T) for k in range(3)]
        for n in range(len(x)):
            preds = [int(e[n].argmax()) for e in exp]
            claim = [k for k in range(3) if preds[k] == k]
            if not claim:
                want = int(orig[n])
            elif len(claim) == 1:
                want = claim[0]
            elif strategy == "naive":
                want = int(orig[n])
            elif strategy == "confidence":
                want = max(claim, key=lambda k: float(exp[k][n, k]))
            else:
                votes = [preds.count(k) for k in claim]
                want = claim[votes.index(max(votes))]
            assert int(out[n]) == want
    # saves and reloads as an ordinary checkpoint
    from nnmend.io import load_network, save_network
    save_network(ens, tmp_path / "ens.pt")
    back = load_network(tmp_path / "ens.pt")
    assert torch.equal(back(x), ens(x)) and back.strategy == strategy


def test_f1_scores():
    pred = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0]])
    y = torch.tensor([0, 1, 1, 0])
    f = f1_scores(pred, y, torch.tensor([0, 1]))
    assert f[0].item() == pytest.approx(0.5) and f[1].item() == pytest.approx(0.8)
