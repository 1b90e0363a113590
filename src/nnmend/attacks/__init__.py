"""Adversarial attacks, written once and used by every method and evaluation."""
from .autoattack import autoattack
from .base import margin_loss, project
from .evaluate import SHNN_FGSM, SHNN_PGD, AttackSpec, robust_accuracy
from .fgsm import fgsm
from .pgd import pgd

__all__ = ["fgsm", "pgd", "autoattack", "AttackSpec", "robust_accuracy", "SHNN_FGSM", "SHNN_PGD", "margin_loss", "project"]
