"""Adversarial attacks, written once and used by every method and evaluation.

Two forms of each: functions (``pgd(net, x, y, eps=0.1)``) and torchattacks-style objects
(``PGD(net, eps=0.1)(x, y)``) that call them.
"""
from .autoattack import autoattack, square
from .base import margin_loss, project
from .evaluate import SHNN_FGSM, SHNN_PGD, AttackSpec, robust_accuracy
from .fgsm import fgsm
from .objects import FGSM, PGD, Attack, AutoAttack, Square
from .pgd import pgd

__all__ = ["fgsm", "pgd", "autoattack", "square", "FGSM", "PGD", "AutoAttack", "Square", "Attack", "AttackSpec",
           "robust_accuracy", "SHNN_FGSM", "SHNN_PGD", "margin_loss", "project"]
