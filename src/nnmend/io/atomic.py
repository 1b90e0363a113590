"""Atomic file writes: a temporary file beside the target, then ``os.replace``.

Temporary names are recognisable, ``.nnmend-tmp-HOST-PID-TOKEN-NAME`` for a file and
``.nnmend-stage-HOST-PID-TOKEN`` for a staging folder (HOST: a short hash of the host name, PID: the
writing process). A process killed mid-write (``kill -9``) cannot clean up after itself, so every write
into a folder first removes the entries there whose writer ran on this host and is gone
(:func:`clean_stale`). New files get the mode ``0o666`` less the umask, like any ``open(path, "w")``.

A run that writes several files at once (a repaired network, its report, its ONNX export, its
certificate) stages them in one folder beside their destination (:func:`staged_outputs`) and moves
them into place together at the end: a kill before the move leaves the previous set untouched, and a
kill during the move is completed by the next writer, which finds the stage's commit list.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import socket
from pathlib import Path
from typing import Callable, Iterator

TMP_PREFIX = ".nnmend-tmp-"
STAGE_PREFIX = ".nnmend-stage-"
_COMMIT = ".commit"        # inside a stage: the names to move, written once every file is complete
_NAME = re.compile(r"^\.nnmend-(tmp|stage)-([0-9a-f]{6})-(\d+)-")


def _host() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def _tag() -> str:
    return f"{_host()}-{os.getpid()}-{secrets.token_hex(4)}"


def _alive(pid: int) -> bool:
    """Whether a process with this id exists (a zombie counts until its parent reaps it)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def clean_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove temporary files and stages in ``folder`` left by dead writers on this host.

    A stage whose commit list was written is moved into place first (the killed run had finished
    writing; only its move was cut short). Returns the removed entries.
    """
    folder, host, removed = Path(folder), _host(), []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _NAME.match(entry.name)
        if not m or m.group(2) != host or _alive(int(m.group(3))):
            continue
        path = Path(entry.path)
        with contextlib.suppress(OSError):
            if m.group(1) == "stage" and entry.is_dir(follow_symlinks=False):
                _finish_commit(path, folder)
                shutil.rmtree(path)
            elif m.group(1) == "tmp":
                path.unlink()
            removed.append(path)
    return removed


def _open_new(path: Path) -> int:
    """Create ``path`` exclusively with mode 0o666 less the umask; returns the descriptor."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    return os.open(path, flags, 0o666)


def _temp_name(target: Path) -> Path:
    return target.parent / f"{TMP_PREFIX}{_tag()}-{target.name}"


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary file for writing; it replaces ``path`` only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent)
    tmp = _temp_name(path)
    fd = _open_new(tmp)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_path(path: str | os.PathLike) -> "contextlib.AbstractContextManager[Path]":
    """Yield a temporary path (same suffix as ``path``) for writers that insist on a filename
    (torch.onnx.export, savefig); it replaces ``path`` only if the block finishes."""

    @contextlib.contextmanager
    def _ctx() -> Iterator[Path]:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(target.parent)
        tmp = _temp_name(target)
        os.close(_open_new(tmp))
        try:
            yield tmp
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    return _ctx()


def _finish_commit(stage: Path, folder: Path) -> list[Path]:
    """Move the files a stage's commit list names into ``folder`` (those not moved yet); returns them."""
    try:
        names = [n for n in (stage / _COMMIT).read_text(encoding="utf-8").splitlines() if n]
    except OSError:
        return []
    moved = []
    for name in names:
        if (stage / name).exists():
            os.replace(stage / name, folder / name)
        moved.append(folder / name)
    _fsync_dir(folder)
    return moved


@contextlib.contextmanager
def staged_outputs(folder: str | os.PathLike,
                   check: Callable[[list[Path]], None] | None = None) -> Iterator[Path]:
    """Yield an empty staging folder beside ``folder``'s files; write the run's outputs into it.

    When the block finishes, ``check`` (if given) sees the destination paths and may raise to refuse;
    then every file of the stage is moved into ``folder`` together. If the block raises, the stage is
    removed and ``folder`` is untouched. Subfolders of the stage are not supported.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clean_stale(folder)
    stage = folder / f"{STAGE_PREFIX}{_tag()}"
    stage.mkdir()
    try:
        yield stage
        names = sorted(p.name for p in stage.iterdir() if not p.name.startswith(TMP_PREFIX))
        if any((stage / n).is_dir() for n in names):
            raise IsADirectoryError(f"{stage}: staged outputs must be files")
        if check is not None:
            check([folder / n for n in names])
        for n in names:
            with open(stage / n, "rb") as fh:
                os.fsync(fh.fileno())
        with atomic_write(stage / _COMMIT, "w") as fh:
            fh.write("\n".join(names) + "\n")
        _finish_commit(stage, folder)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


__all__ = ["atomic_write", "atomic_path", "staged_outputs", "clean_stale", "TMP_PREFIX", "STAGE_PREFIX"]
