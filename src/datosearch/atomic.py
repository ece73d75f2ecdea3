"""The one atomic file writer: a temporary file in the same directory, fsync, then `os.replace`.

Readers (another worker, optuna-dashboard, a browser) never see half a file, and a crash leaves
either the old file or the new one. Used for schedules and exports (JSON), reports (HTML) and the
reference-image cache (safetensors bytes). `check_writable` tries an output path before any work is
done, and `writing` turns an `OSError` met while writing a user's path into one sentence (exit 2).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import OutputPathError


def write_atomic(path: str | os.PathLike, data: str | bytes, *, mode: int = 0o644) -> Path:
    """Write `data` (text is UTF-8 encoded) to `path` atomically; creates parent directories; returns the path."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600; the others of a shared study read these files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_writable(path: str | os.PathLike, what: str, *, directory: bool = False) -> Path:
    """Raise `OutputPathError` (one sentence: `what`, the path and the true reason) unless `path` can be
    written: a file, or with `directory` a directory to write files into. It is tried (the missing
    directories and a temporary file are created) and what the try made is removed again, so nothing is
    left behind whether it succeeds or not. Returns the path."""
    path = Path(path)
    folder = path if directory else path.parent
    blocker = next((p for p in (folder, *folder.parents) if p.exists() or p.is_symlink()), None)
    if blocker is not None and not blocker.is_dir():
        raise OutputPathError(f"cannot write {what} to {path}: {blocker} is a file, not a directory")
    if not directory and path.is_dir():
        raise OutputPathError(f"cannot write {what} to {path}: it is a directory")
    made: list[Path] = []
    try:
        for parent in reversed([folder, *folder.parents]):
            if not parent.exists():
                try:
                    parent.mkdir()
                except OSError as exc:
                    raise OutputPathError(f"cannot write {what} to {path}: the directory {parent} cannot be created "
                                          f"({exc.strerror or exc})") from exc
                made.append(parent)
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
        except OSError as exc:
            raise OutputPathError(f"cannot write {what} to {path}: no file can be created in {folder} "
                                  f"({exc.strerror or exc})") from exc
        os.close(fd)
        os.unlink(tmp)
    finally:
        for parent in reversed(made):
            with contextlib.suppress(OSError):
                parent.rmdir()
    return path


@contextlib.contextmanager
def writing(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn an `OSError` raised while writing `what` to `path` (disk full, no permission, a directory that
    cannot be created) into `OutputPathError`: one sentence naming the path and the system's reason."""
    try:
        yield
    except OutputPathError:
        raise
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise OutputPathError(f"cannot write {what} to {path}: {exc.strerror or exc}{where}") from exc


def publish_atomic(out_dir: str | os.PathLike, files: list[tuple[str, str | bytes]]) -> list[Path]:
    """Write several files into `out_dir`, all or none: each is first written (`write_atomic`) into a
    staging directory inside `out_dir`, so a failed write leaves the previous files as they were; then
    they are moved into place in order (put the index last). Returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".publish-", suffix=".tmp"))
    try:
        for name, data in files:
            write_atomic(staging / name, data)
        paths = []
        for name, _ in files:
            paths.append(out_dir / name)
            os.replace(staging / name, paths[-1])
        return paths
    finally:
        shutil.rmtree(staging, ignore_errors=True)
