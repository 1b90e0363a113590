"""A repair method's problem, built from the session: one form per problem *type*, not per method.

The registry says which problem types a method takes (``nnmend.repair.get(name).problem``); the generic
repair page offers the forms of those types. A form asks for what the session cannot supply (a layer, a
pool size, a radius) and returns a :class:`Posed` problem whose ``build()`` runs inside the background job
(a PGD repair set takes a while), or one line saying why it does not apply to this session. A new method
whose problem type has a form here gets a page for free; one whose type has none is named as such.

Example::

    for form in forms_for(get("prorepair").problem):
        posed = form.render(wb, "original", net, "repair_prorepair")
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import streamlit as st
import torch
from torch import nn

from .state import Workbench


@dataclass(frozen=True)
class Posed:
    """A problem ready to build: ``build()`` makes it (in the job), ``note`` says what it is."""

    build: Callable[[], Any]
    note: str
    options: dict[str, Any] = field(default_factory=dict)    # harness options this problem implies


Render = Callable[[Workbench, str, nn.Module, str], "Posed | str"]


@dataclass(frozen=True)
class Form:
    """How to pose one problem type from the session."""

    title: str
    type_path: str            # "module:Class" of the problem type (imported only when a method names it)
    render: Render

    def problem_type(self) -> type:
        import importlib

        module, name = self.type_path.split(":")
        return getattr(importlib.import_module(module), name)


def _layer(wb: Workbench, net: nn.Module, key: str, label: str, default: str | None) -> str:
    from . import widgets as w

    return w.layer_select(net, label, key, default=default)


def _diagnosed(wb: Workbench, mode: str) -> str | None:
    return wb.diagnosis.localized if wb.diagnosis is not None and wb.diagnosis_mode == mode else None


def _structural(wb: Workbench, label: str, net: nn.Module, key: str) -> Posed | str:
    if wb.damaged is None or net is not wb.damaged:
        return ("structural healing replaces a damaged layer and learns it from the healthy network: "
                "choose the damaged network (damage a layer on the Damage page first)")
    from ..repair.adapters import StructuralProblem

    default = _diagnosed(wb, "structural") or wb.fault.layer
    layer = _layer(wb, net, f"{key}_layer", "layer to heal", default)
    train, reference = wb.train_data(), wb.model
    st.caption(f"localised layer: {_diagnosed(wb, 'structural') or '(not diagnosed)'}; damaged layer: {wb.fault.layer}")
    return Posed(lambda: StructuralProblem(layer, train, reference),
                 f"layer {layer}, trained on the {wb.dataset} training set against the original network",
                 {"test": wb.test_data()})


def _adversarial(wb: Workbench, label: str, net: nn.Module, key: str) -> Posed | str:
    from ..repair.adapters import AdversarialProblem

    layer = _layer(wb, net, f"{key}_layer", "layer to harden", _diagnosed(wb, "adversarial"))
    n_attack = int(st.number_input("test samples attacked for robust accuracy", 10, 10000, min(500, wb.n_eval),
                                   step=100, key=f"{key}_attack_n"))
    train = wb.train_data()
    return Posed(lambda: AdversarialProblem(layer, train), f"layer {layer} hardened on the {wb.dataset} training set",
                 {"test": wb.test_data(), "attack_n": n_attack})


def _pool(wb: Workbench, key: str, label: str, default: int) -> int:
    return int(st.number_input(label, 10, 60000, default, step=500, key=f"{key}_pool"))


def _labelled_pool(wb: Workbench, label: str, net: nn.Module, key: str) -> Posed | str:
    from ..repair.nnrepair import RepairProblem

    n = _pool(wb, key, "repair pool: first N training images (their true labels)", 3000)
    pool = wb.train_data().subset(n)
    return Posed(lambda: RepairProblem(pool.x, pool.y), f"the first {n} {wb.dataset} training images",
                 {"test": wb.test_data()})


def _points(wb: Workbench, label: str, net: nn.Module, key: str) -> Posed | str:
    from ..repair.prorepair import PointProblem

    n = _pool(wb, key, "repair pool: first N training images (misclassified ones are repaired, correct ones kept)", 2000)
    pool = wb.train_data().subset(n)

    def build() -> PointProblem:
        with torch.no_grad():
            wrong = net.eval()(pool.x).argmax(1) != pool.y
        if not bool(wrong.any()):
            from ..errors import RepairError

            raise RepairError(f"the network classifies all of the first {n} training images correctly: nothing to repair")
        return PointProblem(pool.x[wrong], pool.y[wrong], pool.x[~wrong][:1000], pool.y[~wrong][:1000])

    return Posed(build, f"the misclassified ones among the first {n} {wb.dataset} training images",
                 {"test": wb.test_data()})


def _repair_set(wb: Workbench, label: str, net: nn.Module, key: str) -> Posed | str:
    from ..repair.repair_sets import build_repair_set

    c = st.columns(3)
    n = int(c[0].number_input("neighbourhoods to repair (n)", 1, 1000, 10, key=f"{key}_n"))
    radius = float(c[1].number_input("L∞ radius r", 0.001, 1.0, 0.1, format="%.3f", key=f"{key}_radius"))
    seed = int(c[2].number_input("seed of the PGD samples", 0, 10**6, 0, key=f"{key}_seed"))
    pool = wb.train_data()
    return Posed(lambda: build_repair_set(net, pool, n=n, radius=radius, start=0, seed=seed, chunk=min(500, max(32, 4 * n))),
                 f"{n} PGD neighbourhoods of radius {radius:g} around {wb.dataset} training images "
                 "(10 held-out adversarial samples each for RGR)")


def _session_property(wb: Workbench, kinds: tuple[str, ...]) -> Any:
    prop = wb.prop
    if prop is None or prop["kind"] not in kinds:
        return None
    return prop


def _region(build: Callable[[Any, nn.Module], Any]) -> Render:
    def render(wb: Workbench, label: str, net: nn.Module, key: str) -> Posed | str:
        prop = _session_property(wb, ("region",))
        if prop is None:
            return ("needs a region property (a VNN-LIB file): read one for a session network on the Verify page; "
                    "it becomes the session's property")
        st.caption(f"property: **{prop['label']}** (from the Verify page)")
        return Posed(lambda: build(prop["property"], net), f"property {prop['label']}",
                     {"test": wb.test_data()})
    return render


def _guard_problem(prop: Any, net: nn.Module) -> Any:
    from ..properties import nnet_domain
    from ..repair.guard import GuardProblem

    if nnet_domain(net) is not None:
        return GuardProblem(prop)
    n = len(prop.regions[0].lo)
    return GuardProblem(prop, domain=(torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64)))


def _region_problem(prop: Any, net: nn.Module) -> Any:
    from ..repair.prorepair import RegionProblem

    return RegionProblem(prop)


def _ball(wb: Workbench, label: str, net: nn.Module, key: str) -> Posed | str:
    prop = _session_property(wb, ("robustness",))
    if prop is None:
        return "needs a local-robustness property: pose one for a session network on the Verify page"
    st.caption(f"property: **{prop['label']}** (from the Verify page)")
    return Posed(lambda: prop["property"], f"property {prop['label']}")


def _nca(wb: Workbench, label: str, net: nn.Module, key: str) -> Posed | str:
    from ..repair.nca import NCAProblem

    rules = wb.artefacts.get("nca_rules", {})
    if not rules:
        return "needs a rule trained on the clean layer: train one on the NCA page (step 1)"
    layer = st.selectbox("layer (a trained rule)", list(rules), key=f"{key}_layer")
    informed = wb.fault is not None and wb.damaged is net and st.checkbox(
        "informed: trust the cells the recorded fault left unchanged", key=f"{key}_informed")
    mask = None
    if informed:
        from ..nets import get_layer

        mask = get_layer(wb.damaged, layer).weight.detach() == get_layer(wb.model, layer).weight.detach()
    rule = rules[layer]
    return Posed(lambda: NCAProblem(layer, rule, mask), f"layer {layer}, {'informed' if informed else 'blind'}",
                 {"test": wb.test_data()})


#: every problem type the workbench can pose, in the order offered
FORMS: tuple[Form, ...] = (
    Form("damaged layer, healthy network as reference", "nnmend.repair.adapters:StructuralProblem", _structural),
    Form("layer to harden against the attack", "nnmend.repair.adapters:AdversarialProblem", _adversarial),
    Form("labelled repair pool", "nnmend.repair.nnrepair:RepairProblem", _labelled_pool),
    Form("misclassified inputs (point-wise)", "nnmend.repair.prorepair:PointProblem", _points),
    Form("adversarial neighbourhoods (local robustness)", "nnmend.repair.repair_sets:RepairSet", _repair_set),
    Form("the session's local-robustness property", "nnmend.properties:LocalRobustness", _ball),
    Form("the session's region property", "nnmend.properties:SafetyProperty", _region(lambda p, net: p)),
    Form("the session's region property (region-wise)", "nnmend.repair.prorepair:RegionProblem", _region(_region_problem)),
    Form("the session's region property (output guard)", "nnmend.repair.guard:GuardProblem", _region(_guard_problem)),
    Form("a trained NCA rule", "nnmend.repair.nca:NCAProblem", _nca),
)


def forms_for(problem_types: tuple[type, ...]) -> list[Form]:
    """The forms that pose one of ``problem_types`` (a method's registered problem types)."""
    out = []
    for form in FORMS:
        try:
            t = form.problem_type()
        except ImportError:
            continue
        if any(isinstance(t, type) and issubclass(t, want) for want in problem_types):
            out.append(form)
    return out
