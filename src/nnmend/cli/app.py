"""``nnmend app``: start the Streamlit workbench (``streamlit run`` on the packaged script)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="start the Streamlit workbench in a browser")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8501)
    p.set_defaults(func=run)


def command(host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line for the workbench."""
    from ..app import SCRIPT

    return [sys.executable, "-m", "streamlit", "run", str(SCRIPT), "--server.address", host,
            "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal",
            # no "magic" (the pages never rely on it): it ast-parses every page on its first run, and on
            # CPython 3.11 < 3.11.8 an ast.parse racing another thread's (a background job's) can fail
            "--runner.magicEnabled", "false"]


def run(a: argparse.Namespace) -> int:
    from .._extras import require
    from ..errors import NnmendError

    require("streamlit", "the workbench")
    if not 0 < a.port < 65536:
        raise NnmendError(f"--port {a.port} is not a TCP port (1-65535)")
    env = dict(os.environ)
    # the script imports nnmend; make sure it finds this very package, installed or not
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    print(f"nnmend workbench on http://{a.host}:{a.port} (Ctrl-C stops it)", flush=True)
    cmd = command(a.host, a.port)
    # replace this process by the server, so signals (Ctrl-C, SIGTERM) reach Streamlit directly
    os.execve(cmd[0], cmd, env)
    return 0  # not reached
