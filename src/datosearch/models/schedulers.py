"""Common diffusers schedulers on the embedded model, each built with `from_config(pipe.scheduler.config)`.

Deterministic samplers are scored by PSNR against a converged reference (DPM-Solver++ 2M, 100 steps with
linspace timesteps, same prompts and seeds); stochastic ones, which converge to other samples, by prompt
adherence and FID-proxy against the held-out real digits. `scheduler_matrix()` measures all of them (bench/schedulers_embedded.py,
the slow tests); docs/embedded.md has the numbers.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Sequence

import diffusers
import torch

from ..objectives.paired import paired_metrics
from ..search.trajectory import CONVERGED_SCHEDULER, CONVERGED_SPACING, CONVERGED_STEPS
from . import digits as dg
from .embedded import generate_images

# name -> (diffusers class, options on top of the pipeline's config)
DETERMINISTIC: dict[str, tuple[str, dict[str, Any]]] = {
    "pndm-plms": ("PNDMScheduler", {"skip_prk_steps": True}),
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
    "dpmpp-2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp-2m-karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                        "use_karras_sigmas": True}),
    # lower_order_final: what diffusers switches its default False to (with a warning) for final sigma 0
    "dpm-singlestep": ("DPMSolverSinglestepScheduler", {"lower_order_final": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
}
# DPM-Solver++ SDE as diffusers' multistep "sde-dpmsolver++" (DPMSolverSDEScheduler needs torchsde)
STOCHASTIC: dict[str, tuple[str, dict[str, Any]]] = {
    "ddpm": ("DDPMScheduler", {}),
    "euler-ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp-2m-sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
}
# the studies' converged reference (search.trajectory): DPM-Solver++ 2M, 100 steps, linspace timesteps
REFERENCE = (CONVERGED_SCHEDULER, {**DETERMINISTIC["dpmpp-2m"][1], "timestep_spacing": CONVERGED_SPACING})
REFERENCE_STEPS = CONVERGED_STEPS
HELDOUT_SEED = 777000  # generator seeds no other measurement of the model uses


def make_scheduler(name: str, config: Any) -> diffusers.SchedulerMixin:
    """Scheduler `name` (a key of DETERMINISTIC / STOCHASTIC, or "reference") built from `config`."""
    table = {**DETERMINISTIC, **STOCHASTIC, "reference": REFERENCE}
    if name not in table:
        raise ValueError(f"unknown scheduler {name!r}; use one of {', '.join(table)}")
    cls_name, options = table[name]
    return getattr(diffusers, cls_name).from_config(config, **options)


@contextmanager
def scheduler_swapped(pipe: Any, scheduler: diffusers.SchedulerMixin) -> Iterator[Any]:
    """Run `pipe` with `scheduler`, restoring its own afterwards."""
    original = pipe.scheduler
    pipe.scheduler = scheduler
    try:
        yield pipe
    finally:
        pipe.scheduler = original


def sample(pipe: Any, name: str, prompts: list[str], steps: int, seed: int = HELDOUT_SEED) -> torch.Tensor:
    """Images of `prompts` with scheduler `name` built from the pipeline's own config."""
    with scheduler_swapped(pipe, make_scheduler(name, pipe.scheduler.config)):
        return generate_images(pipe, prompts, steps, seed)


def unet_calls(pipe: Any, name: str, steps: int) -> int:
    """U-Net calls per generation of `steps` steps (PLMS: steps + 1, Heun: 2 * steps - 1)."""
    scheduler = make_scheduler(name, pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    return len(scheduler.timesteps)


def psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean per-image PSNR (dB) in [0, 1] pixel range."""
    return paired_metrics(images, reference)["psnr"]


def scheduler_matrix(pipe: Any, images: int = 100, steps: Sequence[int] = (10, 25, 50), stochastic_steps: int = 50,
                     seed: int = HELDOUT_SEED, deterministic: Optional[Sequence[str]] = None,
                     stochastic: Optional[Sequence[str]] = None,
                     log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """PSNR vs the converged reference per deterministic scheduler and step count; adherence and FID-proxy
    vs the held-out real digits at the largest step count (deterministic) / `stochastic_steps` (stochastic).

    Prompts cycle through the digits 0..9 (images should be a multiple of 10).
    """
    if images % 10:
        raise ValueError(f"images must be a multiple of 10 (one prompt per digit), got {images}")
    prompts, labels = dg.digit_prompts(images // 10)
    real, _ = dg.heldout_digits()
    deterministic = list(DETERMINISTIC if deterministic is None else deterministic)
    stochastic = list(STOCHASTIC if stochastic is None else stochastic)

    def quality(out: torch.Tensor) -> dict[str, float]:
        return {"adherence": round(dg.prompt_adherence(out, labels), 4), "fid_proxy": round(dg.fid_proxy(out, real), 2)}

    start = time.perf_counter()
    reference = sample(pipe, "reference", prompts, REFERENCE_STEPS, seed)
    report: dict[str, Any] = {
        "images": images, "seed": seed, "steps": list(steps), "stochastic_steps": stochastic_steps,
        "reference": {"scheduler": "reference", "steps": REFERENCE_STEPS,
                      "seconds": round(time.perf_counter() - start, 1), **quality(reference)},
        "deterministic": {}, "stochastic": {},
    }
    log(f"reference {report['reference']}")
    for name in deterministic:
        row: dict[str, Any] = {"psnr": {}, "unet_calls": {}, "seconds": {}}
        for n in steps:
            start = time.perf_counter()
            out = sample(pipe, name, prompts, n, seed)
            row["seconds"][n] = round(time.perf_counter() - start, 1)
            row["psnr"][n] = round(psnr(out, reference), 2)
            row["unet_calls"][n] = unet_calls(pipe, name, n)
        row.update(quality(out))  # at the largest step count
        report["deterministic"][name] = row
        log(f"{name} {row}")
    for name in stochastic:
        start = time.perf_counter()
        out = sample(pipe, name, prompts, stochastic_steps, seed)
        row = {"seconds": round(time.perf_counter() - start, 1), "unet_calls": unet_calls(pipe, name, stochastic_steps),
               "psnr_vs_reference": round(psnr(out, reference), 2), **quality(out)}
        report["stochastic"][name] = row
        log(f"{name} {row}")
    fids = [row["fid_proxy"] for row in report["deterministic"].values()]
    if fids:
        report["deterministic_fid_spread"] = [min(fids), max(fids)]
    return report
