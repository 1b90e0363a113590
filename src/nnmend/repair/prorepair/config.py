"""Every ProRepair hyper-parameter in one frozen dataclass (scikit-learn style: configuration is data)."""
from __future__ import annotations

from dataclasses import dataclass, replace

#: the region-wise setting ``benchmarks/results/prorepair_acasxu.md`` ran (:meth:`ProRepairConfig.region`)
REGION = dict(preserve_samples=100_000, preserve_weight=100.0, proxy_margin=0.03)


@dataclass(frozen=True)
class ProRepairConfig:
    """ProRepair settings. The paper's own values are not public (research notes A.4); the defaults are
    ours, chosen on ACAS Xu N2,1 / φ2 and the poisoned MNIST CNN. Each benchmark suite measured one setting
    best, and they differ, so the defaults stay those of the point-wise adversarial suite
    (``prorepair_adversarial.md``: ``preserve_weight`` 10, ``proxy_margin`` 0.1). The ACAS Xu region-wise suite
    ran :meth:`region` (:data:`REGION`: stronger preservation on 100,000 domain samples; on N2,1 FDD 0.64–0.74 %
    instead of 1.56 %), which is not the default even for region-wise repairs: on the two-input test network of
    ``tests/test_prorepair_cli.py`` it leaves the property falsified (the preservation holds the edit back), and
    100,000 samples of a high-dimensional input domain would not fit in memory. The backdoor suite
    (``prorepair_backdoor.md``) needs ``preserve="labels"``, every layer edited and weight 1: its original
    network is itself wrong on clean data, which no default can know.

    Network split and editing:
        split_layer: name of the first module of the frozen head ``g`` (a top-level child of the
            ``nn.Sequential``); ``None`` = the last Linear layer, so ``g`` is one affine map and proxy
            boxes have a closed form.
        edit_layers: names of the Linear/Conv2d layers of ``h`` whose weights and biases are edited;
            ``None`` = the last weight layer of ``h`` (the localised default); ``("*",)`` = every weight
            layer of ``h`` (point-wise repairs of adversarial inputs need it to keep drawdown low).
    Proxy boxes:
        proxy_margin: feature-space distance (L2) that every proxy box keeps from the boundary of the
            head's correct-output set, in units of the clean features' spread (default 0.1); gives
            slack so tiny feature moves do not undo a proof, small so the edit stays small.
        dykstra_iters: alternating-projection sweeps for boxes under several constraints (default 60).
        growth_steps: bisection steps of the bound-constrained box growth when ``g`` is not affine.
    Training:
        lr: Adam step size on the edited parameters (default 1e-3). steps: Adam steps per round
            (default 100). preserve_weight: weight λ of the preservation term (MSE between edited and
            original logits on clean/preservation inputs, default 10). batch_size: preservation batch.
        preserve_samples: region-wise: uniform samples of the input domain that the preservation term
            keeps (default 10,000), when the problem gives no ``preserve_x``.
        preserve: point-wise preservation term: ``"decisions"`` (default; logit drift plus a hinge against
            decision flips of the original network, as region-wise) or ``"labels"`` (cross-entropy with the
            clean labels: better when the original is itself defective on clean data, e.g. a backdoored net).
        decision: ``"argmax"`` or ``"argmin"`` (ACAS Xu's advisory), the decision rule the preservation
            hinge protects; ``None`` = the network's ``nnmend_meta["advisory"]`` if recorded, else argmax.
        solver: point-wise edit: ``"auto"`` (default; the closed form of :mod:`.closed_form` when one
            Linear layer is edited, only a ReLU follows it in ``h`` and ``g`` is affine, else Adam),
            ``"closed_form"`` (error when it does not apply) or ``"adam"`` (the gradient loop).
        ridge: closed form's ridge ρ relative to the clean Gram matrix's mean diagonal (default 1e-3).
        dual_iters: projected-gradient steps of the closed form's dual problem per round (default 300).
        max_rounds: refinement rounds (region-wise) or training rounds (point-wise) (default 30).
        time_budget: seconds for the whole repair (default 600); on expiry the result lists what is open.
    Region-wise refinement:
        initial_splits: bisections of each property box before the first round (default 6 → 64 leaves).
        max_leaves: cap on the number of leaves (default 20000). min_width: leaves narrower than this in
            every dimension are not split further.
            repair_depth: a leaf with a counterexample joins the repair loss only once it is this many
            bisections deep (volume 2^-depth of its region's box): looser leaves would demand large edits;
            their counterexample points join at once as point items. pgd_steps / pgd_boxes: counterexample search per round.
        target_reach: a leaf joins the repair loss only while its feature box lies within this distance of its
            proxy box (L2, in clean feature spreads; default 4): one further out is open because its bounds
            are loose, and is refined instead of pulling the edit.
        sample_points: per round, points drawn uniformly over the union of the open leaves (each leaf by its
            volume); every violating one becomes a point item (at most ``sample_keep``, the worst first). The
            open leaves shrink round by round, so this finds violations too rare for PGD or whole-box
            sampling: φ7 on N1,9 is violated on about 1 point in 1.5 M of its box (default 100,000; 0 = off).
        bab_seconds: when no open leaf yields a counterexample, one batched branch and bound over the open
            leaves (:func:`nnmend.bounds.bab.bab_boxes`) searches this long (default 2 s) for one, or proves
            them all: every other leaf being proven, that ends the loop. The time doubles after each further round without a
            counterexample (capped at half the budget left and at half the loop's time outside branch and bound).
        bound_method: sound bounds for the proofs inside the loop ("crown").
    Certificate:
        certify_timeout: seconds for the independent re-check of the saved network (default 300).
        fallback: region-wise only. ``None`` (default): an unproved repair is returned unproved. ``"guard"``: when
            the certificate fails, the edited network gets an output guard (:mod:`nnmend.repair.guard`, not
            part of the paper) on the property's boxes and is certified again (``details["fallback"]``). The
            guard needs pairwise output comparisons in the unsafe set and the input domain (``.nnet`` header),
            which is checked before training starts.
        seed: every random choice (sampling, PGD starts).
        threads: torch intra-op threads during the repair (restored afterwards); 1 by default, as in
            :class:`nnmend.bounds.bab.BabConfig`: the many small tensor operations run far faster
            single-threaded on a busy machine (measured: the tiny CLI test took 75 s with 2 threads
            on a loaded 2-core host, 4 s with 1). ``None`` leaves torch's setting alone.
    """

    split_layer: str | None = None
    edit_layers: tuple[str, ...] | None = None
    proxy_margin: float = 0.1
    dykstra_iters: int = 60
    growth_steps: int = 12
    lr: float = 1e-3
    steps: int = 100
    preserve_weight: float = 10.0
    batch_size: int = 1024
    preserve_samples: int = 10_000
    preserve: str = "decisions"
    decision: str | None = None
    solver: str = "auto"
    ridge: float = 1e-3
    dual_iters: int = 300
    max_rounds: int = 30
    time_budget: float = 600.0
    initial_splits: int = 6
    max_leaves: int = 20000
    min_width: float = 1e-4
    repair_depth: float = 16.0
    pgd_steps: int = 20
    pgd_boxes: int = 512
    target_reach: float = 4.0
    sample_points: int = 100_000
    sample_keep: int = 256
    bab_seconds: float = 2.0
    bound_method: str = "crown"
    certify_timeout: float = 300.0
    fallback: str | None = None
    seed: int = 0
    threads: int | None = 1

    @classmethod
    def region(cls, **overrides) -> "ProRepairConfig":
        """The region-wise setting the ACAS Xu benchmark ran (:data:`REGION`: 34/36 proved by the repair),
        then ``overrides``."""
        return replace(cls(**REGION), **overrides)
