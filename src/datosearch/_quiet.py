"""Known-harmless start-up messages of our dependencies, dropped narrowly (by logger and exact wording).

- transformers, without torchvision (which must not be installed next to a CPU-only torch), says at
  diffusers' import of its pipelines that `CLIPImageProcessor` and `SiglipImageProcessor` fall back
  to their PIL versions; datosearch never uses an image processor.
- diffusers warns on every `Module.to(dtype)` that modules "should be kept in float32" even when the
  list it prints is empty (`[]`); only that empty-list form is dropped.
- Optuna's GP sampler (`studies.refine`) says at its import that, without the optional `greenlet` package,
  it optimises its acquisition function one start point at a time instead of batched (slower suggestions).

Everything else, including these loggers' other messages, passes through.
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from typing import Iterator

HARMLESS: dict[str, re.Pattern[str]] = {
    "transformers.utils.import_utils": re.compile(
        r"^`(CLIP|Siglip)ImageProcessor` requires torchvision \(not installed\); falling back to "
        r"`(CLIP|Siglip)ImageProcessorPil` "),
    "diffusers.models.modeling_utils": re.compile(r"^There are modules in \w+ that should be kept in float32: \[\]\. "),
    "optuna._gp.batched_lbfgsb": re.compile(r"^The 'greenlet' package is unavailable, falling back to sequential L-BFGS-B "),
}


class _DropHarmless(logging.Filter):
    def __init__(self, pattern: re.Pattern[str]) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def install() -> None:
    """Add the filters (idempotent); runs when `datosearch` is imported."""
    for name, pattern in HARMLESS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropHarmless) for f in logger.filters):
            logger.addFilter(_DropHarmless(pattern))


@contextmanager
def optuna_warnings_only() -> Iterator[None]:
    """Optuna logs warnings only inside (an in-memory helper study's "created" and per-trial lines dropped)."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)
