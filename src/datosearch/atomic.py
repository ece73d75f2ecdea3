"""The one atomic file writer: a temporary file in the same directory, fsync, then `os.replace`.

Readers (another worker, optuna-dashboard, a browser) never see half a file, and a crash leaves
either the old file or the new one. Used for schedules and exports (JSON), reports (HTML) and the
reference-image cache (safetensors bytes).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


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


def probe_writable(path: str | os.PathLike) -> None:
    """Raise the `OSError` that writing `path` would meet (parent not a directory, no permission, `path` a
    directory), before any work is done; creates parent directories and leaves no file behind."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "Is a directory", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)


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
