"""Activation patterns per class from a decision tree over on/off signatures (paper 004, Sec. 4.1).

A pattern σ is a set of neurons of one ReLU layer, each required on (> 0) or off (≤ 0) (Eq. 1). As
in Prophecy (the rule extractor NNrepair uses), a scikit-learn ``DecisionTreeClassifier`` with
``random_state=42`` is fitted on the binary signatures ``z > 0`` and each root-to-leaf path is a
pattern; its support is the number of training signatures at the leaf.

One tree over ``2K`` classes gives both kinds of pattern: class ``c`` marks inputs classified
correctly as ``c``; class ``K + c`` marks failing inputs, labelled by their ideal label ``c`` (the
paper, ``by="ideal"``) or by their predicted label ``c`` (the artefact's "FP" files,
``by="predicted"``).

Example::

    pats = learn_patterns(rec.signature, tree_labels(y, rec.pred, 10, "ideal"), num_classes=10)
    pats.correct[3][0].satisfied(rec.signature)     # (N,) bool
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class Pattern:
    """Neurons ``neurons`` required on where ``on`` is True, off elsewhere; learnt for tree class ``label``."""

    label: int
    neurons: np.ndarray
    on: np.ndarray
    support: int
    purity: float

    def satisfied(self, signature: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(N,) bool: which signatures (N, H) agree with the pattern on every one of its neurons."""
        sig = torch.as_tensor(signature)
        return (sig[:, torch.as_tensor(self.neurons)] == torch.as_tensor(self.on)).all(1)

    def disagreeing(self, signature: torch.Tensor) -> torch.Tensor:
        """(N, len(neurons)) bool: Eq. 3, the pattern neurons each input disagrees with."""
        return signature[:, self.neurons] != torch.as_tensor(self.on)

    def to_dict(self) -> dict:
        return {"label": self.label, "neurons": self.neurons.tolist(), "on": self.on.astype(int).tolist(),
                "support": self.support, "purity": round(self.purity, 4)}


@dataclass(frozen=True)
class Patterns:
    """Patterns by tree class, best support first: ``correct[c]`` and ``incorrect[c]`` for c < K."""

    correct: dict[int, list[Pattern]] = field(default_factory=dict)
    incorrect: dict[int, list[Pattern]] = field(default_factory=dict)
    tree_depth: int = 0
    tree_leaves: int = 0


def tree_labels(labels: torch.Tensor, pred: torch.Tensor, num_classes: int, by: str = "ideal") -> np.ndarray:
    """``c`` for a correct input of class c; ``K + ideal`` or ``K + predicted`` label for a failing one."""
    wrong = pred != labels
    marked = torch.where(wrong, num_classes + (labels if by == "ideal" else pred), labels)
    return marked.numpy()


def _leaf_paths(tree) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(leaf id, features, required values) for every leaf; a walk over nodes, not samples."""
    t = tree.tree_
    out, stack = [], [(0, [], [])]
    while stack:
        node, feats, vals = stack.pop()
        left, right = t.children_left[node], t.children_right[node]
        if left == right:  # a leaf
            out.append((node, np.asarray(feats, dtype=np.int64), np.asarray(vals, dtype=bool)))
            continue
        f = int(t.feature[node])
        # binary features split at 0.5: left is "off", right is "on"
        stack.append((left, feats + [f], vals + [False]))
        stack.append((right, feats + [f], vals + [True]))
    return out


def learn_patterns(signature: torch.Tensor, labels: np.ndarray, *, num_classes: int, min_support: int = 100,
                   min_purity: float = 1.0, max_depth: int | None = None, seed: int = 42) -> Patterns:
    """Fit the tree and list its leaves as patterns.

    Correct-classification patterns need ``support >= min_support`` and ``purity >= min_purity``;
    incorrect ones only the purity (failing inputs are few: the artefact's have supports of 4–6).
    """
    from sklearn.tree import DecisionTreeClassifier

    x = np.asarray(signature, dtype=np.uint8)
    tree = DecisionTreeClassifier(random_state=seed, max_depth=max_depth).fit(x, labels)
    t = tree.tree_
    classes = tree.classes_
    correct: dict[int, list[Pattern]] = {}
    incorrect: dict[int, list[Pattern]] = {}
    for leaf, feats, vals in _leaf_paths(tree):
        frac = t.value[leaf][0]
        frac = frac / frac.sum()
        k = int(np.argmax(frac))
        label, purity, support = int(classes[k]), float(frac[k]), int(t.n_node_samples[leaf])
        if purity < min_purity - 1e-12:
            continue
        pat = Pattern(label, feats, vals, support, purity)
        if label < num_classes:
            if support >= min_support:
                correct.setdefault(label, []).append(pat)
        else:
            incorrect.setdefault(label - num_classes, []).append(pat)
    for d in (correct, incorrect):
        for c in d:
            d[c].sort(key=lambda p: -p.support)
    return Patterns(correct, incorrect, int(tree.get_depth()), int(tree.get_n_leaves()))
