"""The one atomic file writer: a temporary file in the same directory, fsync, then `os.replace`.

Readers (another worker, optuna-dashboard, a browser) never see half a file, and a crash leaves
either the old file or the new one. Used for schedules and exports (JSON), reports (HTML) and the
reference-image cache (safetensors bytes).
"""

from __future__ import annotations

import os
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
