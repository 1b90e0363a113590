"""Atomic writes: modes follow the umask, temporary files never outlive their writer, a set of files
moves into place together (also when the writer is killed with SIGKILL mid-write)."""
import hashlib
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnmend.io import atomic
from nnmend.io.atomic import STAGE_PREFIX, TMP_PREFIX, atomic_path, atomic_write, clean_stale, staged_outputs

ATOMIC_PY = Path(atomic.__file__)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith((TMP_PREFIX, STAGE_PREFIX)))


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def _dead_pid() -> int:
    """The id of a process that has exited and been reaped."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    with atomic_write(tmp_path / "a.bin") as fh:
        fh.write(b"x")
    with atomic_path(tmp_path / "b.png") as tmp:
        tmp.write_bytes(b"y")
    assert _mode(tmp_path / "a.bin") == expected and _mode(tmp_path / "b.png") == expected


def test_replacing_a_file_keeps_the_umask_mode_not_0600(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "net.pt"
    target.write_bytes(b"old")
    os.chmod(target, 0o644)
    with atomic_write(target) as fh:
        fh.write(b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o644


def test_atomic_path_keeps_the_suffix_and_a_recognisable_name(tmp_path):
    with atomic_path(tmp_path / "fig.png") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(TMP_PREFIX) and tmp.suffix == ".png"
        tmp.write_bytes(b"png")
    assert _litter(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as fh:
            fh.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and _litter(tmp_path) == []


def test_stale_temporaries_of_dead_writers_are_cleaned_on_the_next_write(tmp_path):
    host = atomic._host()
    dead = tmp_path / f"{TMP_PREFIX}{host}-{_dead_pid()}-0badc0de-net.pt"
    alive = tmp_path / f"{TMP_PREFIX}{host}-{os.getppid()}-0badc0de-net.pt"         # a live process's write
    foreign = "ffffff" if host != "ffffff" else "eeeeee"                            # never our own host
    other_host = tmp_path / f"{TMP_PREFIX}{foreign}-{_dead_pid()}-0badc0de-net.pt"  # not ours to judge
    for p in (dead, alive, other_host):
        p.write_bytes(b"partial")
    stale_stage = tmp_path / f"{STAGE_PREFIX}{host}-{_dead_pid()}-0badc0de"
    stale_stage.mkdir()
    (stale_stage / "net.pt").write_bytes(b"never committed")
    with atomic_write(tmp_path / "x.txt", "w") as fh:
        fh.write("x")
    assert not dead.exists() and not stale_stage.exists()
    assert alive.exists() and other_host.exists()
    assert not (tmp_path / "net.pt").exists()            # an uncommitted stage is rolled back, not moved


def test_a_committed_stage_cut_short_is_completed_by_the_next_writer(tmp_path):
    (tmp_path / "net.pt").write_text("old net")
    (tmp_path / "net.json").write_text("old report")
    stage = tmp_path / f"{STAGE_PREFIX}{atomic._host()}-{_dead_pid()}-0badc0de"
    stage.mkdir()
    (stage / "net.json").write_text("new report")         # net.pt was already moved when the writer died
    (tmp_path / "net.pt").write_text("new net")
    (stage / ".commit").write_text("net.json\nnet.pt\n")
    assert clean_stale(tmp_path) == [stage]
    assert (tmp_path / "net.pt").read_text() == "new net" and (tmp_path / "net.json").read_text() == "new report"
    assert _litter(tmp_path) == []


def test_staged_outputs_move_together_or_not_at_all(tmp_path):
    (tmp_path / "r.pt").write_text("old")
    with staged_outputs(tmp_path) as stage:
        assert stage.parent == tmp_path and stage.name.startswith(STAGE_PREFIX)
        (stage / "r.pt").write_text("new")
        with atomic_write(stage / "r.json", "w") as fh:
            fh.write("{}")
        assert not (tmp_path / "r.json").exists()          # nothing visible before the end
    assert (tmp_path / "r.pt").read_text() == "new" and (tmp_path / "r.json").read_text() == "{}"
    assert _litter(tmp_path) == []

    with pytest.raises(RuntimeError):
        with staged_outputs(tmp_path) as stage:
            (stage / "r.pt").write_text("newer")
            raise RuntimeError("the run failed")
    assert (tmp_path / "r.pt").read_text() == "new" and _litter(tmp_path) == []

    def refuse(paths):
        assert sorted(p.name for p in paths) == ["r.json", "r.pt"]
        raise ValueError("refused")

    with pytest.raises(ValueError):
        with staged_outputs(tmp_path, check=refuse) as stage:
            (stage / "r.pt").write_text("newest")
            (stage / "r.json").write_text("[]")
    assert (tmp_path / "r.pt").read_text() == "new" and (tmp_path / "r.json").read_text() == "{}"
    assert _litter(tmp_path) == []


# --- kill -9 mid-write ----------------------------------------------------------------------------------------
# The child loads atomic.py on its own (no torch import: a trial costs a fraction of a second), writes one set
# of files per generation, each holding its generation and a checksum, says "ready" after the first set and
# goes on writing until it is killed.
CHILD = r"""
import hashlib, importlib.util, os, sys
spec = importlib.util.spec_from_file_location("atomic_under_test", sys.argv[1])
atomic = importlib.util.module_from_spec(spec); spec.loader.exec_module(atomic)
folder, single = sys.argv[2], sys.argv[3] == "single"
payload = os.urandom(1 << 20)
gen = 0
while True:
    gen += 1
    body = f"{gen}\n".encode() + payload
    blob = body + hashlib.sha256(body).hexdigest().encode()
    if single:
        with atomic.atomic_write(os.path.join(folder, "net.pt")) as fh:
            fh.write(blob)
    else:
        with atomic.staged_outputs(folder) as stage:
            for name in ("net.pt", "net.json", "net.onnx"):
                with atomic.atomic_write(os.path.join(stage, name)) as fh:
                    fh.write(blob)
    if gen == 1:
        print("ready", flush=True)
"""


def _generation(path: Path) -> int:
    """The generation a complete file holds; fails on a torn or corrupt file."""
    data = path.read_bytes()
    body, digest = data[:-64], data[-64:]
    assert hashlib.sha256(body).hexdigest().encode() == digest, f"{path.name} is torn"
    return int(body.split(b"\n", 1)[0])


@pytest.mark.parametrize("mode, names", [("single", ["net.pt"]), ("set", ["net.json", "net.onnx", "net.pt"])])
def test_kill_9_mid_write_leaves_a_whole_set_and_no_litter_after_the_next_write(tmp_path, mode, names):
    rng = random.Random(0)
    landed, trials = 0, 0
    while landed < 5 and trials < 60:                     # bounded: stop once five kills hit a write in progress
        trials += 1
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(ATOMIC_PY), str(tmp_path), mode],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.05))                # somewhere inside the writing loop; nothing asserted on time
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        landed += bool(_litter(tmp_path))
        clean_stale(tmp_path)                             # what the next write into the folder does first
        assert _litter(tmp_path) == []
        present = sorted(p.name for p in tmp_path.iterdir())
        assert present == names, present                  # the previous set is never lost
        generations = {_generation(tmp_path / n) for n in names}
        assert len(generations) == 1, f"mixed set after a kill: {generations}"
    assert landed >= 1, f"no kill landed during a write in {trials} trials"
