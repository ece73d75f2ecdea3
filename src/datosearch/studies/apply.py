"""`datosearch apply`: generate images with a stored schedule, the settings taken from its metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .. import dato
from ..space.io import load
from ..search.evaluator import accepts_size
from .build import default_guidance, load_pipeline, set_scheduler
from .resolve import default_device


def generation_settings(meta: dict[str, Any], steps: int | None, guidance: float | None,
                        pipe: Any) -> tuple[int, float]:
    """Steps and guidance: as given, else the schedule's meta, else 50 / the pipeline's default (0 counts as given)."""
    if steps is None:
        steps = meta.get("steps") if meta.get("steps") is not None else 50
    if guidance is None:
        guidance = meta.get("guidance") if meta.get("guidance") is not None else default_guidance(pipe)
    return int(steps), float(guidance)


def generate_with_schedule(schedule_file: str, index: int | None, prompts: list[str], seed: int, out_dir: str,
                           *, model: str | None = None, steps: int | None = None, guidance: float | None = None,
                           device: str | None = None, strict: bool = False) -> list[Path]:
    """Apply the schedule and save one PNG per prompt (seeds seed, seed+1, ...); returns the paths.

    Other steps than the schedule's map its plan by normalized time; `strict` refuses them instead."""
    schedule = load(schedule_file, 0 if index is None else index)  # an export's index.json: entry 0 by default
    meta = schedule.meta
    device = device or default_device()
    pipe, _ = load_pipeline(model or meta.get("model", "embedded"), device, meta.get("dtype", "float32"))
    set_scheduler(pipe, meta.get("scheduler"))
    steps, guidance = generation_settings(meta, steps, guidance, pipe)
    kwargs = {k: meta[k] for k in ("height", "width") if k in meta} if accepts_size(pipe) else {}
    handle = dato.apply(pipe, schedule, strict=strict)
    try:
        gens = [torch.Generator(device).manual_seed(seed + i) for i in range(len(prompts))]
        with torch.no_grad():
            images = pipe(prompts, num_inference_steps=steps, guidance_scale=guidance,
                          generator=gens, output_type="pil", **kwargs).images
    finally:
        handle.remove()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(out / f"image_{i:03d}.png")
        image.save(paths[-1])
    return paths
