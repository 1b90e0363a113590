"""auto_LiRPA 0.3 (installed ``--no-deps``) loaded with dependency_trials.md's compatibility shim.

The shim patches numpy 2 / torch 2.13 names that auto_LiRPA 0.3 still uses, so it lives here, beside the
benchmarks and tests that compare with auto_LiRPA, and never in the nnmend package.
"""
from __future__ import annotations

import sys
import types
import warnings


def load_auto_lirpa():
    """The ``auto_LiRPA`` module, or raise ImportError saying why it cannot be loaded here."""
    try:
        import numpy as np
        import torch

        if not hasattr(np.lib, "arraysetops"):
            m = types.ModuleType("numpy.lib.arraysetops")
            m.isin = np.isin
            sys.modules["numpy.lib.arraysetops"] = m
        import torch.onnx.symbolic_helper as sh
        if not hasattr(sh, "_set_opset_version"):
            from torch.onnx._internal.torchscript_exporter._globals import GLOBALS
            sh._set_opset_version = lambda v: setattr(GLOBALS, "export_onnx_opset_version", v)
        if not hasattr(torch._C.Node, "__getitem__"):
            torch._C.Node.__getitem__ = lambda self, k: getattr(self, self.kindOf(k))(k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import auto_LiRPA
        bm = auto_LiRPA.BoundedModule
        if not getattr(bm._named_members, "_shimmed", False):
            # torch 2.x passes remove_duplicate=, which 0.3's override does not take (conv patches path)
            named = bm._named_members

            def _named_members(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True):
                return named(self, get_members_fn, prefix, recurse)
            _named_members._shimmed = True
            bm._named_members = _named_members
        return auto_LiRPA
    except Exception as exc:  # noqa: BLE001 - any failure means "not available here"
        raise ImportError(f"auto_LiRPA 0.3 not importable with the shim: {type(exc).__name__}: {exc}") from exc
