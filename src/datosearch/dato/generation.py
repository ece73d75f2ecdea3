"""Where a pipeline's generation starts and ends: around its denoising loop, `pipe.progress_bar(...)`.

Every diffusers pipeline sets its scheduler's timesteps and then opens `self.progress_bar(...)`
around exactly its denoising loop (SD, img2img, inpainting, SDXL, ControlNet, the embedded model).
`GenerationBounds` wraps that method with an instance attribute (deleted again by `remove()`):
opening the loop starts a generation (fresh state, the scheduler's full trajectory read, the plan
mapped to its call count or refused under `strict`); leaving it, normally or through an exception,
drops every cache, so nothing is carried into the next generation. A scheduler swapped in after
`apply` is read the same way.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from .state import DaToContext


class _Loop:
    """The pipeline's progress bar, ending the generation when the loop is left."""

    def __init__(self, bar: Any, bounds: "GenerationBounds") -> None:
        self.bar, self.bounds = bar, bounds

    def __enter__(self) -> Any:
        return self.bar.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        try:
            return self.bar.__exit__(*exc)
        finally:
            self.bounds.end()

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self.bar
        finally:
            self.bounds.end()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bar, name)


class GenerationBounds:
    """Brackets each of `pipe`'s denoising loops with `ctx.begin` / `ctx.end`."""

    def __init__(self, pipe: Any, ctx: DaToContext) -> None:
        self.pipe, self.ctx, self.depth = pipe, ctx, 0
        self.original = pipe.progress_bar
        pipe.progress_bar = self.progress_bar

    def progress_bar(self, *args: Any, **kwargs: Any) -> Any:
        scheduler = getattr(self.pipe, "scheduler", None)
        timesteps = getattr(scheduler, "timesteps", None)
        if self.depth or timesteps is None:  # a loop inside the loop, or no trajectory: as a bare U-Net
            return self.original(*args, **kwargs)
        self.ctx.begin(torch.as_tensor(timesteps).detach().float().cpu().tolist(), type(scheduler).__name__,
                       getattr(scheduler, "num_inference_steps", None))
        self.depth = 1
        try:
            return _Loop(self.original(*args, **kwargs), self)
        except BaseException:
            self.end()
            raise

    def end(self) -> None:
        if self.depth:
            self.depth = 0
            self.ctx.end()

    def remove(self) -> None:
        if vars(self.pipe).get("progress_bar") == self.progress_bar:
            del self.pipe.progress_bar
        self.end()

