"""The shift and realism objectives: how far the candidate images' features moved from a target.

`FeatureShift(extractor, reference_images)(images)` is ‖mean_i (f(x_i) − f(r_i))‖², x_i and r_i
the candidate and reference images of the same prompt and seed. It is the mean term of the Fréchet
distance to the reference, estimated paired: per-image errors that point in random directions
average out (they enter as their mean square over the number of images), a shift every image shares
(a contrast or brightness change, an overshooting forecast) does not. So it sees the distribution
shift a PSNR-like proxy hides, from a calibration batch too small for a covariance: on the embedded
model, 24 calibration images rank the FID-proxy against 200 held-out converged images at Kendall
τ 0.89 over 27 schedules (`bench/results/shift-agreement.md`).

With `offset` (the reference trajectory's own mean feature minus a target's, e.g. real images'; see
`studies.realism`) the value is ‖offset + mean_i (f(x_i) − f(r_i))‖²: the candidate's squared
mean-feature distance from the target, the mean term of the FID against real images, with the
calibration batch contributing only the paired (low-noise) part (the `realism` objective of studies
created before `RealismDistance`).

`RealismDistance` is the whole Fréchet distance to real images' statistics the same way: the
candidate's mean and covariance are the reference trajectory's over a large sample plus the
candidate's paired shift on the calibration batch (its mean feature difference and its covariance
minus the reference images' covariance, both over the same prompts and seeds, so the sampling noise
they share cancels), the covariance projected back onto the positive semi-definite cone.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import ObjectiveError
from .fid import check_images, extract_features, frechet_distance


class FeatureShift:
    """Squared norm of `offset` + the mean paired feature difference to fixed reference images (≥ 0)."""

    def __init__(self, extractor: nn.Module, reference_images: torch.Tensor, batch_size: int = 64,
                 offset: torch.Tensor | None = None) -> None:
        self.extractor, self.batch_size = extractor, batch_size
        self.reference = extract_features(extractor, check_images(reference_images, "reference"), batch_size)
        width = self.reference.shape[1]
        if offset is not None and tuple(offset.shape) != (width,):
            raise ObjectiveError(f"the feature offset must have the extractor's {width} dimensions, "
                                 f"got shape {tuple(offset.shape)}")
        self.offset = torch.zeros(width, dtype=torch.float64) if offset is None else offset.double().cpu()

    def __call__(self, images: torch.Tensor) -> float:
        images = check_images(images)
        if images.shape[0] != self.reference.shape[0]:
            raise ObjectiveError(f"the shift objective needs one candidate per reference image: "
                                 f"{images.shape[0]} vs {self.reference.shape[0]}")
        shift = self.offset + (extract_features(self.extractor, images, self.batch_size) - self.reference).mean(0)
        value = float(shift @ shift)
        if not math.isfinite(value):
            raise ObjectiveError(f"the shift objective came out {value}; the candidate's features are degenerate")
        return value


class RealismDistance:
    """Fréchet distance from `real` = (mu, sigma) of the candidate's features, estimated as `sample`'s statistics
    (the reference trajectory's features over a large sample) plus the paired shift of the candidate images
    from `reference_images` (the first images of that sample: the same prompts and seeds)."""

    def __init__(self, extractor: nn.Module, reference_images: torch.Tensor, sample: torch.Tensor,
                 real: tuple[torch.Tensor, torch.Tensor], batch_size: int = 64) -> None:
        self.extractor, self.batch_size = extractor, batch_size
        self.reference = extract_features(extractor, check_images(reference_images, "reference"), batch_size)
        width = self.reference.shape[1]
        if tuple(sample.shape[1:]) != (width,) or tuple(real[0].shape) != (width,) or tuple(real[1].shape) != (width, width):
            raise ObjectiveError(f"the realism statistics must have the extractor's {width} dimensions")
        self.mu, self.sigma = sample.double().mean(0), torch.cov(sample.double().T)
        self.reference_sigma = torch.cov(self.reference.T)
        self.real = real

    def __call__(self, images: torch.Tensor) -> float:
        images = check_images(images)
        if images.shape[0] != self.reference.shape[0]:
            raise ObjectiveError(f"the realism objective needs one candidate per reference image: "
                                 f"{images.shape[0]} vs {self.reference.shape[0]}")
        features = extract_features(self.extractor, images, self.batch_size)
        sigma = self.sigma + torch.cov(features.T) - self.reference_sigma
        values, vectors = torch.linalg.eigh((sigma + sigma.T) / 2)
        value = frechet_distance(self.mu + (features - self.reference).mean(0), (vectors * values.clamp(min=0)) @ vectors.T,
                                 *self.real)
        if not math.isfinite(value):
            raise ObjectiveError(f"the realism objective came out {value}; the candidate's features are degenerate")
        return max(value, 0.0)
