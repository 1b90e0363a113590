"""Building blocks shared by the pages: error boxes, pickers, background-job panels, repair results.

Every page is built from these, so a method page is only its options and the one API call it makes.
"""
from __future__ import annotations

import dataclasses
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Sequence

import streamlit as st
from torch import nn

from ..errors import NnmendError
from ..nets import named_layers
from ..train import accuracy
from . import jobs
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


def network_select(wb: Workbench, label: str, key: str, prefer_last: bool = True) -> tuple[str, nn.Module]:
    nets = wb.networks()
    labels = list(nets)
    name = st.selectbox(label, labels, index=len(labels) - 1 if prefer_last else 0, key=key)
    return name, nets[name]


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


def config_form(config_cls: type, prefix: str, fields: Sequence[str], *, choices: Mapping[str, Sequence] | None = None,
                tips: Mapping[str, str] | None = None, columns: int = 4, defaults: Mapping[str, Any] | None = None) -> Any:
    """Widgets for the chosen ``fields`` of a method's frozen config dataclass; returns the config.

    Each widget starts at the dataclass default (the paper's), or at ``defaults`` where the page knows
    better (e.g. the localised layer); fields not listed keep their defaults. ``choices`` turns a field
    into a select box; an optional number (default ``None``) is a text box where empty means ``None``.
    """
    choices, tips, defaults = dict(choices or {}), dict(tips or {}), dict(defaults or {})
    base = config_cls()
    known = {f.name for f in dataclasses.fields(config_cls)}
    values: dict[str, Any] = {}
    cols = st.columns(columns)
    for i, name in enumerate(fields):
        if name not in known:
            raise KeyError(f"{config_cls.__name__} has no field {name!r}")
        default = defaults.get(name, getattr(base, name))
        col, label, key, tip = cols[i % columns], name.replace("_", " "), f"{prefix}_{name}", tips.get(name)
        if name in choices:
            opts = list(choices[name])
            values[name] = col.selectbox(label, opts, index=opts.index(default) if default in opts else 0, key=key, help=tip)
        elif isinstance(default, bool):
            values[name] = col.checkbox(label, default, key=key, help=tip)
        elif isinstance(default, int):
            values[name] = int(col.number_input(label, value=default, step=1, key=key, help=tip))
        elif isinstance(default, float):
            values[name] = float(col.number_input(label, value=default, format="%.6g", key=key, help=tip))
        elif default is None:
            text = col.text_input(label, "", key=key, help=(tip or "") + " (empty: none)").strip()
            try:
                values[name] = None if not text else (float(text) if "." in text or "e" in text else int(text))
            except ValueError:
                col.error(f"{label}: {text!r} is not a number; using none")
                values[name] = None
        else:
            values[name] = col.text_input(label, str(default), key=key, help=tip)
    return dataclasses.replace(base, **values)


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
    st.progress(min(max(job.fraction or 0.0, 0.0), 1.0), text=job.text)


def job_panel(key: str) -> jobs.Job | None:
    """Progress while the job under ``key`` runs, an error box if it failed; the finished job once."""
    job = _jobs().get(key)
    if job is None:
        return None
    if not job.done:
        _poll(key)
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
    result = call()
    return RepairRecord(title, source, result, _measure(net, test, evaluate), _measure(result.network, test, evaluate), note)


def start_repair(wb: Workbench, key: str, title: str, source: str, net: nn.Module, call: Callable[[], Any],
                 evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None, note: str = "") -> None:
    """Run ``call() -> RepairResult`` in the background, then measure the network before and after.

    ``evaluate(network) -> {name: value in [0, 1]}`` adds figures beyond accuracy (e.g. robust accuracy).
    """
    start_job(key, title, _repair_job, title, source, net, call, wb.test_data(), evaluate, note)


def collect_repair(wb: Workbench, key: str, title: str) -> RepairRecord | None:
    """Show the repair job's progress; when it has finished, store its record in the workbench."""
    job = job_panel(key)
    if job is not None:
        rec: RepairRecord = job.value
        wb.repairs[rec.title] = rec
        wb.events.append(f"repair: {rec.title} on {rec.source} in {rec.result.seconds:.1f} s, accuracy "
                         f"{100 * rec.before['accuracy']:.2f}% -> {100 * rec.after['accuracy']:.2f}%")
    return wb.repairs.get(title)


def certificate(verified: bool | None) -> None:
    if verified is True:
        st.success("certificate: verified (sound bounds prove every property on the repaired network)")
    elif verified is False:
        st.warning("certificate: NOT verified (the bounds could not prove every property)")
    else:
        st.info("certificate: none (this method makes no proof claim; figures below are measured)")


def show_repair(rec: RepairRecord, n_eval: int) -> None:
    """Before/after figures, certificate status and the method's details."""
    st.subheader(f"Result: {rec.title}")
    st.caption(f"on {rec.source}; measured on {n_eval} test samples; repair took {rec.result.seconds:.1f} s")
    cols = st.columns(len(rec.after))
    for col, (name, after) in zip(cols, rec.after.items()):
        before = rec.before.get(name)
        col.metric(f"{name.replace('_', ' ')} after", f"{100 * after:.2f}%",
                   delta=None if before is None else f"{100 * (after - before):+.2f} pts (before {100 * before:.2f}%)")
    if rec.note:
        st.caption(rec.note)
    certificate(rec.result.verified)
    with st.expander("details"):
        st.json({"method": rec.result.method, "seconds": round(rec.result.seconds, 3), "metrics": rec.result.metrics,
                 "details": rec.result.details}, expanded=False)
