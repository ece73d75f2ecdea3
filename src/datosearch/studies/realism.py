"""The realism objective's offset: the reference trajectory's mean feature minus real images'.

`realism` (`objectives.FeatureShift` with this offset) scores a candidate by the squared distance of
its images' mean feature from real images': the mean term of the FID against real images, which
the held-out check measures. A calibration batch is too small to estimate that mean: the candidate's
24-image mean against the embedded model's training digits ranks 27 schedules at Kendall τ −0.34
with the held-out FID-proxy against real digits. So the reference trajectory's own mean is computed
once over `OFFSET_IMAGES` seeds (cached like the reference images) and the calibration batch adds
only the candidate's paired shift from the reference: τ 0.67 (`bench/results/shift-agreement.md`).

Real images: the embedded model's training digits (never its held-out split), per digit, mixed as
the sample's prompts ask; or `--real-stats`, an .npz whose `mu` is the mean of the configured
extractor's features on real images (the usual FID statistics files fit the `inception` extractor).
Opt-in (`--objectives fid,latency,realism`): on the embedded model it also rewards the lowered
contrast of solver error (README, "Why UniPC 5 and 7 are hard").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from ..errors import UserValueError
from ..objectives import load_stats
from ..objectives.fid import extract_features

OFFSET_IMAGES = 200


def require_real_images(model: str, real_stats: str | None) -> None:
    """Raise `UserValueError` unless the realism objective has real images to compare against."""
    if real_stats is None and model != "embedded":
        raise UserValueError(f"the realism objective needs real-image statistics for model {model!r}: pass "
                             f"--real-stats stats.npz (the mean 'mu' and covariance 'sigma' of the extractor's "
                             f"features on real images), or choose other --objectives")


def real_mean(config: Any, extractor: torch.nn.Module, prompts: list[str]) -> torch.Tensor:
    """The mean feature (float64) of real images for `prompts`: `config.real_stats`'s `mu`, or on the
    embedded model the training digits' per-digit means weighted by the prompted digits (a prompt mix
    that is not the real one must not read as a shift)."""
    require_real_images(config.model, config.real_stats)
    if config.real_stats is not None:
        return load_stats(config.real_stats, extractor.num_features)[0]
    from ..models.digits import training_digits
    from .build import prompted_digits

    images, labels = training_digits()
    features = extract_features(extractor, images)
    means = torch.stack([features[labels == d].mean(0) for d in range(10)])
    return means[torch.tensor(prompted_digits(prompts, "the realism objective on the embedded model"))].mean(0)


def offset_batch(config: Any, n: int | None = None) -> tuple[list[str], list[int]]:
    """The calibration prompts cycled to `n` images; the calibration seeds, then the next after the largest."""
    n = max(OFFSET_IMAGES if n is None else n, len(config.prompts))
    prompts = [config.prompts[i % len(config.prompts)] for i in range(n)]
    extra = max(config.seeds) + 1
    return prompts, list(config.seeds) + list(range(extra, extra + n - len(config.seeds)))


def realism_offset(pipe: Any, config: Any, cache_dir: Path, extractor: torch.nn.Module) -> torch.Tensor:
    """Mean feature of the reference trajectory over `offset_batch` minus the real images' mean."""
    from .build import reference_images

    prompts, seeds = offset_batch(config)
    sample = reference_images(pipe, dataclasses.replace(config, prompts=prompts, seeds=seeds), cache_dir)
    return extract_features(extractor, sample).mean(0) - real_mean(config, extractor, prompts)
