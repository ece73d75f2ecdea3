"""Feature extractors for the FID-proxy, by name: `get_extractor("conv-random")` etc.

Every extractor is an `nn.Module` in eval mode that maps float images (B, C, H, W) in [0, 1]
to features (B, D) and has an int `num_features` attribute (torchmetrics reads the dimension
from it). Keep D well below the number of images scored, and ≤ 256 so `compute()` stays fast.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ObjectiveError

INCEPTION_WEIGHTS_ENV = "DATOSEARCH_INCEPTION_WEIGHTS"
INCEPTION_DIMS = (64, 192, 768, 2048)
EXTRACTOR_NAMES = ("conv-random", "embedded-digits", "inception", "inception-<64|192|768|2048>",
                   "module:pkg.mod:attr")


def _to_rgb(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) with C of 1, 3 or 4 (alpha dropped) to 3 channels."""
    c = images.shape[1]
    if c == 1:
        return images.expand(-1, 3, -1, -1)
    if c in (3, 4):
        return images[:, :3]
    raise ObjectiveError(f"expected images with 1, 3 or 4 channels, got {c}")


class ConvRandomFeatures(nn.Module):
    """A fixed, seeded random conv net: images in [0, 1] -> `num_features`-d features.

    Weights come from a private `torch.Generator(seed)`, so two constructions are identical and
    the global RNG is untouched. Inputs are resized to `size`×`size`, so any resolution works.
    The features (spatial means of three ReLU conv stages, concatenated) respond to both layout
    and texture, which is what a proxy for random-weight pipelines needs.
    """

    def __init__(self, num_features: int = 64, size: int = 64, seed: int = 0) -> None:
        super().__init__()
        if num_features < 4:
            raise ObjectiveError(f"conv-random needs num_features >= 4, got {num_features}")
        self.num_features, self.size = int(num_features), int(size)
        widths = (num_features // 4, num_features // 4, num_features - 2 * (num_features // 4))
        with torch.random.fork_rng(devices=[]):  # nn.Conv2d's default init would consume the global RNG
            self.convs = nn.ModuleList(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
                                       for c_in, c_out in zip((3, *widths[:-1]), widths))
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for conv in self.convs:
                fan_in = conv.in_channels * 9
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                conv.bias.zero_()
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "ConvRandomFeatures":
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = _to_rgb(images.float())
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        x = x * 2 - 1
        pooled = []
        for conv in self.convs:
            x = F.relu(conv(x))
            pooled.append(x.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)


class _InceptionOnFloats(nn.Module):
    """torchmetrics' InceptionV3 wrapped to take float images in [0, 1] (it expects uint8)."""

    def __init__(self, dims: int, weights: str) -> None:
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(dims)],
                                      feature_extractor_weights_path=weights)
        self.num_features = dims

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((_to_rgb(images).clamp(0, 1) * 255).round().to(torch.uint8))


def _inception(dims: int, weights: str | os.PathLike | None) -> nn.Module:
    help_ = (f"install the 'inception' extra (pip install 'datosearch[inception]') and set "
             f"{INCEPTION_WEIGHTS_ENV}=/path/to/pt_inception-2015-12-05.pth")
    if dims not in INCEPTION_DIMS:
        raise ObjectiveError(f"inception features must be one of {INCEPTION_DIMS}, got {dims}")
    path = weights or os.environ.get(INCEPTION_WEIGHTS_ENV)
    if not path or not Path(path).is_file():
        where = f"'{path}' is not a file" if path else f"{INCEPTION_WEIGHTS_ENV} is not set"
        raise ObjectiveError(f"InceptionV3 weights are not available offline ({where}); {help_}")
    if importlib.util.find_spec("torch_fidelity") is None:
        raise ObjectiveError(f"InceptionV3 features need torch-fidelity, which is not installed; {help_}")
    return _InceptionOnFloats(dims, str(path))


def _from_import_path(spec: str, **kwargs: Any) -> nn.Module:
    """`pkg.mod:attr` -> a module: an `nn.Module` instance, or a factory/class called with `kwargs`."""
    mod_name, _, attr = spec.partition(":")
    if not mod_name or not attr:
        raise ObjectiveError(f"extractor 'module:{spec}' must look like 'module:pkg.mod:attr'")
    try:
        obj: Any = importlib.import_module(mod_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ObjectiveError(f"cannot import feature extractor '{spec}': {exc}") from None
    module = obj if isinstance(obj, nn.Module) else obj(**kwargs)
    if not isinstance(module, nn.Module):
        raise ObjectiveError(f"feature extractor '{spec}' gave a {type(module).__name__}, not a torch.nn.Module")
    return module


def _embedded_digits(**kwargs: Any) -> nn.Module:
    try:
        from ..models.digits import digit_features  # type: ignore[import-not-found]

        return digit_features(**kwargs)
    except (ImportError, FileNotFoundError) as exc:
        raise ObjectiveError(f"the embedded digit feature net (datosearch.models.digits.digit_features) is "
                             f"not available in this install ({exc}); use 'conv-random' or 'module:...'") from None


def _ensure_num_features(module: nn.Module, name: str) -> nn.Module:
    """Give the module an int `num_features` (from a dummy forward if it lacks one) and check it."""
    n = getattr(module, "num_features", None)
    if isinstance(n, torch.Tensor):
        n = int(n.item())
    if not isinstance(n, int):
        param = next(module.parameters(), None)
        dummy = torch.rand(2, 3, 64, 64, device=param.device if param is not None else "cpu")
        with torch.no_grad():
            n = int(module(dummy).reshape(2, -1).shape[1])
    try:
        module.num_features = n
    except AttributeError:  # a read-only property that is not an int
        raise ObjectiveError(f"extractor '{name}' has a non-int num_features") from None
    return module


def get_extractor(name: str, device: torch.device | str = "cpu", **kwargs: Any) -> nn.Module:
    """A feature extractor by name, in eval mode on `device`, with an int `num_features`.

    Names: ``"conv-random"`` (seeded random conv net, 64-d; kwargs `num_features`, `size`, `seed`),
    ``"embedded-digits"`` (the embedded model's 64-d digit-classifier features),
    ``"inception"`` / ``"inception-<dims>"`` (InceptionV3, 2048-d by default; needs torch-fidelity and
    local weights from kwarg `weights` or ``$DATOSEARCH_INCEPTION_WEIGHTS``, never downloads),
    ``"module:pkg.mod:attr"`` (an `nn.Module` or a factory called with kwargs).
    """
    if name == "conv-random":
        module = ConvRandomFeatures(**kwargs)
    elif name == "embedded-digits":
        module = _embedded_digits(**kwargs)
    elif name == "inception" or name.startswith("inception-"):
        dims_text = name.partition("-")[2] or "2048"
        if not dims_text.isdigit():
            raise ObjectiveError(f"unknown feature extractor {name!r}; valid names: {', '.join(EXTRACTOR_NAMES)}")
        module = _inception(int(dims_text), kwargs.get("weights"))
    elif name.startswith("module:"):
        module = _from_import_path(name[len("module:"):], **kwargs)
    else:
        raise ObjectiveError(f"unknown feature extractor {name!r}; valid names: {', '.join(EXTRACTOR_NAMES)}")
    module = module.to(device).eval()
    module.requires_grad_(False)
    return _ensure_num_features(module, name)
