"""Model loading: the embedded digit model, the tiny test pipeline, or a local/hub diffusers pipeline."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserValueError


def load(name: str = "embedded", device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """Return a pipeline by name.

    ``"embedded"``: the shipped digit model; ``"tiny"``: a random-weight tiny StableDiffusionPipeline;
    an existing directory: ``DiffusionPipeline.from_pretrained(path, local_files_only=True)``; anything
    else: ``DiffusionPipeline.from_pretrained(name)`` (needs it in the local cache or a network).
    """
    if name == "embedded":
        from .embedded import load_embedded

        return load_embedded(device=device, dtype=dtype)
    if name == "tiny":
        from .tiny import tiny_sd_pipeline

        pipe = tiny_sd_pipeline()  # float32; cast only when asked for another dtype
        return pipe.to(device) if dtype == torch.float32 else pipe.to(device=device, dtype=dtype)

    from diffusers import DiffusionPipeline

    local = Path(name).expanduser().is_dir()
    try:
        pipe = DiffusionPipeline.from_pretrained(name, dtype=dtype, local_files_only=local)  # torch_dtype: deprecated
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear message
        raise UserValueError(f"cannot load pipeline {name!r}: it is neither 'embedded', 'tiny', a local diffusers "
                         f"directory nor a model available offline ({type(exc).__name__}: {exc})") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


__all__ = ["load"]
