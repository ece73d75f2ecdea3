"""What the held-out benchmarks share (`forecast_grid.py`, `realism.py`, ...): the embedded pipeline, the
held-out protocol's calibration (`studies.protocol.HeldoutProtocol`), the converged reference, the
FID-proxy against real digits, an `Evaluator`, and `on()` to put a plan on a base trajectory."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import torch

from datosearch import objectives as obj
from datosearch.search.evaluator import Calibration, Evaluator
from datosearch.space.schedule import Schedule
from datosearch.space.trajectory import Trajectory
from datosearch.studies.build import load_pipeline, scheduler_calls
from datosearch.studies.heldout import ConvergedReference, converged_reference, real_fid
from datosearch.studies.protocol import HELDOUT_SEED0, HeldoutProtocol


def on(schedule: Schedule, scheduler: str, steps: int) -> Schedule:
    """`schedule` made for `scheduler` (a short or class name) at `steps` steps: its base trajectory."""
    return replace(schedule, trajectory=Trajectory(scheduler, steps))


@dataclass
class HeldOut:
    pipe: Any
    calib: Calibration
    conv: ConvergedReference
    fid: obj.FidProxy
    ev: Evaluator

    def calls(self, scheduler: str, steps: int) -> int:
        """U-Net calls of one generation with `scheduler` at `steps` steps."""
        return scheduler_calls(self.pipe, scheduler, steps)


def held_out(images: int, batch_size: int, latency_images: int = 1,
             measure_latency: Callable[[Callable[[], Any]], float] = lambda run: 0.0,
             seed0: int = HELDOUT_SEED0) -> HeldOut:
    """One torch thread, the embedded model, `images` images of `HeldoutProtocol(images, seed0)` (50 PLMS
    steps; one generator per image; `seed0` 0 gives a study's calibration batch) and their converged reference."""
    torch.set_num_threads(1)
    pipe, _ = load_pipeline("embedded")
    calib = HeldoutProtocol(images, seed0).calibration(pipe, 50, None, batch_size)
    conv = converged_reference(pipe, calib.prompts, calib.seeds, guidance=calib.guidance, batch_size=batch_size)
    ev = Evaluator(pipe, calib, [], reference=conv.images, fid=lambda _: 0.0, latency_images=latency_images,
                   measure_latency=measure_latency)
    return HeldOut(pipe, calib, conv, real_fid(images), ev)
