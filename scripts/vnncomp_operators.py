"""List the ONNX operator types used by the VNN-COMP networks (default ../shared/data/vnncomp/)."""
from __future__ import annotations

import argparse
from pathlib import Path


def operators(root: Path) -> list[str]:
    """Sorted operator types of every ``*/onnx/*.onnx`` under ``root``."""
    import onnx

    ops: set[str] = set()
    for f in sorted(root.glob("*/onnx/*.onnx")):
        ops |= {n.op_type for n in onnx.load(str(f)).graph.node}
    return sorted(ops)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "vnncomp"))
    print("\n".join(operators(Path(ap.parse_args().root))))
