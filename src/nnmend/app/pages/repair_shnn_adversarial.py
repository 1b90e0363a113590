"""Repair · SHNN adversarial patch: a Linear→ReLU→Linear patch at the most affected layer, trained on
clean and adversarial inputs with everything else frozen (paper 000, Sec. III-D)."""
from __future__ import annotations

import streamlit as st

from nnmend.app import widgets as w
from nnmend.app.registry import PageSpec
from nnmend.app.state import workbench

PAGE = PageSpec("SHNN adversarial patch", section="Repair", order=41, icon=":material/shield:", requires=("nnmend.repair.patch_layer",),
                summary="harden the most affected layer against FGSM / PGD (SHNN)")
TITLE = "SHNN adversarial patch"


def render() -> None:
    from nnmend.repair import run
    from nnmend.repair.adapters import AdversarialProblem
    from nnmend.repair.patch_layer import PatchAdvConfig

    wb = workbench()
    st.title("Repair · SHNN adversarial patch")
    st.caption(" ".join(__doc__.split(":", 1)[1].split()))
    w.need_model(wb)
    spec = w.attack_options("adv")
    default = wb.diagnosis.localized if wb.diagnosis_mode == "adversarial" and wb.diagnosis is not None else None
    base = PatchAdvConfig()
    c = st.columns(3)
    with c[0]:
        layer = w.layer_select(wb.model, "layer to patch", "adv_layer", default=default)
    adversary = c[1].selectbox("adversary", ["original", "current"], key="adv_adversary",
                               help="original: adversarial inputs crafted once on the original network (the paper); "
                                    "current: re-crafted every epoch against the network being healed")
    residual = c[2].checkbox("residual patch (added to the frozen layer)", base.residual, key="adv_residual")
    c = st.columns(4)
    n_samples = c[0].number_input("clean training samples", 100, 60000, base.n_samples, step=1000, key="adv_n")
    epochs = c[1].number_input("epochs", 1, 100, base.epochs, key="adv_epochs")
    n_attack = c[2].number_input("evaluation samples attacked", 10, 10000, min(1000, wb.n_eval), step=100, key="adv_n_eval",
                                 help="robust accuracy: a fresh white-box attack on each network")
    seed = c[3].number_input("seed", 0, 10**6, base.seed, key="adv_seed")
    st.caption(f"localised layer (adversarial diagnosis): {default or '(not diagnosed)'}")
    if st.button("Harden", key="adv_run", type="primary", disabled=w.busy("adv")):
        with w.guard("SHNN adversarial patch"):
            from nnmend.attacks import robust_accuracy

            cfg = PatchAdvConfig(attack=spec, adversary=adversary, residual=bool(residual), n_samples=int(n_samples),
                                 epochs=int(epochs), seed=int(seed))
            net, train, test = wb.model, wb.train_data(), wb.test_data().subset(int(n_attack))

            def evaluate(m):
                return {"robust_accuracy": robust_accuracy(m, test.x, test.y, spec)}

            # the harness's figure is the strongest of white-box PGD, transfer and Square; the page's own is the spec's attack
            w.start_repair(wb, "adv", TITLE, "original", net,
                           lambda: run("shnn_adversarial", net, AdversarialProblem(layer, train), cfg, test=test,
                                       attack_n=int(n_attack)), evaluate,
                           note=f"robust accuracy: {spec.describe()}, white-box on each whole network, "
                                f"first {int(n_attack)} test samples")
    rec = w.collect_repair(wb, "adv", TITLE)
    if rec is None:
        return
    _verdict(rec.result)
    w.show_repair(rec, wb.n_eval)


def _verdict(result) -> None:
    """The harness's verdict first (nnmend.repair.run decides success, not the method)."""
    if result.verdict:
        (st.success if result.success else st.warning)(result.verdict)


if __name__ == "__main__":
    render()
