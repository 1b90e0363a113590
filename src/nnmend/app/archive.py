"""The session as files: its report (:class:`nnmend.report.Report`: JSON, Markdown, one self-contained HTML
page), PNG figures (:mod:`nnmend.plots`) and every network as a weights-only checkpoint, in one zip.

Layout of the archive::

    report.json  report.md  report.html      the session: one row per network, the log, diagnosis, ...
    figures/*.png                            accuracy per network, diagnosis, weights, attack
    networks/<name>.pt                       original, damaged, each repaired network (weights only)
    MANIFEST.txt                             every file with its size

Example::

    data, names = session_archive(wb)      # bytes of the zip, the names inside it
"""
from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

from .state import Workbench


def session_report(wb: Workbench):
    """The session as an :class:`nnmend.report.Report`: one row per network, the log as notes."""
    from ..report import Report

    rep = Report(f"nnmend workbench: {wb.model_label} on {wb.dataset}",
                 columns=["network", "step", "accuracy", "before", "seconds", "verified", "verdict"])
    rep.add_row({"network": "original", "step": "load", "accuracy": wb.clean_accuracy})
    if wb.damaged is not None:
        rep.add_row({"network": "damaged", "step": "damage", "accuracy": wb.damaged_accuracy, "before": wb.clean_accuracy,
                     "fault": wb.fault.to_dict()})
    for title, rec in wb.repairs.items():
        rep.add_row({"network": f"repaired: {title}", "step": f"repair ({rec.result.method}) of {rec.source}",
                     "accuracy": rec.after["accuracy"], "before": rec.before["accuracy"], "seconds": round(rec.result.seconds, 2),
                     "verified": rec.result.verified, "verdict": rec.result.verdict, "metrics": rec.result.metrics,
                     "figures_before": rec.before, "figures_after": rec.after, "details": rec.result.details, "note": rec.note})
    if wb.diagnosis is not None:
        rep.extra["diagnosis"] = {"mode": wb.diagnosis_mode, **wb.diagnosis.to_dict()}
    if wb.attack is not None:
        rep.extra["attack"] = {k: wb.attack[k] for k in ("network", "attack", "n", "clean", "adversarial", "linf")}
    if wb.verify is not None:
        r = wb.verify["result"]
        rep.extra["verify"] = {"network": wb.verify["network"], "status": r.status, "seconds": r.seconds}
    rep.extra["evaluation_samples"] = wb.n_eval
    rep.notes = list(wb.events)
    return rep


def _figures(wb: Workbench, rep, folder: Path) -> None:
    """Write the session's figures into ``folder / "figures"`` and list them in ``rep``."""
    from .. import plots
    from ..nets import get_layer, named_layers

    figs = folder / "figures"
    figs.mkdir()
    rows = [{"scenario": r["network"], "accuracy": r["accuracy"]} for r in rep.rows if r.get("accuracy") is not None]
    if rows:
        plots.accuracy_bars(rows, figs / "accuracy.png", keys=("accuracy",), title="clean accuracy per network")
        rep.add_figure("figures/accuracy.png", f"clean accuracy of each network ({wb.n_eval} {wb.dataset} test samples)")
    d = wb.diagnosis
    if d is not None:
        true = wb.fault.layer if wb.diagnosis_mode == "structural" and wb.fault is not None else None
        scores = d.mad if d.metric == "mad" else d.mse
        plots.layer_bars(scores, figs / "diagnosis.png", localized=d.localized, true_layer=true, threshold=d.threshold,
                         ylabel=d.metric.upper(), title=f"{wb.diagnosis_mode} diagnosis: localised {d.localized}")
        rep.add_figure("figures/diagnosis.png", f"{wb.diagnosis_mode} diagnosis ({d.metric.upper()} per layer)")
    if wb.fault is not None:
        layer = wb.fault.layer
        for title, rec in wb.repairs.items():
            if layer in named_layers(rec.result.network):
                name = "weights_" + "".join(ch if ch.isalnum() else "_" for ch in title.lower()) + ".png"
                plots.weight_histograms(get_layer(wb.model, layer).weight, get_layer(wb.damaged, layer).weight,
                                        get_layer(rec.result.network, layer).weight, figs / name,
                                        title=f"{layer}: healthy / damaged / {title}")
                rep.add_figure(f"figures/{name}", f"weights of {layer}: healthy, damaged, repaired by {title}")
    a = wb.attack
    if a is not None:
        plots.image_pairs(a["x"], a["x_adv"], [int(p) for p in a["pred"]], [int(p) for p in a["pred_adv"]], figs / "attack.png",
                          title=f"{a['attack']} on {a['network']}")
        rep.add_figure("figures/attack.png", f"{a['attack']} on {a['network']}: clean and adversarial predictions")


def session_archive(wb: Workbench) -> tuple[bytes, list[str]]:
    """The zip of the session (see the module docstring) and the names of the files in it."""
    from ..io import save_network
    from .widgets import file_stem

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rep = session_report(wb)
        _figures(wb, rep, folder)
        (folder / "networks").mkdir()
        for label, net in wb.networks().items():
            save_network(net, folder / "networks" / f"{file_stem(label)}.pt")
        rep.write(folder)
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        manifest = "\n".join(f"{p.relative_to(folder).as_posix()}\t{p.stat().st_size} bytes" for p in files) + "\n"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for p in files:
                z.write(p, p.relative_to(folder).as_posix())
            z.writestr("MANIFEST.txt", manifest)
        return buf.getvalue(), [p.relative_to(folder).as_posix() for p in files] + ["MANIFEST.txt"]
