"""ProRepair: provable repair by feature-space preimage (proxy box) synthesis and property refinement.

Ma, Wang, Xuan, Wang, "Provable Repair of Deep Neural Network Defects by Preimage Synthesis and
Property Refinement", CCS 2025 (arXiv 2511.07741). Only the abstract is readable; this is the
reconstruction of research notes A.5, with the choices below made and measured here.

Design (and why):

* **Split** ``N = g ∘ h`` at a named top-level layer (default: the last Linear, so ``g`` is affine).
  ``g`` is frozen: a proxy box certified once for ``g`` stays valid however ``h`` changes.
* **Localised edit**: only the chosen layers of ``h`` change (default: its last weight layer). The
  prefix before it is frozen, so its CROWN linear relaxation over each input leaf is computed once
  and reused for every training step; the edited layer's feature bounds are then a cheap,
  differentiable, sound formula (:func:`.split.edited_feature_bounds`).
* **Proxy boxes** (:mod:`.proxy`): for an affine head, the feature-space condition is a set of
  half-spaces, one kept row per disjunct of the unsafe set; the box bound vector is projected onto
  them (closed form for one row, Dykstra for several, batched) and sides no row constrains are
  opened to ±∞ — as large as possible, as close to the current features as possible, certified
  exactly in float64. A non-affine head uses bound-constrained growth with CROWN.
* **Bounded distance term**: squared distance of the feature bounds to their proxy box, in units
  of the clean features' spread, zero inside; we take its square root per item so that every item
  pulls with a bounded force (measured on ACAS Xu N2,1: squared terms let a few loose leaves
  dominate and tripled the fidelity drawdown).
* **Preservation**: logit MSE (relative to the logits' variance) plus a hinge keeping half of each
  original decision's lead on preservation inputs (region-wise); cross-entropy on clean labelled
  data (point-wise). The hinge alone cut ACAS Xu N2,1's drawdown from 8 % to 1.5 %.
* **Counterexample-guided refinement** (region-wise, :mod:`.regionwise`): leaves are proven through
  the head (feature box inside the safe set) or by CROWN on the whole edited network; open leaves
  are searched for counterexamples (CROWN-minimising corners, PGD through the shared attack) and
  bisected by CROWN slope × width (:func:`nnmend.bounds.bab.split_dims`). Counterexample inputs
  join the loss at once as point items; open leaves join only once refinement made them small
  (``repair_depth``), since a loose leaf's proxy box demands a large, non-local edit.
  When a round finds no counterexample in the open leaves, the shared branch and bound searches (or
  proves) the whole region, twice as long after each further such round: once the edited network is
  safe, a proof ends the loop before more training moves it (fewer steps, lower drawdown).
* **Point-wise closed form** (:mod:`.closed_form`, the default where it applies: Linear edit layers,
  affine head): the proxy region of a point is a set of half-spaces in feature space, so with the
  ReLU pattern fixed each round is a minimal-disturbance least-squares edit (disturbance measured on
  the clean inputs) solved in its dual — no gradient steps; 7–30× faster than our PatchPro on the
  MNIST adversarial sets (benchmarks/results/prorepair_adversarial.md), for points only.
* **Certificate**: the repaired network is saved, reloaded, and checked — the loop's leaf partition
  (:mod:`.certificate`) when the loop proved every leaf, else (or if that does not settle it)
  :func:`nnmend.properties.check` on the whole boxes — independent of the loop.
* **Fallback** (``ProRepairConfig(fallback="guard")``, not part of the paper): when that certificate
  fails, the edited network gets an output guard (:mod:`nnmend.repair.guard`) on the property's boxes
  and is certified again. It exists because the input-splitting branch and bound cannot prove repairs
  of the two near-whole-domain instances (ACAS Xu N1,9 φ7, N2,9 φ8) in any budget we tried; results
  report which proofs needed it (``details["fallback"]``; ``prorepair_acasxu.md`` marks the rows).
"""
from .api import PointProblem, RegionProblem, certify, repair
from .config import ProRepairConfig
from .proxy import ProxyBoxes, linear_proxy, grown_proxy, synthesize
from .split import split_network

__all__ = ["repair", "ProRepairConfig", "RegionProblem", "PointProblem", "certify", "ProxyBoxes",
           "linear_proxy", "grown_proxy", "synthesize", "split_network"]
