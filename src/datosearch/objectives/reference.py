"""The reference images (full-compute generations), computed once per study and cached on disk.

`key = reference_key(model=..., prompts=..., seeds=..., resolution=..., steps=..., scheduler=...,
guidance=..., dtype=...)`; `load_or_compute_reference(cache_dir, key, compute)` returns the cached
images or calls `compute()` once and stores its result (safetensors, written atomically).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ..atomic import write_atomic

from .errors import ObjectiveError
from .fid import check_images

REFERENCE_FIELDS = ("model", "prompts", "seeds", "resolution", "steps", "scheduler", "guidance", "dtype")


def _canonical(value: Any) -> Any:
    """JSON-able canonical form: tuples -> lists, dtypes/paths/devices -> str, dict keys sorted by json."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (torch.dtype, torch.device, os.PathLike)):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ObjectiveError(f"reference_key: cannot hash a {type(value).__name__} ({value!r}); pass JSON-like values")


def reference_key(**fields: Any) -> str:
    """sha256 (hex) of the canonical JSON of what determines the reference images.

    Pass at least model, prompts, seeds, resolution, steps, scheduler, guidance and dtype; any
    extra field (e.g. the VAE or a LoRA id) also enters the hash.
    """
    missing = [f for f in REFERENCE_FIELDS if f not in fields]
    if missing:
        raise ObjectiveError(f"reference_key is missing field(s) {', '.join(missing)}")
    text = json.dumps(_canonical(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def reference_path(cache_dir: str | os.PathLike, key: str) -> Path:
    return Path(cache_dir) / f"reference-{key}.safetensors"


def load_or_compute_reference(cache_dir: str | os.PathLike, key: str,
                              compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The reference images for `key`: read from `cache_dir`, or computed once with `compute()` and stored.

    Images are stored as float32 (B, C, H, W) on CPU. An unreadable cache file is recomputed with a
    warning; `compute()` returning NaN/inf or a non-image raises `ObjectiveError` and stores nothing.
    """
    path = reference_path(cache_dir, key)
    if path.is_file():
        try:
            return load_file(path)["images"]
        except (SafetensorError, OSError, KeyError) as exc:
            warnings.warn(f"{path}: unreadable reference cache ({exc}); recomputing", stacklevel=2)
    images = check_images(compute(), "reference (full-compute)")
    images = images.detach().to("cpu", torch.float32).contiguous()
    write_atomic(path, save({"images": images}, metadata={"key": key, "format": "datosearch/reference@1"}))
    return images
