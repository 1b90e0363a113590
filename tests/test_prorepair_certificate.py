"""ProRepair's partition certificate: exact cover check and leaf-by-leaf re-proof of a *saved* network."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _prorepair_nets import tiny_net, tiny_property  # noqa: E402

from nnmend.io import save_network  # noqa: E402
from nnmend.repair.prorepair import ProRepairConfig, RegionProblem, repair  # noqa: E402
from nnmend.repair.prorepair.certificate import (certify_saved, check_cover, load_partition,  # noqa: E402
                                                 save_partition)
from nnmend.repair.prorepair.leaves import split, uniform_split  # noqa: E402

torch.set_num_threads(1)


def _random_bisection(lo, hi, rounds: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    leaves = uniform_split(lo, hi, 2)
    for _ in range(rounds):
        pick = torch.rand(len(leaves), generator=gen) < 0.5
        idx = torch.nonzero(pick).squeeze(1)
        rest = torch.nonzero(~pick).squeeze(1)
        dim = torch.randint(lo.numel(), (len(idx),), generator=gen)
        leaves = leaves.take(rest).cat(split(leaves.take(idx), dim))
    return leaves


def test_cover_check_accepts_bisections_and_rejects_gaps_and_shifts():
    lo, hi = torch.tensor([-0.3, 0.0, 1.0]), torch.tensor([0.7, 0.5, 1.25])
    leaves = _random_bisection(lo, hi, 6, seed=0)
    assert len(leaves) > 40
    ok, witness = check_cover(lo, hi, leaves.lo, leaves.hi)
    assert ok and witness is None
    perm = torch.randperm(len(leaves), generator=torch.Generator().manual_seed(1))      # order does not matter
    assert check_cover(lo, hi, leaves.lo[perm], leaves.hi[perm])[0]
    for drop in (0, len(leaves) // 2, len(leaves) - 1):
        keep = torch.arange(len(leaves)) != drop
        ok, witness = check_cover(lo, hi, leaves.lo[keep], leaves.hi[keep])
        assert not ok, f"a partition missing leaf {drop} was accepted"
        w = torch.tensor(witness)
        # the reported uncovered box meets the dropped leaf
        assert (torch.max(w[:3], leaves.lo[drop].double()) < torch.min(w[3:], leaves.hi[drop].double())).all()
    shrunk = leaves.hi.clone()
    shrunk[0] = leaves.lo[0] + 0.99 * (leaves.hi[0] - leaves.lo[0])                     # a sliver left open
    assert not check_cover(lo, hi, leaves.lo, shrunk)[0]
    assert not check_cover(lo, hi + 1e-6, leaves.lo, leaves.hi)[0], "a box larger than the leaves' union passed"
    # overlapping leaves that still cover are fine (a cover is all a proof needs)
    assert check_cover(lo, hi, torch.cat([leaves.lo, lo[None]]), torch.cat([leaves.hi, hi[None]]))[0]


def test_partition_certificate_on_saved_network_and_a_broken_one(tmp_path):
    net, prop = tiny_net(), tiny_property()
    res = repair(net, RegionProblem(prop), ProRepairConfig(time_budget=60))
    assert res.details["proved_by_loop_certificate"], "fixture: the tiny repair must be proved"
    part = res.details["partition"]
    assert res.details["certificate"]["status"] == "verified"
    assert "partition" in res.details["certificate"]["method"], "the loop proved its leaves: the partition certifies"
    save_partition(part, tmp_path / "p.partition.pt")
    part = load_partition(tmp_path / "p.partition.pt")
    save_network(res.network, tmp_path / "fixed.pt")
    cert = certify_saved(tmp_path / "fixed.pt", prop, part, timeout=None)
    assert cert["status"] == "verified" and cert["cover"] is True
    assert cert["proven_by_crown"] + cert["proven_by_alpha_crown"] + cert["proven_by_bab"] == cert["leaves"] == len(part["lo"])
    # the same partition on the unrepaired network (saved): must not pass, and here a leaf is falsified
    save_network(net, tmp_path / "broken.pt")
    bad = certify_saved(tmp_path / "broken.pt", prop, part, timeout=None)
    assert bad["status"] == "falsified", bad
    # a repaired net whose edited bias was pushed back towards the violation: must not pass either
    broken = res.network
    with torch.no_grad():
        broken.fc3.bias += torch.tensor([-5.0, 5.0])
    save_network(broken, tmp_path / "broken2.pt")
    assert certify_saved(tmp_path / "broken2.pt", prop, part, timeout=None)["status"] != "verified"
    # a partition missing one leaf: the cover check refuses, whatever the network
    short = {k: v[1:] for k, v in part.items()}
    cert = certify_saved(tmp_path / "fixed.pt", prop, short, timeout=None)
    assert cert["status"] == "unknown" and cert["cover"] is not True
