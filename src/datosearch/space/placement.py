"""Where the full calls go: hand placements a user would try, as plain lists of call indices.

`quad_center` is DeepCache's non-uniform placement (`sample_from_quad_center` in its SD pipelines,
dense around `center`, sparse late); `power_law` puts full calls at round(n·(i/k)^gamma) (gamma < 1:
sparse early, dense late). `from_full_calls` turns a placement into a `Schedule`.
"""

from __future__ import annotations

import math

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
