"""`datosearch apply`: generate images with a stored schedule, as `datosearch.apply` runs it from Python."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from .. import dato
from ..atomic import write_atomic, writing
from ..space.io import load
from ..space.schedule import Schedule
from ..search.evaluator import accepts_size
from .build import default_guidance, load_pipeline
from .resolve import default_device

DEFAULT_STEPS = 50  # a schedule that names no trajectory runs the pipeline's own scheduler at this many steps


def generation_settings(schedule: Schedule, steps: int | None, guidance: float | None,
                        pipe: Any) -> tuple[dict[str, Any], float]:
    """The pipeline call's trajectory arguments and guidance: `steps` if given (explicit timesteps or
    sigmas then do not apply), else the schedule's own trajectory (`Schedule.trajectory.call_kwargs`),
    else 50 steps; guidance as given, else the schedule's meta, else the pipeline's default (0 counts as given)."""
    own = schedule.trajectory.call_kwargs() if schedule.trajectory is not None else {}
    call = {"num_inference_steps": int(steps)} if steps is not None else own or {"num_inference_steps": DEFAULT_STEPS}
    if guidance is None:
        stored = schedule.meta.get("guidance")
        guidance = stored if stored is not None else default_guidance(pipe)
    return call, float(guidance)


def generate_with_schedule(schedule_file: str, index: int | None, prompts: list[str], seed: int, out_dir: str,
                           *, model: str | None = None, steps: int | None = None, guidance: float | None = None,
                           device: str | None = None, strict: bool = False) -> list[Path]:
    """Apply the schedule (its own trajectory swapped in, as `datosearch.apply` does) and save one PNG
    per prompt, each image from its own generator (seeds seed, seed+1, ...); returns the paths.

    Other steps than the schedule's map its plan by normalized time; `strict` refuses them instead."""
    schedule = load(schedule_file, 0 if index is None else index)  # an export's index.json: entry 0 by default
    meta = schedule.meta
    device = device or default_device()
    pipe, _ = load_pipeline(model or meta.get("model", "embedded"), device, meta.get("dtype", "float32"))
    call, guidance = generation_settings(schedule, steps, guidance, pipe)
    kwargs = {k: meta[k] for k in ("height", "width") if k in meta} if accepts_size(pipe) else {}
    handle = dato.apply(pipe, schedule, strict=strict)
    try:
        gens = [torch.Generator(device).manual_seed(seed + i) for i in range(len(prompts))]
        with torch.no_grad():
            images = pipe(prompts, guidance_scale=guidance, generator=gens, output_type="pil", **call, **kwargs).images
    finally:
        handle.remove()
    paths = [Path(out_dir) / f"image_{i:03d}.png" for i in range(len(images))]
    with writing(out_dir, "images"):  # a disk that fills up is the user's sentence, not an internal error
        for path, image in zip(paths, images):
            png = io.BytesIO()
            image.save(png, format="PNG")
            write_atomic(path, png.getvalue())
    return paths
