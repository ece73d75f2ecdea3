"""From a `StudyConfig` to the objects a process needs: the pipeline, the encoding, the `Evaluator`.

This is the one place that wires `datosearch.models` and `datosearch.objectives` into the search.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from ..errors import UserValueError
from ..models.digits import digit_prompt
from ..search.evaluator import Calibration, Evaluator, generate
from ..space.encoding import EncodingConfig
from ..space.layout import transformer_blocks
from ..space.schedule import Schedule
from ..space.trajectory import Trajectory, converged


def load_pipeline(model: str, device: str = "cpu", dtype: str = "float32") -> tuple[Any, str]:
    """The pipeline and its model name (as stored in the study)."""
    from .. import models

    pipe = models.load(model, device=device, dtype=getattr(torch, dtype))
    pipe.set_progress_bar_config(disable=True)
    return pipe, model


def n_calls(pipe: Any, steps: int) -> int:
    """U-Net calls of one generation of the pipeline's scheduler with `steps` steps (PNDM: steps + 1)."""
    return Trajectory(type(pipe.scheduler).__name__, steps).calls(pipe.scheduler.config)


def default_resolution(pipe: Any) -> int:
    """The U-Net's sample size in pixels (pixel-space pipelines have no VAE factor)."""
    return int(pipe.unet.config.sample_size * getattr(pipe, "vae_scale_factor", 1))


def default_guidance(pipe: Any) -> float:
    """The pipeline's own guidance scale if its config has one (the embedded model), else 7.5."""
    return float(getattr(pipe, "config", {}).get("guidance_scale", 7.5))


def default_prompts(n: int) -> tuple[list[str], list[int]]:
    """`n` calibration prompts cycling over the ten digits, seeds 0..n-1."""
    return [digit_prompt(i % 10) for i in range(n)], list(range(n))


SEARCH_STEPS = (6, 8, 10, 12, 15, 20, 25, 30, 40, 50)
# DPM-Solver++ 2M, whose timesteps are genes, at every count of the refined members' family (`studies.refine`:
# K+1..2K steps for K <= 10 full calls), so that their genes express them exactly and evolution varies them
DENSE_SOLVER, DENSE_STEPS = "DPMSolverMultistepScheduler", tuple(range(6, 21))
FEWER_STEPS = (5, 7, 10, 15, 25)
SEARCH_SOLVERS = ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler")


def trajectory_table(pipe: Any, pairs: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """`{"scheduler", "steps", "calls"}` for each (scheduler class, steps): the U-Net calls it makes."""
    trajs = [Trajectory(name, steps) for name, steps in pairs]
    return [{**t.to_dict(), "calls": t.calls(pipe.scheduler.config)} for t in trajs]


def scheduler_calls(pipe: Any, scheduler: str, steps: int) -> int:
    """U-Net calls of one generation with `scheduler` (a class name or alias) at `steps` steps."""
    return trajectory_table(pipe, [(scheduler, steps)])[0]["calls"]


def trajectories(pipe: Any, steps: int) -> list[dict[str, Any]]:
    """Base trajectories for `--search-steps`: the study's own first, then its scheduler, DPM-Solver++ 2M
    and UniPC at `SEARCH_STEPS` (DPM-Solver++ also at `DENSE_STEPS`)."""
    own = type(pipe.scheduler).__name__
    pairs = [(own, steps)] + [(name, s) for name in (own, *SEARCH_SOLVERS)
                              for s in sorted(set(SEARCH_STEPS) | set(DENSE_STEPS if name == DENSE_SOLVER else ()))
                              if (name, s) != (own, steps)]
    return trajectory_table(pipe, pairs)


def fewer_steps(pipe: Any, steps: int) -> list[dict[str, Any]]:
    """The fewer-steps anchors' trajectories: the study's scheduler, DPM-Solver++ 2M and UniPC at
    `FEWER_STEPS` (below the study's own step count)."""
    own = type(pipe.scheduler).__name__
    names = [own] + [n for n in SEARCH_SOLVERS if n != own]
    return trajectory_table(pipe, [(n, s) for n in names for s in FEWER_STEPS if s < steps])


def default_encoding(pipe: Any, steps: int, search_steps: bool = False, **overrides: Any) -> EncodingConfig:
    """Search every transformer block's ratio and the cache plan (branches 0..2); with `search_steps`,
    the base trajectory too (structured encoding only). The structured encoding gets the `last` gene."""
    branches = overrides.pop("branches", None)
    branches = [0, 1, 2] if branches is None else branches
    from ..space.layout import n_branches

    fields = dict(n_calls=n_calls(pipe, steps), blocks=[b.path for b in transformer_blocks(pipe.unet)],
                  branches=[b for b in branches if b < n_branches(pipe.unet)])
    fields.update({k: v for k, v in overrides.items() if v is not None})
    if fields.get("kind") == "structured":
        fields.setdefault("last_gene", True)
        fields.setdefault("timestep_genes", True)
        fields.setdefault("option_genes", True)
    if search_steps:
        if fields.get("kind") != "structured":
            raise UserValueError("--search-steps needs the structured encoding (--encoding structured)")
        fields["trajectories"] = trajectories(pipe, steps)
    return EncodingConfig(**fields)


def calibration(config: Any) -> Calibration:
    return Calibration(config.prompts, config.seeds, config.steps, config.guidance, config.height, config.width,
                       config.batch_size)


def feature_dims(config: Any) -> int:
    """FID-proxy feature dimension: half the calibration images (≤ 64; the covariance needs n > d)."""
    return max(4, min(64, len(config.prompts) // 2))


class ProjectedFeatures(torch.nn.Module):
    """A feature extractor followed by a fixed, seeded random projection to `num_features` dimensions."""

    def __init__(self, extractor: torch.nn.Module, num_features: int, seed: int = 0) -> None:
        super().__init__()
        self.extractor, self.num_features = extractor, int(num_features)
        gen = torch.Generator().manual_seed(seed)
        weight = torch.randn(extractor.num_features, self.num_features, generator=gen) / self.num_features ** 0.5
        self.register_buffer("weight", weight)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.extractor(images).float() @ self.weight


def make_extractor(config: Any, device: str) -> torch.nn.Module:
    """The configured extractor with fewer feature dimensions than calibration images (conv-random is
    built that small; any other extractor that is too wide gets a fixed random projection)."""
    from ..objectives import get_extractor

    dims = feature_dims(config)
    if config.extractor == "conv-random":
        return get_extractor("conv-random", device, num_features=dims)
    extractor = get_extractor(config.extractor, device)
    if extractor.num_features < len(config.prompts):
        return extractor
    return ProjectedFeatures(extractor, dims).to(device).eval()


def prompted_digits(prompts: list[str], what: str = "the adherence objective") -> list[int]:
    """The digit each calibration prompt asks for (the last digit character in it); `what` needs them."""
    digits = [re.findall(r"\d", p) for p in prompts]
    missing = [p for p, d in zip(prompts, digits) if not d]
    if missing:
        raise UserValueError(f"{what} needs a digit in every prompt; {missing[0]!r} has none")
    return [int(d[-1]) for d in digits]


def extra_scores(config: Any, reference: torch.Tensor, device: str = "cpu", pipe: Any = None,
                 cache_dir: Path | None = None) -> dict[str, Any]:
    """Image scores besides the FID-proxy: `adherence` (share classified as the prompted digit),
    `shift` (the mean paired feature shift from the reference) and `realism` (the Fréchet distance from
    real images', estimated as a paired shift from a larger reference sample: `studies.realism`; needs
    `pipe` and `cache_dir`), both on the configured extractor at its own width (no projection: the
    covariances come from the larger samples)."""
    scores: dict[str, Any] = {}
    if "adherence" in config.objectives:
        from ..models.digits import prompt_adherence

        digits = prompted_digits(config.prompts)
        scores["adherence"] = lambda images: prompt_adherence(images, digits)
    if "shift" in config.objectives or "realism" in config.objectives:
        from ..objectives import FeatureShift, get_extractor

        extractor = get_extractor(config.extractor, device)
        if "shift" in config.objectives:
            scores["shift"] = FeatureShift(extractor, reference)
        if "realism" in config.objectives:
            from .realism import realism_objective

            scores["realism"] = realism_objective(pipe, config, cache_dir, extractor, reference)
    return scores


SUPPORTED = ("fid", "latency", "macs", "psnr", "adherence", "shift", "realism")


def reference_images(pipe: Any, config: Any, cache_dir: Path) -> torch.Tensor:
    """The images quality is measured against, computed once and cached: the study's own full compute,
    or (`reference="converged"`) the converged trajectory, DPM-Solver++ 2M at 100 steps."""
    from .. import objectives as obj
    from ..space.trajectory import swapped

    calib = calibration(config)
    key = dict(model=config.model, prompts=config.prompts, seeds=config.seeds, resolution=[config.height, config.width],
               steps=config.steps, scheduler=config.scheduler, guidance=config.guidance, dtype=config.dtype)
    trajectory = config.trajectory
    if config.reference == "converged":
        trajectory = converged(config.converged_spacing)
        key.update(steps=trajectory.steps, scheduler=trajectory.scheduler)
        if config.converged_spacing is not None:  # studies made before the spacing was fixed keep the config's own
            key.update(timestep_spacing=config.converged_spacing)
    with swapped(pipe, trajectory):
        return obj.load_or_compute_reference(cache_dir, obj.reference_key(**key),
                                             lambda: generate(pipe, calib, trajectory=trajectory))


def build_evaluator(pipe: Any, config: Any, cache_dir: Path, device: str = "cpu") -> Evaluator:
    """An `Evaluator` whose reference images are the full-compute batch, cached under `cache_dir`."""
    from .. import objectives as obj

    unsupported = [o for o in config.objectives if o not in SUPPORTED]
    if unsupported:
        raise UserValueError(f"objective {unsupported[0]!r} is not supported by the evaluator ({', '.join(SUPPORTED)})")
    calib = calibration(config)
    reference = reference_images(pipe, config, cache_dir)
    fid = obj.FidProxy(make_extractor(config, device), reference, paired=config.fid_paired)

    def measure(run: Any) -> float:
        return obj.measure_latency(run, device, config.latency_warmup, config.latency_repeats).median_s

    def macs(schedule: Schedule) -> int:  # counted on a meta-device replica: seconds per schedule, so on demand
        return obj.count_macs(pipe, schedule, height=config.height, width=config.width,
                              guidance_scale=config.guidance)

    return Evaluator(pipe, calib, config.objectives, reference=reference, fid=fid,
                     image_scores=extra_scores(config, reference, device, pipe, cache_dir), measure_latency=measure,
                     paired=obj.paired_metrics, macs=macs if "macs" in config.objectives else None,
                     device_name=config.device, latency_images=config.latency_images)
