"""Candidate evaluation: apply a schedule, generate the calibration batch, score it.

One `Evaluator` per process holds the pipeline, the reference images, the FID-proxy and the
baseline latency measured in the same process; the scoring functions are injected (see
`datosearch.studies.build` for the ones built from `datosearch.objectives`).
"""

from __future__ import annotations

import hashlib
import inspect
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import torch

from .. import dato
from ..space.schedule import Schedule
from ..space.trajectory import Trajectory
from . import processes
from .attrs import DEVICE_ATTR, DIGEST_ATTR, LATENCY_ATTR, MACS_ATTR, PAIRED_PREFIX, SPEEDUP_ATTR


class CandidateError(RuntimeError):
    """A candidate that cannot be scored (non-finite images or objective values)."""


@dataclass
class Calibration:
    """The fixed prompts and seeds every candidate is generated with."""

    prompts: list[str]
    seeds: list[int]
    steps: int
    guidance: float
    height: int
    width: int
    batch_size: int = 8

    def part(self, start: int, stop: int | None = None) -> "Calibration":
        """Images `start` to `stop` (prompts and seeds; None: to the end) as a calibration of their own."""
        return replace(self, prompts=self.prompts[start:stop], seeds=self.seeds[start:stop])

    def chunks(self, limit: int | None = None) -> list[tuple[list[str], list[int]]]:
        n = len(self.prompts) if limit is None else min(limit, len(self.prompts))
        size = max(1, self.batch_size)
        return [(self.prompts[i:min(i + size, n)], self.seeds[i:min(i + size, n)]) for i in range(0, n, size)]


@dataclass
class Evaluation:
    """Objective values by name and trial attributes."""

    values: dict[str, float]
    attrs: dict[str, Any] = field(default_factory=dict)


def images_digest(images: torch.Tensor) -> str:
    """Hash of the images as 8-bit pixels (what a saved PNG holds): identical generations share it."""
    pixels = (images.float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    return hashlib.sha256(pixels.permute(0, 2, 3, 1).contiguous().numpy().tobytes()).hexdigest()[:16]


def accepts_size(pipe: Any) -> bool:
    """Whether the pipeline takes `height`/`width` (pixel-space pipelines of a fixed size do not)."""
    return "height" in inspect.signature(pipe.__call__).parameters


def generate(pipe: Any, calib: Calibration, limit: int | None = None, steps: int | None = None,
             trajectory: Trajectory | None = None) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1] for the first `limit` calibration prompts (all by default), one
    generator per image (seeded with its seed), so an image does not depend on the batch it is in, nor
    on the process that generates it (`search.processes` may split the images over processes).

    The pipeline runs `trajectory`'s call arguments (steps, explicit timesteps or sigmas) if given,
    else `steps` (default: the calibration's); its scheduler is the caller's business."""
    call = trajectory.call_kwargs() if trajectory is not None else {"num_inference_steps": steps or calib.steps}
    size = {"height": calib.height, "width": calib.width} if accepts_size(pipe) else {}
    return processes.generate(pipe, calib.part(0, limit), call, size, _generate_here)


def _generate_here(pipe: Any, calib: Calibration, call: dict[str, Any], size: dict[str, Any]) -> torch.Tensor:
    """`generate` in this process, batch by batch."""
    out = []
    for prompts, seeds in calib.chunks():
        gens = [torch.Generator(pipe.device).manual_seed(s) for s in seeds]
        with torch.no_grad():
            images = pipe(prompts, guidance_scale=calib.guidance, generator=gens, output_type="pt", **call,
                          **size).images
        out.append(images.float().cpu())
    return torch.cat(out)


class Evaluator:
    """Scores schedules on one pipeline; `evaluate(schedule)` → `Evaluation`."""

    def __init__(
        self,
        pipe: Any,
        calibration: Calibration,
        objectives: Sequence[str],
        *,
        reference: torch.Tensor,
        fid: Callable[[torch.Tensor], float],
        image_scores: dict[str, Callable[[torch.Tensor], float]] | None = None,
        measure_latency: Callable[[Callable[[], Any]], float],
        paired: Callable[[torch.Tensor, torch.Tensor], dict[str, float]] | None = None,
        macs: Callable[[Schedule], int] | None = None,
        device_name: str = "cpu",
        latency_images: int = 1,
    ) -> None:
        self.pipe, self.calibration, self.objectives = pipe, calibration, list(objectives)
        self.reference, self.fid, self.measure_latency = reference, fid, measure_latency
        self.paired, self.macs, self.device_name = paired, macs, device_name
        self.image_scores = {"fid": fid, **(image_scores or {})}
        self.latency_images = latency_images
        self._baseline_s: float | None = None
        # seconds of one generation predicted from its plan (a calibrated cost model), or None: measure
        self.latency_model: Callable[[Schedule | None], float] | None = None
        self.last_pruning: dict[str, Any] = {}  # `PruneLog.attrs()` of the last accelerated generation

    def images(self, schedule: Schedule | None) -> torch.Tensor:
        """The calibration batch under `schedule` (None: no acceleration)."""
        return self._with(schedule, lambda traj: generate(self.pipe, self.calibration, trajectory=traj))

    def _with(self, schedule: Schedule | None, run: Callable[[Trajectory | None], Any]) -> Any:
        """Run with the schedule applied as a user applies it (`dato.apply`: its own trajectory swapped in,
        `Schedule.trajectory`, never mapped); a schedule without a trajectory, and None, run on the
        study's own scheduler and steps."""
        if schedule is None:
            return run(None)
        handle = dato.apply(self.pipe, schedule, strict=True)
        try:
            return run(schedule.trajectory)
        finally:
            self.last_pruning = handle.pruning.attrs()
            handle.remove()

    def measured_latency(self, schedule: Schedule | None,
                         measure: Callable[[Callable[[], Any]], float] | None = None) -> float:
        """Seconds of generating `latency_images` images under `schedule`, timed by `measure`
        (default: the evaluator's own, the median of the configured repeats)."""
        measure = measure or self.measure_latency
        return self._with(schedule, lambda traj: measure(
            lambda: generate(self.pipe, self.calibration, self.latency_images, trajectory=traj)))

    def latency(self, schedule: Schedule | None) -> float:
        """The latency objective: the cost model's prediction if there is one, else measured."""
        if self.latency_model is not None:
            return self.latency_model(schedule)
        return self.measured_latency(schedule)

    @property
    def baseline_s(self) -> float:
        """Latency without acceleration, predicted or measured once in this process."""
        if self._baseline_s is None:
            self._baseline_s = self.latency(None)
        return self._baseline_s

    def prepare(self) -> None:
        """Measure the baseline latency now, outside any trial."""
        if "latency" in self.objectives:
            _ = self.baseline_s

    def evaluate(self, schedule: Schedule) -> Evaluation:
        """Generate, score and time one candidate; raises on failure (the runner makes it a FAIL trial)."""
        baseline = self.baseline_s
        images = self.images(schedule)
        pruning = self.last_pruning  # what pruning actually did while generating these images
        if not torch.isfinite(images).all():
            raise CandidateError("the generated images contain NaN or infinite values")
        latency_s = self.latency(schedule) if "latency" in self.objectives else float("nan")
        attrs: dict[str, Any] = {DEVICE_ATTR: self.device_name, DIGEST_ATTR: images_digest(images), **schedule.counts(), **pruning}
        if latency_s == latency_s:
            attrs[LATENCY_ATTR], attrs[SPEEDUP_ATTR] = latency_s, baseline / latency_s
        paired = self.paired(images, self.reference) if self.paired is not None else {}
        attrs.update({f"{PAIRED_PREFIX}{k}": float(v) for k, v in paired.items()})
        macs = self.macs(schedule) if self.macs is not None else None
        if macs is not None:
            attrs[MACS_ATTR] = int(macs)
        values = {name: self._value(name, images, latency_s, paired, macs) for name in self.objectives}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise CandidateError(f"objective {', '.join(bad)} is not finite")
        return Evaluation(values, attrs)

    def _value(self, name: str, images: torch.Tensor, latency_s: float, paired: dict[str, float],
               macs: int | None) -> float:
        if name in self.image_scores:
            return float(self.image_scores[name](images))
        if name == "latency":
            return latency_s
        if name == "macs" and macs is not None:
            return float(macs)
        if name in paired:
            return float(paired[name])
        raise CandidateError(f"objective {name!r} is not available from this evaluator")
