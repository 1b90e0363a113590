"""Building blocks shared by the pages: error boxes, pickers, background-job panels, repair results.

Every page is built from these, so a method page is only its options and the one API call it makes.
"""
from __future__ import annotations

import traceback
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

import streamlit as st
from torch import nn

from ..errors import NnmendError
from ..nets import named_layers
from ..train import accuracy
from . import jobs
from .forms import config_form  # noqa: F401  (pages use it through widgets)
from .state import RepairRecord, Workbench

JOBS_KEY = "nnmend_jobs"


# -- errors --------------------------------------------------------------------------------------
def show_error(what: str, exc: BaseException, trace: str = "") -> None:
    """An error box naming the problem; unexpected errors also get their traceback, folded away."""
    if isinstance(exc, NnmendError):
        st.error(f"{what}: {exc}")
        return
    st.error(f"{what} failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    with st.expander("details"):
        st.code(trace or "".join(traceback.format_exception(exc)))


@contextmanager
def guard(what: str) -> Iterator[None]:
    """Run the block; any error becomes an error box in the page instead of stopping the app."""
    try:
        yield
    except Exception as exc:  # Streamlit's rerun/stop signals are BaseExceptions and pass through
        show_error(what, exc)


# -- preconditions and pickers -------------------------------------------------------------------
def need_model(wb: Workbench) -> None:
    if wb.model is None:
        st.info("No network loaded yet: pick, train or upload one on the **Model** page.")
        st.stop()


def need_damaged(wb: Workbench) -> None:
    need_model(wb)
    if wb.damaged is None:
        st.info("Nothing is damaged yet: damage a layer on the **Damage** page first.")
        st.stop()


def layer_select(net: nn.Module, label: str, key: str, default: str | None = None) -> str:
    names = list(named_layers(net))
    index = names.index(default) if default in names else 0
    return st.selectbox(label, names, index=index, key=key)


NETWORK_DEFAULTS = ("latest", "original", "damaged")


def default_network(wb: Workbench, prefer: str = "latest") -> str:
    """The label a user means by default: ``latest`` = the latest repaired network, else the original;
    ``damaged`` = the damaged one, else the latest; ``original`` = the original."""
    labels = list(wb.networks())
    repaired = [n for n in labels if n.startswith("repaired: ")]
    damaged = [n for n in labels if n.startswith("damaged")]
    if prefer == "damaged" and damaged:
        return damaged[0]
    if prefer == "latest" and repaired:
        return repaired[-1]
    return labels[0]


def network_select(wb: Workbench, label: str, key: str, prefer: str = "latest") -> tuple[str, nn.Module]:
    """A selector over the session's networks (original / damaged / repaired), starting at what a user means
    (:func:`default_network`); the page then names the network it acts on."""
    if prefer not in NETWORK_DEFAULTS:
        raise ValueError(f"prefer={prefer!r}: one of {', '.join(NETWORK_DEFAULTS)}")
    nets = wb.networks()
    labels = list(nets)
    name = st.selectbox(label, labels, index=labels.index(default_network(wb, prefer)), key=key)
    acts_on(name)
    return name, nets[name]


def acts_on(label: str, what: str = "acts on") -> None:
    """One line naming the network the page works on."""
    st.caption(f"{what}: **{label}**")


def attack_options(prefix: str, *, detailed: bool = True):
    """FGSM / PGD settings, starting from the SHNN code's (FGSM ε 0.15; PGD ε 0.2, α 0.01, 30 steps)."""
    from dataclasses import replace

    from ..attacks import SHNN_FGSM, SHNN_PGD

    c = st.columns(5 if detailed else 2)
    kind = c[0].selectbox("attack", ["fgsm", "pgd"], key=f"{prefix}_attack")
    base = SHNN_FGSM if kind == "fgsm" else SHNN_PGD
    eps = c[1].number_input("ε (L∞)", 0.001, 1.0, base.eps, step=0.01, format="%.3f", key=f"{prefix}_eps_{kind}")
    spec = replace(base, eps=float(eps))
    if detailed and kind == "pgd":
        steps = c[2].number_input("steps", 1, 1000, base.steps, key=f"{prefix}_steps")
        alpha = c[3].number_input("step size α", 0.0001, 1.0, base.alpha, format="%.4f", key=f"{prefix}_alpha")
        random_start = c[4].checkbox("random start", base.random_start, key=f"{prefix}_random_start")
        spec = replace(spec, steps=int(steps), alpha=float(alpha), random_start=bool(random_start))
    return spec


def model_badge(wb: Workbench) -> None:
    """One line in the sidebar: what the session is working on."""
    if wb.model is None:
        st.sidebar.caption("no network loaded")
        return
    st.sidebar.caption(f"**{wb.model_label}** on {wb.dataset} · clean {100 * wb.clean_accuracy:.2f}%"
                       + (f" · damaged {100 * wb.damaged_accuracy:.2f}%" if wb.damaged is not None else "")
                       + (f" · {len(wb.repairs)} repair(s)" if wb.repairs else ""))


# -- background jobs -----------------------------------------------------------------------------
def _jobs() -> dict[str, jobs.Job]:
    if JOBS_KEY not in st.session_state:
        st.session_state[JOBS_KEY] = {}
    return st.session_state[JOBS_KEY]


def busy(key: str) -> bool:
    job = _jobs().get(key)
    return job is not None and not job.done


def start_job(key: str, label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> jobs.Job:
    """Start ``fn`` in the background under ``key`` (one job per key: a second click while it runs is ignored)."""
    if busy(key):
        return _jobs()[key]
    job = jobs.submit(label, fn, *args, **kwargs)
    _jobs()[key] = job
    return job


@st.fragment(run_every=0.5)
def _poll(key: str) -> None:
    job = _jobs().get(key)
    if job is None or job.done:
        st.rerun()  # the whole page, so it shows the result
    if job.fraction is not None:
        st.progress(min(max(job.fraction, 0.0), 1.0), text=job.text)
    else:   # no loop with a known length is open: say what runs and for how long, no bar that lies
        st.caption(f"⏳ {job.text}")
    if st.button("Cancel", key=f"{key}_cancel", help="stop this job at its next progress step"):
        job.cancel()


def job_panel(key: str) -> jobs.Job | None:
    """Progress and a cancel button while the job under ``key`` runs, an error box if it failed, a note if
    it was cancelled; the finished job once."""
    job = _jobs().get(key)
    if job is None:
        return None
    if not job.done:
        _poll(key)
        return None
    if job.cancelled:
        st.info(str(job.error))
        return None
    if job.error is not None:
        show_error(job.label, job.error, job.trace)
        return None
    if job.collected:
        return None
    job.collected = True
    return job


# -- repairs -------------------------------------------------------------------------------------
def _measure(net: nn.Module, test, evaluate: Callable[[nn.Module], Mapping[str, float]] | None) -> dict[str, float]:
    return {"accuracy": accuracy(net, test), **(dict(evaluate(net)) if evaluate else {})}


def _repair_job(title: str, source: str, net: nn.Module, call: Callable[[], Any], test,
                evaluate: Callable[[nn.Module], Mapping[str, float]] | None, note: str) -> RepairRecord:
    jobs.stage("repair (the harness repairs, saves, reloads, certifies and measures)", 0, 2, level="repair")
    result = call()
    jobs.stage("accuracy before and after", 1, 2, level="repair")
    return RepairRecord(title, source, result, _measure(net, test, evaluate), _measure(result.network, test, evaluate), note)


def start_repair(wb: Workbench, key: str, title: str, source: str, net: nn.Module, call: Callable[[], Any],
                 evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None, note: str = "") -> None:
    """Run ``call() -> RepairResult`` (through :func:`nnmend.repair.run`) in the background, then measure the
    network before and after.

    ``evaluate(network) -> {name: value in [0, 1]}`` adds figures beyond accuracy (e.g. robust accuracy).
    """
    start_job(key, title, _repair_job, title, source, net, call, wb.test_data(), evaluate, note)


def collect_repair(wb: Workbench, key: str, title: str) -> RepairRecord | None:
    """Show the repair job's progress; when it has finished, store its record in the workbench."""
    job = job_panel(key)
    if job is not None:
        rec: RepairRecord = job.value
        wb.repairs.pop(rec.title, None)          # re-inserted last: the latest repair is the default elsewhere
        wb.repairs[rec.title] = rec
        wb.events.append(f"repair: {rec.title} on {rec.source} in {rec.result.seconds:.1f} s, accuracy "
                         f"{100 * rec.before['accuracy']:.2f}% -> {100 * rec.after['accuracy']:.2f}%"
                         + (f"; {rec.result.verdict}" if rec.result.verdict else ""))
    return wb.repairs.get(title)


def certificate(verified: bool | None) -> None:
    if verified is True:
        st.success("certificate: verified (sound bounds prove every property on the repaired network)")
    elif verified is False:
        st.warning("certificate: NOT verified (the bounds could not prove every property)")
    else:
        st.info("certificate: none (this method makes no proof claim; figures below are measured)")


def verdict(result) -> None:
    """The harness's verdict (nnmend.repair.run decides success, not the method)."""
    if result.verdict:
        (st.success if result.success else st.warning)(result.verdict)


def metrics_table(result) -> list[dict]:
    """The harness's figures, one row each, with their units and meaning (:data:`nnmend.metrics.METRICS`)."""
    from ..metrics import METRICS

    rows = []
    for name, value in result.metrics.items():
        if isinstance(value, (dict, list, tuple)):
            continue
        unit, meaning = METRICS.get(name, ("", ""))
        rows.append({"metric": name, "value": value if not isinstance(value, float) else round(value, 4),
                     "unit": unit, "meaning": meaning})
    return rows


def network_bytes(net: nn.Module, stem: str) -> dict[str, bytes]:
    """The network as a weights-only checkpoint (``stem.pt``), in memory."""
    import tempfile
    from pathlib import Path

    from ..io import save_network

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{stem}.pt"
        save_network(net, path)
        return {path.name: path.read_bytes()}


def file_stem(label: str) -> str:
    """A file name for a network label (``repaired: SHNN patch`` → ``repaired_shnn_patch``)."""
    import re

    return re.sub(r"[^a-z0-9]+", "_", label.replace("repaired: ", "repaired_").split(" (")[0].lower()).strip("_")


def show_repair(rec: RepairRecord, n_eval: int, key: str = "") -> None:
    """The verdict first, then before/after figures, the certificate, the harness's metrics and a download."""
    st.subheader(f"Result: {rec.title}")
    verdict(rec.result)
    st.caption(f"on {rec.source}; measured on {n_eval} test samples; repair took {rec.result.seconds:.1f} s")
    cols = st.columns(len(rec.after))
    for col, (name, after) in zip(cols, rec.after.items()):
        before = rec.before.get(name)
        col.metric(f"{name.replace('_', ' ')} after", f"{100 * after:.2f}%",
                   delta=None if before is None else f"{100 * (after - before):+.2f} pts (before {100 * before:.2f}%)")
    if rec.note:
        st.caption(rec.note)
    certificate(rec.result.verified)
    rows = metrics_table(rec.result)
    if rows:
        st.dataframe(rows, hide_index=True, key=f"{key or rec.title}_metrics")
    if key:
        with guard("Saving the repaired network"):
            (name, data), = network_bytes(rec.result.network, file_stem(f"repaired: {rec.title}")).items()
            st.download_button(f"download {name} (weights only)", data, file_name=name, mime="application/octet-stream",
                               key=f"{key}_download", on_click="ignore")
    with st.expander("details"):
        st.json({"method": rec.result.method, "seconds": round(rec.result.seconds, 3), "metrics": rec.result.metrics,
                 "certificate": rec.result.certificate, "details": rec.result.details}, expanded=False)
