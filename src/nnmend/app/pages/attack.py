"""Attack: FGSM / PGD with ε on any of the session's networks; clean vs adversarial images and predictions."""
from __future__ import annotations

import streamlit as st

from nnmend.app import charts
from nnmend.app import widgets as w
from nnmend.app.registry import PageSpec
from nnmend.app.state import workbench

PAGE = PageSpec("Attack", section="Evaluate", order=60, icon=":material/bolt:", summary="white-box FGSM / PGD on any network")
N_SHOW = 8


def _attack(spec, label: str, net, x, y) -> dict:
    from nnmend.nets import predict
    from nnmend.train import accuracy

    adv = spec.run(net, x, y)
    return {"clean": accuracy(net, (x, y)), "adversarial": accuracy(net, (adv, y)), "x": x[:N_SHOW], "x_adv": adv[:N_SHOW],
            "y": y[:N_SHOW], "pred": predict(net, x[:N_SHOW]), "pred_adv": predict(net, adv[:N_SHOW]),
            "linf": float((adv - x).abs().amax()) if len(x) else 0.0, "network": label, "attack": spec.describe(),
            "n": len(x)}


def render() -> None:
    wb = workbench()
    st.title("Attack")
    w.need_model(wb)
    label, net = w.network_select(wb, "network to attack", "attack_network")
    spec = w.attack_options("attack")
    n = st.number_input("test samples", 1, 10000, min(1000, wb.n_eval), step=100, key="attack_n")
    if st.button("Attack", key="attack_run", type="primary", disabled=w.busy("attack")):
        with w.guard("Attack"):
            test = wb.test_data().subset(int(n))
            w.start_job("attack", f"{spec.describe()} on {label}", _attack, spec, label, net, test.x, test.y)
    job = w.job_panel("attack")
    if job is not None:
        wb.attack = job.value
        wb.events.append(f"attack: {wb.attack['attack']} on {wb.attack['network']}: accuracy "
                         f"{100 * job.value['clean']:.2f}% -> {100 * job.value['adversarial']:.2f}%")
    a = wb.attack
    if a is None:
        return
    st.subheader(f"{a['attack']} on {a['network']}")
    c = st.columns(3)
    c[0].metric("clean accuracy", f"{100 * a['clean']:.2f}%")
    c[1].metric("adversarial accuracy", f"{100 * a['adversarial']:.2f}%",
                delta=f"{100 * (a['adversarial'] - a['clean']):+.2f} pts")
    c[2].metric("largest perturbation (L∞)", f"{a['linf']:.3f}")
    st.caption(f"white-box, on the first {a['n']} test samples; first {len(a['y'])} shown (label → prediction)")
    cols = st.columns(len(a["y"]))
    for i, col in enumerate(cols):
        col.image(charts.image_grid(a["x"][i:i + 1])[0], caption=f"clean {int(a['y'][i])}→{int(a['pred'][i])}",
                  clamp=True, width="stretch")
        col.image(charts.image_grid(a["x_adv"][i:i + 1])[0], caption=f"adv {int(a['y'][i])}→{int(a['pred_adv'][i])}",
                  clamp=True, width="stretch")


if __name__ == "__main__":
    render()
