"""``run(method, network, problem, config)``: the one path every repair takes (CLI, workbench, benchmarks,
campaigns).

The harness, not the method, decides success (foolbox's rule): it validates the inputs against what the
method registered, calls the method, checks that the input network was not changed, saves the result as a
weights-only checkpoint and loads it back, and then measures the *loaded* network:

* ``property`` targets: the property is re-proved by :func:`nnmend.repair.certify.certify` (sound bounds,
  exact leaf-cover check when the method left a partition) — ``verified`` comes only from there;
* ``robustness`` targets: every ball is re-proved (the method's registered certifier where the ordinary
  verifier cannot read the network whole), and the origins are attacked with the strongest of white-box
  PGD, transfer from the original network and Square (:func:`nnmend.metrics.strongest_attack`);
* ``points`` / ``accuracy`` / ``adversarial`` targets: RSR, clean accuracy or robust accuracy before and after;
* with ``external="marabou"``, every proved region / ball again by Marabou on the network's piecewise-linear
  ONNX export (:mod:`nnmend.repair.external`): ``certificate["external"]``; a counterexample fails the run.

Before and after are compared on the target and on clean accuracy (or, without labels, on the decisions:
FDD); the verdict line comes first. Metric names and units are those of :data:`nnmend.metrics.METRICS`.

Example::

    from nnmend.repair import run
    res = run("guard", acasxu(2, 9), GuardProblem(read_property(acasxu_property_path(8))))
    print(res.verdict); res.success, res.verified, res.metrics["fdd"]
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import RepairError
from .base import RepairResult
from .certify import roundtrip
from .registry import Method, get


@dataclass(frozen=True)
class RunOptions:
    """What the harness measures and how (every field can be passed to :func:`run` as a keyword).

    Attributes:
        test: labelled clean data ``Dataset`` or ``(x, y)`` for accuracy and drawdown (default: the clean
            data the problem carries, if any).
        certify_timeout: seconds for the proof on the saved network (None: no limit; ``"config"``: the
            method config's ``certify_timeout`` (PatchPro: ``verify_timeout`` per region), else 60).
        precheck_timeout: seconds to check a property on the original network (the "before" status).
        attack: attack robustness targets (white-box PGD, transfer, Square); False: proofs only.
        attack_steps: PGD steps. square_queries: Square's queries (0: no gradient-free attack).
        attack_n: at most this many test inputs are attacked for ``adversarial`` targets.
        max_drawdown: percentage points of clean accuracy (or, without labels, of FDD) a repair may cost
            before the verdict calls it harmful and ``success`` is False.
        fidelity_samples: uniform points of the input domain on which FDD is measured (property targets).
        decision: ``"argmax"`` / ``"argmin"`` for FDD (None: the network's recorded advisory, else argmax).
        seed: every random choice of the measurements.
        external: ``"marabou"``: after the proof, re-prove every claimed region / ball with Marabou on the
            piecewise-linear ONNX export of the reloaded network (:func:`nnmend.repair.external.external_proof`),
            recorded in ``certificate["external"]``; a counterexample there is a DISAGREEMENT and fails the run.
            None: off. external_timeout: seconds for all of Marabou's calls together (None: no limit).
    """

    test: Any = None
    certify_timeout: float | str | None = "config"
    precheck_timeout: float = 10.0
    attack: bool = True
    attack_steps: int = 50
    square_queries: int = 1000
    attack_n: int = 500
    max_drawdown: float = 2.0
    fidelity_samples: int = 10_000
    decision: str | None = None
    seed: int = 0
    external: str | None = None
    external_timeout: float | None = 120.0


EXTERNAL = (None, "marabou")


def _split_options(spec: Method, options: dict) -> tuple[RunOptions, dict]:
    harness = {f.name for f in dataclasses.fields(RunOptions)}
    fields = spec.options()
    unknown = sorted(set(options) - harness - set(fields))
    if unknown:
        raise RepairError(f"{spec.name}: unknown option(s) {', '.join(unknown)}; the harness takes "
                          f"{', '.join(sorted(harness))} and {spec.config.__name__} takes {', '.join(fields)}")
    opts = RunOptions(**{k: v for k, v in options.items() if k in harness})
    if opts.external not in EXTERNAL:
        raise RepairError(f"external={opts.external!r}: use 'marabou' or None")
    # a name both take (``seed``, ``certify_timeout``) is the harness's; set the method's through ``config``
    return opts, {k: v for k, v in options.items() if k in fields and k not in harness}


def _config(spec: Method, config: Any, overrides: dict) -> Any:
    if config is None:
        config = spec.config()
    elif not isinstance(config, spec.config):
        raise RepairError(f"{spec.name}: config must be a {spec.config.__name__}, got {type(config).__name__}")
    return dataclasses.replace(config, **overrides) if overrides else config


def _fingerprint(network: nn.Module) -> str:
    h = hashlib.sha1()
    for name, t in list(network.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _external(loaded: nn.Module, problem: Any, cert: dict, opts: RunOptions) -> dict:
    """Marabou's re-proof of what the certificate claims (nothing when it claims nothing)."""
    from .external import external_proof

    if cert.get("status") != "verified":
        return {"solver": opts.external, "status": "skipped",
                "detail": f"nothing claimed: the certificate is {cert.get('status')}"}
    return external_proof(loaded, problem, opts.external_timeout)


def run(method: str, network: nn.Module, problem: Any, config: Any = None, **options: Any) -> RepairResult:
    """Repair ``network`` for ``problem`` with the registered ``method`` and decide, on the saved and
    reloaded network, whether it worked.

    Args:
        method: a name from :func:`nnmend.repair.methods`.
        network: the network to repair (never changed). problem: the method's problem type.
        config: the method's config dataclass (None: its defaults).
        options: :class:`RunOptions` fields, or fields of the method's config (override ``config``).
    Returns:
        :class:`RepairResult` whose ``network`` is the reloaded checkpoint; ``success``, ``verified``,
        ``verdict``, ``before`` / ``after``, ``metrics`` and ``certificate`` are filled by the harness;
        the method's own record stays in ``details``.
    Raises:
        RepairError (or the method's own NnmendError): unknown method or option, a problem or config of the
        wrong type, a network that is not an ``nn.Module``, a method that changed its input.
    """
    spec = get(method)
    opts, overrides = _split_options(spec, options)
    cfg = _config(spec, config, overrides)
    if not isinstance(network, nn.Module):
        raise RepairError(f"{method}: network must be a torch.nn.Module, got {type(network).__name__}")
    if not isinstance(problem, spec.problem):
        want = " or ".join(t.__name__ for t in spec.problem)
        raise RepairError(f"{method}: problem must be a {want}, got {type(problem).__name__}")
    kind = spec.target_of(problem)
    from . import measure

    was_training = network.training
    fingerprint = _fingerprint(network)
    t0 = time.perf_counter()
    raw = spec.repair(network, problem, cfg)        # first: the method validates its problem and says what is wrong
    seconds = time.perf_counter() - t0
    if _fingerprint(network) != fingerprint:
        raise RepairError(f"method {method!r} changed the weights of its input network (a method must return a new one)")
    network.train(was_training)
    if not isinstance(raw, RepairResult) or not isinstance(raw.network, nn.Module):
        raise RepairError(f"method {method!r} returned {type(raw).__name__}, not a RepairResult with an nn.Module")
    loaded = roundtrip(raw.network, f"{method} result")
    before = measure.before(kind, network, problem, cfg, opts)     # the unchanged original
    after, cert = measure.after(kind, spec, network, loaded, problem, cfg, opts, raw)
    if opts.external and cert is not None:
        cert["external"] = _external(loaded, problem, cert, opts)
        after["external"] = cert["external"]["status"]
    figures = measure.figures(kind, before, after, network, loaded, problem, opts)
    success, verdict = measure.verdict(method, kind, before, after, figures, opts)
    n0 = sum(p.numel() for p in network.parameters())
    figures.update(seconds=round(seconds, 4), parameters_added=sum(p.numel() for p in loaded.parameters()) - n0)
    return RepairResult(loaded, method, seconds, figures, {**raw.details, "method_metrics": raw.metrics},
                        verified=None if cert is None else cert.get("status") == "verified",
                        success=success, verdict=verdict, target=kind, before=before, after=after,
                        certificate=cert, config=cfg)
