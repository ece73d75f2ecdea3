"""The realism objective: the distance of a candidate's images from real images, in the extractor's features.

`realism` scores a candidate by the Fréchet distance of its images' features from real images'
(`objectives.RealismDistance`): what the held-out check's FID-proxy against real digits measures. A
calibration batch is too small to estimate it: the candidate's 24-image Fréchet distance against the
embedded model's training digits ranks 27 schedules at Kendall τ −0.44 with the held-out FID-proxy
against real digits. So the reference trajectory's own statistics are computed once over
`OFFSET_IMAGES` seeds (cached like the reference images) and the calibration batch adds only the
candidate's paired shift from the reference, in mean and covariance: τ 0.78 (0.80 on other held-out
seeds), where the mean term alone (the form of studies created before, `realism_form` "mean") reaches
0.71 (0.66) (`bench/results/shift-agreement.md`).

Real images: the embedded model's training digits (never its held-out split), per digit, mixed as
the sample's prompts ask; or `--real-stats`, an .npz with the `mu` and `sigma` of the configured
extractor's features on real images (the usual FID statistics files fit the `inception` extractor).
Opt-in (`--objectives psnr,latency,realism`): on the embedded model it also rewards the lowered
contrast of solver error (README, "Why UniPC 5 and 7 are hard").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import UserValueError
from ..objectives import load_stats
from ..objectives.fid import extract_features
from ..objectives.shift import FeatureShift, RealismDistance

OFFSET_IMAGES = 200


def require_real_images(model: str, real_stats: str | None) -> None:
    """Raise `UserValueError` unless the realism objective has real images to compare against."""
    if real_stats is None and model != "embedded":
        raise UserValueError(f"the realism objective needs real-image statistics for model {model!r}: pass "
                             f"--real-stats stats.npz (the mean 'mu' and covariance 'sigma' of the extractor's "
                             f"features on real images), or choose other --objectives")


def real_stats(config: Any, extractor: torch.nn.Module, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, covariance) (float64) of real images' features for `prompts`: `config.real_stats`'s, or on the
    embedded model the training digits' mixed per digit as the prompts ask (a prompt mix that is not the
    real one must not read as a shift)."""
    require_real_images(config.model, config.real_stats)
    if config.real_stats is not None:
        return load_stats(config.real_stats, extractor.num_features)[:2]
    from ..models.digits import training_digits
    from .build import prompted_digits

    images, labels = training_digits()
    features = extract_features(extractor, images)
    weights = torch.bincount(torch.tensor(prompted_digits(prompts, "the realism objective on the embedded model")),
                             minlength=10).double()
    weights /= weights.sum()
    means = torch.stack([features[labels == d].mean(0) for d in range(10)])
    mu = (weights[:, None] * means).sum(0)
    second = sum(weights[d] * (torch.cov(features[labels == d].T) + torch.outer(means[d], means[d])) for d in range(10))
    return mu, second - torch.outer(mu, mu)


def offset_batch(config: Any, n: int | None = None) -> tuple[list[str], list[int]]:
    """The calibration prompts cycled to `n` images; the calibration seeds, then the next after the largest."""
    n = max(OFFSET_IMAGES if n is None else n, len(config.prompts))
    prompts = [config.prompts[i % len(config.prompts)] for i in range(n)]
    extra = max(config.seeds) + 1
    return prompts, list(config.seeds) + list(range(extra, extra + n - len(config.seeds)))


def realism_objective(pipe: Any, config: Any, cache_dir: Path, extractor: torch.nn.Module,
                      reference: torch.Tensor) -> Callable[[torch.Tensor], float]:
    """The study's `realism` score against `reference` (its calibration images): the reference trajectory's
    features over `offset_batch` (its first images are the calibration batch) against real images', in the
    study's `realism_form`."""
    from .build import reference_images

    prompts, seeds = offset_batch(config)
    sample = extract_features(extractor, reference_images(pipe, dataclasses.replace(config, prompts=prompts, seeds=seeds),
                                                          cache_dir))
    mu, sigma = real_stats(config, extractor, prompts)
    if config.realism_form == "mean":
        return FeatureShift(extractor, reference, offset=sample.mean(0) - mu)
    return RealismDistance(extractor, reference, sample, (mu, sigma))
