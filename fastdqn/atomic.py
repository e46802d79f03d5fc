"""Writing output files: crash-safe replacement (checkpoints, replay saves) and early, one-line
errors for output paths that cannot be written (run directories, videos).

The data goes to a temp file beside the target, is fsync'ed, then renamed over the target and
the folder is fsync'ed: a crash or SIGKILL at any point leaves either the old file or the new
one, never a torn one. Temp names carry the writer's pid; a later save sweeps the temp files of
writers that no longer run, so killed saves do not pile up.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from typing import BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], *, what: str = "file") -> None:
    """Call ``write(f)`` on a fresh temp file, then atomically make it ``path``. A path that
    cannot be a file (a folder, a missing folder) fails before anything is written, naming ``what``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what}: expected a file path, got {type(path).__name__}")
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what}: expected a file path, got a directory {path!r}")
    if not os.path.isdir(folder):
        exists = os.path.exists(folder)
        raise (NotADirectoryError if exists else FileNotFoundError)(
            f"{what}: expected a path in an existing folder, got {path!r} "
            f"({folder!r} {'is a file' if exists else 'does not exist'})")
    _sweep_orphans(folder, name)
    tmp = os.path.join(folder, f".{name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def _sweep_orphans(folder: str, name: str) -> None:
    for tmp in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.tmp-*")):
        pid = tmp.rsplit("-", 1)[1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: leave its file alone
        return True
    return True


def check_output_path(path: str | os.PathLike, name: str, *, directory: bool) -> None:
    """Raise a ValueError naming ``name`` when ``path`` cannot become an output directory
    (``directory=True``) or file: it, or the nearest existing folder above it, is of the wrong kind.
    Cheap, so callers run it before starting emulators or reading checkpoints."""
    want = "a directory" if directory else "a file path"
    full = os.path.abspath(os.fspath(path))
    if os.path.exists(full) and os.path.isdir(full) != directory:
        raise ValueError(f"{name}: expected {want}, got {os.fspath(path)!r} ({'a file' if directory else 'a directory'})")
    parent = os.path.dirname(full)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{name}: expected {want}, got {os.fspath(path)!r} ({parent!r} is a file)")


def make_dirs(path: str | os.PathLike, name: str) -> None:
    """os.makedirs(exist_ok=True); an OSError (read-only or missing mount) becomes a ValueError naming ``name``."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{name}: expected a folder that can be created, got {os.fspath(path)!r}: "
                         f"{e.strerror or e}") from None
