"""Where the full calls go: a monotone warp of normalized time with two parameters.

`warp(u, power, center)` generalises DeepCache's quadratic-center sampling to [0, 1]: s runs
linearly from -center^(1/power) to (1 - center)^(1/power) and maps to center + sign(s)·|s|^power.
power 1 is uniform; with center 0, power < 1 puts the full calls densely late and power > 1
densely early; 0 < center < 1 with power > 1 puts them densely around `center` (DeepCache's
non-uniform placement, centre 15 of 50 steps at power 1.4).
"""

from __future__ import annotations

import math


def warp(u: float, power: float, center: float) -> float:
    """Map u in [0, 1] to warped normalized time in [0, 1] (monotone, warp(0) = 0)."""
    lo, hi = -(center ** (1 / power)), (1 - center) ** (1 / power)
    s = lo + (hi - lo) * u
    return min(1.0, max(0.0, center + math.copysign(abs(s) ** power, s)))


def full_positions(n_calls: int, k: int, power: float, center: float) -> list[int]:
    """`k` distinct full-call indices in 0..n_calls-1, call 0 first, at warp(i / k) of the trajectory.

    Collisions (two points rounding to one call) are pushed to the next free call, so exactly
    min(k, n_calls) calls are full.
    """
    k = max(1, min(k, n_calls))
    pos = [min(n_calls - 1, round(warp(i / k, power, center) * n_calls)) for i in range(k)]
    pos[0] = 0
    for i in range(1, k):
        pos[i] = max(pos[i], pos[i - 1] + 1)
    for i in range(k - 1, -1, -1):  # pushed past the end: pull back
        pos[i] = min(pos[i], n_calls - k + i)
    return pos


def phase_of(call: int, n_calls: int, phases: int) -> int:
    """The phase (0 = early .. phases-1 = late) that call `call` of `n_calls` belongs to."""
    return min(phases - 1, call * phases // n_calls)
