"""Forecasting skipped work (TaylorSeer, "From Reusing to Forecasting"): Newton finite differences.

A `History` keeps one tensor's values at the last few full calls. At a later call it extrapolates
the polynomial through them, in Newton form over the call index: with full calls c0 < c1 (values
f0, f1) and an earlier c-1 (f-1), and x = (c - c1) * damping,

    order 1:  f1 + d1 * x,                         d1 = (f1 - f0) / (c1 - c0)
    order 2:  ... + d2 * x * (x + (c1 - c0)),      d2 = (d1 - (f0 - f-1) / (c0 - c-1)) / (c1 - c-1)

With fewer stored calls than order + 1 the order drops; order 0 returns the last value itself.
"""

from __future__ import annotations

from typing import Any

import torch


class History:
    """The last `size` full-call values of one tensor, with their call indices."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.points: list[tuple[float, torch.Tensor]] = []

    def update(self, x: float, value: torch.Tensor) -> None:
        self.points = [*self.points[1 - self.size:], (float(x), value)] if self.size > 1 else [(float(x), value)]

    def predict(self, x: float, order: int, damping: float = 1.0) -> torch.Tensor:
        """Extrapolate to `x` with at most `order`; the last value itself when order drops to 0."""
        order = min(order, len(self.points) - 1)
        c1, f1 = self.points[-1]
        if order <= 0:
            return f1
        c0, f0 = self.points[-2]
        h = (x - c1) * damping
        d1 = (f1.float() - f0.float()) / (c1 - c0)
        out = f1.float() + d1 * h
        if order >= 2:
            cm, fm = self.points[-3]
            d2 = (d1 - (f0.float() - fm.float()) / (c0 - cm)) / (c1 - cm)
            out = out + d2 * (h * (h + (c1 - c0)))
        return out.to(f1.dtype)


def main_tensor(output: Any) -> torch.Tensor:
    """The tensor a module passes on: the output itself, or the first element of a tuple output."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot forecast a module output of type {type(output).__name__}")


def with_main_tensor(output: Any, tensor: torch.Tensor) -> Any:
    """`output` with its main tensor replaced (same structure as `main_tensor` reads)."""
    return tensor if isinstance(output, torch.Tensor) else (tensor, *output[1:])
