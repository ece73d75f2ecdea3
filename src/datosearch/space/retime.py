"""Map a plan to another number of U-Net calls by normalized time, and cut it where a run starts late.

Call `c` of an `n`-call plan covers the fraction [c/n, (c+1)/n) of the trajectory; that, and the
plan's length, is all the mapping needs. `to_calls(schedule, m)`:

- keeps the number of full calls proportional: round(k·m/n) of `m` (at least 1);
- places them where the plan's own full calls lie in normalized time: the i-th of k' target full
  calls goes to the plan's placement curve (its full calls' times, interpolated) at i/k', and
  `placement.spread` makes them distinct calls, as the structured encoding places its full calls;
- gives every other call the action (and forecast) of the plan's nearest non-full call at the same
  normalized time, and every call the per-call pruning multiplier found there.

`from_call(schedule, start)` is the plan of a run that enters the trajectory at call `start`
(img2img and inpainting at strength < 1): the calls from `start` on, the first of them full.
"""

from __future__ import annotations

import math
from dataclasses import replace

from .placement import spread
from .schedule import FULL, Action, Forecast, Schedule


def _source_call(j: int, m: int, n: int) -> int:
    """The plan's call (of `n`) at the normalized time of the middle of target call `j` (of `m`)."""
    return min(n - 1, int((j + 0.5) * n / m))


def _placement_curve(full: list[int], n: int, v: float) -> float:
    """Normalized time at fraction `v` of the full calls (linear between them, ending at 1)."""
    points = [*full, n]
    q = v * len(full)
    i = min(int(q), len(full) - 1)
    return (points[i] + (q - i) * (points[i + 1] - points[i])) / n


def _nearest_non_full(plan: list[Action], s: int) -> int | None:
    """The non-full call closest to `s` (the later one on a tie); None if every call is full."""
    for d in range(len(plan)):
        for c in (s + d, s - d):
            if 0 <= c < len(plan) and plan[c] != FULL:
                return c
    return None


def full_count(k: int, n: int, m: int) -> int:
    """Full calls of an `m`-call run for `k` full calls of an `n`-call plan (proportional, half up)."""
    return max(1, min(m, math.floor(k * m / n + 0.5)))


def to_calls(schedule: Schedule, m: int) -> Schedule:
    """`schedule` mapped to `m` U-Net calls by normalized time (the schedule itself when it has `m`)."""
    n, plan = schedule.n_calls, schedule.cache
    if m == n:
        return schedule
    full = [c for c, a in enumerate(plan) if a == FULL]
    k = full_count(len(full), n, m)
    targets = set(spread(m, [_placement_curve(full, n, i / k) for i in range(k)]))
    cache: list[Action] = []
    forecast: dict[int, Forecast] = {}
    for j in range(m):
        s = _nearest_non_full(plan, _source_call(j, m, n)) if j not in targets else None
        cache.append(FULL if s is None else plan[s])
        if s is not None and s in schedule.forecast:
            forecast[j] = schedule.forecast[s]
    scale = schedule.prune.call_scale
    prune = replace(schedule.prune, ratios=dict(schedule.prune.ratios), call_scale=None if scale is None else
                    [scale[_source_call(j, m, n)] for j in range(m)])
    return Schedule(cache, prune, dict(schedule.meta), forecast)


def from_call(schedule: Schedule, start: int) -> Schedule:
    """The plan's calls from `start` on, the first one full (its forecast dropped): a run entering late."""
    if start == 0:
        return schedule
    cache: list[Action] = [FULL, *schedule.cache[start + 1:]]
    forecast = {c - start: f for c, f in schedule.forecast.items() if c > start}
    scale = schedule.prune.call_scale
    prune = replace(schedule.prune, ratios=dict(schedule.prune.ratios),
                    call_scale=None if scale is None else list(scale[start:]))
    return Schedule(cache, prune, dict(schedule.meta), forecast)
