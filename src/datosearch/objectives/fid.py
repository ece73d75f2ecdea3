"""The FID-proxy: torchmetrics' `FrechetInceptionDistance` on a pluggable feature extractor.

The reference side (the full-compute images, or real-image statistics from an .npz) is added to
the metric once; each candidate resets only the fake side (`reset_real_features=False`).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from ..atomic import write_atomic
from .errors import ObjectiveError


def check_images(images: torch.Tensor, what: str = "candidate") -> torch.Tensor:
    """Float (B, C, H, W) images with finite values, else `ObjectiveError`."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ObjectiveError(f"{what} images must be a (B, C, H, W) tensor, got {shape}")
    if not images.is_floating_point():
        raise ObjectiveError(f"{what} images must be float in [0, 1], got dtype {images.dtype}")
    if not torch.isfinite(images).all():
        raise ObjectiveError(f"{what} produced NaN or infinite images")
    return images


def _module_device(module: nn.Module) -> torch.device:
    tensor = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """The Fréchet distance of two Gaussians, ‖mu1 − mu2‖² + Tr(sigma1 + sigma2 − 2 (sigma1 sigma2)^½), in float64,
    for statistics that no image set gives (`FrechetInceptionDistance.compute` takes them from its image sums
    only): the square root's trace is the sum of the square roots of the product's eigenvalues."""
    mu1, sigma1, mu2, sigma2 = (t.double().cpu() for t in (mu1, sigma1, mu2, sigma2))
    root = torch.linalg.eigvals(sigma1 @ sigma2).sqrt().real.sum()
    return float((mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * root)


@torch.no_grad()
def extract_features(extractor: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """`extractor`'s features (N, D) of float images, in batches, as float64 on CPU."""
    device = _module_device(extractor)
    return torch.cat([extractor(c.to(device, torch.float32)) for c in images.split(batch_size)]).double().cpu()


class FidProxy:
    """Fréchet distance between features of candidate images and a fixed reference.

    With `paired=True` (reference images only) the value adds the mean squared feature distance of
    each candidate image to the reference image of the same prompt and seed. That term is the cost
    of one coupling, so it bounds the 2-Wasserstein distance the Fréchet distance estimates, in the
    same units; it is what keeps the proxy monotone and steady on a small calibration batch.

    `FidProxy(extractor, reference_images=...)` or `FidProxy(extractor, real_stats="stats.npz")`
    (an .npz with `mu` (D,) and `sigma` (D, D), optionally `n`). Images are float (B, C, H, W) in
    [0, 1]; each side needs more images than the extractor has feature dimensions, or the
    covariance is singular. `proxy(images) -> float` (≥ 0; tiny negative round-off is clipped).
    """

    def __init__(self, extractor: nn.Module, reference_images: torch.Tensor | None = None,
                 real_stats: str | os.PathLike | None = None, batch_size: int = 64, paired: bool = False) -> None:
        if (reference_images is None) == (real_stats is None):
            raise ObjectiveError("FidProxy needs exactly one of reference_images and real_stats")
        if paired and reference_images is None:
            raise ObjectiveError("the paired FID-proxy term needs reference images, not statistics")
        if not isinstance(getattr(extractor, "num_features", None), int):
            raise ObjectiveError("the feature extractor needs an int `num_features`; build it with get_extractor()")
        self.extractor = extractor
        self.num_features: int = extractor.num_features
        self.batch_size = batch_size
        self.device = _module_device(extractor)
        self.metric = FrechetInceptionDistance(feature=extractor, reset_real_features=False, normalize=True)
        self.metric.to(self.device)
        self.reference_features: torch.Tensor | None = None
        if reference_images is not None:
            self._check_count(check_images(reference_images, "reference"), "reference")
            self._update(reference_images, real=True)
            if paired:
                self.reference_features = self.features(reference_images)
        else:
            self._set_real_stats(*load_stats(real_stats, self.num_features))

    # ------------------------------------------------------------------ internals
    def _check_count(self, images: torch.Tensor, what: str) -> None:
        n, d = images.shape[0], self.num_features
        if n <= d:
            raise ObjectiveError(f"the FID-proxy needs more {what} images than feature dimensions: got {n} "
                                 f"for {d}-d features (the covariance would be singular); use at least {d + 1} "
                                 f"images or an extractor with fewer features")

    @torch.no_grad()
    def _update(self, images: torch.Tensor, real: bool) -> None:
        for chunk in images.split(self.batch_size):
            self.metric.update(chunk.to(self.device, torch.float32), real=real)

    def _set_real_stats(self, mu: torch.Tensor, sigma: torch.Tensor, n: int) -> None:
        """Write (mu, sigma, n) into the metric's real-side sums, so `compute()` recovers them exactly."""
        m = self.metric
        mu = mu.to(self.device, torch.float64)
        sigma = sigma.to(self.device, torch.float64)
        m.real_features_sum = mu * n
        m.real_features_cov_sum = sigma * (n - 1) + n * torch.outer(mu, mu)
        m.real_features_num_samples = torch.tensor(n, dtype=torch.long, device=self.device)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Features (N, D) in float64, as the metric sees them."""
        return extract_features(self.extractor, images, self.batch_size)

    # --------------------------------------------------------------------- public
    def __call__(self, images: torch.Tensor) -> float:
        images = check_images(images)
        self._check_count(images, "candidate")
        self.metric.reset()  # fake side only
        self._update(images, real=False)
        value = float(self.metric.compute())
        if self.reference_features is not None:
            if images.shape[0] != self.reference_features.shape[0]:
                raise ObjectiveError(f"the paired FID-proxy needs one candidate per reference image: "
                                     f"{images.shape[0]} vs {self.reference_features.shape[0]}")
            value += float((self.features(images) - self.reference_features).pow(2).sum(1).mean())
        if not np.isfinite(value):
            raise ObjectiveError(f"the FID-proxy came out {value}; the candidate's features are degenerate")
        return max(value, 0.0)

    def reference_stats(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(mu, sigma, n) of the reference side, in float64 on CPU."""
        m = self.metric
        n = int(m.real_features_num_samples)
        mu = m.real_features_sum / n
        sigma = (m.real_features_cov_sum - n * torch.outer(mu, mu)) / (n - 1)
        return mu.cpu(), sigma.cpu(), n

    def save_stats(self, path: str | os.PathLike) -> Path:
        """Write the reference statistics as an .npz (`mu`, `sigma`, `n`) that `real_stats=` reads."""
        mu, sigma, n = self.reference_stats()
        buffer = io.BytesIO()
        np.savez(buffer, mu=mu.numpy(), sigma=sigma.numpy(), n=np.int64(n))
        return write_atomic(path, buffer.getvalue())


def load_stats(path: str | os.PathLike, num_features: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(mu, sigma, n) from an .npz with `mu`, `sigma` and optionally `n` (default 2: only mu/sigma matter)."""
    path = Path(path)
    try:
        with np.load(path) as data:
            if "mu" not in data or "sigma" not in data:
                raise ObjectiveError(f"{path}: statistics file needs arrays 'mu' and 'sigma', has {sorted(data.files)}")
            mu, sigma = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
            n = int(data["n"]) if "n" in data else 2
    except (OSError, ValueError) as exc:
        if isinstance(exc, ObjectiveError):
            raise
        raise ObjectiveError(f"{path}: cannot read FID statistics ({exc})") from None
    d = mu.shape[0] if mu.ndim == 1 else -1
    if d < 1 or sigma.shape != (d, d):
        raise ObjectiveError(f"{path}: 'mu' must be (D,) and 'sigma' (D, D), got {mu.shape} and {sigma.shape}")
    if num_features is not None and d != num_features:
        raise ObjectiveError(f"{path}: statistics are {d}-d but the feature extractor gives {num_features}-d features")
    if n < 2:
        raise ObjectiveError(f"{path}: 'n' must be at least 2, got {n}")
    return torch.from_numpy(mu), torch.from_numpy(sigma), n
