"""The held-out protocol: which images every claim about a schedule is measured on.

Studies calibrate on seeds 0..N-1; the held-out images are `n_images` prompts cycling the ten digit
prompts with seeds `seed0`, `seed0 + 1`, ... (777000+ by default). Each image is generated with its
own generator seeded with its seed (`search.evaluator.generate`), so an image is the same whatever
batch it is generated in. The FID-proxy's real statistics come from the real held-out digits
(`models.digits.heldout_digits`), never from the split the embedded model was trained on. The
export's held-out check, the report's pictures, the scheduler matrix and `bench/*` all use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..models.digits import digit_prompt, heldout_digits
from ..options import HELDOUT_SEED0  # noqa: F401  (re-exported: the protocol's first held-out seed)
from ..search.evaluator import Calibration, generate
from ..space.trajectory import Trajectory, swapped
from .build import default_guidance, default_resolution

BATCH_SIZE = 20  # images per pipeline call (the embedded model's fastest per image on 2 cores)


def default_steps(pipe: Any) -> int:
    """The pipeline's configured step count (the embedded model's 50), else 50."""
    return int(getattr(pipe, "config", {}).get("num_inference_steps", 50) or 50)


@dataclass(frozen=True)
class HeldoutProtocol:
    """`n_images` held-out prompts and seeds from `seed0`, one generator per image."""

    n_images: int
    seed0: int = HELDOUT_SEED0

    @property
    def labels(self) -> list[int]:
        """The digit each prompt asks for."""
        return [i % 10 for i in range(self.n_images)]

    @property
    def prompts(self) -> list[str]:
        return [digit_prompt(d) for d in self.labels]

    @property
    def seeds(self) -> list[int]:
        return [self.seed0 + i for i in range(self.n_images)]

    def calibration(self, pipe: Any, steps: int | None = None, guidance: float | None = None,
                    batch_size: int = BATCH_SIZE) -> Calibration:
        """A `Calibration` over these prompts and seeds at the pipeline's own resolution (and steps, guidance)."""
        size = default_resolution(pipe)
        return Calibration(self.prompts, self.seeds, steps or default_steps(pipe),
                           default_guidance(pipe) if guidance is None else guidance, size, size, batch_size)

    def generate(self, pipe: Any, trajectory: Trajectory | None = None, guidance: float | None = None,
                 batch_size: int = BATCH_SIZE) -> torch.Tensor:
        """The held-out images on `trajectory` (swapped in; None: the pipeline's own scheduler at its
        default steps), images (N, C, H, W) in [0, 1]."""
        calib = self.calibration(pipe, trajectory.steps if trajectory else None, guidance, batch_size)
        with swapped(pipe, trajectory):
            return generate(pipe, calib, trajectory=trajectory)

    @staticmethod
    def real_images() -> torch.Tensor:
        """The real held-out digits the FID-proxy against real images compares with."""
        return heldout_digits()[0]
