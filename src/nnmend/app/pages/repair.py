"""Repair: every registered method on one page, driven by the repair registry.

Pick a method (:func:`nnmend.repair.methods`); its options are its config dataclass's fields (types,
defaults and docstring help from the class); its problem is posed from the session by the form of its
problem type (:mod:`nnmend.app.problems`). The run goes through the harness, :func:`nnmend.repair.run`, as a
cancellable background job; the page shows the harness's verdict first, then its metrics, and offers the
repaired network for download. No method logic lives here.
"""
from __future__ import annotations

import streamlit as st

from nnmend.app import widgets as w
from nnmend.app.registry import PageSpec
from nnmend.app.state import workbench

PAGE = PageSpec("Repair", section="Repair", order=39, icon=":material/build:", requires=("nnmend.repair",),
                summary="any registered repair method, options from its config")
KEY = "repair"
HARNESS_FIELDS = ("max_drawdown", "attack", "attack_steps", "square_queries", "seed")


def _default_network(target: str) -> str:
    """Structural damage is repaired on the damaged network; everything else on the original (or latest)."""
    return "damaged" if target == "accuracy" else "original"


def _run(method: str, network, posed, config, options: dict):
    from nnmend.app.jobs import stage
    from nnmend.repair import run

    stage(f"posing the problem: {posed.note}", 0, 2, level="problem")
    problem = posed.build()
    stage(f"{method} through the harness", 1, 2, level="problem")
    return run(method, network, problem, config, **options)


def _config(spec, key: str):
    """The method's config from a form over every editable field; an attack spec gets the attack widgets."""
    import dataclasses

    from nnmend.app import forms
    from nnmend.attacks import AttackSpec

    base = spec.config()
    fixed = forms.fixed_fields(spec.config)
    with st.expander(f"options: {spec.config.__name__} (the method's defaults)", expanded=True):
        cfg = w.config_form(spec.config, f"{key}_{spec.name}")
        extra = {}
        for name in fixed:
            if isinstance(getattr(base, name), AttackSpec):
                st.caption(f"{name}:")
                extra[name] = w.attack_options(f"{key}_{spec.name}_{name}")
        rest = [n for n in fixed if n not in extra]
        if rest:
            st.caption("kept at their defaults (not editable here): " + ", ".join(rest))
    return dataclasses.replace(cfg, **extra) if extra else cfg


def _harness_options(key: str) -> dict:
    """A few of the harness's measurement options (:class:`nnmend.repair.RunOptions`)."""
    from nnmend.repair import RunOptions

    with st.expander("how the harness measures (RunOptions)"):
        opts = w.config_form(RunOptions, f"{key}_harness", [f for f in HARNESS_FIELDS])
    return {f: getattr(opts, f) for f in HARNESS_FIELDS}


def render() -> None:
    from nnmend.app.problems import forms_for
    from nnmend.repair import get, methods

    wb = workbench()
    st.title("Repair")
    st.caption("Every registered method: options from its config dataclass, the problem from the session, "
               "success decided by the harness on the saved and reloaded network.")
    w.need_model(wb)
    names = list(methods())
    method = st.selectbox("method", names, index=names.index("shnn") if "shnn" in names else 0, key=f"{KEY}_method",
                          format_func=lambda n: f"{n} — {get(n).summary}" if get(n).summary else n)
    spec, job = get(method), f"{KEY}_{method}"        # one job per method: its progress or error stays with it
    target = spec.target if isinstance(spec.target, str) else "depends on the problem"
    label, net = w.network_select(wb, "network to repair", f"{KEY}_network_{method}",
                                  prefer=_default_network(spec.target if isinstance(spec.target, str) else ""))
    st.caption(f"target: {target}; problem types: {', '.join(t.__name__ for t in spec.problem)}")
    forms = forms_for(spec.problem)
    if not forms:
        st.info(f"{method}: the workbench cannot pose a {' or '.join(t.__name__ for t in spec.problem)} from a session")
        return
    titles = [f.title for f in forms]
    chosen = forms[titles.index(st.radio("problem", titles, key=f"{KEY}_problem_{method}"))] if len(forms) > 1 else forms[0]
    with w.guard(f"Posing the {method} problem"):
        posed = chosen.render(wb, label, net, f"{KEY}_{method}_problem")
        if isinstance(posed, str):
            st.info(f"{method} does not apply here: {posed}")
        else:
            cfg = _config(spec, KEY)
            options = {**posed.options, **_harness_options(f"{KEY}_{method}")}
            if st.button("Repair", key=f"{KEY}_run", type="primary", disabled=w.busy(job)):
                w.start_repair(wb, job, method, label, net, lambda: _run(method, net, posed, cfg, options),
                               note=f"problem: {posed.note}")
    rec = w.collect_repair(wb, job, method)
    if rec is not None:
        w.show_repair(rec, wb.n_eval, key=job)


if __name__ == "__main__":
    render()
