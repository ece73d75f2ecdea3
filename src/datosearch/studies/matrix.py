"""Common diffusers schedulers on the embedded model, each built with `from_config(pipe.scheduler.config)`.

Deterministic samplers are scored by PSNR against a converged reference (DPM-Solver++ 2M, 100 steps with
linspace timesteps, same prompts and seeds); stochastic ones, which converge to other samples, by prompt
adherence and FID-proxy against the held-out real digits. `scheduler_matrix()` measures all of them on
the held-out protocol's images (bench/schedulers_embedded.py, the slow tests); docs/embedded.md has the numbers.
The scheduler table itself is `space.trajectory` (`DETERMINISTIC`, `STOCHASTIC`, `make_scheduler`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable, Optional, Sequence

import torch

from ..models import digits as dg
from ..objectives.paired import paired_metrics
from ..search.evaluator import Calibration, generate
from ..space.trajectory import (CONVERGED_STEPS, DETERMINISTIC, STOCHASTIC, Trajectory, converged,  # noqa: F401
                                make_scheduler, named, swapped)
from .build import default_guidance, default_resolution
from .protocol import HELDOUT_SEED0, HeldoutProtocol

REFERENCE_STEPS = CONVERGED_STEPS
HELDOUT_SEED = HELDOUT_SEED0


def sample(pipe: Any, name: str, prompts: list[str], steps: int, seed: int = HELDOUT_SEED) -> torch.Tensor:
    """Images of `prompts` with scheduler `name` built from the pipeline's own config; image i from its
    own generator seeded `seed + i` (the held-out protocol's rule)."""
    size = default_resolution(pipe)
    calib = Calibration(list(prompts), [seed + i for i in range(len(prompts))], steps, default_guidance(pipe),
                        size, size, batch_size=20)
    trajectory = trajectory_of(name, steps)
    with swapped(pipe, trajectory):
        return generate(pipe, calib, trajectory=trajectory)


def trajectory_of(name: str, steps: int) -> Trajectory:
    """Scheduler `name` (a key of `DETERMINISTIC` / `STOCHASTIC`, or "reference") at `steps` steps."""
    return replace(converged(), steps=steps) if name == "reference" else named(name, steps)


def unet_calls(pipe: Any, name: str, steps: int) -> int:
    """U-Net calls per generation of `steps` steps (PLMS: steps + 1, Heun: 2 * steps - 1)."""
    return trajectory_of(name, steps).calls(pipe.scheduler.config)


def psnr(images: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean per-image PSNR (dB) in [0, 1] pixel range."""
    return paired_metrics(images, reference)["psnr"]
def scheduler_matrix(pipe: Any, images: int = 100, steps: Sequence[int] = (10, 25, 50), stochastic_steps: int = 50,
                     seed: int = HELDOUT_SEED, deterministic: Optional[Sequence[str]] = None,
                     stochastic: Optional[Sequence[str]] = None,
                     log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """PSNR vs the converged reference per deterministic scheduler and step count; adherence and FID-proxy
    vs the held-out real digits at the largest step count (deterministic) / `stochastic_steps` (stochastic).

    The images are the held-out protocol's (`HeldoutProtocol(images, seed)`: prompts cycling the digits,
    one generator per image).
    """
    protocol = HeldoutProtocol(images, seed)
    prompts, labels, real = protocol.prompts, protocol.labels, protocol.real_images()
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
