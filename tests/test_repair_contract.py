"""The contract every registered repair method inherits (scikit-learn's estimator checks are the model).

For each method in :func:`nnmend.repair.methods`, on a tiny problem (tests/_repair_cases.py), through the
harness :func:`nnmend.repair.run`: the input network is unchanged; the result runs, saves, reloads and
exports to ONNX; the same seed gives the same result; a bad problem is a clear error; success is decided by
the harness, whatever the method claims.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _repair_cases import case  # noqa: E402

from nnmend.errors import RepairError  # noqa: E402
from nnmend.io import load_network, save_network  # noqa: E402
from nnmend.metrics import METRICS  # noqa: E402
from nnmend.nets import clone  # noqa: E402
from nnmend.repair import RepairResult, get, methods, register, run  # noqa: E402
from nnmend.repair import registry  # noqa: E402

torch.set_num_threads(1)
METHODS = methods()
PROBE = torch.rand(64, 2, generator=torch.Generator().manual_seed(11))
_RUNS: dict = {}


def _run(method: str):
    """The method's case and its result, run once per session (the determinism test runs it again)."""
    if method not in _RUNS:
        net, prob, cfg, opts = case(method)
        state = {k: v.clone() for k, v in net.state_dict().items()}
        _RUNS[method] = (net, prob, cfg, opts, state, run(method, net, prob, cfg, **opts))
    return _RUNS[method]


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def test_every_shipped_method_is_registered_with_its_shape():
    assert set(METHODS) >= {"shnn", "shnn_adversarial", "nnrepair", "nca", "patchpro", "prorepair", "guard"}
    for name in METHODS:
        m = get(name)
        assert m.name == name and m.problem and m.options(), name
        assert callable(m.repair)


@pytest.mark.parametrize("method", METHODS)
def test_input_network_is_unchanged(method):
    net, _, _, _, state, res = _run(method)
    assert not net.training
    assert state.keys() == net.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items()), f"{method} changed its input"
    assert res.network is not net


@pytest.mark.parametrize("method", METHODS)
def test_result_runs_saves_reloads_and_exports_to_onnx(method, tmp_path):
    import onnxruntime as ort

    res = _run(method)[-1]
    assert isinstance(res, RepairResult) and res.method == method
    with torch.no_grad():
        y = res.network(PROBE)
    assert y.shape == (64, 2) and torch.isfinite(y).all()
    save_network(res.network, tmp_path / "r.pt")
    with torch.no_grad():
        assert torch.equal(load_network(tmp_path / "r.pt")(PROBE), y)
    save_network(res.network, tmp_path / "r.onnx", input_shape=(2,))
    sess = ort.InferenceSession(str(tmp_path / "r.onnx"), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: PROBE.numpy()})[0]
    assert torch.allclose(torch.as_tensor(out), y, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_result_exports_to_piecewise_linear_onnx_or_says_why_not(method, tmp_path):
    """What external verifiers read (nnmend.repair.export_pwl): only piecewise-linear operators, equal to the
    network where the export says so; a construction with no continuous form is refused by name."""
    from nnmend.repair.export_pwl import PWL_OPS, NotExpressible, equivalence, onnx_ops, save_pwl_onnx, to_pwl

    res = _run(method)[-1]
    try:
        exp = to_pwl(res.network)
    except NotExpressible as exc:
        assert "ExpertEnsemble" in str(exc) and "argmax" in str(exc), exc     # the one known discontinuous rule
        return
    path = save_pwl_onnx(exp, tmp_path / "r.onnx", (2,))
    assert set(onnx_ops(path)) <= PWL_OPS
    eq = equivalence(res.network, exp, path, (2,), n=64, boxes=[(torch.zeros(2), torch.ones(2))])
    assert eq["points"] >= 64 and eq["max_abs_diff"] <= 1e-5 * max(1.0, eq["scale"]), eq


@pytest.mark.parametrize("method", METHODS)
def test_harness_fills_one_record_with_named_metrics(method):
    res = _run(method)[-1]
    assert res.verdict.startswith(("OK", "FAILED")) and method in res.verdict
    assert isinstance(res.success, bool) and res.target in registry.TARGETS
    assert set(res.metrics) <= set(METRICS), "every figure is named in nnmend.metrics.METRICS"
    assert res.success == res.verdict.startswith("OK")
    if res.target in ("property", "robustness"):
        assert res.verified == (res.certificate["status"] == "verified")
        assert res.success <= res.verified, "a property repair that is not proved is not a success"
    else:
        assert res.verified is None and res.certificate is None
    for k in ("rsr", "rsr_before", "accuracy", "dsr", "proved", "fdd"):
        if k in res.metrics and not math.isnan(res.metrics[k]):
            assert 0.0 <= res.metrics[k] <= 100.0, f"{k} is a percentage"


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_result(method):
    net, prob, cfg, opts, _, first = _run(method)
    again = run(method, net, prob, cfg, **opts)
    with torch.no_grad():
        assert torch.equal(first.network(PROBE), again.network(PROBE))
    keys = set(first.metrics) - {"seconds"}
    assert keys == set(again.metrics) - {"seconds"}
    assert all(_same(first.metrics[k], again.metrics[k]) for k in keys), method
    assert first.success == again.success and first.verified == again.verified


@pytest.mark.parametrize("method", METHODS)
def test_bad_problem_and_bad_options_are_clear_errors(method):
    net = case("guard")[0]
    with pytest.raises(RepairError, match=rf"{method}: problem must be a .*got object"):
        run(method, net, object())
    with pytest.raises(RepairError, match=rf"{method}: unknown option\(s\) no_such_option"):
        run(method, net, object(), no_such_option=1)
    with pytest.raises(RepairError, match=rf"{method}: config must be a {get(method).config.__name__}"):
        run(method, net, case(method)[1], config=object())
    with pytest.raises(RepairError, match=rf"{method}: network must be a torch.nn.Module"):
        run(method, "net.pt", case(method)[1])


@pytest.mark.parametrize("method", METHODS)
def test_success_is_decided_by_the_harness_not_the_method(method, monkeypatch):
    """A method that returns its input unchanged and claims a proof and a perfect RSR is graded on what it did."""
    net, prob, cfg, opts, _, _ = _run(method)

    def liar(network, problem, config):
        return RepairResult(clone(network), method, 0.0, {"rsr": 100.0, "dsr": 100.0}, {}, verified=True, success=True)

    spec = get(method)
    monkeypatch.setitem(registry._REGISTRY, method, registry.Method(method, spec.problem, spec.config, liar,
                                                                    spec.target, spec.summary, spec.certifier))
    res = run(method, net, prob, cfg, **opts)
    assert res.success is False and res.verdict.startswith("FAILED"), res.verdict
    assert res.verified is not True
    assert res.metrics.get("rsr") == res.metrics.get("rsr_before") and res.metrics.get("dsr") == res.metrics.get("dsr_before")


def test_unknown_method_and_a_method_that_edits_its_input_are_refused(monkeypatch):
    net, prob, cfg, opts = case("guard")
    with pytest.raises(RepairError, match="unknown repair method 'nope'; known: .*guard"):
        run("nope", net, prob)

    def vandal(network, problem, config):
        with torch.no_grad():
            next(network.parameters()).add_(1.0)
        return RepairResult(network, "vandal", 0.0)

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register("vandal", type(prob), type(cfg), vandal, target="property")
    with pytest.raises(RepairError, match="'vandal' changed the weights of its input network"):
        run("vandal", clone(net), prob, cfg, **opts)
    with pytest.raises(RepairError, match="already registered"):
        register("vandal", type(prob), type(cfg), vandal, target="property")
    with pytest.raises(RepairError, match="target 'size' is not one of"):
        register("other", type(prob), type(cfg), vandal, target="size")
