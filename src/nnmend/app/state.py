"""The session's work, kept across reruns and pages: data, the network and what was done to it.

Streamlit reruns the page script on every click; everything expensive is kept here instead of being
recomputed: datasets in a process-wide cache (read-only tensors shared by all sessions), networks and
results in the session's :class:`Workbench`. Loading a new network clears what was derived from the
old one.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import streamlit as st
import torch
from torch import nn

from .._validation import check_input_fits, check_labels
from ..data import Dataset, load_dataset
from ..errors import DataError
from ..train import accuracy

DATASETS = ("mnist", "digits", "fashion-mnist", "cifar10")
KEY = "nnmend_workbench"


@st.cache_resource(show_spinner="Loading data …", max_entries=8)
def dataset(name: str, split: str) -> Dataset:
    """A dataset split, loaded once per process (callers must not modify its tensors)."""
    return load_dataset(name, split)


def bundled_models() -> list[str]:
    """Names accepted by :func:`nnmend.nets.pretrained` (the checkpoints shipped with the package)."""
    folder = Path(str(resources.files("nnmend") / "_assets" / "models"))
    return sorted(p.stem for p in folder.glob("*.pt"))


@dataclass
class RepairRecord:
    """One repair run: the method's result and accuracy (and other figures) before and after."""

    title: str
    source: str
    result: Any              # nnmend.repair.base.RepairResult
    before: dict[str, float]
    after: dict[str, float]
    note: str = ""


@dataclass
class Workbench:
    """Everything the pages share in one browser session."""

    dataset: str = "mnist"
    n_eval: int = 10000
    model: nn.Module | None = None
    model_label: str = ""
    clean_accuracy: float | None = None
    damaged: nn.Module | None = None
    fault: Any = None                 # nnmend.faults.Fault
    damaged_accuracy: float | None = None
    diagnosis: Any = None             # nnmend.diagnose.Diagnosis
    diagnosis_mode: str = ""           # "structural" or "adversarial"
    probe_adv: torch.Tensor | None = None   # the adversarial probe inputs of an adversarial diagnosis
    repairs: "OrderedDict[str, RepairRecord]" = field(default_factory=OrderedDict)
    attack: dict | None = None
    verify: dict | None = None
    prop: dict | None = None            # {"kind": "region" | "robustness", "label", "property"}: set by the Verify page
    events: list[str] = field(default_factory=list)
    artefacts: dict[str, Any] = field(default_factory=dict)   # per-method things to keep (e.g. trained NCA rules)

    # -- data ---------------------------------------------------------------------------------
    def train_data(self) -> Dataset:
        return dataset(self.dataset, "train")

    def test_data(self) -> Dataset:
        """The evaluation set: the first ``n_eval`` test samples."""
        return dataset(self.dataset, "test").subset(self.n_eval)

    def accuracy(self, net: nn.Module) -> float:
        return accuracy(net, self.test_data())

    # -- networks -----------------------------------------------------------------------------
    def clear(self) -> None:
        """Forget the network and everything derived from it."""
        self.model, self.model_label, self.clean_accuracy = None, "", None
        self.damaged = self.fault = self.damaged_accuracy = self.diagnosis = self.probe_adv = None
        self.repairs.clear()
        self.artefacts.clear()
        self.attack = self.verify = self.prop = None

    def set_model(self, net: nn.Module, label: str) -> None:
        """Check that ``net`` fits the data set, then make it the session's network (clears the rest)."""
        test = dataset(self.dataset, "test")
        out = check_input_fits(net, test.x[:2], what=f"network {label!r}")
        if out.dim() != 2:
            raise DataError(f"network {label!r} returns outputs of shape {tuple(out.shape[1:])} per sample; "
                            "a classifier returning one score per class is needed")
        check_labels(test.y, len(test.y), num_classes=out.shape[1], name=f"{self.dataset} labels")
        self.clear()
        self.model, self.model_label = net.eval(), label
        self.clean_accuracy = self.accuracy(net)
        self.events.append(f"model: {label} ({self.dataset}, clean accuracy {100 * self.clean_accuracy:.2f}%)")

    def set_damaged(self, net: nn.Module, fault: Any) -> None:
        self.damaged, self.fault = net, fault
        self.damaged_accuracy = self.accuracy(net)
        self.diagnosis = self.probe_adv = None
        self.events.append(f"damage: {fault.kind} {fault.layer} fraction {fault.fraction:g} seed {fault.seed} "
                           f"({fault.n_changed} values changed, accuracy {100 * self.damaged_accuracy:.2f}%)")

    def networks(self) -> "OrderedDict[str, nn.Module]":
        """The session's networks by label: original, damaged, then each repaired one."""
        nets: "OrderedDict[str, nn.Module]" = OrderedDict()
        if self.model is not None:
            nets["original"] = self.model
        if self.damaged is not None:
            nets[f"damaged ({self.fault.kind} {self.fault.layer})"] = self.damaged
        for title, rec in self.repairs.items():
            nets[f"repaired: {title}"] = rec.result.network
        return nets

    def input_shape(self) -> tuple[int, ...]:
        return tuple(dataset(self.dataset, "test").x.shape[1:])


def workbench() -> Workbench:
    """The session's :class:`Workbench` (created on first use)."""
    if KEY not in st.session_state:
        st.session_state[KEY] = Workbench()
    return st.session_state[KEY]


def probe(wb: Workbench, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test inputs and labels (SHNN localises on the first 100 test images)."""
    test = dataset(wb.dataset, "test")
    return test.x[:n], test.y[:n]
