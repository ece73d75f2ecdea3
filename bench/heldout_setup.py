"""What the held-out benchmarks share (`forecast_grid.py`, `realism.py`): the embedded pipeline, its
held-out images' calibration, the converged reference, the FID-proxy against real digits, an `Evaluator`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from datosearch import objectives as obj
from datosearch.search.evaluator import Calibration, Evaluator
from datosearch.studies.build import load_pipeline, scheduler_calls
from datosearch.studies.heldout import (HELDOUT_SEED0, ConvergedReference, converged_reference, heldout_calibration,
                                        real_fid)


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
    """One torch thread, the embedded model, `images` held-out images (50 PLMS steps; seeds from `seed0`:
    0 gives a study's calibration batch) and their converged reference."""
    torch.set_num_threads(1)
    pipe, _ = load_pipeline("embedded")
    calib = heldout_calibration(pipe, images, 50, None, batch_size, seed0)
    conv = converged_reference(pipe, calib.prompts, calib.seeds, guidance=calib.guidance, batch_size=batch_size)
    ev = Evaluator(pipe, calib, [], reference=conv.images, fid=lambda _: 0.0, latency_images=latency_images,
                   measure_latency=measure_latency)
    return HeldOut(pipe, calib, conv, real_fid(images), ev)
