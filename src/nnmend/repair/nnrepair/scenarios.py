"""NNrepair's three scenarios as repair problems plus the sets they are scored on (paper 004, Sec. 5.1).

* ``"accuracy"`` — improve accuracy: failing and passing inputs from Train; scored on Test.
* ``"poisoned"`` — BadNets: the first 600 training images carry a 3×3 square of 250/255 at rows and
  columns 24–26 and were relabelled 7 when the model was trained. The pool (P-Train) is those 600
  with their *true* labels; passing inputs also come from the rest of Train. Scored on Test and on
  P-Test: all test images with the trigger, against their true labels (plus the attack success rate
  on non-7 test images).
* ``"adversarial"`` — FGSM, ε = 0.05, crafted on the original network: the pool is Adv-Train (the
  last 10,000 training images attacked, as the artefact's 10k "val" split), passing inputs also from
  Train; scored on Test and Adv-Test (the test set attacked on the *original* network — a transfer
  evaluation; attack the repaired network afresh for the deployable number).

Example::

    sc = build_scenario("poisoned", pretrained("mnist_poisoned"))
    res = repair(net, sc.problem, NNRepairConfig(layer="last"))
    accuracy(res.network, sc.evals["p_test"])
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..._validation import check_choice
from ...attacks import fgsm
from ...data import Dataset, Trigger, load_dataset, triggered_test
from .config import RepairProblem

SCENARIOS = ("accuracy", "poisoned", "adversarial")
DEFAULT_MODEL = {"accuracy": "mnist_lq", "poisoned": "mnist_poisoned", "adversarial": "mnist_full"}
HEADLINE = {"accuracy": "test", "poisoned": "p_test", "adversarial": "adv_test"}
POISON_TARGET, POISON_FIRST, FGSM_EPS = 7, 600, 0.05


@dataclass(frozen=True)
class Scenario:
    """A repair problem and its evaluation sets ``evals[name] = (x, y)``; ``headline`` is the target set."""

    name: str
    problem: RepairProblem
    evals: dict[str, tuple[torch.Tensor, torch.Tensor]]
    headline: str


def build_scenario(name: str, network: nn.Module, *, train: Dataset | None = None, test: Dataset | None = None,
                   adv_pool: int = 10_000, eps: float = FGSM_EPS) -> Scenario:
    """Build scenario ``name`` for ``network`` (the original, unrepaired model) on MNIST or given data.

    ``eps``: FGSM radius of the adversarial scenario (paper: 0.05).
    """
    check_choice("scenario", name, SCENARIOS)
    train = load_dataset("mnist", "train") if train is None else train
    test = load_dataset("mnist", "test") if test is None else test
    evals = {"test": (test.x, test.y)}
    if name == "accuracy":
        problem = RepairProblem(train.x, train.y, scenario=name)
    elif name == "poisoned":
        trig = Trigger()
        k = min(POISON_FIRST, len(train))
        problem = RepairProblem(trig.apply(train.x[:k]), train.y[:k], train.x[k:], train.y[k:], scenario=name)
        evals["p_test"] = (trig.apply(test.x), test.y)
        asr = triggered_test(test, POISON_TARGET, trig)
        evals["asr"] = (asr.x, torch.full_like(asr.y, POISON_TARGET))   # accuracy on this = attack success rate
    else:
        pool = train.subset(start=max(0, len(train) - adv_pool))
        problem = RepairProblem(fgsm(network, pool.x, pool.y, eps), pool.y, train.x, train.y, scenario=name)
        evals["adv_test"] = (fgsm(network, test.x, test.y, eps), test.y)
    return Scenario(name, problem, evals, HEADLINE[name])


def evaluate(original: nn.Module, repaired: nn.Module, scenario: Scenario) -> dict[str, dict[str, float]]:
    """Accuracy of both networks on every evaluation set of the scenario (the paper's protocol)."""
    from ...train import accuracy

    return {name: {"original": accuracy(original, xy), "repaired": accuracy(repaired, xy)}
            for name, xy in scenario.evals.items()}
