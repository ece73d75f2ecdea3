"""Where the full calls go: hand placements a user would try, and the warp the search varies.

`quad_center` is DeepCache's non-uniform placement (`sample_from_quad_center` in its SD pipelines,
dense around `center`, sparse late); `power_law` puts full calls at round(n·(i/k)^gamma) (gamma < 1:
sparse early, dense late). `from_full_calls` turns a placement into a `Schedule`.

`warp(u, power, center)` generalises the quadratic-center sampling to normalized time [0, 1]: s runs
linearly from -center^(1/power) to (1 - center)^(1/power) and maps to center + sign(s)·|s|^power.
Power 1 is uniform; with center 0, power < 1 puts the full calls densely late and power > 1 densely
early; 0 < center < 1 with power > 1 puts them densely around `center`. `full_positions` is what the
structured encoding decodes its placement genes with; `spread` turns normalized times into distinct
calls for it and for `space.retime`, which maps a plan to another call count.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .schedule import FULL, Action, Schedule, ScheduleError

POWER_STEP = 0.02  # DeepCache lowers the power by this much until the k positions are distinct


def quad_center(total: int, k: int, center: int = 15, power: float = 1.4) -> list[int]:
    """DeepCache's `sample_from_quad_center(total, k, center, power)` positions (step 0 always included).

    k values evenly spaced from (−c)^(1/p) to (T−c)^(1/p) (complex power; the real part is kept, as
    numpy does), each mapped to int(l^p) + c; p is lowered by 0.02 until k distinct positions result.
    """
    p = float(power)
    while p > 1:
        xs = np.linspace(complex(-center) ** (1 / p), complex(total - center) ** (1 / p), k + 1)
        positions = [0] + [int(x) + center for x in np.unique((xs ** p).real.astype(np.int32))[1:-1]]
        if len(positions) == k:
            return positions
        p -= POWER_STEP
    raise ScheduleError(f"quad_center: no power in (1, {power}] gives {k} distinct steps of {total} around {center}")


def power_law(n_calls: int, k: int, gamma: float = 0.6) -> list[int]:
    """Full calls at round(n_calls·(i/k)^gamma), i = 0..k-1 (call 0 first); distinctness is checked."""
    positions = [round(n_calls * (i / k) ** gamma) for i in range(k)]
    if len(set(positions)) != k or positions[-1] >= n_calls:
        raise ScheduleError(f"power_law: {k} full calls at gamma {gamma} collide on {n_calls} calls: {positions}")
    return positions


def from_full_calls(n_calls: int, full_calls: list[int], other: Action = 0, name: str | None = None,
                    **meta: object) -> Schedule:
    """A schedule with `full_calls` full and every other call `other` (a branch id or "reuse")."""
    bad = [c for c in full_calls if not 0 <= c < n_calls]
    if bad:
        raise ScheduleError(f"full calls {bad} are outside 0..{n_calls - 1}")
    full = set(full_calls)
    plan: list[Action] = [FULL if t in full else other for t in range(n_calls)]
    return Schedule(plan, meta={**meta, "name": name or f"placed-{len(full)}full-{other}"})


def deepcache_nonuniform(n_calls: int, steps: int, interval: int, branch: int = 0, center: int = 15,
                         power: float = 1.4) -> Schedule:
    """DeepCache's non-uniform schedule for `interval` N: ceil(steps / N) full calls at
    `quad_center(steps, k, center, power)` (as call indices), shallow `branch` elsewhere."""
    k = math.ceil(steps / interval)
    return from_full_calls(n_calls, quad_center(steps, k, center, power), branch,
                           name=f"deepcache-nonuniform-N{interval}-b{branch}")


def warp(u: float, power: float, center: float) -> float:
    """Map u in [0, 1] to warped normalized time in [0, 1] (monotone, warp(0) = 0)."""
    lo, hi = -(center ** (1 / power)), (1 - center) ** (1 / power)
    s = lo + (hi - lo) * u
    return min(1.0, max(0.0, center + math.copysign(abs(s) ** power, s)))


def spread(n_calls: int, times: Sequence[float]) -> list[int]:
    """Distinct call indices in 0..n_calls-1 for increasing normalized times (the first becomes call 0).

    Each time u lands on call round(u·n_calls); collisions (two times rounding to one call) are pushed
    to the next free call and pulled back from the end, so exactly min(len(times), n_calls) calls result.
    """
    k = max(1, min(len(times), n_calls))
    pos = [min(n_calls - 1, round(u * n_calls)) for u in times[:k]]
    pos[0] = 0
    for i in range(1, k):
        pos[i] = max(pos[i], pos[i - 1] + 1)
    for i in range(k - 1, -1, -1):  # pushed past the end: pull back
        pos[i] = min(pos[i], n_calls - k + i)
    return pos


def full_positions(n_calls: int, k: int, power: float, center: float, last: bool = False) -> list[int]:
    """`k` distinct full-call indices in 0..n_calls-1, call 0 first, at warp(i / k) of the trajectory
    (`spread`: exactly min(k, n_calls) calls are full). With `last` (and k >= 2) at warp(i / (k - 1)):
    the full calls span the whole trajectory, the last call full."""
    k = max(1, min(k, n_calls))
    span = k - 1 if last and k > 1 else k
    return spread(n_calls, [warp(i / span, power, center) for i in range(k)])


def phase_of(call: int, n_calls: int, phases: int) -> int:
    """The phase (0 = early .. phases-1 = late) that call `call` of `n_calls` belongs to."""
    return min(phases - 1, call * phases // n_calls)
