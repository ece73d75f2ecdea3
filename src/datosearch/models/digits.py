"""The embedded model's data and its digit classifier.

The classifier's 64-d penultimate features are the ``embedded-digits`` FID-proxy extractor; its
predictions give the second quality signal, prompt adherence.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MissingFileError

WEIGHTS_DIR = Path(__file__).parent / "weights"
CLASSIFIER_FILE = WEIGHTS_DIR / "digit_classifier.safetensors"
TRAINING_RECORD = WEIGHTS_DIR / "embedded_training.json"
IMAGE_SIZE = 32
NUM_FEATURES = 64


def digit_prompt(digit: int) -> str:
    """The prompt the embedded model was trained on for `digit`."""
    return f"a handwritten digit {int(digit)}"


def digit_prompts(per_digit: int) -> tuple[list[str], list[int]]:
    """`per_digit` prompts for each digit 0..9, digit by digit, and their labels."""
    labels = [d for d in range(10) for _ in range(per_digit)]
    return [digit_prompt(d) for d in labels], labels


def to_gray32(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) images in [0, 1] (or uint8 in [0, 255]) -> (B, 1, 32, 32) float in [0, 1]."""
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    images = images.float()
    if images.ndim == 3:
        images = images.unsqueeze(1)
    images = images.mean(dim=1, keepdim=True)
    if images.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        images = F.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False,
                               antialias=images.shape[-1] > IMAGE_SIZE)
    return images


class DigitClassifier(nn.Module):
    """A three-stage CNN on 32x32 gray digits: `features()` is 64-d, `forward()` returns 10 logits."""

    def __init__(self, num_features: int = NUM_FEATURES):
        super().__init__()
        self.num_features = num_features
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 4 * 4, num_features), nn.ReLU(),
        )
        self.head = nn.Linear(num_features, 10)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features of images in [0, 1] (any channels/size)."""
        x = to_gray32(images).to(self.head.weight.device)
        return self.body(x * 2.0 - 1.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


class DigitFeatures(nn.Module):
    """FID-proxy feature extractor: float (B, C, H, W) in [0, 1] -> (B, 64); has `num_features`."""

    def __init__(self, classifier: DigitClassifier):
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.num_features

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(images)


@lru_cache(maxsize=1)
def _shipped_classifier() -> DigitClassifier:
    from safetensors.torch import load_file

    if not CLASSIFIER_FILE.exists():
        raise MissingFileError(f"the embedded digit classifier is missing at {CLASSIFIER_FILE}; "
                                "run scripts/train_embedded.py")
    model = DigitClassifier()
    model.load_state_dict(load_file(str(CLASSIFIER_FILE)))
    return model.eval().requires_grad_(False)


def digit_classifier() -> DigitClassifier:
    """The shipped classifier (shared, frozen, eval mode)."""
    return _shipped_classifier()


def digit_features() -> DigitFeatures:
    """A fresh FID-proxy feature module over the shipped classifier (for `FrechetInceptionDistance(feature=...)`)."""
    return DigitFeatures(_shipped_classifier())


@torch.no_grad()
def classify_digits(images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Predicted digit (LongTensor (B,)) for images in [0, 1]."""
    model = _shipped_classifier()
    preds = [model(chunk).argmax(dim=1) for chunk in images.split(batch_size)]
    return torch.cat(preds).cpu().long()


def prompt_adherence(images: torch.Tensor, digits) -> float:
    """Share of `images` classified as the digit they were prompted with."""
    digits = torch.as_tensor(list(digits) if not torch.is_tensor(digits) else digits).long().cpu()
    if len(digits) != len(images):
        raise ValueError(f"got {len(images)} images but {len(digits)} prompted digits")
    return (classify_digits(images) == digits).float().mean().item()


@torch.no_grad()
def fid_proxy(fake: torch.Tensor, real: torch.Tensor) -> float:
    """Frechet distance between `digit_features()` of two image sets (float (B, C, H, W) in [0, 1])."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=digit_features(), reset_real_features=True)
    metric.update(real.float(), real=True)
    metric.update(fake.float(), real=False)
    return float(metric.compute())


def load_digit_images(size: int = IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """All of scikit-learn's bundled digits as (N, 1, size, size) floats in [0, 1] (bilinear upsampling) and labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return x, torch.tensor(data.target, dtype=torch.long)


def _split(part: str) -> tuple[torch.Tensor, torch.Tensor]:
    record = json.loads(TRAINING_RECORD.read_text())
    idx = torch.tensor(record["split"][f"{part}_indices"], dtype=torch.long)
    images, labels = load_digit_images()
    return images[idx], labels[idx]


def heldout_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out real digits (images in [0, 1], labels) of the split recorded at training time."""
    return _split("heldout")


def training_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The real digits the embedded model was trained on (the split's other part): what a study may see."""
    return _split("train")
