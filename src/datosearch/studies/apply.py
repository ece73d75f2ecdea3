"""`datosearch apply`: generate images with a stored schedule, the settings taken from its metadata."""

from __future__ import annotations

from pathlib import Path

import torch

from .. import dato
from ..space.io import load
from ..search.evaluator import accepts_size
from .build import default_guidance, load_pipeline, set_scheduler
from .resolve import default_device


def generate_with_schedule(schedule_file: str, index: int | None, prompts: list[str], seed: int, out_dir: str,
                           *, model: str | None = None, steps: int | None = None, guidance: float | None = None,
                           device: str | None = None) -> list[Path]:
    """Apply the schedule and save one PNG per prompt (seeds seed, seed+1, ...); returns the paths."""
    schedule = load(schedule_file, 0 if index is None else index)  # an export's index.json: entry 0 by default
    meta = schedule.meta
    device = device or default_device()
    pipe, _ = load_pipeline(model or meta.get("model", "embedded"), device, meta.get("dtype", "float32"))
    set_scheduler(pipe, meta.get("scheduler"))
    steps = steps or meta.get("steps") or 50
    kwargs = {k: meta[k] for k in ("height", "width") if k in meta} if accepts_size(pipe) else {}
    handle = dato.apply(pipe, schedule)
    try:
        gens = [torch.Generator(device).manual_seed(seed + i) for i in range(len(prompts))]
        with torch.no_grad():
            images = pipe(prompts, num_inference_steps=steps, guidance_scale=guidance or meta.get("guidance") or default_guidance(pipe),
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
