"""Paired metrics of candidate images against the reference images (same prompts and seeds).

Recorded as trial attributes; `psnr` can also be a study objective (maximised).
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from .errors import ObjectiveError
from .fid import check_images

PSNR_CAP_DB = 100.0  # identical images give +inf; capped so values stay finite in study storage


def paired_metrics(images: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Mean per-image PSNR (dB, capped at 100), SSIM and MAE of `images` vs `reference`, both in [0, 1].

    Uses torchmetrics' functionals with `data_range=1.0`; SSIM's Gaussian kernel shrinks (odd, ≥ 3)
    for images smaller than 11 pixels.
    """
    images, reference = check_images(images), check_images(reference, "reference")
    if images.shape != reference.shape:
        raise ObjectiveError(f"paired metrics need images shaped like the reference: "
                             f"{tuple(images.shape)} vs {tuple(reference.shape)}")
    x, y = images.float(), reference.to(images.device, torch.float32)
    psnr = peak_signal_noise_ratio(x, y, data_range=1.0, reduction="none", dim=(1, 2, 3))
    psnr = psnr.nan_to_num(posinf=PSNR_CAP_DB).clamp(max=PSNR_CAP_DB).mean()
    side = min(x.shape[-2:])
    kernel = min(11, side if side % 2 else side - 1)
    if kernel < 3:
        raise ObjectiveError(f"SSIM needs images of at least 3x3 pixels, got {tuple(x.shape[-2:])}")
    ssim = structural_similarity_index_measure(x, y, data_range=1.0, kernel_size=kernel)
    return {"psnr": float(psnr), "ssim": float(ssim), "mae": float((x - y).abs().mean())}
